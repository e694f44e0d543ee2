"""Start-up work done once per server process, in the background, so that the first page
switch does not pay for it: the imports that the dataset split (scikit-learn) and the upload
preprocessing (scipy.ndimage) make on first use, and loading the newest runs' datasets into
the engine's in-process memo, where the pages' own loads then find them."""
from __future__ import annotations

import logging
import threading

import streamlit as st

from vae_core.runs.manager import RunManager
from vae_core.runs.run_data import load_run_data

log = logging.getLogger("latent_explorer.pages")
WARM_RUNS = 2  # the newest runs: the ones a page is likely to open first


def _warm(root) -> None:
    try:
        import scipy.ndimage  # noqa: F401
        import sklearn.model_selection  # noqa: F401

        seen = set()
        for run in RunManager(root).list_runs()[:WARM_RUNS]:
            tc = run.config.train if run.config else None
            key = tc and (tc.dataset, tc.image_size, tc.channels, tc.seed, run.config.is_text and run.name)
            if tc is not None and key not in seen:
                seen.add(key)
                load_run_data(run.config, run.path)  # images, or a topic run's corpus over its vocabulary
    except Exception:  # a warm-up must never take the app down; the page will say what is wrong
        log.warning("warm-up failed", exc_info=True)


@st.cache_resource(show_spinner=False)
def start(root: str) -> threading.Thread:
    """Start the warm-up for the runs folder ``root`` (once per server process)."""
    thread = threading.Thread(target=_warm, args=(root,), name="latent-explorer-warmup", daemon=True)
    thread.start()
    return thread
