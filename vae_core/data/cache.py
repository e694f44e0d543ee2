"""The on-disk cache of decoded datasets.

One folder per (source, options) under ``LATENT_EXPLORER_CACHE`` (default
``~/.cache/latent-explorer``), holding ``.npy`` arrays (never pickles) and ``meta.json``.
An entry is written into a temporary folder and renamed into place, so a reader sees all of it
or none of it; an entry that fails to load for any reason is dropped and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import RawData

# Bump when the decoded layout or any builder's output changes: old cache
# entries then stop matching instead of being misread.
CACHE_VERSION = 2

_ARRAY_FIELDS = ("x", "y", "x_test", "y_test", "factors", "factors_test")


def cache_root(cache_dir: str | Path | None) -> Path:
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


def _load(entry: Path) -> RawData | None:
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
        return RawData(**arrays, scale=float(meta["scale"]), class_names=tup(meta["class_names"]),
                       preprocess=meta["preprocess"], factor_names=tup(meta["factor_names"]),
                       notes=tuple(meta["notes"]))
    except Exception:  # any damage means "not cached": drop it and rebuild
        _remove_tree(entry)
        return None


def _save(entry: Path, raw: RawData) -> None:
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


def load_or_build(kind: str, key: dict, build: Callable[[], RawData], cache_dir: str | Path | None) -> RawData:
    """The cached arrays for (kind, key), built and stored first when missing or damaged.

    key: JSON-able; everything the built arrays depend on (file fingerprints, options).
    """
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, kind, key], sort_keys=True).encode()).hexdigest()
    entry = cache_root(cache_dir) / f"{kind}-{digest[:24]}"
    raw = _load(entry)
    if raw is None:
        raw = build()
        _save(entry, raw)
    return raw
