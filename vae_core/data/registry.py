"""Dataset registry: every image set the explorer can train on, named by a spec, loaded offline.

A spec is ``mnist``, ``digits``, ``fashion-mnist``, ``fashion-mnist:<folder>``,
``idx:<folder>``, ``shapes``, ``shapes:<size>`` or ``folder:<path>``. The text corpora
``20newsgroups`` and ``text:<path>`` are registered and listed here too, but loaded by
:func:`vae_core.data.text.load_text_dataset` (their ``modality`` is "text"). :func:`load_dataset`
turns one into a :class:`~vae_core.data.dataset.Dataset` of float32 tensors in ``[0, 1]``
with a deterministic train/test split. A source is decoded once into the disk cache
(:mod:`vae_core.data.cache`, whose images are then memory-mapped), and loaded datasets and
folder scans are memoised in-process, so repeated loads are cheap.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from . import cache, text
from .dataset import Dataset, DatasetError, DatasetStatus, _resized, assemble, held_out_count
from .imageset import ImageSet
from .images import FORMATS_TEXT
from .sources import builtin, folder, idx, shapes
from .sources.plan import Plan

__all__ = ["DEFAULT_DATASET", "DatasetPeek", "clear_memo", "list_datasets", "load_dataset", "parse_spec",
           "peek_dataset"]

DEFAULT_DATASET = "mnist"
MEMO_SIZE = 4                          # datasets can be hundreds of MB; keep only a few


@dataclass(frozen=True)
class _Entry:
    kind: str
    description: str
    arg: Literal["none", "optional", "required"]
    plan: Callable[[str | None, int | None, int | None], Plan]
    status: Callable[[], tuple[bool, str]]
    listed: tuple[str, ...]            # names shown by list_datasets
    modality: Literal["image", "text"] = "image"


def _always(detail: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (True, detail)


def _text_corpus(kind: str) -> Callable[[str | None, int | None, int | None], Plan]:
    """The plan of a text corpus: there is none, since it is not an image set."""
    def plan(arg, image_size, channels) -> Plan:
        raise DatasetError(f"{kind!r} is a text corpus for topic models, not an image set: load it with "
                           "vae_core.data.text.load_text_dataset")
    return plan


_REGISTRY: dict[str, _Entry] = {
    e.kind: e
    for e in (
        _Entry("mnist", "Handwritten digits 0-9, 28x28 grayscale (5,000-image sample)", "none",
               builtin.plan_mnist, builtin.mnist_status, ("mnist",)),
        _Entry("digits", "Small handwritten digits 0-9, 8x8 grayscale", "none",
               builtin.plan_digits, builtin.digits_status, ("digits",)),
        _Entry("fashion-mnist", "Zalando clothing images in 10 classes, 28x28 grayscale", "optional",
               idx.plan_fashion, idx.fashion_status, ("fashion-mnist",)),
        _Entry("shapes", "Procedural sprites (square/ellipse/heart) with known scale, rotation and position",
               "optional", shapes.plan_shapes,
               _always(f"generated on first use, then cached; {shapes.SHAPES_COUNT:,} images with "
                       f"ground-truth factors"),
               ("shapes", "shapes:64")),
        _Entry("idx", "Any folder of MNIST-format IDX files", "required", idx.plan_idx,
               _always("pass a folder of IDX files (train-images-idx3-ubyte[.gz], ...) as idx:<folder>"),
               ("idx:<folder>",)),
        _Entry("folder", "Your own images: a folder (subfolders = classes), a .zip or a .npz", "required",
               folder.plan_folder,
               _always(f"pass a folder of {FORMATS_TEXT} images, a .zip of them or a .npz as folder:<path>"),
               ("folder:<path>",)),
        _Entry("20newsgroups", "Text: Usenet posts from 20 newsgroups, for topic models", "none",
               _text_corpus("20newsgroups"), text.newsgroups_status, ("20newsgroups",), "text"),
        _Entry("text", "Text: your own documents, a folder of .txt files (subfolders = classes), a .jsonl or a .csv",
               "required", _text_corpus("text"),
               _always("pass a folder of .txt files, or a .jsonl / .csv file with a 'text' field, as text:<path>"),
               ("text:<path>",), "text"),
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


_memo: OrderedDict[tuple, Dataset] = OrderedDict()
_memo_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}


def clear_memo() -> None:
    """Forget what this process remembers of datasets: loaded datasets, folder scans and which
    cache files were checksummed (the disk cache is kept)."""
    with _memo_lock:
        _memo.clear()
    folder.clear_scan_memo()
    cache.clear_verified()
    text.clear_memo()


def load_dataset(spec: str, *, image_size: int | None = None, channels: int | None = None, seed: int = 0,
                 cache_dir: str | Path | None = None, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Load a dataset by spec. Deterministic for a given (spec, options, seed); offline only.

    image_size/channels: for ``folder:`` the target size (default 28) and 1 (grayscale, default) or 3 (RGB);
    for other datasets, when given and different from the native format, images are resized/converted.
    seed: chooses the train/test split where the source has none.
    progress: called as ``progress(done, total)`` while the source is decoded into the disk cache
    (per file for folders and zips, in chunks otherwise); never when the cache is reused.
    Notes on the loaded data (skipped files, a cache entry rebuilt) are also issued as RuntimeWarnings.
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
        raw = cache.load_or_build(plan.kind, plan.key, plan.build, cache_dir, origin=plan.origin,
                                  progress=progress)
        for note in raw.notes:
            warnings.warn(f"{name}: {note}", RuntimeWarning, stacklevel=2)
        resize = {"image_size": image_size, "channels": channels} if plan.post_resize else {}
        root = cache.cache_root(cache_dir)
        ds = assemble(name, raw, seed=seed, test_size=plan.test_size,
                      split=lambda y, ts, sd: cache.remembered_split(root, y, ts, sd), **resize)
        with _memo_lock:
            _memo[key] = ds
            while len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)
            _key_locks.pop(key, None)
    return ds


def list_datasets(modality: Literal["image", "text"] | None = None) -> list[DatasetStatus]:
    """Every registered dataset (of ``modality`` only, when given), whether it can be loaded
    here, and if not, how to fix that."""
    if modality not in (None, "image", "text"):
        raise ValueError(f"modality must be 'image', 'text' or None, got {modality!r}")
    out = []
    for entry in _REGISTRY.values():
        if modality is not None and entry.modality != modality:
            continue
        try:
            available, detail = entry.status()
        except Exception as e:  # a status probe must never break the listing
            available, detail = False, f"status check failed: {e}"
        for listed in entry.listed:
            out.append(DatasetStatus(listed, available, detail, entry.description, needs_path="<" in listed))
    return out


@dataclass(frozen=True, eq=False)
class DatasetPeek:
    """A glimpse of a dataset already in the disk cache: a few examples and its sizes.

    images: (k, C, H, W) float32 in [0, 1], evenly spread over the cached images.
    n_train, n_test: the sizes of the split ``load_dataset`` makes.
    """

    images: np.ndarray
    n_train: int
    n_test: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None


def peek_dataset(spec: str, *, image_size: int | None = None, channels: int | None = None, n: int = 16,
                 cache_dir: str | Path | None = None) -> DatasetPeek | None:
    """``n`` examples and the sizes of dataset ``spec`` when the disk cache already holds it,
    reading only those ``n`` images; None when it is not cached yet. Never decodes a source
    and never checksums the cache (``load_dataset`` does both), so it is cheap enough for a
    form that shows a dataset before anything is trained on it. Raises DatasetError for a bad
    spec or a missing source, like ``load_dataset``."""
    kind, arg = parse_spec(spec)
    plan = _REGISTRY[kind].plan(arg, image_size, channels)
    hit = cache.peek(plan.kind, plan.key, cache_dir, origin=plan.origin)
    if hit is None:
        return None
    x, x_test, scale = hit["x"], hit["x_test"], hit["scale"]
    n_all = int(x.shape[0])
    pick = np.unique(np.linspace(0, max(0, n_all - 1), num=max(0, min(n, n_all))).round().astype(np.int64))
    rows = ImageSet(x, scale).uint8(pick)  # (k, C, H, W): only these rows are read
    c, h, w = (int(v) for v in x.shape[1:])
    if plan.post_resize and ((image_size is not None and (h, w) != (image_size, image_size))
                             or (channels is not None and channels != c)):
        rows, scale = _resized(rows, scale, image_size, channels), 255.0  # as ``assemble`` would
        c, h, w = rows.shape[1:]
    n_train, n_test = (n_all, int(x_test.shape[0])) if x_test is not None else (
        n_all - held_out_count(n_all, plan.test_size), held_out_count(n_all, plan.test_size))
    images = rows.astype(np.float32) / np.float32(scale)
    return DatasetPeek(images, n_train, n_test, (int(c), int(h), int(w)), hit["class_names"])
