"""``folder:<path>``: the user's own images, as a directory (subfolders become classes), a
``.zip`` of image files (read in memory, never extracted) or a ``.npz`` of arrays.

Every image file goes through the guarded decoder (:mod:`vae_core.data.images`), with a white
background for transparency and a centre-crop + LANCZOS resize to the dataset size. A file it
refuses is counted, named in the dataset's notes and skipped; only a source with no usable
image at all is an error. Decoded images are written one by one into the cache's output file
(:class:`~vae_core.data.sources.plan.BuildOutput`), and an ``.npz`` is streamed in chunks, so
building never holds the dataset in memory.

A folder's scan (its image files, their sizes and times) is kept for the process while it stays
valid: every directory's mtime unchanged (no file added, removed or renamed) and every file's size
and mtime unchanged (none modified). Checking that costs a stat per file, no listing, no sorting.
A scan made within :data:`RACY_S` seconds of a change in the folder is not kept, since a
coarse file-system clock could hide a second change in the same tick.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .. import images
from ..dataset import DatasetError, RawData
from .plan import BuildOutput, Plan, bomb_text, file_fingerprint, looks_like_bomb

# Safety limits for user-supplied files (module-level so tests and callers can tune them). A zip's
# size is not limited: bombs are caught by their compression ratio (plan.MAX_COMPRESSION_RATIO).
MAX_ZIP_MEMBERS = 1_000_000            # each costs ~0.5 KB of memory to list
MAX_MEMBER_BYTES = 64 * 2**20          # one image file inside a zip
MAX_LABEL_BYTES = 64 * 2**20           # the labels or class names of an .npz
DEFAULT_FOLDER_IMAGE_SIZE = 28
SCAN_MEMO_SIZE = 8
RACY_S = 2.0
NOTE_EXAMPLES = 3                      # bad files named in a note

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


def _no_images(where: str, bad: list[str]) -> DatasetError:
    return DatasetError(f"no readable images in {where}"
                        + (f" ({len(bad)} file(s) could not be decoded, e.g. {bad[0]})" if bad else "")
                        + f": add {_SUFFIXES_TEXT} files")


def skipped_note(bad: list[str], where: str) -> str:
    """The note for files that could not be used: how many, and the first few by name."""
    more = f"; and {len(bad) - NOTE_EXAMPLES} more" if len(bad) > NOTE_EXAMPLES else ""
    return f"skipped {len(bad)} unreadable file(s) in {where}: {'; '.join(bad[:NOTE_EXAMPLES])}{more}"


def _decode_all(items, size: int, channels: int, where: str,
                out: BuildOutput) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """items: list of (parts, opener) -> images, kept indices, notes. Each image is written into
    ``out``'s array as it is decoded, so memory does not grow with the number of files."""
    if not items:
        raise _no_images(where, [])
    n = len(items)
    x = out.array("x", (n, channels, size, size))
    keep, bad = [], []
    out.progress(0, n)
    for i, (parts, opener) in enumerate(items):
        try:
            x[len(keep)] = _decode_file(opener(), size, channels)
            keep.append(i)
        except Exception as e:  # any failure just means "not a usable image": count it, name it, skip it
            reason = str(e) if isinstance(e, images.ImageImportError) else f"{type(e).__name__}: {e}"
            bad.append(f"{'/'.join(parts)} ({reason})")
        out.progress(i + 1, n)
    if not keep:
        raise _no_images(where, bad)
    notes = [skipped_note(bad, where)] if bad else []
    return out.shrink(x, len(keep)), np.asarray(keep, np.int64), notes


# --------------------------------------------------------------------------- a folder


@dataclass(frozen=True)
class FolderScan:
    """The image files under a folder, in a fixed order, with what identifies their versions."""

    found: list[tuple[tuple[str, ...], str]]   # (path parts below the folder, the file's path)
    stats: list[tuple[int, int]]          # (size, mtime_ns) of each file; (-1, 0) when it cannot be read
    dirs: list[tuple[str, int]]           # every folder walked and its mtime_ns
    listing: str                          # digest of the names, sizes and mtimes: part of the cache key


def _entry_name(e: os.DirEntry) -> str:
    return e.name


