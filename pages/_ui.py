"""UI plumbing shared by every page: the run manager, the selected run, cached snapshots
and datasets, refresh timing, empty states and image display. No formulas live here.

Process contract (DESIGN.md): this runs in the Streamlit server. Training happens in worker
processes the RunManager starts; pages only read run directories through these helpers.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import astuple

import numpy as np
import streamlit as st

from vae_core import explore
from vae_core.runs import rundir as rd
from vae_core.data import Dataset, DatasetError, load_dataset
from vae_core.runs.manager import RunManager, new_run_config

LIVE_REFRESH_S = 2.0
# What the empty-state button starts: real MNIST, an MLP small enough to train in about a
# minute on two CPU cores, with enough latent dimensions to reconstruct digits faithfully.
DEFAULT_RUN = {"dataset": "mnist", "model": {"body": "mlp", "latent_dim": 16}, "train": {"epochs": 30}}


@st.cache_resource
def manager() -> RunManager:
    """One process-wide RunManager (it is thread-safe; its state lives on disk)."""
    return RunManager()


@st.cache_resource(max_entries=4, show_spinner="Loading the dataset…")
def dataset(spec: str, image_size: int | None = None, channels: int | None = None, seed: int = 0) -> Dataset:
    return load_dataset(spec, image_size=image_size, channels=channels, seed=seed)


@st.cache_resource(max_entries=8, show_spinner=False)
def _snapshot(run_dir: str, step: int, mtime: float) -> rd.Snapshot:
    # Keyed by step and mtime: a new snapshot is a new cache entry, an unchanged one is free.
    return rd.load_snapshot(run_dir)


def snapshot(name: str) -> rd.Snapshot | None:
    """The run's latest weight snapshot on the CPU, or None if it has none yet."""
    path = manager().path(name)
    meta = rd.snapshot_meta(path)
    if meta is None:
        return None
    try:
        return _snapshot(str(path), meta[0], meta[2])
    except rd.RunError as e:
        st.error(f"Cannot load the weights of {name}: {e}")
        return None


def run_dataset(snap: rd.Snapshot) -> Dataset | None:
    tc = snap.config.train
    try:
        return dataset(tc.dataset, tc.image_size, tc.channels, tc.seed)
    except DatasetError as e:
        st.error(f"The run's dataset is not available: {e}")
        return None


@st.cache_data(max_entries=8, show_spinner="Measuring each latent dimension…")
def _latent_summary(run: str, step: int, mtime: float, n: int, _model, _x) -> tuple:
    # Plain arrays in the cache: a cached dataclass breaks when Streamlit reloads vae_core.
    return astuple(explore.latent_summary(_model, _x))


def latent_summary(run: str, snap: rd.Snapshot, x) -> explore.LatentSummary:
    """KL per dim, active units and KL order for ``x`` under the snapshot, cached per (run, step)."""
    return explore.LatentSummary(*_latent_summary(run, snap.step, snap.mtime, len(x), snap.model, x))


@st.cache_resource
def _result_store(namespace: str) -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def cached_result(namespace: str, key):
    """A result a page computed on request (a lab run), shared by every session; None if absent."""
    store, lock = _result_store(namespace)
    with lock:
        return store.get(key)


def remember_result(namespace: str, key, value, limit: int = 16) -> None:
    store, lock = _result_store(namespace)
    with lock:
        store[key] = value
        store.move_to_end(key)
        while len(store) > limit:  # least recently stored first
            store.popitem(last=False)


def result_on_request(namespace: str, key, start: bool, compute, prompt: str | None = None):
    """A lab's result: computed now (with a progress bar) when ``start``, else the remembered one.

    ``compute(progress)`` gets a ``progress(fraction, text)`` callback. With no result yet,
    ``prompt`` (if given) says how to get one, and the return value is None.
    """
    if start:
        bar = st.progress(0.0, text="starting…")
        remember_result(namespace, key, compute(lambda f, text: bar.progress(min(1.0, f), text=text)))
        bar.empty()
    result = cached_result(namespace, key)
    if result is None and prompt:
        st.info(prompt)
    return result


