"""The selected run and what the pages read of it: the run manager, the snapshot shown (the
best by validation ELBO unless the user picks the latest) and its dataset, refresh timing while it trains, and the empty states.

Process contract (docs/architecture.md): this runs in the Streamlit server. Training happens
in worker processes the RunManager starts; pages only read run directories through here.
"""
from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from vae_core import explore
from vae_core.data import Dataset, DatasetError, DatasetPeek, load_dataset, peek_dataset
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager, new_run_config

from .cache import cached_result, per_snapshot, progress_bar, remember_result
from .health import health
from .state import FLASH, LIVE_RUN, SELECTED_RUN, SNAPSHOT_KIND, TRAVERSE_BASE, TraverseBase

LIVE_REFRESH_S = 2.0
# What the empty-state button starts: real MNIST, an MLP small enough to train in about a
# minute on two CPU cores, with enough latent dimensions to reconstruct digits faithfully.
DEFAULT_RUN = {"dataset": "mnist", "model": {"body": "mlp", "latent_dim": 16}, "train": {"epochs": 30}}


@st.cache_resource
def manager() -> RunManager:
    """One process-wide RunManager (it is thread-safe; its state lives on disk)."""
    return RunManager()


DATASETS_KEPT = 4  # loaded datasets the server keeps: views of the disk cache, uint8, mostly memory-mapped


def dataset(spec: str, image_size: int | None = None, channels: int | None = None, seed: int = 0) -> Dataset:
    """The dataset ``spec``, kept for every session. A dataset is uint8 images that are read a
    batch at a time (memory-mapped from the disk cache), so keeping it costs little; the first
    load of a source decodes every file into that cache, which a progress bar shows."""
    key = (spec, image_size, channels, seed)
    if (hit := cached_result("datasets", key)) is not None:
        return hit
    with st.spinner("Loading the dataset…"), progress_bar(f"Decoding **{spec}** into the dataset cache (once)") as bar:
        ds = load_dataset(spec, image_size=image_size, channels=channels, seed=seed, progress=bar)
    remember_result("datasets", key, ds, limit=DATASETS_KEPT)
    return ds


PEEK_TTL_S = 60  # a peek is kept this long: a large folder costs seconds just to check it is unchanged


@st.cache_data(ttl=PEEK_TTL_S, max_entries=32, show_spinner="Looking for the dataset in the cache…")
def dataset_peek(spec: str, image_size: int | None = None, channels: int | None = None) -> DatasetPeek | None:
    """16 examples and the sizes of ``spec`` when the disk cache holds it, else None: nothing is
    decoded and only 16 images are read (``data.peek_dataset``). Kept ``PEEK_TTL_S`` seconds;
    ``run_config`` forgets them, since starting a run puts its dataset in the cache."""
    return peek_dataset(spec, image_size=image_size, channels=channels, n=16)


def run_config(dataset: str, **options):
    """``new_run_config(dataset, **options)``, with a progress bar while it decodes a dataset
    into the cache for the first time (it reads the dataset to learn the image shape)."""
    with progress_bar(f"Decoding **{dataset}** into the dataset cache (once)") as bar:
        config = new_run_config(dataset, progress=bar, **options)
    dataset_peek.clear()  # the dataset is in the cache now
    return config


# Room for a whole sweep (up to 8 runs in the β lab) beside the selected run and a few others.
@st.cache_resource(max_entries=16, show_spinner=False)
def _snapshot(run_dir: str, kind: str, step: int, mtime: float) -> rd.Snapshot:
    # Keyed by kind, step and mtime: a new snapshot is a new cache entry, an unchanged one is free.
    return rd.load_snapshot(run_dir, which=kind)


def shown_kind() -> rd.SnapshotKind:
    """Which snapshot the pages show: the best one unless the user chose the latest."""
    return "latest" if SNAPSHOT_KIND.get() == "latest" else "best"


def snapshot(name: str) -> rd.Snapshot | None:
    """The run's snapshot the user chose (``shown_kind``) on the CPU, or None if it has none yet.
    "best" is the latest snapshot while the run has no best one yet."""
    path = manager().path(name)
    meta = rd.snapshot_meta(path, shown_kind())
    if meta is None:
        return None
    try:
        return _snapshot(str(path), meta.kind, meta.step, meta.mtime)
    except rd.RunError as e:
        st.error(f"Cannot load the weights of {name}: {e}")
        return None


def run_dataset(snap: rd.Snapshot) -> Dataset | None:
    """The run's image dataset, or None after saying why (a topic-model run's corpus is
    ``text_runs.corpus``)."""
    if snap.config.is_text:
        st.info(f"**{snap.run_dir.name}** is a topic model on text ({snap.config.model.label()}): this view is for "
                "VAEs on images. Its topics are on the explorer pages and in the **Topic models** lab; choose an "
                "image run in the sidebar for this one.")
        return None
    tc = snap.config.train
    try:
        return dataset(tc.dataset, tc.image_size, tc.channels, tc.seed)
    except DatasetError as e:
        st.error(f"The run's dataset is not available: {e}")
        return None


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
    name = SELECTED_RUN.get() or st.query_params.get("run")
    if name and m.exists(name):
        if SELECTED_RUN.get() != name:
            select_run(name)  # a run chosen by URL must survive navigation, which drops the query
        return name
    runs = m.list_runs()
    active = [r.name for r in runs if r.status.active]
    name = active[0] if active else (runs[0].name if runs else None)
    if name:
        select_run(name)
    return name