def _walk(root: Path) -> FolderScan:
    """Every image file below ``root``: files before subfolders, each sorted by name; hidden
    entries skipped, symlinked folders not entered (as ``os.walk`` does).

    Paths are kept as strings: a ``Path`` per file made this scan 4x slower on 200,000 files."""
    found, stats, dirs, names = [], [], [], []
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), ())]
    suffixes = images.FILE_SUFFIXES
    while stack:
        folder, rel = stack.pop()
        try:
            mtime = os.stat(folder).st_mtime_ns
            with os.scandir(folder) as it:
                entries = sorted(it, key=_entry_name)
        except OSError:
            continue   # an unreadable folder is passed over
        dirs.append((folder, mtime))
        subdirs = []
        rel_ok = _is_image_name([*rel, "x.png"])   # no hidden or __MACOSX folder on the way down
        prefix = "".join(f"{p}/" for p in rel)
        for e in entries:
            name = e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not name.startswith(".") and not e.is_symlink():
                    subdirs.append((e.path, (*rel, name)))
                continue
            if not rel_ok or name.startswith(".") or name == "__MACOSX":
                continue
            dot = name.rfind(".")
            if dot <= 0 or name[dot:].lower() not in suffixes:
                continue
            try:
                st = e.stat()
                stats.append((st.st_size, st.st_mtime_ns))
            except OSError:   # e.g. a broken link: the decoder will name it
                stats.append((-1, 0))
            found.append(((*rel, name), e.path))
            names.append(prefix + name)
        stack.extend(reversed(subdirs))
    listing = hashlib.sha256(json.dumps(
        [[name, size, mtime] for name, (size, mtime) in zip(names, stats)]).encode()).hexdigest()
    return FolderScan(found, stats, dirs, listing)


def _unchanged(scan: FolderScan) -> bool:
    try:
        for folder, mtime in scan.dirs:          # a file added, removed or renamed
            if os.stat(folder).st_mtime_ns != mtime:
                return False
        for (_, path), (size, mtime) in zip(scan.found, scan.stats):   # a file modified
            st = os.stat(path)
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    except OSError:
        return False
    return True


def _settled(scan: FolderScan, started: float) -> bool:
    edge = int((started - RACY_S) * 1e9)
    return all(m < edge for _, m in scan.dirs) and all(m < edge for _, m in scan.stats)


_scans: OrderedDict[str, FolderScan] = OrderedDict()
_scans_lock = threading.Lock()


def scan_folder(root: Path) -> FolderScan:
    """The folder's scan, from this process' memo while the folder is unchanged."""
    key = str(root.resolve())
    with _scans_lock:
        memo = _scans.get(key)
    if memo is not None and _unchanged(memo):
        with _scans_lock:
            if key in _scans:
                _scans.move_to_end(key)
        return memo
    started = time.time()
    scan = _walk(root)
    with _scans_lock:
        _scans.pop(key, None)
        if _settled(scan, started):
            _scans[key] = scan
            while len(_scans) > SCAN_MEMO_SIZE:
                _scans.popitem(last=False)
    return scan


def clear_scan_memo() -> None:
    with _scans_lock:
        _scans.clear()


def _build_dir(root: Path, found, size: int, channels: int, out: BuildOutput) -> RawData:
    items = [(parts, lambda p=p: p) for parts, p in found]
    x, keep, notes = _decode_all(items, size, channels, str(root), out)
    y, names = _labels_from_paths([found[i][0] for i in keep])
    return RawData(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes))


# --------------------------------------------------------------------------- .zip


def _check_zip(zf: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    """Refuse archives built to exhaust memory, disk or time; honest ones of any size pass."""
    infos = zf.infolist()
    fix = "re-create the archive, or unpack the images you need into a folder and use folder:<folder>"
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"refusing {path}: {len(infos):,} entries exceed the {MAX_ZIP_MEMBERS:,} limit "
                           f"(possible zip bomb); unpack the images you need into a folder and use folder:<folder>")
    size = path.stat().st_size
    packed = sum(i.compress_size for i in infos)
    if packed > size:
        raise DatasetError(f"refusing {path}: its entries claim {packed:,} compressed bytes in a {size:,}-byte "
                           f"file, so they overlap (a zip bomb trick); {fix}")
    for info in infos:
        if looks_like_bomb(info.file_size, info.compress_size):
            raise DatasetError(f"refusing {path}: entry {info.filename!r} unpacks to "
                               f"{bomb_text(info.file_size, info.compress_size)} (possible zip bomb); {fix}")
    total = sum(i.file_size for i in infos)
    if looks_like_bomb(total, size):
        raise DatasetError(f"refusing {path}: it unpacks to {bomb_text(total, size)} (possible zip bomb); {fix}")
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


