"""``folder:<path>``: the user's own images, as a directory (subfolders become classes), a
``.zip`` of image files (read in memory, never extracted) or a ``.npz`` of arrays.

Every image file goes through the guarded decoder (:mod:`vae_core.data.images`), with a white
background for transparency and a centre-crop + LANCZOS resize to the dataset size. A file it
refuses is counted, named in the dataset's notes and skipped; only a source with no usable
image at all is an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import images
from ..dataset import DatasetError, RawData
from .plan import Plan, file_fingerprint

# Safety limits for user-supplied files (module-level so tests and callers can tune them).
MAX_ZIP_UNCOMPRESSED_BYTES = 512 * 2**20
MAX_ZIP_MEMBERS = 100_000
MAX_MEMBER_BYTES = 64 * 2**20          # one image file inside a zip
DEFAULT_FOLDER_IMAGE_SIZE = 28

_SUFFIXES_TEXT = ", ".join(sorted(images.FILE_SUFFIXES))


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
    return os.path.splitext(parts[-1])[1].lower() in images.FILE_SUFFIXES


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



def _channels_first(im: Image.Image, channels: int) -> np.ndarray:
    """An ``L`` or ``RGB`` image -> (channels, H, W) uint8."""
    a = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _decode_file(src, size: int, channels: int) -> np.ndarray:
    decoded = images.decode(src, transparent="white", fit=(size, size))
    return _channels_first(decoded.image, channels)


def _decode_all(items, size: int, channels: int, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """items: iterable of (parts, opener) -> images, kept indices, notes."""
    out, keep, bad = [], [], []
    for i, (parts, opener) in enumerate(items):
        try:
            out.append(_decode_file(opener(), size, channels))
            keep.append(i)
        except Exception as e:  # any failure just means "not a usable image": count it, name it, skip it
            reason = str(e) if isinstance(e, images.ImageImportError) else f"{type(e).__name__}: {e}"
            bad.append(f"{'/'.join(parts)} ({reason})")
    notes = []
    if bad:
        notes.append(f"skipped {len(bad)} unreadable file(s) in {where}, e.g. {bad[0]}")
    if not out:
        raise DatasetError(f"no readable images in {where}"
                           + (f" ({len(bad)} file(s) could not be decoded, e.g. {bad[0]})" if bad else "")
                           + f": add {_SUFFIXES_TEXT} files")
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


def _build_dir(root: Path, found, size: int, channels: int) -> RawData:
    items = [(parts, lambda p=p: p) for parts, p in found]
    x, keep, notes = _decode_all(items, size, channels, str(root))
    y, names = _labels_from_paths([found[i][0] for i in keep])
    return RawData(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes))


# --------------------------------------------------------------------------- .zip


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


def _build_zip(path: Path, size: int, channels: int) -> RawData:
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
    return RawData(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes + more))


# --------------------------------------------------------------------------- .npz


def _npz_to_uint8(a: np.ndarray, path: Path) -> np.ndarray:
    """Pixel arrays -> uint8: bool, floats in 0..1 (or 0..255), uint16 by its full range,
    other integers in 0..255 (or 0..65535, read as 16-bit values)."""
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
        if a.dtype == np.uint16 or hi > 255:
            return np.rint(images.unit_from_16bit(a) * 255.0).astype(np.uint8)
        return a.astype(np.uint8)
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


def _npz_images(x: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, channels, size, size), through the decoder's mode and fit rules."""
    n_in = x.shape[3]
    if x.shape[1:3] == (size, size) and n_in in (1, channels):
        return np.ascontiguousarray(np.repeat(x, channels // n_in, axis=3).transpose(0, 3, 1, 2))
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[n_in]
    out = np.empty((len(x), channels, size, size), np.uint8)
    for i, img in enumerate(x):
        im = images.normalise_mode(Image.fromarray(img[..., 0] if mode == "L" else img, mode), "white", [])
        out[i] = _channels_first(images.fit_image(im, (size, size)), channels)
    return out


def _build_npz(path: Path, size: int, channels: int) -> RawData:
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
    x = _npz_images(_npz_to_uint8(_npz_images_nhwc(x, path), path), size, channels)
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
    return RawData(x=x, y=y, scale=255.0, class_names=class_names, preprocess="fit")


# --------------------------------------------------------------------------- the spec


def plan_folder(arg, image_size, channels) -> Plan:
    path = Path(arg).expanduser()
    size = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    ch = channels or 1
    opts = {"size": size, "channels": ch}
    if path.is_dir():
        found = _scan_dir(path)
        if not found:
            raise DatasetError(f"no readable images in {path}: add {_SUFFIXES_TEXT} files "
                               f"(subfolders become classes)")
        listing = hashlib.sha256(json.dumps(
            [["/".join(parts), *file_fingerprint(p)[1:]] for parts, p in found]).encode()).hexdigest()
        key = {"dir": str(path.resolve()), "listing": listing, **opts}
        return Plan("folder", key, lambda: _build_dir(path, found, size, ch), post_resize=False)
    if path.is_file() and path.suffix.lower() in (".zip", ".npz"):
        build = _build_zip if path.suffix.lower() == ".zip" else _build_npz
        return Plan("folder", {"file": file_fingerprint(path), **opts}, lambda: build(path, size, ch),
                    post_resize=False)
    if not path.exists():
        raise DatasetError(f"{path} not found: pass an existing folder of images, a .zip or a .npz as folder:<path>")
    raise DatasetError(f"{path} is not a folder, .zip or .npz: pass one of those as folder:<path>")
