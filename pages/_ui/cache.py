"""Caches shared by every session of the server: results computed once per weight snapshot
(``per_snapshot``), and results a lab computed on request (``result_on_request``). Values are
kept as they are (no pickling) and must be treated as read-only. ``pinned`` keeps one
session's slow result on an older snapshot while a run trains; ``progress_bar`` shows a slow
pass over a large set (a per-snapshot pass, a dataset's first decode)."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterator, TypeVar

import streamlit as st

from vae_core.runs.rundir import Snapshot

from .state import Pinned

T = TypeVar("T")


@st.cache_resource
def _store(namespace: str) -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def cached_result(namespace: str, key):
    """A result stored under ``key`` in ``namespace`` by any session, or None."""
    store, lock = _store(namespace)
    with lock:
        return store.get(key)


def remember_result(namespace: str, key, value, limit: int = 16) -> None:
    store, lock = _store(namespace)
    with lock:
        store[key] = value
        store.move_to_end(key)
        while len(store) > limit:  # least recently stored first
            store.popitem(last=False)


@contextlib.contextmanager
def progress_bar(text: str, every_s: float = 0.25) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback that draws an ``st.progress`` bar, "text · done of total".

    The bar appears at the first call (a pass that turns out to be free, a cache hit, draws
    nothing), is redrawn at most every ``every_s`` seconds and at the end, and is removed when
    the block ends, error or not."""
    bar, last = None, 0.0

    def progress(done: int, total: int) -> None:
        nonlocal bar, last
        now = time.monotonic()
        if bar is not None and done < total and now - last < every_s:
            return
        last = now
        fraction = min(1.0, done / total) if total else 1.0
        label = f"{text} · {done:,} of {total:,}"
        if bar is None:
            bar = st.progress(fraction, text=label)
        else:
            bar.progress(fraction, text=label)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.empty()


def per_snapshot(max_entries: int = 8, spinner: str | None = None, progress: str | None = None):
    """Cache ``fn(snap, *key_args, **inputs)`` once per weight snapshot.

    The key is the snapshot's (weights file, step, mtime), which names its weights, plus the
    positional arguments after it (small hashable values: a count, a method name, dims). The
    keyword arguments are inputs the key already determines (the run's test images, say) and
    are passed through without being hashed. ``spinner`` shows while a value is computed;
    with ``progress`` (the bar's text), ``fn`` also gets a ``progress(done, total)`` keyword
    argument that moves a progress bar, for a pass over a large set.
    """
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        namespace = f"per_snapshot:{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(snap: Snapshot, *key_args, **inputs) -> T:
            key = (str(snap.path), snap.step, snap.mtime, key_args)
            hit = cached_result(namespace, key)
            if hit is not None:
                return hit
            if progress:
                with progress_bar(progress) as bar:
                    value = fn(snap, *key_args, progress=bar, **inputs)
            elif spinner:
                with st.spinner(spinner):
                    value = fn(snap, *key_args, **inputs)
            else:
                value = fn(snap, *key_args, **inputs)
            remember_result(namespace, key, value, limit=max_entries)
            return value

        return wrapper

    return decorate


def result_on_request(namespace: str, key, start: bool, compute, prompt: str | None = None):
    """A lab's result: computed now (with a progress bar) when ``start``, else the remembered one.

    ``compute(progress)`` gets a ``progress(fraction, text)`` callback. With no result yet,
    ``prompt`` (if given) says how to get one, and the return value is None.
    """
    if start:
        bar = st.progress(0.0, text="starting…")
        try:
            remember_result(namespace, key, compute(lambda f, text: bar.progress(min(1.0, f), text=text)))
        finally:  # a failed computation leaves no half-full bar behind its error message
            bar.empty()
    result = cached_result(namespace, key)
    if result is None and prompt:
        st.info(prompt)
    return result


def pinned(slot, run: str, snap: Snapshot, compute: Callable[[], T], keep: Callable) -> Pinned:
    """A slow result for ``run``, kept in the session ``slot`` (a ``state.Pinned``): the one
    already there when it is this snapshot's or ``keep(kept)`` says it will do, else
    ``compute()`` on ``snap``. Lets a page stay on an older snapshot's result while a run trains."""
    kept = slot.for_run(run)
    if kept is not None and (kept.step == snap.step or keep(kept)):
        return kept
    kept = Pinned(run, snap.step, snap.epoch, compute())
    slot.set(kept)
    return kept