def _build_zip(path: Path, size: int, channels: int, out: BuildOutput) -> RawData:
    # Members are read into memory one at a time: nothing is ever extracted to disk.
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
        x, keep, more = _decode_all(items, size, channels, str(path), out)
    y, names = _labels_from_paths([items[i][0] for i in keep])
    return RawData(x=x, y=y, scale=255.0, class_names=names, preprocess="fit", notes=tuple(notes + more))


# --------------------------------------------------------------------------- .npz


_NPZ_FIX = "save plain numeric arrays with np.savez"
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def _uint8_rule(dtype: np.dtype, lo: float, hi: float, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """How pixel values become uint8: bool; floats in 0..1 (or 0..255); uint16 by its full range;
    other integers in 0..255 (or 0..65535, read as 16-bit values). lo, hi: the array's range
    (with 0 included), needed for floats and for integers other than uint8 / uint16."""
    fix = "store images as uint8 0..255 or floats 0..1"
    if dtype == np.bool_:
        return lambda a: a.astype(np.uint8) * 255
    if np.issubdtype(dtype, np.floating):
        if lo < 0 or hi > 255:
            raise DatasetError(f"{path}: image values span {lo:g}..{hi:g}; {fix}")
        factor = 255.0 if hi <= 1.0 else 1.0
        return lambda a: np.rint(a * factor).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        if lo < 0 or hi > 65535:
            raise DatasetError(f"{path}: image values span {int(lo)}..{int(hi)}; {fix}")
        if dtype == np.uint16 or hi > 255:
            return lambda a: np.rint(images.unit_from_16bit(a) * 255.0).astype(np.uint8)
        return lambda a: a.astype(np.uint8)
    raise DatasetError(f"{path}: images have dtype {dtype}; {fix}")


def _npz_images_nhwc(a: np.ndarray, path: Path) -> np.ndarray:
    """Accept (N,D) square-flattened, (N,H,W), (N,H,W,C) or (N,C,H,W); return (N,H,W,C).
    Decided by the shape after N alone, so it applies chunk by chunk."""
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


def _member_header(fh, path: Path, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    except _READ_ERRORS as e:
        raise DatasetError(f"cannot read {path}: its '{key}' is not a readable array ({e}); {_NPZ_FIX}") from None
    if dtype.hasobject:
        raise DatasetError(f"cannot read {path}: its '{key}' holds Python objects, which would need pickle; "
                           f"{_NPZ_FIX}")
    return shape, fortran, dtype


def _npz_rows(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, chunk_bytes: int = 16 << 20):
    """The array ``key`` of an .npz, streamed: yields (rows, *shape[1:]) chunks, C order."""
    try:
        with zf.open(info) as fh:
            shape, fortran, dtype = _member_header(fh, path, key)
            if fortran:   # rare (np.asfortranarray before saving): read whole, then reorder
                a = np.lib.format.read_array(zf.open(info), allow_pickle=False)
                yield np.ascontiguousarray(a)
                return
            row_bytes = math.prod(shape[1:]) * dtype.itemsize
            rows = max(1, chunk_bytes // max(row_bytes, 1))
            for start in range(0, shape[0], rows):
                k = min(rows, shape[0] - start)
                buf = fh.read(k * row_bytes)
                if len(buf) != k * row_bytes:
                    raise DatasetError(f"cannot read {path}: its '{key}' array is cut short; re-save it")
                yield np.frombuffer(buf, dtype).reshape(k, *shape[1:])
    except _READ_ERRORS as e:
        raise DatasetError(f"cannot read {path} ({type(e).__name__}: {e}); {_NPZ_FIX}") from None


def _npz_x(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, size: int, channels: int,
           out: BuildOutput) -> np.ndarray:
    with zf.open(info) as fh:
        shape, _, dtype = _member_header(fh, path, key)
    if len(shape) == 0 or shape[0] == 0:
        raise DatasetError(f"no readable images in {path}: its '{key}' array is empty")
    _npz_images_nhwc(np.empty((0, *shape[1:]), dtype), path)   # refuse a bad shape before reading
    n = shape[0]
    needs_range = dtype.kind == "f" or (dtype.kind in "iu" and dtype not in (np.uint8, np.uint16))
    passes = 2 if needs_range else 1
    done = 0
    lo = hi = 0.0
    if needs_range:   # a first pass for the value range, which decides the conversion
        for chunk in _npz_rows(zf, info, path, key):
            if dtype.kind == "f" and not np.isfinite(chunk).all():
                raise DatasetError(f"{path}: images contain NaN/inf; store images as uint8 0..255 or floats 0..1")
            lo, hi = min(lo, float(chunk.min(initial=0))), max(hi, float(chunk.max(initial=0)))
            done += len(chunk)
            out.progress(done, n * passes)
    to_uint8 = _uint8_rule(dtype, lo, hi, path)
    x = out.array("x", (n, channels, size, size))
    start = 0
    for chunk in _npz_rows(zf, info, path, key):
        k = len(chunk)
        x[start:start + k] = _npz_images(_npz_images_nhwc(to_uint8(chunk), path), size, channels)
        start += k
        done += k
        out.progress(done, n * passes)
    return x


def _npz_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str) -> np.ndarray:
    """Labels or class names: small arrays, read whole once their header says they are small."""
    with zf.open(info) as fh:
        shape, _, dtype = _member_header(fh, path, key)
    if math.prod(shape) * dtype.itemsize > MAX_LABEL_BYTES:
        raise DatasetError(f"{path}: its '{key}' array has shape {shape} / {dtype}, far more than labels need; "
                           f"save one integer label per image")
    try:
        with zf.open(info) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DatasetError(f"cannot read {path} ({type(e).__name__}: {e}); {_NPZ_FIX}") from None


def _build_npz(path: Path, size: int, channels: int, out: BuildOutput) -> RawData:
    with _open_zip(path) as zf:   # an .npz is a zip: the same bomb checks first
        members = {i.filename.removesuffix(".npy"): i for i in _check_zip(zf, path)}
        xkey = next((k for k in ("x", "images") if k in members), None)
        if xkey is None:
            raise DatasetError(f"{path} has arrays {sorted(members)} but no 'x' or 'images'; save the images "
                               f"under the key 'x' (and labels under 'y')")
        with zf.open(members[xkey]) as fh:
            n = (_member_header(fh, path, xkey)[0] or (0,))[0]
        ykey = next((k for k in ("y", "labels") if k in members), None)
        y = _npz_small(zf, members[ykey], path, ykey) if ykey else None
        if y is not None and (y.shape != (n,) or not np.issubdtype(y.dtype, np.integer)):
            raise DatasetError(f"{path}: labels '{ykey}' have shape {y.shape} / {y.dtype}; save one integer "
                               f"label per image")
        names = _npz_small(zf, members["class_names"], path, "class_names") if "class_names" in members else None
        x = _npz_x(zf, members[xkey], path, xkey, size, channels, out)
    if y is not None:
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
        scan = scan_folder(path)
        if not scan.found:
            raise DatasetError(f"no readable images in {path}: add {_SUFFIXES_TEXT} files "
                               f"(subfolders become classes)")
        where = str(path.resolve())
        return Plan("folder", {"dir": where, "listing": scan.listing, **opts},
                    lambda out: _build_dir(path, scan.found, size, ch, out), post_resize=False,
                    origin={"dir": where, **opts})
    if path.is_file() and path.suffix.lower() in (".zip", ".npz"):
        build = _build_zip if path.suffix.lower() == ".zip" else _build_npz
        fingerprint = file_fingerprint(path)
        return Plan("folder", {"file": fingerprint, **opts}, lambda out: build(path, size, ch, out),
                    post_resize=False, origin={"file": fingerprint[0], **opts})
    if not path.exists():
        raise DatasetError(f"{path} not found: pass an existing folder of images, a .zip or a .npz as folder:<path>")
    raise DatasetError(f"{path} is not a folder, .zip or .npz: pass one of those as folder:<path>")
