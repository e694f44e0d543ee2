"""Images stored compactly and handed out as floats a batch at a time.

An :class:`ImageSet` holds N images as uint8 (N, C, H, W): a numpy array in memory, a
read-only memory map of the dataset cache's ``.npy`` file, or a torch uint8 tensor already on
the training device. Indexing it (``images[i]``, ``images[a:b]``, ``images[index_array]``)
returns float32 in [0, 1] on the storage's device, so a batch becomes floats only when it is
used, and the whole set never exists as float32 (4x its uint8 size) anywhere.

Rows of a memory-mapped file are read with ``os.pread`` rather than through the mapping, so
the kernel's page cache keeps them and the process's resident memory stays the size of a
batch, whatever the size of the file.
"""
from __future__ import annotations

import os
import threading
from typing import Iterator

import numpy as np
import torch

IndexLike = int | slice | np.ndarray | torch.Tensor | list


class ImageSet:
    """N images, uint8 storage, float32 on access. Read-only.

    storage: (M, C, H, W) uint8 numpy array, np.memmap or torch tensor.
    scale: the stored value that means 1.0 (255 for 8-bit images, 16 for scikit-learn's digits).
    rows: which rows of ``storage`` form this set, in order (None: all of them), so a train/test
        split is two views of one cached array, not two copies.
    """

    def __init__(self, storage: np.ndarray | torch.Tensor, scale: float = 255.0, rows: np.ndarray | None = None):
        dtype_ok = storage.dtype == (torch.uint8 if isinstance(storage, torch.Tensor) else np.uint8)
        if not dtype_ok or storage.ndim != 4:
            raise ValueError(f"images must be stored as (N, C, H, W) uint8, got {tuple(storage.shape)} {storage.dtype}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self._storage = storage
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.scale = float(scale)
        self._fd: int | None = None
        self._fd_lock = threading.Lock()

    # --- what it is -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else int(self._storage.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self._storage.shape[1:]
        return int(c), int(h), int(w)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of uint8 pixels in this set (not in the storage it may share with another set)."""
        c, h, w = self.image_shape
        return len(self) * c * h * w

    @property
    def storage_rows(self) -> np.ndarray:
        """Which rows of the underlying storage this set's images are, in order: two views of one
        cache (a train/test split) share no rows exactly when they share no images."""
        return self._rows.copy() if self._rows is not None else np.arange(len(self), dtype=np.int64)

    @property
    def device(self) -> torch.device:
        return self._storage.device if isinstance(self._storage, torch.Tensor) else torch.device("cpu")

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self._storage, np.memmap)

    def __repr__(self) -> str:
        where = "memory-mapped" if self.memory_mapped else f"in memory on {self.device}"
        return f"ImageSet({len(self)} images of {self.image_shape}, uint8 {where})"

    # --- rows -------------------------------------------------------------------------------
    def _positions(self, idx: IndexLike) -> tuple[np.ndarray, bool]:
        """This set's positions ``idx`` as an int64 array of storage rows, and whether ``idx`` was one int."""
        n = len(self)
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"image {i} is out of range for a set of {n}")
            local, single = np.array([i % n], np.int64), True
        elif isinstance(idx, slice):
            local, single = np.arange(n, dtype=np.int64)[idx], False
        else:
            a = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
            if a.dtype == bool:
                a = np.flatnonzero(a)
            local, single = a.astype(np.int64).reshape(-1), False
            if len(local) and (local.min() < -n or local.max() >= n):
                raise IndexError(f"an index is out of range for a set of {n}")
            local = local % max(n, 1)
        return (self._rows[local] if self._rows is not None else local), single

    def uint8(self, idx: IndexLike | None = None) -> np.ndarray | torch.Tensor:
        """The stored pixels of ``idx`` (default: every image), gathered into memory, as the
        storage's own type: a numpy array, or a torch tensor on its device."""
        rows, single = self._positions(slice(None) if idx is None else idx)
        out = self._gather(rows)
        return out[0] if single else out

    def _gather(self, rows: np.ndarray):
        s = self._storage
        if isinstance(s, torch.Tensor):
            return s.index_select(0, torch.as_tensor(rows, device=s.device))
        if not isinstance(s, np.memmap):
            return s[rows]
        return self._pread(rows)

    def _pread(self, rows: np.ndarray) -> np.ndarray:
        """Rows of a memory-mapped .npy read with pread, contiguous runs in one call each."""
        s = self._storage
        row_bytes = int(np.prod(s.shape[1:]))
        out = np.empty((len(rows), *s.shape[1:]), np.uint8)
        if not len(rows):
            return out
        flat = out.reshape(len(rows), row_bytes)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        with self._fd_lock:
            if self._fd is None:
                self._fd = os.open(s.filename, os.O_RDONLY)
            fd = self._fd
        start = 0
        while start < len(sorted_rows):  # one read per run of consecutive rows
            end = start + 1
            while end < len(sorted_rows) and sorted_rows[end] == sorted_rows[end - 1] + 1:
                end += 1
            count = end - start
            data = os.pread(fd, count * row_bytes, s.offset + int(sorted_rows[start]) * row_bytes)
            if len(data) != count * row_bytes:
                raise OSError(f"{s.filename} is shorter than its header says; delete the dataset cache entry")
            flat[order[start:end]] = np.frombuffer(data, np.uint8).reshape(count, row_bytes)
            start = end
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    # --- floats -----------------------------------------------------------------------------
    def to_float(self, u8: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Stored pixels of this set as float32 in [0, 1] on ``device`` (default: where they are)."""
        t = torch.from_numpy(np.ascontiguousarray(u8)) if isinstance(u8, np.ndarray) else u8
        if device is not None:
            t = t.to(device, non_blocking=True)
        return t.to(torch.float32).div_(self.scale)

    def __getitem__(self, idx: IndexLike) -> torch.Tensor:
        """Images ``idx`` as float32 in [0, 1]: (C, H, W) for one int, (B, C, H, W) otherwise."""
        return self.to_float(self.uint8(idx))

    def batches(self, batch_size: int, device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
        """The whole set in order, ``batch_size`` images at a time, as floats on ``device``."""
        for i in range(0, len(self), batch_size):
            yield self.to_float(self.uint8(slice(i, i + batch_size)), device)

    def subset(self, idx: IndexLike) -> "ImageSet":
        """A view of the images ``idx`` (nothing is read)."""
        rows, _ = self._positions(idx)
        return ImageSet(self._storage, self.scale, rows)

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same images with their uint8 storage copied onto ``device`` (a torch tensor there)."""
        return ImageSet(torch.from_numpy(np.ascontiguousarray(self.uint8())).to(device), self.scale)

    def numpy(self) -> np.ndarray:
        """Every image as float32 (N, C, H, W): for small sets only."""
        return self[:].cpu().numpy()


def iter_float_batches(x, batch_size: int, device: torch.device | str) -> Iterator[torch.Tensor]:
    """Float batches of ``x`` on ``device``: x is an :class:`ImageSet`, another set with the same
    ``batches(batch_size, device)`` (a text ``CountSet``), or a float tensor / array (N, ...)
    already in the model's units."""
    if isinstance(x, ImageSet) or callable(getattr(x, "batches", None)):
        yield from x.batches(batch_size, device)
        return
    t = torch.as_tensor(x)
    for i in range(0, len(t), batch_size):
        yield t[i : i + batch_size].to(device)
