"""Lab: score-function vs. reparameterisation gradients, measured on the selected run.

The math is in vae_core.labs.gradients; the figures and texts in pages/_ui/lab_figures.py and
lab_text.py. This page picks settings, runs the study and lays the results out.
"""
import dataclasses
import math

import streamlit as st

from pages import _ui
from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from vae_core.labs import gradients as lg

BASELINES = {"leave-one-out mean of f": "loo", "f at the posterior mean": "mean"}

st.title("Gradient estimators")
st.caption("The study notes ask: *is the reparameterization trick for reducing variance, or to make the "
           "equation differentiable?* This lab estimates the encoder's gradient ∇φ E_q(z|x)[log p(x|z)] "
           "three ways on your model and measures how noisy each one is.")


# --- the model part -------------------------------------------------------------------------
def model_lab(snap) -> None:
    data = _ui.run_dataset(snap)
    if data is None:
        return
    c1, c2, c3, c4, c5 = st.columns(5)
    n_img = c1.select_slider("Test images in the batch", [4, 8, 16, 32, 64], value=32,
                             help="The gradient is that of the batch-mean objective. Fewer images run faster.")
    l_max = c2.select_slider("Largest L (draws per image)", [16, 64, 256, 1024], value=256)
    repeats = c3.select_slider("Estimates at the largest L", [2, 4, 8, 16], value=4,
                               help="Independent estimates whose spread gives the variance; smaller L get up to 8 (or this many).")
    ref = c4.select_slider("Reference draws", [512, 2048, 8192], value=512,
                           help="The 'true' gradient: a reparameterised estimate with this many draws per image.")
    baseline = BASELINES[c5.radio("Baseline b", list(BASELINES), help="What the control variate subtracts from f(z).")]
    ls = tuple(4**i for i in range(int(round(math.log(l_max, 4))) + 1))

    start = st.button("Run the gradient lab", type="primary", help="Takes a few seconds on a CPU for the default settings.")
    x = data.x_test[_ui.spread(len(data.x_test), n_img)]
    with _ui.guard("Could not run the gradient lab"):
        result = _ui.result_on_request(
            "gradients", (snap.path, snap.step, snap.mtime, n_img, ls, repeats, ref, baseline), start,
            lambda progress: lg.gradient_study(snap.model, x, ls=ls, repeats=repeats, max_groups=max(8, repeats),
                                               reference_samples=ref, baseline=baseline, progress=progress),
            "Press **Run the gradient lab** to measure the three estimators on this run's current weights.")
        if result is not None:
            show_model_result(result)


def show_model_result(r: lg.GradientStudy) -> None:
    left, right = st.columns([3, 2])
    left.plotly_chart(figs.gradient_variance(r), width="stretch", key="grad-variance")
    right.markdown(text.gradient_variance_text(r))
    right.markdown(text.GRADIENT_WHY)
    right.caption(text.gradient_caption(r))

    left, right = st.columns([3, 2])
    left.plotly_chart(figs.gradient_distance(r), width="stretch", key="grad-distance")
    right.markdown(text.gradient_bias_text(r))
    right.caption("Error of one estimate, relative to ‖reference‖")
    right.dataframe(text.gradient_error_rows(r), hide_index=True, width="stretch")

    st.subheader("SGVB estimators A and B")
    a, b = r.elbo["A"], r.elbo["B"]
    c1, c2, c3 = st.columns([1, 1, 3])
    c1.metric("A · Monte Carlo KL", f"{a['mean_variance']:.3g}",
              help="Estimator A, Kingma & Welling eq. 6: variance of the one-draw ELBO estimate per image, nats²")
    c2.metric("B · analytic KL", f"{b['mean_variance']:.3g}",
              help="Estimator B, Kingma & Welling eq. 7: variance of the one-draw ELBO estimate per image, nats²")
    c3.markdown(text.elbo_estimators_text(r))


# --- the toy --------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner="Sampling the toy…")
def _toy_fields(mu: float, sigma: float, c: float, baseline: str) -> dict:
    # Cached as a plain dict: a pickled dataclass would not survive vae_core being reloaded.
    t = lg.toy_study(mu=mu, sigma=sigma, c=c, ls=(1, 4, 16, 64, 256), repeats=1000, baseline=baseline, seed=0)
    return dataclasses.asdict(t)


@_ui.guarded("Could not draw the toy")
def toy_lab() -> None:
    st.divider()
    st.subheader("A 1-D toy with a known answer")
    c1, c2, c3, c4 = st.columns(4)
    mu = c1.slider("μ", -3.0, 3.0, 1.5, 0.25)
    sigma = c2.slider("σ", 0.1, 2.0, 0.5, 0.1)
    c = c3.slider("c", -3.0, 3.0, 0.0, 0.25)
    baseline = BASELINES[c4.radio("Baseline", list(BASELINES), key="toy-baseline")]
    t = lg.ToyStudy(**_toy_fields(mu, sigma, c, baseline))
    st.plotly_chart(figs.toy_gradients(t), width="stretch", key="toy")
    st.markdown(text.toy_text(t))


snap = _ui.require_snapshot("The gradient-estimator lab")
if snap is not None:
    _ui.snapshot_caption(_ui.selected_run(), snap)
    model_lab(snap)
toy_lab()
