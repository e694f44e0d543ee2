"""Sample: new images from the prior, z ~ N(0, T²I) decoded by the latest snapshot; on a topic
model, topic proportions drawn from its prior and their words (``_ui.text_explore``).

Session state (``_ui.state``): SAMPLE_LAST, the codes behind the grid on screen; the widgets
sample_seed, sample_temp, sample_grid, sample_place.
"""
import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import figures as figs
from pages._ui import state, text_explore
from vae_core import explore

MAX_POINTS = 1000  # test codes drawn under the samples
GRID_SIZES = {"3×3": 3, "4×4": 4, "6×6": 6, "8×8": 8, "10×10": 10}

text_explore.route(text_explore.sample_page)  # a topic model: its own page, then stop
st.title("Sample")
snap = _ui.require_snapshot("Sample")
if snap is None:
    st.stop()
name = _ui.selected_run()
_ui.say_health(snap)  # the decoder only: the test set is loaded when the samples are placed on it

st.caption("A VAE is a generative model: draw a code z from the prior N(0, I), run it through the decoder, and "
           "you get a new image that is in no dataset. **Temperature** T scales the draw, z ~ N(0, T²I): below 1 "
           "stays near the centre of the prior (typical, smoother images), above 1 reaches into its tails "
           "(stranger ones); at 0 every sample is the decoding of z = 0. The same seed always gives the same codes.")

# Initialised through session state (not value=): the Re-sample callback writes the key too.
state.SAMPLE_SEED.setdefault(0)
c_seed, c_btn, c_temp, c_grid = st.columns([1.2, 1, 2, 2], vertical_alignment="bottom")
seed = c_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key=state.SAMPLE_SEED.key)
c_btn.button("Re-sample", on_click=state.bump, args=(state.SAMPLE_SEED,), width="stretch",
             help="Next seed: a fresh set of codes.")
temperature = c_temp.slider("Temperature T", 0.0, 2.0, 1.0, 0.05, key="sample_temp")
side = GRID_SIZES[c_grid.select_slider("Grid", list(GRID_SIZES), value="6×6", key="sample_grid")]
place = st.checkbox("Place the samples on the latent scatter", key="sample_place",
                    help="Where the samples' codes fall among the test set's codes μ.")


@_ui.guarded("Could not draw the latent scatter")
def samples_on_scatter(run: str, s, z: np.ndarray) -> None:
    if (data := _ui.run_dataset(s)) is None:
        return
    ets = _ui.encoded_test_set(s, x_test=data.x_test)
    ids = _ui.spread(len(data.x_test), MAX_POINTS)
    labels = data.y_test[ids].numpy()
    view = figs.code_view(ets.codes.mu[ids], labels, ets.pca, z)
    fig = figs.codes_with_points(view, labels, list(data.class_names or []), name="samples", row_label="samples",
                                 marker=dict(symbol="x", size=9, color="black"), revision=run, height=460)
    st.plotly_chart(fig, width="stretch", key="sample_scatter")
    st.caption(f"{view.note} Coloured dots: test codes μ; black ×: the samples"
               + (", on the bottom row." if view.kind == "strip" else "."))


def live(run: str, seed: int, temperature: float, side: int, place: bool) -> None:
    s = _ui.live_snapshot(run)
    if s is None:
        return
    with _ui.guard("Could not sample from this snapshot") as g:
        z, images = explore.sample_prior(s.model, side * side, seed=seed, temperature=temperature)
    if g.failed:
        return
    state.SAMPLE_LAST.set(state.SampleDraw(run, s.step, seed, temperature, z.tolist()))
    left, right = st.columns(2) if place else (st.container(), None)
    # bigger cells for small grids; beside the scatter st.image shrinks it to the column anyway
    left.image(_ui.grid(images, ncols=side, target_px=96 if side <= 4 else 84 if side <= 6 else 56),
               output_format="PNG")  # lossless: JPEG would smear the crisp upscaled pixels
    left.caption(f"{side * side} decoder means of z ~ N(0, {temperature:g}²·I), seed {seed}.")
    if right is not None:
        with right:
            samples_on_scatter(run, s, z)


st.fragment(live, run_every=_ui.refresh_every(name))(name, int(seed), float(temperature), side, place)
