"""Traverse: move one latent dimension at a time from a base code and watch the decoder's mean;
on a topic model, move one topic's coordinate and watch the words (``_ui.text_explore``).

Session state (``_ui.state``): TRAVERSE_BASE, a base code chosen on Latent space or Encode (used
when its run is the selected run); TRAVERSE_KIND, the base radio; TRAVERSE_SEED, the random
base image; the sliders and the image are described in ``_ui.sliders``.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import sliders, state, text_explore
from vae_core import explore

ORIGIN, RANDOM, CHOSEN = "origin", "random", "chosen"

text_explore.route(text_explore.traverse_page)  # a topic model: its own page, then stop
st.title("Traverse")
run, snap, data = _ui.page_context("Traverse")
model, D, n_test = snap.model, snap.model.latent_dim, len(data.x_test)
_ui.snapshot_caption(run, snap)
st.caption("Start from a code, then move one latent dimension at a time. Values are in prior standard "
           "deviations: p(z) = N(0, I), so ±3 covers almost all of the prior.")
if n_test == 0:
    st.info("The run's data set has no test images to measure, pick or interpolate.")
    st.stop()
with _ui.guard("Could not measure the latent dimensions") as g:
    dims = sliders.Dims.of(_ui.encoded_test_set(snap, x_test=data.x_test).summary)
if g.failed:
    st.stop()


def label_of(idx: int) -> str:
    """"#idx · class", without the class when the data set has no labels (y = -1)."""
    y = int(data.y_test[idx])
    if data.class_names and 0 <= y < len(data.class_names):
        return f"#{idx} · {data.class_names[y]}"
    return f"#{idx} · {y}" if y >= 0 else f"#{idx}"


def chosen_base() -> state.TraverseBase | None:
    """The base chosen on another page, if it belongs to this run and fits the model."""
    tb = state.TRAVERSE_BASE.for_run(run)
    with _ui.guard("The chosen base code is not a code", show=False) as bad:
        z = np.asarray(tb.z, dtype=np.float32).reshape(-1) if tb else None
    return tb if tb and not bad.failed and len(z) == D and np.isfinite(z).all() else None


# --- base code -----------------------------------------------------------------------------
chosen = chosen_base()
options = [ORIGIN, RANDOM] + ([CHOSEN] if chosen else [])
# A base chosen on another page is selected when it is new: each press of a "Traverse from …"
# button stores one with its own token, even for the same point again.
if chosen and state.TRAVERSE_CHOSEN_SEEN.get() != chosen.token:
    state.TRAVERSE_KIND.set(CHOSEN)
    state.TRAVERSE_CHOSEN_SEEN.set(chosen.token)
if state.TRAVERSE_KIND.get() not in options:
    state.TRAVERSE_KIND.set(RANDOM)
names = {ORIGIN: "Origin (z = 0)", RANDOM: "A random test image", CHOSEN: f"Chosen: {chosen.label}" if chosen else ""}
pick_col, base_col = st.columns([3, 1], vertical_alignment="center")
kind = pick_col.radio("Base code", options, format_func=names.get, horizontal=True, key=state.TRAVERSE_KIND.key,
                      help="Sliders start at this code. 'Traverse from here' on Latent space, or "
                           "'Traverse from this image' on Encode, adds a third choice.")
with _ui.guard("Could not compute the base code") as g:
    if kind == ORIGIN:
        base = sliders.Base(ORIGIN, np.zeros(D, np.float32), "the origin (z = 0, the prior mean)", None)
    elif kind == RANDOM:
        idx = int(np.random.default_rng(state.TRAVERSE_SEED.get() or 0).integers(n_test))
        x = data.x_test[idx]
        base = sliders.Base(RANDOM, explore.encode(model, x).mu[0], f"test image {label_of(idx)}", x.numpy())
        pick_col.button("Another random image", on_click=state.bump, args=(state.TRAVERSE_SEED,), key="traverse_another")
    else:
        img = np.asarray(chosen.image, np.float32) if chosen.image is not None else None
        img = img if img is not None and img.shape == data.image_shape else None  # a stale picture: the code only
        base = sliders.Base(CHOSEN, np.asarray(chosen.z, np.float32).reshape(-1), chosen.label, img)
if g.failed:
    st.stop()
if base.image is not None:
    base_col.image(_ui.picture(base.image, 112), caption=f"Base: {base.label}", width=112)
else:
    base_col.caption(f"Base: {base.label}")
st.caption("Base code μ: " + ", ".join(f"z{d}={base.z[d]:+.2f}" for d in dims.order[:sliders.TOP_SLIDERS])
           + (" …" if D > sliders.TOP_SLIDERS else ""))

st.subheader("Move one dimension")
st.caption("Sliders are sorted by KL (nats): dims with more KL carry more information about the image.")
if not dims.active.any():
    st.info("Every latent dim is collapsed (its posterior matches the prior), so the decoder ignores z and "
            "the sliders barely change the image. Train longer, or with a smaller β.")
st.fragment(sliders.slider_panel, run_every=_ui.refresh_every(run))(run, snap, base, dims)


# --- traversal grid ------------------------------------------------------------------------
st.divider()
st.subheader("Traversal grid")
c1, c2, _ = st.columns([1, 1, 2])
if not 1 <= (state.TRAVERSE_GRID_K.get() or 0) <= D:  # new run, or a smaller model
    state.TRAVERSE_GRID_K.set(min(8, D))
k = int(c1.number_input("Dimensions (top by KL)", 1, D, key=state.TRAVERSE_GRID_K.key))
ncols = c2.radio("Columns", [7, 9], index=1, horizontal=True, key="traverse_grid_cols")
values = np.linspace(sliders.LO, sliders.HI, ncols).astype(np.float32)
with _ui.guard("Could not decode the traversal grid") as g:
    tg = explore.traversal_grid(model, base.z, dims.order[:k], values)  # (k, ncols, C, H, W)
if not g.failed:
    st.caption(f"Each row sets one dim to the column's value (prior σ); every other dim stays at the base: {base.label}.")
    head = st.columns([1.3, ncols], vertical_alignment="bottom")
    head[0].caption("dim · KL")
    # Equal columns with no gap line up with the cells of each row's tiled image below.
    for col, v in zip(head[1].columns(ncols, gap=None), values):
        col.caption(f"{v:+.2f}".replace("+0.00", "0").replace("-0.00", "0"), text_alignment="center")
    for r, d in enumerate(dims.order[:k]):
        label_col, img_col = st.columns([1.3, ncols], vertical_alignment="center")
        label_col.markdown(f"**z{d}**  \n:small[KL {dims.kl[d]:.2f}{'' if dims.active[d] else ' · collapsed'}]")
        img_col.image(_ui.grid(tg[r : r + 1], target_px=96), width="stretch")


# --- interpolation -------------------------------------------------------------------------
st.divider()
st.subheader("Interpolate between two test images")


def random_pair() -> None:
    a, b = np.random.default_rng(1000 + state.bump(state.TRAVERSE_PAIR_SEED)).choice(n_test, size=2, replace=n_test < 2)
    state.TRAVERSE_A.set(int(a))
    state.TRAVERSE_B.set(int(b))


# Defaults, and indices kept in range when the run (and so the test set) changes.
for slot, default in ((state.TRAVERSE_A, 0), (state.TRAVERSE_B, int(_ui.spread(n_test, 2)[-1]))):
    if slot.get() not in range(n_test):
        slot.set(default)
ca, cb, cs, cr = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
ia = int(ca.number_input("Image A (test index)", 0, n_test - 1, key=state.TRAVERSE_A.key))
ib = int(cb.number_input("Image B (test index)", 0, n_test - 1, key=state.TRAVERSE_B.key))
steps = cs.slider("Steps", 3, 16, 8, key="traverse_steps")
cr.button("Random pair", on_click=random_pair, key="traverse_pair")

xa, xb = data.x_test[ia], data.x_test[ib]
ends, strips = st.columns([1, 5])
ends.image(_ui.picture(xa.numpy(), 72), caption=f"A: {label_of(ia)}", width=72)  # two calls: A above B at any width
ends.image(_ui.picture(xb.numpy(), 72), caption=f"B: {label_of(ib)}", width=72)
for method, text in (("linear", "Linear: a straight line between the two posterior means."),
                     ("spherical", "Spherical (slerp): keeps the code's length roughly constant, "
                                   "so the path stays where the prior has its mass.")):
    with strips, _ui.guard(f"Could not interpolate ({method})"):
        strip = explore.interpolation_strip(model, xa, xb, steps=steps, method=method)  # (S, C, H, W)
        st.markdown(f"**{method.capitalize()}**")
        st.image(_ui.grid(strip, ncols=steps, target_px=72), width="stretch")
        st.caption(text + (" With one latent dim, slerp falls back to linear." if D == 1 and method == "spherical" else ""))
