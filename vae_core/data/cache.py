"""The on-disk cache of decoded datasets.

One folder (an entry) per (source, options) under ``LATENT_EXPLORER_CACHE`` (default
``~/.cache/latent-explorer``), holding ``.npy`` arrays (never pickles) and ``meta.json``, the
manifest: format and version, the source (the key and its digest), each array's file, shape,
dtype, size and CRC-32, and the dataset's scale, class names, preprocessing, factor names and
notes. An entry is built into a temporary folder (large arrays are written there in place, see
:class:`~vae_core.data.sources.plan.BuildOutput`) and renamed into place, so a reader sees all
of it or none of it.

Loading maps the image arrays read-only (``np.load(mmap_mode="r")``): nothing is read until it
is used. Every load checks each file's size against the manifest and its own header (a cut file
is caught without reading it); the CRC-32 of every file is checked when the file's inode, size,
mtime or ctime differ from those recorded in the entry's ``verified.json`` by the last process
that checksummed it (2.3 GB take ~2 s from the page cache, ~4 s from disk here: too slow for
every start of a worker). Any write through the file system changes a file's ctime, which
cannot be set back, so a modified file is always checksummed again; damage below the file
system (failing media) is left to it. An entry that fails any check is removed and rebuilt, and
the returned notes say so.

The cache stays under a size limit (``LATENT_EXPLORER_CACHE_MAX_GB``; default 20 GB, or half of
what the disk has free for it, whichever is smaller): writing an entry removes the least
recently used ones beyond it. Loads touch ``last_used`` in an entry, and an entry used in the
last :data:`EVICT_GRACE_S` seconds is never removed, nor the one just written, so a process that
is opening an entry does not see it vanish. (One that already has it mapped keeps its data.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import mmap
import os
import re
import shutil
import threading
import time
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import RawData, held_out_count, split_indices
from .sources.plan import BuildOutput, Progress

FORMAT = "latent-explorer-dataset-cache"
# Bump when the decoded layout or any builder's output changes: old entries then stop
# matching (and are evicted first) instead of being misread.
CACHE_VERSION = 3
MANIFEST = "meta.json"
LAST_USED = "last_used"
VERIFIED = "verified.json"   # which files were checksummed, as of which stat (see _stamped)
MAX_GB_ENV = "LATENT_EXPLORER_CACHE_MAX_GB"
DEFAULT_MAX_BYTES = 20 * 10**9
EVICT_GRACE_S = 600.0                  # an entry used this recently is never evicted
STALE_TMP_S = 3600.0                   # a dead writer's temporary folder is removed after this

_ARRAY_FIELDS = ("x", "y", "x_test", "y_test", "factors", "factors_test")
_MAPPED = ("x", "x_test")              # the images: mapped, never read whole
_CHUNK = 16 << 20
# Entries of this version ("<kind>-<origin 8 hex>-<key 24 hex>") and of version 2 ("<kind>-<24 hex>").
_ENTRY_NAME = re.compile(r"^[a-z][a-z0-9-]*-(?:[0-9a-f]{8}-)?[0-9a-f]{24}$")

_verified: dict[str, tuple] = {}       # file -> (inode, size, mtime) whose CRC matched in this process
_verified_lock = threading.Lock()


def cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LATENT_EXPLORER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "latent-explorer"


def clear_verified() -> None:
    """Forget which files were checksummed in this process (the next load checks them again)."""
    with _verified_lock:
        _verified.clear()


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def file_crc32(path: Path) -> str:
    """CRC-32 of a file, read in 16 MiB chunks (as fast as reading it: ~1.8 GB/s from the page cache here)."""
    crc, buf = 0, bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return f"{crc:08x}"


def _signature(st: os.stat_result) -> tuple:
    # The change time too: any write through the file system sets it, and no one can set it
    # back (os.utime restores an mtime, never a ctime).
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stamped(path: Path, sig: tuple, crc: str) -> bool:
    """Whether the entry's ``VERIFIED`` stamp says a process already checksummed ``path`` as it
    is now (the same inode, size, mtime and ctime) and found ``crc``."""
    try:
        stamp = json.loads((path.parent / VERIFIED).read_text())
        return stamp.get(path.name) == [*sig, crc]
    except (OSError, ValueError, AttributeError):
        return False


def _stamp(path: Path, sig: tuple, crc: str) -> None:
    """Record in the entry that ``path`` matched ``crc`` while its stat was ``sig`` (best effort:
    a read-only cache simply checksums again in the next process)."""
    stamp_file = path.parent / VERIFIED
    try:
        try:
            stamp = json.loads(stamp_file.read_text())
            stamp = stamp if isinstance(stamp, dict) else {}
        except (OSError, ValueError):
            stamp = {}
        stamp[path.name] = [*sig, crc]
        tmp = stamp_file.with_name(f".{VERIFIED}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, stamp_file)
    except OSError:
        pass


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        return shape, fortran, dtype, fh.tell()


# --------------------------------------------------------------------------- loading


def _check_array(path: Path, spec: dict) -> str | None:
    """Why ``path`` does not match its manifest entry, or None."""
    problem, st = _check_layout(path, spec)
    if problem is not None:
        return problem
    sig = _signature(st)
    with _verified_lock:
        if _verified.get(str(path)) == sig:
            return None
    if not _stamped(path, sig, spec["crc32"]):
        if file_crc32(path) != spec["crc32"]:
            return f"{path.name} fails its checksum (its bytes changed after it was written)"
        _stamp(path, sig, spec["crc32"])
    with _verified_lock:
        _verified[str(path)] = sig
    return None


def _check_layout(path: Path, spec: dict) -> tuple[str | None, os.stat_result | None]:
    """(why ``path``'s size or header does not match its manifest entry, or None; its stat):
    the checks that read no data."""
    try:
        st = path.stat()
    except OSError:
        return f"{path.name} is missing", None
    if st.st_size != spec["bytes"]:
        return f"{path.name} is {st.st_size:,} bytes but the manifest says {spec['bytes']:,}", st
    try:
        shape, fortran, dtype, offset = _npy_header(path)
    except (OSError, ValueError) as e:
        return f"{path.name} has an unreadable header ({e})", st
    if list(shape) != spec["shape"] or dtype.str != spec["dtype"] or fortran:
        return (f"{path.name} holds {dtype.str} {list(shape)} but the manifest says "
                f"{spec['dtype']} {spec['shape']}"), st
    if offset + math.prod(shape) * dtype.itemsize != st.st_size:
        return (f"{path.name} is {st.st_size:,} bytes, not the {offset + math.prod(shape) * dtype.itemsize:,} "
                "its shape needs"), st
    return None, st


def _read_manifest(entry: Path) -> dict:
    meta = json.loads((entry / MANIFEST).read_text())
    if not isinstance(meta, dict):
        raise ValueError("not an object")
    return meta


def _touch(entry: Path) -> None:
    try:
        os.utime(entry / LAST_USED)
    except FileNotFoundError:
        try:
            (entry / LAST_USED).touch()
        except OSError:
            pass
    except OSError:   # a read-only cache still loads
        pass


def _load(entry: Path, digest: str, key: dict) -> tuple[RawData | None, str | None]:
    """(the entry's data, None), or (None, why it cannot be used), or (None, None) when absent."""
    if not entry.is_dir():
        return None, None
    try:
        meta = _read_manifest(entry)
    except FileNotFoundError:
        return None, "it has no manifest"
    except (OSError, ValueError) as e:
        return None, f"its manifest is unreadable ({type(e).__name__})"
    try:
        if meta.get("format") != FORMAT or meta.get("version") != CACHE_VERSION:
            return None, f"its manifest is format {meta.get('format')!r} version {meta.get('version')!r}"
        source = meta["source"]
        if source["digest"] != digest or source["key"] != json.loads(json.dumps(key)):
            return None, "its manifest describes another source"
        specs = meta["arrays"]
        if not {"x", "y"} <= set(specs) <= set(_ARRAY_FIELDS):
            return None, f"its manifest lists arrays {sorted(specs)}"
        on_disk = {p.name for p in entry.glob("*.npy")}
        listed = {spec["file"] for spec in specs.values()}
        if on_disk != listed or any(spec["file"] != f"{name}.npy" for name, spec in specs.items()):
            return None, f"its manifest lists {sorted(listed)} but the folder holds {sorted(on_disk)}"
        for name, spec in specs.items():
            problem = _check_array(entry / spec["file"], spec)
            if problem:
                return None, problem
        arrays = {name: np.load(entry / spec["file"], mmap_mode="r" if name in _MAPPED else None,
                                allow_pickle=False)
                  for name, spec in specs.items()}
        tup = lambda v: None if v is None else tuple(str(s) for s in v)  # noqa: E731
        raw = RawData(**arrays, scale=float(meta["scale"]), class_names=tup(meta["class_names"]),
                      preprocess=str(meta["preprocess"]), factor_names=tup(meta["factor_names"]),
                      notes=tuple(str(n) for n in meta["notes"]))
    except (KeyError, TypeError, ValueError, OSError) as e:
        return None, f"its manifest or files are malformed ({type(e).__name__}: {e})"
    _touch(entry)
    return raw, None


def peek(kind: str, key: dict, cache_dir: str | Path | None, *, origin: dict | None = None) -> dict | None:
    """What the cache holds for (kind, key) without building, checksumming or reading it whole:
    ``{"x": map, "x_test": map or None, "scale", "class_names"}`` with the images as read-only
    maps of the cached files (nothing is read until used), or None when there is no usable
    entry (absent, another source's, or its files do not match their manifest's sizes)."""
    entry = entry_path(cache_root(cache_dir), kind, key, origin)
    try:
        meta = _read_manifest(entry)
        if (meta.get("format") != FORMAT or meta.get("version") != CACHE_VERSION
                or meta["source"]["digest"] != _digest([CACHE_VERSION, kind, key])
                or meta["source"]["key"] != json.loads(json.dumps(key))):
            return None
        specs = meta["arrays"]
        images = {}
        for name in _MAPPED:
            if name not in specs:
                continue
            path = entry / specs[name]["file"]
            if _check_layout(path, specs[name])[0] is not None:
                return None
            images[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        if "x" not in images:
            return None
        class_names = meta.get("class_names")
        return {"x": images["x"], "x_test": images.get("x_test"), "scale": float(meta["scale"]),
                "class_names": None if class_names is None else tuple(str(c) for c in class_names)}
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- writing


def _remove_tree(path: Path) -> bool:
    # Move aside first so a concurrent reader never sees a half-deleted entry.
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except OSError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _is_whole_file(a: np.ndarray, path: Path) -> bool:
    """Whether ``a`` is the very map of ``path`` that BuildOutput.array made (not a view of it)."""
    if not isinstance(a, np.memmap) or not isinstance(a.base, mmap.mmap) or a.filename is None:
        return False
    try:
        shape, _, dtype, offset = _npy_header(path)
        return os.path.samefile(a.filename, path) and a.shape == shape and a.dtype == dtype and a.offset == offset
    except (OSError, ValueError):
        return False


def _write_entry(tmp: Path, entry: Path, raw: RawData, kind: str, digest: str, key: dict, origin: dict) -> None:
    """Complete the entry being built in ``tmp``, to be renamed to ``entry``."""
    specs, stamps = {}, {}
    for name in _ARRAY_FIELDS:
        a = getattr(raw, name)
        if a is None:
            continue
        path = tmp / f"{name}.npy"
        if not _is_whole_file(a, path):   # a map's writes are in the file already (no msync: one page cache)
            # A new file renamed over any old one, so a map of the old file stays valid meanwhile.
            part = tmp / f"{name}.part"
            with open(part, "wb") as fh:
                np.save(fh, np.ascontiguousarray(a), allow_pickle=False)
            os.replace(part, path)
        shape, _, dtype, _ = _npy_header(path)
        st = path.stat()
        specs[name] = {"file": path.name, "shape": list(shape), "dtype": dtype.str, "bytes": st.st_size,
                       "crc32": file_crc32(path)}
        stamps[path.name] = [*_signature(st), specs[name]["crc32"]]
        with _verified_lock:
            _verified[str(entry / path.name)] = _signature(st)   # a file's stat survives its folder's rename
    (tmp / VERIFIED).write_text(json.dumps(stamps))
    listed = lambda v: None if v is None else [str(s) for s in v]  # noqa: E731
    meta = {"format": FORMAT, "version": CACHE_VERSION, "kind": kind, "created": time.time(),
            "source": {"digest": digest, "key": key, "origin": origin}, "arrays": specs,
            "scale": float(raw.scale), "class_names": listed(raw.class_names), "preprocess": raw.preprocess,
            "factor_names": listed(raw.factor_names), "notes": [str(n) for n in raw.notes]}
    (tmp / MANIFEST).write_text(json.dumps(meta, indent=1))
    (tmp / LAST_USED).touch()


# --------------------------------------------------------------------------- eviction


def max_bytes(root: Path, cached: int = 0) -> int:
    """The cache's size limit: ``LATENT_EXPLORER_CACHE_MAX_GB`` if set, else 20 GB or half of what
    the disk could give the cache (its free space plus what the cache holds), whichever is smaller."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    if text:
        try:
            gb = float(text)
            if math.isfinite(gb) and gb >= 0:
                return int(gb * 1e9)
        except ValueError:
            pass
        warnings.warn(f"{MAX_GB_ENV}={text!r} is not a number of gigabytes; using the default limit",
                      RuntimeWarning, stacklevel=2)
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return DEFAULT_MAX_BYTES
    return min(DEFAULT_MAX_BYTES, (free + cached) // 2)


@dataclasses.dataclass
class _Entry:
    path: Path
    size: int
    last_used: float
    current: bool                      # written by this version of the cache


def _entries(root: Path) -> list[_Entry]:
    out = []
    try:
        children = list(root.iterdir())
    except OSError:
        return out
    for p in children:
        if not _ENTRY_NAME.match(p.name) or not p.is_dir():
            continue
        try:
            files = [f for f in p.iterdir() if f.is_file()]
            stats = {f.name: f.stat() for f in files}
            meta = _read_manifest(p)
        except (OSError, ValueError):
            continue   # not a cache entry, or being removed right now
        if MANIFEST not in stats:
            continue
        used = max(stats[n].st_mtime for n in (MANIFEST, LAST_USED) if n in stats)
        current = meta.get("format") == FORMAT and meta.get("version") == CACHE_VERSION
        out.append(_Entry(p, sum(s.st_size for s in stats.values()), used, current))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _clean_leftovers(root: Path) -> None:
    """Remove the temporary folders of writers that died and the trash of interrupted removals."""
    now = time.time()
    for p in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")):
        try:
            if now - p.stat().st_mtime < STALE_TMP_S:
                continue
        except OSError:
            continue
        if p.name.startswith(".tmp-"):
            m = re.search(r"-(\d+)-[0-9a-f]{8}$", p.name)
            if m and _pid_alive(int(m.group(1))):
                continue   # a long build still writing
        shutil.rmtree(p, ignore_errors=True)


def evict(root: Path, keep: set[str] = frozenset(), need: int = 0, stale_prefix: str | None = None) -> list[Path]:
    """Remove entries, least recently used first, while the cache (plus ``need`` bytes about to be
    written) is over its limit or the disk has less than ``need`` free; entries of an older cache
    version or named by ``stale_prefix`` (older builds of a changed source) go in any case.
    Never removes the entries in ``keep`` or any used in the last EVICT_GRACE_S seconds."""
    _clean_leftovers(root)
    entries = sorted(_entries(root), key=lambda e: e.last_used)
    total = sum(e.size for e in entries)
    limit = max_bytes(root, total)
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = None
    removed, now = [], time.time()
    for e in entries:
        if e.path.name in keep or now - e.last_used < EVICT_GRACE_S:
            continue
        stale = not e.current or (stale_prefix is not None and e.path.name.startswith(stale_prefix))
        short = need > 0 and free is not None and free < need + (1 << 30)
        if (stale or total + need > limit or short) and _remove_tree(e.path):
            removed.append(e.path)
            total -= e.size
            if free is not None:
                free += e.size
    return removed


# --------------------------------------------------------------------------- the entry point


def entry_path(root: Path, kind: str, key: dict, origin: dict | None) -> Path:
    o = _digest([CACHE_VERSION, kind, key if origin is None else origin])
    return root / f"{kind}-{o[:8]}-{_digest([CACHE_VERSION, kind, key])[:24]}"


def load_or_build(kind: str, key: dict, build: Callable[[BuildOutput], RawData], cache_dir: str | Path | None,
                  *, origin: dict | None = None, progress: Progress | None = None) -> RawData:
    """The cached arrays for (kind, key), built and stored first when missing or damaged.

    key: JSON-able; everything the built arrays depend on (file fingerprints, options).
    origin: the key without file versions; an entry of the same origin but another key is an
    older build of a source that changed since.
    progress: called as ``progress(done, total)`` while the source is decoded, never on a hit.
    Returns the images (``x``, ``x_test``) as read-only maps of the cached files. What happened to
    the cache (a damaged entry rebuilt, a changed source decoded again) is added to ``notes``.
    """
    root = cache_root(cache_dir)
    digest = _digest([CACHE_VERSION, kind, key])
    entry = entry_path(root, kind, key, origin)
    raw, problem = _load(entry, digest, key)
    if raw is not None:
        return raw
    events = []
    sibling_prefix = entry.name[: -24]
    if problem is not None:
        _remove_tree(entry)
        events.append(f"the cached copy in {entry} was damaged ({problem}); it was removed and the "
                      f"dataset decoded again from its source")
    elif any(p.name != entry.name for p in root.glob(f"{sibling_prefix}*") if _ENTRY_NAME.match(p.name)):
        events.append("the source changed since it was cached, so it was decoded again")
    raw = _build_and_store(root, entry, kind, digest, key, origin if origin is not None else key, build,
                           progress, sibling_prefix)
    return dataclasses.replace(raw, notes=tuple(raw.notes) + tuple(events))


def _build_and_store(root: Path, entry: Path, kind: str, digest: str, key: dict, origin: dict,
                     build: Callable[[BuildOutput], RawData], progress: Progress | None,
                     sibling_prefix: str) -> RawData:
    tmp = root / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        warnings.warn(f"could not write dataset cache {entry}: {e}; decoding in memory", RuntimeWarning,
                      stacklevel=3)
        return build(BuildOutput(None, progress))
    out = BuildOutput(tmp, progress, make_room=lambda n: evict(root, keep={entry.name}, need=n))
    try:
        raw = build(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _write_entry(tmp, entry, raw, kind, digest, key, origin)
        if entry.exists():
            _remove_tree(entry)
        os.replace(tmp, entry)   # atomic: readers see the whole entry or none of it
    except OSError as e:
        # The arrays stay usable: a map outlives its removed file. Losing a race to another
        # writer is fine; anything else costs only speed next time.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (entry / MANIFEST).is_file():
            warnings.warn(f"could not write dataset cache {entry}: {e}", RuntimeWarning, stacklevel=3)
        return raw
    evict(root, keep={entry.name}, stale_prefix=sibling_prefix)
    loaded, _ = _load(entry, digest, key)
    return raw if loaded is None else dataclasses.replace(loaded, notes=raw.notes)


# --------------------------------------------------------------------------- remembered splits

SPLITS = "splits"
SPLITS_KEPT = 256                      # split files kept (each is the test indices: N/10 int64)


def remembered_split(root: Path, y: np.ndarray, test_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``dataset.split_indices(y, test_size, seed)``, remembered on disk under ``root/splits``.

    The stratified split imports scikit-learn (about 2 s here) and is the same for the same
    labels, size and seed, so a worker's start reads it instead. The file is named by a digest of
    exactly those inputs and holds the test indices; one that does not look like a split of
    ``len(y)`` examples (damaged, cut) is computed and written again.
    """
    n, n_test = len(y), held_out_count(len(y), test_size)
    y64 = np.ascontiguousarray(y, dtype=np.int64)
    name = hashlib.sha256(y64.tobytes() + json.dumps([n_test, int(seed), 1]).encode()).hexdigest()[:32]
    path = root / SPLITS / f"{name}.npy"
    try:
        te = np.load(path, allow_pickle=False)
        if (te.dtype == np.int64 and te.shape == (n_test,)
                and (n_test == 0 or (te[0] >= 0 and te[-1] < n and (np.diff(te) > 0).all()))):
            keep = np.ones(n, bool)
            keep[te] = False
            return np.flatnonzero(keep), te
    except (OSError, ValueError, EOFError):
        pass
    tr, te = split_indices(y, test_size, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.npy")
        np.save(tmp, np.ascontiguousarray(te, dtype=np.int64), allow_pickle=False)
        os.replace(tmp, path)
        old = sorted(path.parent.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        for p in old[:-SPLITS_KEPT]:
            p.unlink(missing_ok=True)
    except OSError:
        pass   # a read-only cache computes the split every time
    return tr, te
