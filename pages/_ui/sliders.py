"""The Traverse page's slider panel: one latent dimension per slider, the decode and the image
in one fragment. Live drag (the default) decodes in the browser while a slider moves
(``live_traverse``); otherwise Streamlit sliders are decoded on the server on release.

Session state (``state``): a slider per dim (``traverse_z(d)``), TRAVERSE_SIG (the base the
sliders were last reset to), TRAVERSE_RESETS and TRAVERSE_IMAGE (the last decoded image).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from vae_core import explore
from vae_core.explore import LatentSummary

from . import state
from .guard import guard
from .images import picture
from .live_traverse import live_sliders
from .runs import snapshot

LO, HI, STEP = -3.0, 3.0, 0.05  # slider range in prior standard deviations
TOP_SLIDERS = 16  # server sliders shown directly; the rest go in an expander


@dataclass(frozen=True, eq=False)
class Base:
    """The code the sliders start from."""

    kind: str  # "origin", "random" or "chosen"
    z: np.ndarray  # (D,)
    label: str
    image: np.ndarray | None  # (C, H, W) in [0, 1], if the base came from an image

    @property
    def sig(self) -> tuple:
        return self.kind, tuple(np.round(self.z.astype(np.float64), 4))


@dataclass(frozen=True, eq=False)
class Dims:
    """The latent dims as the sliders show them: by KL, largest first."""

    kl: np.ndarray
    active: np.ndarray
    order: list[int]

    @classmethod
    def of(cls, summary: LatentSummary) -> "Dims":
        return cls(summary.kl_per_dim, summary.active, [int(d) for d in summary.order])

    def label(self, d: int) -> str:
        return f"z{d} · KL {self.kl[d]:.2f}" + ("" if self.active[d] else " · collapsed")


def on_grid(v: float) -> float:
    """A value a slider can hold: inside the range and on its step."""
    return float(np.clip(round(float(v) / STEP) * STEP, LO, HI).round(2))


def reset(z: np.ndarray, live: bool = False) -> None:
    for d in range(len(z)):
        state.traverse_z(d).set(on_grid(z[d]))
    if live:  # a new token makes the browser widget start again from z
        state.bump(state.TRAVERSE_RESETS)


def _value(d: int, base: Base) -> float:
    v = state.traverse_z(d).get()
    return base.z[d] if v is None else v


def server_sliders(base: Base, dims: Dims) -> np.ndarray:
    """Streamlit sliders, two columns by KL; returns the code (D,). Hidden dims keep the base value."""
    D = len(base.z)
    n_collapsed = int((~dims.active).sum())
    show_collapsed = True
    if 0 < n_collapsed < D:  # when every dim is collapsed, hiding them would leave nothing to move
        show_collapsed = st.toggle(f"Show collapsed dims ({n_collapsed})", key="traverse_show_collapsed",
                                   help="Collapsed dims carry (almost) no information: their posterior "
                                        "matches the prior, so the decoder ignores them.")
    shown = [d for d in dims.order if show_collapsed or dims.active[d]]
    for d in shown:  # first render of a dim (or after it was hidden): start at the base value
        state.traverse_z(d).setdefault(on_grid(base.z[d]))

    def sliders(ds: list[int]) -> None:
        # Two columns (read left to right, by KL) keep 16 sliders within one screen of the image.
        cols = st.columns(2 if len(ds) > 4 else 1)
        for i, d in enumerate(ds):
            cols[i % len(cols)].slider(dims.label(d), LO, HI, step=STEP, format="%+.2f", key=state.traverse_z(d).key)

    sliders(shown[:TOP_SLIDERS])
    if len(shown) > TOP_SLIDERS:
        with st.expander(f"{len(shown) - TOP_SLIDERS} more dims (lower KL)"):
            sliders(shown[TOP_SLIDERS:])
    return np.array([_value(d, base) if d in shown else base.z[d] for d in range(D)], np.float32)


def browser_sliders(base: Base, dims: Dims, model, run: str) -> np.ndarray:
    """Sliders decoded in the browser: the image follows the drag; the code comes back on release."""
    D = len(base.z)
    shown = dims.order[:TOP_SLIDERS * 2]  # the widget shows them in one column: keep it to a screenful
    start = np.array([_value(d, base) for d in range(D)], np.float32)
    token = f"{run}|{base.kind}|{hash(base.sig)}|{state.TRAVERSE_RESETS.get() or 0}"
    z = live_sliders(model, start, shown, [dims.label(d) for d in shown], token=token, key="traverse_live_widget")
    reset(z)  # the server agrees with the browser after each release
    if D > len(shown):
        st.caption(f"{D - len(shown)} lower-KL dims stay at the base value; switch live drag off to move them.")
    return z


def slider_panel(run: str, fallback, base: Base, dims: Dims) -> None:
    """Sliders, decode and image. Reruns by itself while the run trains: the decoder follows the
    newest snapshot and the sliders keep their values (the base only changes on a full rerun)."""
    snap = snapshot(run) or fallback
    if state.TRAVERSE_SIG.get() != (run, *base.sig):  # a new base code puts every slider at its value
        reset(base.z)
        state.TRAVERSE_SIG.set((run, *base.sig))
    live = st.toggle("Live drag", value=True, key="traverse_live",
                     help="On: the image follows the slider while you drag (decoded in your browser). "
                          "Off: Streamlit sliders, decoded on the server when you let go.")
    if live:
        z = browser_sliders(base, dims, snap.model, run)
        image_col = st.container()
    else:
        image_col, slider_col = st.columns([2, 3])
        with slider_col:
            z = server_sliders(base, dims)
    (image_col if live else slider_col).button("Reset to base", on_click=reset, args=(base.z, live), key="traverse_reset")
    with image_col:
        with guard("Could not decode this code") as g:
            img = explore.decode(snap.model, z[None])[0]  # (C, H, W): decoder mean, one small CPU pass
        if g.failed:
            return
        state.TRAVERSE_IMAGE.set(img)
        if not live:  # the live widget draws its own image
            st.image(picture(img, 224), caption="Decoder mean at the slider code")
        start = np.array([on_grid(v) for v in base.z])  # where "Reset to base" puts the sliders
        moved = [d for d in dims.order if abs(z[d] - start[d]) > 1e-6]
        st.caption("Moved from base: " + (", ".join(f"z{d} {z[d] - start[d]:+.2f}" for d in moved[:8])
                                          + (" …" if len(moved) > 8 else "") if moved else "nothing yet")
                   + f" · snapshot step {snap.step:,}")
