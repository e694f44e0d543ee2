"""Sample: new images from the prior, z ~ N(0, T²I) decoded by the latest snapshot.

Session state this page owns (documented so tests can rely on it):
  sample_seed, sample_temp, sample_grid, sample_place   the widgets
  sample_last  {"run", "step", "seed", "temperature", "z"}: the codes behind the grid on screen
"""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages import _ui
from vae_core import explore

MAX_POINTS = 1000  # test codes drawn under the samples
GRID_SIZES = {"3×3": 3, "4×4": 4, "6×6": 6, "8×8": 8, "10×10": 10}

st.title("Sample")
snap = _ui.require_snapshot("Sample")
if snap is None:
    st.stop()
name = _ui.selected_run()

st.caption("A VAE is a generative model: draw a code z from the prior N(0, I), run it through the decoder, and "
           "you get a new image that is in no dataset. **Temperature** T scales the draw, z ~ N(0, T²I): below 1 "
           "stays near the centre of the prior (typical, smoother images), above 1 reaches into its tails "
           "(stranger ones); at 0 every sample is the decoding of z = 0. The same seed always gives the same codes.")


def _resample() -> None:
    st.session_state["sample_seed"] = int(st.session_state.get("sample_seed", 0)) + 1


# Initialise through session state (not value=): the Re-sample callback writes the key too.
st.session_state.setdefault("sample_seed", 0)
c_seed, c_btn, c_temp, c_grid = st.columns([1.2, 1, 2, 2], vertical_alignment="bottom")
seed = c_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="sample_seed")
c_btn.button("Re-sample", on_click=_resample, width="stretch", help="Next seed: a fresh set of codes.")
temperature = c_temp.slider("Temperature T", 0.0, 2.0, 1.0, 0.05, key="sample_temp")
side = GRID_SIZES[c_grid.select_slider("Grid", list(GRID_SIZES), value="6×6", key="sample_grid")]
place = st.checkbox("Place the samples on the latent scatter", key="sample_place",
                    help="Where the samples' codes fall among the test set's codes μ.")


@st.cache_data(max_entries=16, show_spinner=False)
def _test_codes(run: str, step: int, mtime: float, _model, _x) -> np.ndarray:
    """μ of the plotted test images, once per snapshot ((run, step, mtime) names the weights)."""
    return explore.encode(_model, _x).mu


def _samples_on_scatter(run: str, s, z: np.ndarray) -> None:
    data = _ui.run_dataset(s)
    if data is None:
        return
    ids = _ui.spread(len(data.x_test), MAX_POINTS)
    labels = data.y_test[ids].numpy()
    names = list(data.class_names or [])
    mu = _test_codes(run, s.step, s.mtime, s.model, data.x_test[ids])
    d = mu.shape[1]
    if d == 1:
        # Display only: x is the code, y one row per class with a fixed jitter; samples get row -1.
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(mu))
        xy = np.stack([mu[:, 0], np.maximum(labels, 0) + jitter], 1)
        zxy = np.stack([z[:, 0], np.full(len(z), -1.0)], 1)
        how = "The model has one latent dim: x is its value; test images sit one row per class, the samples on the bottom row."
    elif d == 2:
        xy, zxy = mu, z
        how = "The latent space is 2-D: codes plotted directly."
    else:
        axes = explore.pca_fit(mu)  # fitted on the test codes; the samples go on the same axes
        xy, zxy = axes.transform(mu), axes.transform(z)
        how = f"PCA of the {d}-dim codes (fitted on the test codes; the samples are projected onto the same axes)."
    fig = go.Figure()
    for k in np.unique(labels):
        m = labels == k
        fig.add_scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=names[k] if 0 <= k < len(names) else "test images",
                        marker=dict(size=5, opacity=0.5), hoverinfo="skip")
    fig.add_scatter(x=zxy[:, 0], y=zxy[:, 1], mode="markers", name="samples", marker=dict(symbol="x", size=9, color="black"),
                    hovertemplate="sample %{pointNumber}<extra></extra>")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=10, b=10), uirevision=run)
    if d > 1:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    elif names:
        fig.update_yaxes(tickvals=[-1, *range(len(names))], ticktext=["samples", *names])
    st.plotly_chart(fig, width="stretch", key="sample_scatter")
    st.caption(f"{how} Coloured dots: test codes μ; black ×: the samples.")


def live(run: str, seed: int, temperature: float, side: int, place: bool) -> None:
    _ui.rerun_when_run_ends(run)
    s = _ui.snapshot(run)
    if s is None:
        return
    _ui.snapshot_caption(run, s)
    try:
        z, images = explore.sample_prior(s.model, side * side, seed=seed, temperature=temperature)
    except Exception as e:
        st.error(f"Could not sample from this snapshot: {e}")
        return
    st.session_state["sample_last"] = {"run": run, "step": s.step, "seed": seed, "temperature": temperature,
                                       "z": z.tolist()}
    left, right = st.columns(2) if place else (st.container(), None)
    with left:
        # bigger cells for small grids; beside the scatter st.image shrinks it to the column anyway
        st.image(_ui.grid(images, ncols=side, target_px=96 if side <= 4 else 84 if side <= 6 else 56),
                 output_format="PNG")  # lossless: JPEG would smear the crisp upscaled pixels
        st.caption(f"{side * side} decoder means of z ~ N(0, {temperature:g}²·I), seed {seed}.")
    if right is not None:
        with right:
            try:
                _samples_on_scatter(run, s, z)
            except Exception as e:
                st.error(f"Could not draw the latent scatter: {e}")


st.fragment(live, run_every=_ui.refresh_every(name))(name, int(seed), float(temperature), side, place)