def select_run(name: str | None) -> None:
    if name:
        SELECTED_RUN.set(name)
    else:
        SELECTED_RUN.pop()
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
        LIVE_RUN.set(name)
    elif LIVE_RUN.get() == name:
        LIVE_RUN.pop()
        st.rerun()


def start_default_run() -> None:
    res = manager().start(run_config(DEFAULT_RUN["dataset"], model=DEFAULT_RUN["model"], train=DEFAULT_RUN["train"]))
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
    if rd.snapshot_meta(manager().path(name)) is None:
        st.info(f"**{name}** has no weight snapshot yet: the first one appears a few seconds after training starts.")
        if refresh_every(name):
            st.fragment(lambda: _wait_for_snapshot(name), run_every=1.0)()
        return None
    return snapshot(name)  # None after saying why its weights cannot be loaded


def page_context(page: str) -> tuple[str, rd.Snapshot, Dataset]:
    """(run name, snapshot, dataset) for a page, or its empty state and st.stop(). Says first
    what is wrong with a snapshot that cannot be shown (or shown only in part)."""
    snap = require_snapshot(page)
    if snap is None:
        st.stop()
    data = run_dataset(snap)
    if data is None:
        st.stop()
    say_health(snap, data)
    return selected_run(), snap, data


def _health(snap: rd.Snapshot, data: Dataset | None):
    return health(snap, len(data.x_test) if data is not None else 0, x_test=data.x_test if data is not None else None)


def say_health(snap: rd.Snapshot, data: Dataset | None = None) -> None:
    """The snapshot's problem in one sentence, if it has one; st.stop() when nothing can be shown."""
    h = _health(snap, data)
    if h.fatal:
        st.error(h.problem)
        st.stop()
    if h.problem:
        st.warning(h.problem)


def live_snapshot(run: str, data: Dataset | None = None) -> rd.Snapshot | None:
    """The run's newest snapshot for a fragment that refreshes while it trains, with its caption;
    None (after saying why) when it cannot be shown, as when the run diverged since the page opened."""
    rerun_when_run_ends(run)
    snap = snapshot(run)
    if snap is None:
        return None
    snapshot_caption(run, snap)
    if (h := _health(snap, data)).fatal:
        st.error(h.problem)
        return None
    return snap


def _wait_for_snapshot(name: str) -> None:
    if rd.snapshot_meta(manager().path(name)) is not None:
        st.rerun()


def describe_snapshot(snap: rd.Snapshot | rd.SnapshotMeta, imported: bool | None = None) -> str:
    """Which snapshot this is, in words: "snapshot at step 1,200 (epoch 12) · the best by
    validation ELBO (−98.30)", "… · the latest", or for a model trained elsewhere "the imported
    weights (trained elsewhere)". ``imported``: whether the run is an imported model (read from
    a Snapshot's config when not given)."""
    if imported is None:
        imported = isinstance(snap, rd.Snapshot) and snap.config.family == "external"
    if imported:
        return "the imported weights (trained elsewhere)"
    head = f"snapshot at step {snap.step:,} (epoch {snap.epoch})"
    if snap.kind == "best":
        val = f" ({snap.validation_elbo:.2f})" if snap.validation_elbo is not None else ""
        return f"{head} · the best by validation ELBO{val}"
    return f"{head} · the latest"


def snapshot_caption(name: str, snap: rd.Snapshot) -> None:
    st_ = manager().status(name)
    live = " · training, refreshes by itself" if st_.active else ""
    st.caption(f"Run **{name}** · {describe_snapshot(snap)}{live}")


@per_snapshot(max_entries=8, progress="Encoding the test set")
def encoded_test_set(snap: rd.Snapshot, *, x_test, progress) -> explore.EncodedTestSet:
    """The run's test set under this snapshot: codes, per-dim KL, the PCA basis (read from
    the worker's summary when it published one; otherwise encoded a batch at a time from the
    ImageSet, with a progress bar, keeping only the (N, D) codes)."""
    return explore.encoded_test_set(snap, x_test, progress=progress)


def flash(message: str) -> None:
    """Show ``message`` as a toast after the next rerun."""
    FLASH.set(message)


def show_flash() -> None:
    if (message := FLASH.pop()) is not None:
        st.toast(message)


def traverse_from(base: TraverseBase) -> None:
    """Open Traverse starting from ``base``."""
    TRAVERSE_BASE.set(base)
    try:
        st.switch_page("pages/traverse.py", query_params={"run": base.run})
    except StreamlitAPIException:  # a page run on its own has no navigation: the base waits for it
        st.info("The starting point is set: open the Traverse page to move through it.")
