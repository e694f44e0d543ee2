"""Traverse: move one latent dimension at a time from a base code and watch the decoder's mean.

Session state this page reads and writes (shared contract with Latent space and Encode):
  traverse_base   {"run", "z", "label", "image"?}: a base code chosen elsewhere; used when its
                  run is the selected run.
  traverse_z<d>   the slider value of latent dim d (raw dim index, not the KL rank).
  traverse_image  the last decoded slider image, (C, H, W) floats in [0, 1]; tests read it.
  traverse_live   True (default): sliders decode in the browser while dragged (pages/_ui/live_traverse.py)
                  and report on release; False: Streamlit sliders, decoded on the server on release.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from pages import _ui
from pages._ui.live_traverse import live_sliders
from vae_core import explore

LO, HI, STEP = -3.0, 3.0, 0.05  # slider range in prior standard deviations
TOP_SLIDERS = 16  # sliders shown directly; the rest go in an expander
ORIGIN, RANDOM, CHOSEN = "origin", "random", "chosen"


@dataclass(frozen=True)
class Base:
    kind: str
    z: np.ndarray  # (D,)
    label: str
    image: np.ndarray | None  # (C, H, W) in [0, 1], if the base came from an image


def _label_of(data, idx: int) -> str:
    """"test image #idx · class", without the class when the data set has no labels (y = -1)."""
    y = int(data.y_test[idx])
    if data.class_names and 0 <= y < len(data.class_names):
        return f"#{idx} · {data.class_names[y]}"
    return f"#{idx} · {y}" if y >= 0 else f"#{idx}"


def _slider_key(d: int) -> str:
    return f"traverse_z{d}"


def _on_grid(v: float) -> float:
    """A value the slider can hold: inside the range and on its step."""
    return float(np.clip(round(float(v) / STEP) * STEP, LO, HI).round(2))


def _chosen_base(run: str, dim: int) -> dict | None:
    """traverse_base from another page, if it belongs to this run and fits the model."""
    tb = st.session_state.get("traverse_base")
    if not isinstance(tb, dict) or tb.get("run") != run:
        return None
    try:
        z = np.asarray(tb.get("z"), dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return None
    return tb if len(z) == dim and np.isfinite(z).all() else None


def _next_random() -> None:
    st.session_state["traverse_seed"] = st.session_state.get("traverse_seed", 0) + 1


# --- page ----------------------------------------------------------------------------------
run, snap, data = _ui.page_context("Traverse")
model = snap.model
D = model.latent_dim

st.title("Traverse")
_ui.snapshot_caption(run, snap)
st.caption("Start from a code, then move one latent dimension at a time. Values are in prior standard "
           "deviations: p(z) = N(0, I), so ±3 covers almost all of the prior.")

if len(data.x_test) == 0:
    st.info("The run's data set has no test images to measure, pick or interpolate.")
    st.stop()

try:
    summary = _ui.encoded_test_set(snap, x_test=data.x_test).summary
    kl, active, order = summary.kl_per_dim, summary.active, [int(d) for d in summary.order]
except Exception as e:  # a broken snapshot must not take the page down
    st.error(f"Could not measure the latent dimensions: {e}")
    st.stop()


def dim_label(d: int) -> str:
    return f"z{d} · KL {kl[d]:.2f}" + ("" if active[d] else " · collapsed")


# --- base code -----------------------------------------------------------------------------
chosen = _chosen_base(run, D)
options = [ORIGIN, RANDOM] + ([CHOSEN] if chosen else [])
# A base chosen on another page is selected when it is new: a new dict (each "Traverse from here"
# press stores one, even for the same point again) or a new code.
chosen_sig = (run, id(chosen), tuple(np.round(np.asarray(chosen["z"], np.float64), 4))) if chosen else None
if chosen_sig and st.session_state.get("_traverse_chosen_seen") != chosen_sig:
    st.session_state["traverse_base_kind"] = CHOSEN
    st.session_state["_traverse_chosen_seen"] = chosen_sig
if st.session_state.get("traverse_base_kind") not in options:
    st.session_state["traverse_base_kind"] = RANDOM

names = {ORIGIN: "Origin (z = 0)", RANDOM: "A random test image",
         CHOSEN: f"Chosen: {chosen.get('label', 'a point')}" if chosen else ""}
pick_col, base_col = st.columns([3, 1], vertical_alignment="center")
with pick_col:
    kind = st.radio("Base code", options, format_func=names.get, horizontal=True, key="traverse_base_kind",
                    help="Sliders start at this code. 'Traverse from here' on Latent space, or "
                         "'Traverse from this image' on Encode, adds a third choice.")
try:
    if kind == ORIGIN:
        base = Base(ORIGIN, np.zeros(D, np.float32), "the origin (z = 0, the prior mean)", None)
    elif kind == RANDOM:
        seed = st.session_state.get("traverse_seed", 0)
        idx = int(np.random.default_rng(seed).integers(len(data.x_test)))
        x = data.x_test[idx]
        base = Base(RANDOM, explore.encode(model, x).mu[0], f"test image {_label_of(data, idx)}",
                    x.numpy())
        pick_col.button("Another random image", on_click=_next_random, key="traverse_another")
    else:
        img = chosen.get("image")
        img = np.asarray(img, np.float32) if img is not None else None
        if img is not None and img.shape != data.image_shape:
            img = None  # a stale picture from another dataset: show the code only
        base = Base(CHOSEN, np.asarray(chosen["z"], np.float32).reshape(-1), str(chosen.get("label", "chosen point")), img)
except Exception as e:
    st.error(f"Could not compute the base code: {e}")
    st.stop()

with base_col:
    if base.image is not None:
        st.image(_ui.picture(base.image, 112), caption=f"Base: {base.label}", width=112)
    else:
        st.caption(f"Base: {base.label}")
st.caption("Base code μ: " + ", ".join(f"z{d}={base.z[d]:+.2f}" for d in order[:TOP_SLIDERS])
           + (" …" if D > TOP_SLIDERS else ""))


# --- sliders + decode + image: one fragment -------------------------------------------------
def _reset(z: np.ndarray) -> None:
    for d in range(len(z)):
        st.session_state[_slider_key(d)] = _on_grid(z[d])


def latent_controls(base: Base) -> np.ndarray:
    """The current code from the sliders, (D,). Kept separate from decoding and drawing so a
    live-drag custom component (a later issue) can replace exactly this function."""
    n_collapsed = int((~active).sum())
    show_collapsed = True
    if 0 < n_collapsed < D:  # when every dim is collapsed, hiding them would leave nothing to move
        show_collapsed = st.toggle(f"Show collapsed dims ({n_collapsed})", key="traverse_show_collapsed",
                                   help="Collapsed dims carry (almost) no information: their posterior "
                                        "matches the prior, so the decoder ignores them.")
    dims = [d for d in order if show_collapsed or active[d]]
    for d in dims:  # first render of a dim (or after it was hidden): start at the base value
        st.session_state.setdefault(_slider_key(d), _on_grid(base.z[d]))

    def sliders(ds: list[int]) -> None:
        # Two columns (read left to right, by KL) keep 16 sliders within one screen of the image.
        cols = st.columns(2 if len(ds) > 4 else 1)
        for i, d in enumerate(ds):
            cols[i % len(cols)].slider(dim_label(d), LO, HI, step=STEP, format="%+.2f", key=_slider_key(d))

    sliders(dims[:TOP_SLIDERS])
    if len(dims) > TOP_SLIDERS:
        with st.expander(f"{len(dims) - TOP_SLIDERS} more dims (lower KL)"):
            sliders(dims[TOP_SLIDERS:])
    # Hidden dims keep the base value.
    return np.array([st.session_state.get(_slider_key(d), base.z[d]) if d in dims else base.z[d]
                     for d in range(D)], np.float32)


def _live_controls(base: Base, model, sig: tuple) -> np.ndarray:
    """Browser-side sliders: the image follows the drag; the code comes back on release."""
    dims = order[:TOP_SLIDERS * 2]  # the widget shows them in one column: keep it to a screenful
    start = np.array([st.session_state.get(_slider_key(d), base.z[d]) for d in range(D)], np.float32)
    token = f"{sig[0]}|{sig[1]}|{hash(sig[2])}|{st.session_state.get('_traverse_resets', 0)}"
    z = live_sliders(model, start, dims, [dim_label(d) for d in dims], token=token, key="traverse_live_widget")
    for d in range(D):  # the server agrees with the browser after each release
        st.session_state[_slider_key(d)] = _on_grid(z[d])
    if D > len(dims):
        st.caption(f"{D - len(dims)} lower-KL dims stay at the base value; switch live drag off to move them.")
    return z


def _reset_all(z: np.ndarray) -> None:
    _reset(z)
    st.session_state["_traverse_resets"] = st.session_state.get("_traverse_resets", 0) + 1


def slider_panel(base: Base) -> None:
    # Rerun by itself while the run trains: the decoder follows the newest snapshot, and the
    # sliders keep their values (the base code only changes on a full rerun).
    snap_now = _ui.snapshot(run) or snap
    model_now = snap_now.model
    # A new base code (another image, another run) puts every slider at its value.
    sig = (run, base.kind, tuple(np.round(base.z.astype(np.float64), 4)))
    if st.session_state.get("_traverse_sig") != sig:
        _reset(base.z)
        st.session_state["_traverse_sig"] = sig

    live = st.toggle("Live drag", value=True, key="traverse_live",
                     help="On: the image follows the slider while you drag (decoded in your browser). "
                          "Off: Streamlit sliders, decoded on the server when you let go.")
    if live:
        z = _live_controls(base, model_now, sig)
        st.button("Reset to base", on_click=_reset_all, args=(base.z,), key="traverse_reset")
        image_col = st.container()
    else:
        image_col, slider_col = st.columns([2, 3])
        with slider_col:
            z = latent_controls(base)
            st.button("Reset to base", on_click=_reset, args=(base.z,), key="traverse_reset")
    with image_col:
        try:
            img = explore.decode(model_now, z[None])[0]  # (C, H, W): decoder mean, one small CPU pass
        except Exception as e:
            st.error(f"Could not decode this code: {e}")
            return
        st.session_state["traverse_image"] = img
        if not live:  # the live widget draws its own image
            st.image(_ui.picture(img, 224), caption="Decoder mean at the slider code")
        start = np.array([_on_grid(v) for v in base.z])  # where "Reset to base" puts the sliders
        moved = [d for d in order if abs(z[d] - start[d]) > 1e-6]
        st.caption("Moved from base: " + (", ".join(f"z{d} {z[d] - start[d]:+.2f}" for d in moved[:8])
                                          + (" …" if len(moved) > 8 else "") if moved else "nothing yet")
                   + f" · snapshot step {snap_now.step:,}")


st.subheader("Move one dimension")
st.caption("Sliders are sorted by KL (nats): dims with more KL carry more information about the image.")
if not active.any():
    st.info("Every latent dim is collapsed (its posterior matches the prior), so the decoder ignores z and "
            "the sliders barely change the image. Train longer, or with a smaller β.")
st.fragment(slider_panel, run_every=_ui.refresh_every(run))(base)


# --- traversal grid ------------------------------------------------------------------------
st.divider()
st.subheader("Traversal grid")
c1, c2, _ = st.columns([1, 1, 2])
if not 1 <= st.session_state.get("traverse_grid_k", 0) <= D:  # new run, or a smaller model
    st.session_state["traverse_grid_k"] = min(8, D)
k = int(c1.number_input("Dimensions (top by KL)", 1, D, key="traverse_grid_k"))
ncols = c2.radio("Columns", [7, 9], index=1, horizontal=True, key="traverse_grid_cols")
values = np.linspace(LO, HI, ncols).astype(np.float32)
rows = order[:k]
try:
    tg = explore.traversal_grid(model, base.z, rows, values)  # (k, ncols, C, H, W)
except Exception as e:
    st.error(f"Could not decode the traversal grid: {e}")
    tg = None
if tg is not None:
    st.caption(f"Each row sets one dim to the column's value (prior σ); every other dim stays at the base: {base.label}.")
    widths = [1.3, ncols]
    head = st.columns(widths, vertical_alignment="bottom")
    head[0].caption("dim · KL")
    # Equal columns with no gap line up with the cells of each row's tiled image below.
    for col, v in zip(head[1].columns(ncols, gap=None), values):
        col.caption(f"{v:+.2f}".replace("+0.00", "0").replace("-0.00", "0"), text_alignment="center")
    for r, d in enumerate(rows):
        label_col, img_col = st.columns(widths, vertical_alignment="center")
        label_col.markdown(f"**z{d}**  \n:small[KL {kl[d]:.2f}{'' if active[d] else ' · collapsed'}]")
        img_col.image(_ui.grid(tg[r : r + 1], target_px=96), width="stretch")


# --- interpolation -------------------------------------------------------------------------
st.divider()
st.subheader("Interpolate between two test images")
n_test = len(data.x_test)


def _random_pair() -> None:
    n = st.session_state.get("traverse_pair_seed", 0) + 1
    st.session_state["traverse_pair_seed"] = n
    a, b = np.random.default_rng(1000 + n).choice(n_test, size=2, replace=n_test < 2)
    st.session_state["traverse_a"], st.session_state["traverse_b"] = int(a), int(b)


# Defaults, and indices kept in range when the run (and so the test set) changes.
if not 0 <= st.session_state.get("traverse_a", -1) < n_test:
    st.session_state["traverse_a"] = 0
if not 0 <= st.session_state.get("traverse_b", -1) < n_test:
    st.session_state["traverse_b"] = int(_ui.spread(n_test, 2)[-1])
ca, cb, cs, cr = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
ia = int(ca.number_input("Image A (test index)", 0, n_test - 1, key="traverse_a"))
ib = int(cb.number_input("Image B (test index)", 0, n_test - 1, key="traverse_b"))
steps = cs.slider("Steps", 3, 16, 8, key="traverse_steps")
cr.button("Random pair", on_click=_random_pair, key="traverse_pair")

xa, xb = data.x_test[ia], data.x_test[ib]
ends, strips = st.columns([1, 5])
with ends:  # two calls so A sits above B whatever the column width
    st.image(_ui.picture(xa.numpy(), 72), caption=f"A: {_label_of(data, ia)}", width=72)
    st.image(_ui.picture(xb.numpy(), 72), caption=f"B: {_label_of(data, ib)}", width=72)
with strips:
    for method, text in (("linear", "Linear: a straight line between the two posterior means."),
                         ("spherical", "Spherical (slerp): keeps the code's length roughly constant, "
                                       "so the path stays where the prior has its mass.")):
        try:
            strip = explore.interpolation_strip(model, xa, xb, steps=steps, method=method)  # (S, C, H, W)
        except Exception as e:
            st.error(f"Could not interpolate ({method}): {e}")
            continue
        st.markdown(f"**{method.capitalize()}**")
        st.image(_ui.grid(strip, ncols=steps, target_px=72), width="stretch")
        st.caption(text + (" With one latent dim, slerp falls back to linear." if D == 1 and method == "spherical" else ""))
