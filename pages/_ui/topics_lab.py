"""The Topics lab's helpers: the topic runs to compare and their reports, the simplex densities
and the planted-topics experiment, each computed once and kept for every session of the server.
The page (pages/lab_topics.py) lays them out; figures are in ``topic_figures``, words in
``topics_text``.

Process contract: this runs in the Streamlit server. The planted-topics experiment trains two
small models here, in the page's process, on one thread (``labs.planted``): seconds, on request.
"""
from __future__ import annotations

import streamlit as st

from vae_core.labs import planted as pl
from vae_core.labs import simplex as sx
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunInfo

from .cache import cached_result, remember_result, result_on_request
from .guard import guard
from .runs import manager, snapshot

TOPIC_FAMILIES = ("prodlda", "lda")
# The alpha slider: about evenly spaced in log alpha from 0.1 to 10.
ALPHAS = (0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0)
SIMPLEX_CELLS = 60  # grid cells per side of the triangle: 3,600 dots per panel
# The planted-topics controls: choices, and the defaults (the lab's measured recipe, with 1,000
# documents instead of 2,000 so that a press takes a few seconds).
PLANTED_TOPICS = (2, 10, 5)  # slider min, max, default
PLANTED_VOCAB = ((20, 30, 50, 100, 200), 50)
PLANTED_DOCS = ((100, 200, 500, 1000, 2000, 5000), 1000)
PLANTED_ALPHA = ((0.05, 0.1, 0.3, 1.0), 0.1)
PLANTED_STEPS = ((50, 100, 200, 300, 500), 300)


# --- topic runs ---------------------------------------------------------------------------
def topic_runs() -> dict[str, list[RunInfo]]:
    """The runs of each topic family, newest first, by family name ("prodlda", "lda")."""
    runs = {family: [] for family in TOPIC_FAMILIES}
    for info in manager().list_runs():
        family = getattr(info.config, "family", None)
        if family in runs:
            runs[family].append(info)
    return runs


def dataset_of(info: RunInfo) -> str:
    return info.config.train.dataset


def report(name: str):
    """The run's ``TopicReport`` (top words, NPMI, diversity and perplexity on its test documents,
    computed once per snapshot by the text pages' ``text_runs.report``), or None after saying why."""
    if rd.snapshot_meta(manager().path(name), "latest") is None:
        st.info(f"**{name}** has no snapshot yet: its first one appears a few seconds after training starts.")
        return None
    with guard(f"Could not read the topics of {name}"):
        # Imported here: should reading text runs fail, the lab's other two tabs still work.
        from . import text_runs

        snap = snapshot(name)
        if snap is not None:
            return text_runs.report(snap, data=text_runs.corpus(snap))
    return None


def aligned_columns(name_a: str, name_b: str) -> dict:
    """How ``topic_figures.aligned_topics``'s table is shown: NPMIs to 3 decimals, the match as a bar."""
    npmi = {"format": "%.3f", "help": "NPMI of the topic's top 10 words, in [-1, 1]: higher is more coherent"}
    return {
        f"{name_a} NPMI": st.column_config.NumberColumn(**npmi),
        f"{name_b} NPMI": st.column_config.NumberColumn(**npmi),
        "match (cosine)": st.column_config.ProgressColumn(
            min_value=0.0, max_value=1.0, format="%.2f",
            help="Cosine between the two topics' word distributions; pairs by the Hungarian algorithm"),
        f"{name_a} words": st.column_config.TextColumn(width="large"),
        f"{name_b} words": st.column_config.TextColumn(width="large"),
    }


# --- the simplex ----------------------------------------------------------------------------
def simplex(alpha: float) -> sx.SimplexDensities:
    """Both densities for a symmetric alpha, computed once per alpha for every session (no pickling:
    a dataclass kept as it is, read-only)."""
    key = (float(alpha), SIMPLEX_CELLS)
    if (hit := cached_result("topics-simplex", key)) is not None:
        return hit
    d = sx.densities(float(alpha), n=SIMPLEX_CELLS)
    remember_result("topics-simplex", key, d, limit=len(ALPHAS))
    return d


# --- planted topics -------------------------------------------------------------------------
def planted(settings: dict, start: bool) -> pl.PlantedRecovery | None:
    """The experiment for ``settings`` (``planted_recovery``'s keyword arguments): run now with a
    progress bar when ``start``, else the one any session ran with these settings, else None
    (after a prompt)."""
    key = tuple(sorted(settings.items()))

    def compute(progress):
        every = 10  # redraw the bar every 10 steps, not on each of hundreds

        def step(done: int, total: int) -> None:
            if done % every == 0 or done == total:
                what = "ProdLDA" if done <= settings.get("steps", 300) else "LDA"
                progress(done / total, f"training {what} · {done:,} of {total:,} updates")

        return pl.planted_recovery(progress=step, **settings)

    return result_on_request("topics-planted", key, start, compute,
                             "Press **Draw a corpus and fit both** to run the experiment with these settings "
                             "(a few seconds).")

