"""What a source will build, known before building it, so the build can be cached by key; where
a build writes its arrays (:class:`BuildOutput`); and the limits shared by compressed sources."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..dataset import DatasetError, RawData

Progress = Callable[[int, int], None]   # (done, total)

# Decompression bombs. Deflate cannot expand data more than ~1032x, so a size a header claims
# beyond that is impossible. Real image data stays far below the bomb limit: MNIST deflates ~5x,
# dSprites' npz ~115x, the procedural `shapes` sprites 180-240x; padding made to be a bomb
# (zeros, one repeated byte) reaches ~1030x. Sizes below the floor are never called bombs:
# they cannot do harm, and a blank uncompressed BMP in a zip honestly deflates ~1000x.
MAX_COMPRESSION_RATIO = 500
RATIO_CHECK_FLOOR = 64 * 2**20
DEFLATE_MAX_RATIO = 1032


def file_fingerprint(path: Path) -> list:
    """Where a file is and which version of it: an edited file gets a new cache key."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def looks_like_bomb(unpacked: int, packed: int) -> bool:
    """Whether ``packed`` compressed bytes claiming to unpack to ``unpacked`` bytes look like a bomb."""
    return unpacked > RATIO_CHECK_FLOOR and unpacked > MAX_COMPRESSION_RATIO * max(packed, 1)


def bomb_text(unpacked: int, packed: int) -> str:
    return (f"{unpacked / 2**20:,.0f} MB from {packed / 2**20:,.1f} MB ({unpacked / max(packed, 1):,.0f}x; "
            f"the limit is {MAX_COMPRESSION_RATIO}x, far above what images compress to)")


class BuildOutput:
    """Where a build writes its large arrays and reports its progress.

    folder: the cache entry being written; :meth:`array` then returns a ``.npy`` file there,
    mapped for writing, so a build never holds its images in memory. None: plain arrays in memory.
    make_room: called with a byte count before a file that large is created (the cache evicts
    old entries for it).
    """

    def __init__(self, folder: Path | None = None, progress: Progress | None = None,
                 make_room: Callable[[int], None] | None = None):
        self.folder = folder
        self._progress = progress
        self._make_room = make_room

    def progress(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(int(done), int(total))

    def array(self, name: str, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
        """A zero-filled array to write into, saved as ``<name>.npy`` when building into the cache."""
        shape = tuple(int(s) for s in shape)
        if self.folder is None:
            return np.zeros(shape, dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if self._make_room is not None:
            self._make_room(nbytes)
        free = shutil.disk_usage(self.folder).free
        if nbytes + (256 << 20) > free:
            raise DatasetError(f"decoding this dataset needs {nbytes / 1e9:.1f} GB in the dataset cache "
                               f"{self.folder.parent} but only {free / 1e9:.1f} GB are free there; free some "
                               f"space or set LATENT_EXPLORER_CACHE to a folder on a larger disk")
        path = self.folder / f"{name}.npy"
        a = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)
        # Reserve the blocks now: writing through a map onto a full disk would kill the process (SIGBUS).
        if nbytes and hasattr(os, "posix_fallocate"):
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise DatasetError(f"the disk holding the dataset cache {self.folder.parent} is full: "
                                       f"decoding this dataset needs {nbytes / 1e9:.1f} GB there") from None
            finally:
                os.close(fd)
        return a

    def shrink(self, a: np.ndarray, n: int) -> np.ndarray:
        """The first ``n`` rows of an array from :meth:`array`; its file is cut to them."""
        if n >= len(a):
            return a
        if not isinstance(a, np.memmap) or a.filename is None:
            return a[:n].copy()
        path, shape, dtype = Path(a.filename), (n, *a.shape[1:]), a.dtype
        with open(path, "r+b") as fh:
            version = np.lib.format.read_magic(fh)
            fh.seek(0)
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            (np.lib.format.write_array_header_1_0 if version == (1, 0)
             else np.lib.format.write_array_header_2_0)(fh, header)
            if fh.tell() != a.offset:   # numpy pads the length axis' digits, so this does not happen
                raise OSError(f"could not rewrite the header of {path}")
            fh.truncate(a.offset + n * a[0].nbytes)
        return np.lib.format.open_memmap(path, mode="r+")


@dataclass
class Plan:
    kind: str
    key: dict                          # JSON-able; everything the built arrays depend on
    build: Callable[[BuildOutput], RawData]
    test_size: int | float = 0.1       # for sources without their own test set
    post_resize: bool = True           # apply image_size/channels after building
    origin: dict | None = None         # the key without file versions: which source, whatever its state
