"""Latent space's 2-D views of the codes: which view (fixed for 1-D and 2-D latents, the
user's choice above that), the projection itself, and the caption that says what is shown.

Session state (``state``): the widgets ls_method, ls_dim_x, ls_dim_y and LS_TSNE, the t-SNE
layout in use (t-SNE takes seconds, so while a run trains it stays on its snapshot).
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from vae_core import explore
from vae_core.runs.rundir import Snapshot

from . import state
from .cache import per_snapshot, pinned
from .runs import refresh_every

VIEWS = {"PCA": "pca", "t-SNE": "tsne", "two latent dims": "dims"}


@per_snapshot(max_entries=8, spinner="Running t-SNE on the codes (this takes a few seconds)…")
def tsne(snap: Snapshot, n: int, *, mu: np.ndarray) -> explore.Projection:
    return explore.project_2d(mu, "tsne", seed=0)


def choose_view(d: int, order: np.ndarray) -> tuple[str, tuple[int, ...]]:
    """(method, dims) for codes of ``d`` dims, whose dims by KL are ``order``."""
    if d <= 2:
        return ("strip", (0,)) if d == 1 else ("identity", (0, 1))
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    method = VIEWS[c1.radio("View", list(VIEWS), horizontal=True, key="ls_method",
                            help="PCA: the two directions of largest spread (linear, fast). t-SNE: a non-linear "
                                 "map that keeps neighbours together (slow; distances between clusters mean little). "
                                 "Two latent dims: the raw coordinates of two chosen dims.")]
    if method != "dims":
        return method, (0, 1)
    # Defaults (the two most informative dims) go through session state, not index=, so a ranking
    # that shifts while the run trains never resets the user's choice.
    for slot, default in ((state.LS_DIM_X, int(order[0])), (state.LS_DIM_Y, int(order[1]))):
        if slot.get() not in range(d):
            slot.set(default)
    a = c2.selectbox("x: latent dim", range(d), key=state.LS_DIM_X.key, format_func=lambda k: f"z{k}")
    b = c3.selectbox("y: latent dim", range(d), key=state.LS_DIM_Y.key, format_func=lambda k: f"z{k}")
    return "dims", (a, b)


def project(run: str, snap: Snapshot, method: str, dims: tuple[int, ...], mu: np.ndarray
            ) -> tuple[explore.Projection, np.ndarray, str]:
    """The projection of codes mu (N, D), the codes it was computed from (t-SNE's may be an
    older snapshot's) and a note on when it was computed."""
    if method != "tsne":
        # a 1-D model gets the engine's strip whatever is asked ("auto" says so)
        return explore.project_2d(mu, "auto" if method == "strip" else method, dims=dims), mu, ""
    kept, training = state.LS_TSNE.for_run(run), refresh_every(run) is not None
    update = training and kept is not None and kept.step != snap.step and st.button(
        "Update t-SNE to the latest snapshot", key="ls_tsne_update")
    pin = pinned(state.LS_TSNE, run, snap, lambda: (tsne(snap, len(mu), mu=mu), mu),
                 keep=lambda k: training and not update and len(k.value[1]) == len(mu))
    note = (f" Computed on the snapshot at step {pin.step:,} (epoch {pin.epoch}); t-SNE is slow, so while "
            "the run trains it stays there until you press the update button." if training else "")
    return *pin.value, note


def caption(proj: explore.Projection, d: int, shown: str, note: str) -> str:
    """Says which view is on screen (the tests look for the method's name here)."""
    if proj.method == "strip":
        return (f"**Strip** (the model has a single latent dim): x is μ, and each class gets its own row, with a "
                f"little vertical jitter so dots don't overlap. {shown}.")
    if proj.method == "identity":
        return f"**The codes themselves**: the latent space is 2-D, so μ is plotted directly. {shown}."
    if proj.method == "dims":
        return f"**Two latent dims**: z{proj.dims[0]} across, z{proj.dims[1]} up (the other {d - 2} dims are not shown). {shown}."
    if proj.method == "pca":  # asked for, or t-SNE's stand-in, which the engine's note explains
        ev = ", ".join(f"{v:.0%}" for v in proj.explained_variance or ())
        return f"**PCA** of the {d}-dim codes μ: the two axes explain {ev} of their variance. {shown}." + (
            f" {proj.note}" if proj.note else "")
    return (f"**t-SNE** of the {d}-dim codes μ (perplexity 30, seed 0): nearby dots have similar codes; the axes "
            f"have no units and distances between clusters mean little. {shown}.{note}"
            + (f" {proj.note}" if proj.note else ""))