# --- the selected run ------------------------------------------------------------------
def _route_through_app() -> None:
    """Make a deep link (/sample?run=…) on a fresh server run app.py's navigation.

    Streamlit treats a `pages/` folder next to the entry script as a v1 multipage app until
    the first `st.navigation` call in the process; a first visit straight to /sample then runs
    pages/sample.py alone (no run picker, the folder listed in the sidebar). Leaving that mode
    and rerunning sends this and every later run through app.py. Private API, so guarded.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def selected_run() -> str | None:
    """The run every page works on: from the session, the URL (?run=…), the active run, or the newest."""
    _route_through_app()
    m = manager()
    name = st.session_state.get("run") or st.query_params.get("run")
    if name and m.exists(name):
        if st.session_state.get("run") != name:
            select_run(name)  # a run chosen by URL must survive navigation, which drops the query
        return name
    runs = m.list_runs()
    active = [r.name for r in runs if r.status.active]
    name = active[0] if active else (runs[0].name if runs else None)
    if name:
        select_run(name)
    return name


def select_run(name: str | None) -> None:
    st.session_state["run"] = name
    if name:
        st.query_params["run"] = name
    elif "run" in st.query_params:
        del st.query_params["run"]


def refresh_every(name: str | None) -> float | None:
    """Live pages rerun on this interval while the run trains, and not at all otherwise."""
    if name and manager().status(name).active:
        return LIVE_REFRESH_S
    return None


def rerun_when_run_ends(name: str, active: bool | None = None) -> None:
    """Called from auto-refreshing fragments: when the run they watch stops being active, one
    full rerun refreshes the rest of the app and turns the timers off (run_every is set per rerun).
    The fragments share one key, so the first to notice reruns and the others need not."""
    if active is None:
        active = manager().status(name).active
    if active:
        st.session_state["_live_run"] = name
    elif st.session_state.get("_live_run") == name:
        del st.session_state["_live_run"]
        st.rerun()


def start_default_run() -> None:
    res = manager().start(new_run_config(DEFAULT_RUN["dataset"], model=DEFAULT_RUN["model"], train=DEFAULT_RUN["train"]))
    select_run(res.name)


def require_snapshot(page: str) -> rd.Snapshot | None:
    """The selected run's snapshot, or a friendly empty state (with a start button) and None."""
    name = selected_run()
    if name is None:
        st.info(f"No model yet. {page} needs a trained (or training) VAE.")
        if st.button("Train a default model (MNIST, about a minute)", type="primary", key=f"default-{page}"):
            start_default_run()
            st.rerun()
        return None
    snap = snapshot(name)
    if snap is None:
        st.info(f"**{name}** has no weight snapshot yet: the first one appears a few seconds after training starts.")
        if refresh_every(name):
            st.fragment(lambda: _wait_for_snapshot(name), run_every=1.0)()
        return None
    return snap


def page_context(page: str) -> tuple[str, rd.Snapshot, Dataset]:
    """(run name, snapshot, dataset) for a page, or its empty state and st.stop()."""
    snap = require_snapshot(page)
    if snap is None:
        st.stop()
    data = run_dataset(snap)
    if data is None:
        st.stop()
    return selected_run(), snap, data


def _wait_for_snapshot(name: str) -> None:
    if rd.snapshot_meta(manager().path(name)) is not None:
        st.rerun()


def snapshot_caption(name: str, snap: rd.Snapshot) -> None:
    st_ = manager().status(name)
    live = " · training, refreshes by itself" if st_.active else ""
    st.caption(f"Run **{name}** · snapshot at step {snap.step:,} (epoch {snap.epoch}){live}")


# --- images ----------------------------------------------------------------------------
def spread(n_total: int, k: int) -> np.ndarray:
    """k indices evenly spread over a data set (datasets are often sorted by class)."""
    return np.unique(np.linspace(0, max(0, n_total - 1), num=min(k, n_total)).round().astype(int))


def display_scale(image_shape: tuple[int, int, int], target_px: int = 112) -> int:
    """Integer nearest-neighbour scale so a small image shows at about target_px."""
    return max(1, round(target_px / max(image_shape[1:])))


def grid(images: np.ndarray, ncols: int | None = None, target_px: int = 84) -> np.ndarray:
    """(N, C, H, W) or (R, K, C, H, W) floats in [0, 1] -> one uint8 picture, upscaled."""
    shape = images.shape[-3:]
    return explore.tile(images, ncols=ncols, scale=display_scale(shape, target_px))


def picture(image: np.ndarray, target_px: int = 168) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8, upscaled with nearest neighbour so pixels stay crisp."""
    return explore.upscale(image, display_scale(image.shape, target_px))
