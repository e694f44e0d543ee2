"""MNIST-format IDX files: the strict parser :func:`read_idx`, any folder of them
(``idx:<folder>``) and Fashion-MNIST (``fashion-mnist``, ``fashion-mnist:<folder>``)."""

from __future__ import annotations

import contextlib
import gzip
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from ..dataset import DatasetError, RawData
from .plan import DEFLATE_MAX_RATIO, BuildOutput, Plan, bomb_text, file_fingerprint, looks_like_bomb

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_FIX = "replace it with an intact copy"
_CHUNK = 16 << 20


class _IdxFile:
    """One IDX file opened for streaming: its header parsed and its claimed size checked
    against the file before any data is read. Use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> "_IdxFile":
        path = self.path
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                self.gz = fh.read(2) == b"\x1f\x8b"
            self.fh = gzip.open(path, "rb") if self.gz else open(path, "rb")
        except OSError as e:
            raise DatasetError(f"cannot read IDX file {path}: {e.strerror or e}; check the path and "
                               f"permissions") from None
        try:
            self._header(size)
        except BaseException:
            self.fh.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def _read(self, n: int) -> bytes:
        try:
            return self.fh.read(n)
        except (EOFError, OSError, zlib.error) as e:  # gzip stream cut short or corrupt
            raise DatasetError(f"IDX file {self.path} has corrupt or truncated gzip data ({e}); {_FIX}") from None

    def _header(self, size: int) -> None:
        path = self.path
        magic = self._read(4)
        if len(magic) < 4:
            raise DatasetError(f"IDX file {path} is truncated: only {len(magic)} bytes, no header; {_FIX}")
        if magic[0] or magic[1]:
            raise DatasetError(f"{path} is not an IDX file: magic number 0x{magic.hex()} does not start "
                               f"with 0x0000; pass MNIST-format IDX files")
        code, ndim = magic[2], magic[3]
        if code not in _IDX_DTYPES:
            raise DatasetError(f"IDX file {path} has unknown data type code 0x{code:02x} "
                               f"(valid: 08, 09, 0b, 0c, 0d, 0e); {_FIX}")
        if ndim == 0:
            raise DatasetError(f"IDX file {path} declares zero dimensions; {_FIX}")
        raw_dims = self._read(4 * ndim)
        if len(raw_dims) < 4 * ndim:
            raise DatasetError(f"IDX file {path} is truncated inside its header "
                               f"({ndim} dimensions declared); {_FIX}")
        self.dims = struct.unpack(f">{ndim}I", raw_dims)
        self.dtype = _IDX_DTYPES[code]
        self.nbytes = nbytes = math.prod(self.dims) * self.dtype.itemsize
        claims = f"header dims {self.dims} need {nbytes:,} data bytes"
        if not self.gz:   # the file's size says at once whether the data is all there
            present = size - 4 - 4 * ndim
            if present < nbytes:
                raise DatasetError(f"IDX file {path} is truncated: {claims} but only {present:,} are present; {_FIX}")
            if present > nbytes:
                raise DatasetError(f"IDX file {path} has trailing bytes after the {nbytes:,} its header "
                                   f"declares (dims {self.dims}); {_FIX}")
        elif nbytes > DEFLATE_MAX_RATIO * size + (1 << 20):
            raise DatasetError(f"IDX file {path} is corrupt: {claims}, more than a {size:,}-byte gzip file can "
                               f"hold (deflate expands at most {DEFLATE_MAX_RATIO}x); {_FIX}")
        elif looks_like_bomb(nbytes, size):
            raise DatasetError(f"refusing IDX file {path}: it would unpack to {bomb_text(nbytes, size)} "
                               f"(possible decompression bomb); {_FIX}")

    def read_into_part(self, dest: np.ndarray, progress: Callable[[int], None] | None = None) -> None:
        """Fill ``dest`` (C-contiguous) with the next bytes of the data."""
        view = memoryview(dest.reshape(-1).view(np.uint8))
        pos = 0
        while pos < len(view):
            try:
                got = self.fh.readinto(view[pos:pos + _CHUNK])
            except (EOFError, OSError, zlib.error) as e:
                raise DatasetError(f"IDX file {self.path} has corrupt or truncated gzip data ({e}); {_FIX}") from None
            if not got:
                raise DatasetError(f"IDX file {self.path} is truncated: header dims {self.dims} need "
                                   f"{self.nbytes:,} data bytes but fewer are present; {_FIX}")
            pos += got
            if progress is not None:
                progress(pos)

    def check_end(self) -> None:
        if self._read(1):
            raise DatasetError(f"IDX file {self.path} has trailing bytes after the {self.nbytes:,} its header "
                               f"declares (dims {self.dims}); {_FIX}")

    def read_into(self, dest: np.ndarray, progress: Callable[[int], None] | None = None) -> None:
        """Read all the data into ``dest`` (C-contiguous, ``nbytes`` long), then check nothing follows."""
        if dest.nbytes != self.nbytes:
            raise ValueError("destination size does not match the IDX data")
        self.read_into_part(dest, progress)
        self.check_end()


def read_idx(path: str | Path) -> np.ndarray:
    """Strictly parse one IDX file (gzipped or raw) into a native-endian array."""
    with _IdxFile(path) as f:
        data = np.empty(f.nbytes, np.uint8)
        f.read_into(data)
        dtype, dims = f.dtype, f.dims
    return data.view(dtype).astype(dtype.newbyteorder("="), copy=False).reshape(dims)


_IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)(?:[.-]idx\d-ubyte)?(?:\.gz)?$", re.IGNORECASE)


def _find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    # Prefer raw over gzipped when both exist (same data, faster to read).
    for p in sorted(folder.iterdir(), key=lambda p: (p.name.lower().endswith(".gz"), p.name)):
        m = _IDX_NAME.match(p.name)
        if m and p.is_file():
            split = "train" if m.group(1).lower() == "train" else "test"
            found.setdefault((split, m.group(2).lower()), p)
    return found


def _image_layout(f: _IdxFile) -> tuple[int, int, int, int]:
    """(N, C, H, W) of an images file, checked from its header before any data is read."""
    if f.dtype != np.uint8:
        raise DatasetError(f"IDX images {f.path} hold {f.dtype} values; expected unsigned bytes (type code 0x08) "
                           f"as in MNIST - convert the file")
    if len(f.dims) == 3:
        return f.dims[0], 1, f.dims[1], f.dims[2]
    if len(f.dims) == 4 and f.dims[3] in (1, 3):
        return f.dims[0], f.dims[3], f.dims[1], f.dims[2]
    raise DatasetError(f"IDX images {f.path} have shape {f.dims}; expected (N, H, W) or (N, H, W, 1|3) - "
                       f"check that this is an images file, not a labels file")


def _read_images(f: _IdxFile, x: np.ndarray, progress: Callable[[int], None]) -> None:
    """Stream an images file into ``x`` (N, C, H, W); progress(rows done)."""
    n, c, h, w = x.shape
    row = c * h * w
    if c == 1:   # (N, H, W) and (N, H, W, 1) are already the bytes of (N, 1, H, W)
        f.read_into(x, lambda done: progress(done // row))
        return
    rows = max(1, _CHUNK // row)
    for start in range(0, n, rows):
        chunk = np.empty((min(rows, n - start), h, w, c), np.uint8)
        f.read_into_part(chunk)
        x[start:start + len(chunk)] = chunk.transpose(0, 3, 1, 2)
        progress(start + len(chunk))
    f.check_end()


def _idx_labels(path: Path, n: int) -> np.ndarray:
    with _IdxFile(path) as f:
        if len(f.dims) != 1 or f.dtype.kind not in "iu":
            raise DatasetError(f"IDX labels {path} have shape {f.dims} / {f.dtype}; expected one integer per "
                               f"image - check that this is a labels file")
        if f.dims[0] != n:
            raise DatasetError(f"IDX labels {path} hold {f.dims[0]} labels for {n} images; use the labels file "
                               f"that belongs to these images")
    y = read_idx(path).astype(np.int64)
    y[y < 0] = -1
    return y


def _plan_idx_folder(kind: str, folder: Path, missing: Callable[[str], str],
                     class_names: tuple[str, ...] | None) -> Plan:
    if not folder.is_dir():
        raise DatasetError(missing(f"{folder} is not a folder"))
    files = _find_idx_files(folder)
    if ("train", "images") not in files:
        raise DatasetError(missing(f"no train-images IDX file in {folder}"))
    key = {"files": {f"{s}-{w}": file_fingerprint(p) for (s, w), p in sorted(files.items())}}

    def build(out: BuildOutput) -> RawData:
        with contextlib.ExitStack() as stack:
            tr = stack.enter_context(_IdxFile(files["train", "images"]))
            n, c, h, w = _image_layout(tr)
            te = n_te = None
            if ("test", "images") in files:
                te = stack.enter_context(_IdxFile(files["test", "images"]))
                n_te, *shape_te = _image_layout(te)
                if tuple(shape_te) != (c, h, w):
                    raise DatasetError(f"test images {files['test', 'images']} are {tuple(shape_te)} but train "
                                       f"images are {(c, h, w)}; use matching train/test files")
            # Labels first: they are small, and a mismatch should not wait for the images.
            y = (_idx_labels(files["train", "labels"], n) if ("train", "labels") in files
                 else np.full(n, -1, np.int64))
            y_te = None
            if te is not None:
                y_te = (_idx_labels(files["test", "labels"], n_te) if ("test", "labels") in files
                        else np.full(n_te, -1, np.int64))
            total = n + (n_te or 0)
            out.progress(0, total)
            x = out.array("x", (n, c, h, w))
            _read_images(tr, x, lambda done: out.progress(done, total))
            x_te = None
            if te is not None:
                x_te = out.array("x_test", (n_te, c, h, w))
                _read_images(te, x_te, lambda done: out.progress(n + done, total))
        names = class_names
        top = max(y.max(initial=-1), -1 if y_te is None else y_te.max(initial=-1))
        if names is not None:
            if top >= len(names):
                raise DatasetError(f"labels in {folder} go up to {top} but {kind} has {len(names)} classes; "
                                   f"load the folder as idx:{folder} instead")
        else:
            names = tuple(str(i) for i in range(top + 1)) if top >= 0 else None
        return RawData(x=x, y=y, x_test=x_te, y_test=y_te, scale=255.0, class_names=names, preprocess="fit")

    origin = {"files": {f"{s}-{w}": str(p.resolve()) for (s, w), p in sorted(files.items())}}
    return Plan(kind, key, build, test_size=0.1, origin=origin)


def _fashion_missing(folder: str) -> Callable[[str], str]:
    return lambda _why: (f"Fashion-MNIST not found in {folder}: run `apt-get install dataset-fashion-mnist`, "
                         f"or pass a folder of IDX files as fashion-mnist:<folder>")


def plan_fashion(arg, image_size, channels) -> Plan:
    folder = arg if arg is not None else FASHION_MNIST_DIR
    return _plan_idx_folder("fashion-mnist", Path(folder).expanduser(), _fashion_missing(folder),
                            FASHION_MNIST_CLASSES)


def fashion_status() -> tuple[bool, str]:
    folder = Path(FASHION_MNIST_DIR)
    if folder.is_dir() and ("train", "images") in _find_idx_files(folder):
        return True, f"70,000 28x28 clothing images from {folder}"
    return False, _fashion_missing(FASHION_MNIST_DIR)("")


def plan_idx(arg, image_size, channels) -> Plan:
    folder = Path(arg).expanduser()

    def missing(why: str) -> str:
        return (f"{why}: pass a folder holding MNIST-format IDX files (train-images-idx3-ubyte[.gz], optional "
                f"train-labels-idx1-ubyte[.gz], t10k-images..., t10k-labels...) as idx:<folder>")

    return _plan_idx_folder("idx", folder, missing, None)
