"""MNIST-format IDX files: the strict parser :func:`read_idx`, any folder of them
(``idx:<folder>``) and Fashion-MNIST (``fashion-mnist``, ``fashion-mnist:<folder>``)."""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from ..dataset import DatasetError, RawData
from .plan import Plan, file_fingerprint

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MAX_IDX_BYTES = 2 * 2**30              # payload an IDX header may claim

_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Strictly parse one IDX file (gzipped or raw) into a native-endian array."""
    path = Path(path)
    fix = "replace it with an intact copy"
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
    except OSError as e:
        raise DatasetError(f"cannot read IDX file {path}: {e.strerror or e}; check the path and permissions") from None
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            magic = fh.read(4)
            if len(magic) < 4:
                raise DatasetError(f"IDX file {path} is truncated: only {len(magic)} bytes, no header; {fix}")
            if magic[0] or magic[1]:
                raise DatasetError(f"{path} is not an IDX file: magic number 0x{magic.hex()} does not start "
                                   f"with 0x0000; pass MNIST-format IDX files")
            code, ndim = magic[2], magic[3]
            if code not in _IDX_DTYPES:
                raise DatasetError(f"IDX file {path} has unknown data type code 0x{code:02x} "
                                   f"(valid: 08, 09, 0b, 0c, 0d, 0e); {fix}")
            if ndim == 0:
                raise DatasetError(f"IDX file {path} declares zero dimensions; {fix}")
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DatasetError(f"IDX file {path} is truncated inside its header "
                                   f"({ndim} dimensions declared); {fix}")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = _IDX_DTYPES[code]
            nbytes = math.prod(dims) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise DatasetError(f"IDX file {path} claims {nbytes:,} bytes of data (dims {dims}), over the "
                                   f"{MAX_IDX_BYTES:,}-byte limit; split it into smaller files")
            data = fh.read(nbytes)
            if len(data) != nbytes:
                raise DatasetError(f"IDX file {path} is truncated: header dims {dims} need {nbytes:,} data "
                                   f"bytes but only {len(data):,} are present; {fix}")
            if fh.read(1):
                raise DatasetError(f"IDX file {path} has trailing bytes after the {nbytes:,} its header "
                                   f"declares (dims {dims}); {fix}")
    except (EOFError, OSError, zlib.error) as e:  # gzip stream cut short or corrupt
        raise DatasetError(f"IDX file {path} has corrupt or truncated gzip data ({e}); {fix}") from None
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)


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


def _idx_images(path: Path) -> np.ndarray:
    a = read_idx(path)
    if a.dtype != np.uint8:
        raise DatasetError(f"IDX images {path} hold {a.dtype} values; expected unsigned bytes (type code 0x08) "
                           f"as in MNIST - convert the file")
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[3] in (1, 3):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))
    raise DatasetError(f"IDX images {path} have shape {a.shape}; expected (N, H, W) or (N, H, W, 1|3) - "
                       f"check that this is an images file, not a labels file")


def _idx_labels(path: Path, n: int) -> np.ndarray:
    a = read_idx(path)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DatasetError(f"IDX labels {path} have shape {a.shape} / {a.dtype}; expected one integer per "
                           f"image - check that this is a labels file")
    if len(a) != n:
        raise DatasetError(f"IDX labels {path} hold {len(a)} labels for {n} images; use the labels file that "
                           f"belongs to these images")
    y = a.astype(np.int64)
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

    def build() -> RawData:
        x = _idx_images(files["train", "images"])
        y = (_idx_labels(files["train", "labels"], len(x)) if ("train", "labels") in files
             else np.full(len(x), -1, np.int64))
        x_te = y_te = None
        if ("test", "images") in files:
            x_te = _idx_images(files["test", "images"])
            if x_te.shape[1:] != x.shape[1:]:
                raise DatasetError(f"test images {files['test', 'images']} are {x_te.shape[1:]} but train "
                                   f"images are {x.shape[1:]}; use matching train/test files")
            y_te = (_idx_labels(files["test", "labels"], len(x_te)) if ("test", "labels") in files
                    else np.full(len(x_te), -1, np.int64))
        names = class_names
        top = max(y.max(initial=-1), -1 if y_te is None else y_te.max(initial=-1))
        if names is not None:
            if top >= len(names):
                raise DatasetError(f"labels in {folder} go up to {top} but {kind} has {len(names)} classes; "
                                   f"load the folder as idx:{folder} instead")
        else:
            names = tuple(str(i) for i in range(top + 1)) if top >= 0 else None
        return RawData(x=x, y=y, x_test=x_te, y_test=y_te, scale=255.0, class_names=names, preprocess="fit")

    return Plan(kind, key, build, test_size=0.1)


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
