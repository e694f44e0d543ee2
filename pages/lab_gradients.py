"""Lab: score-function vs. reparameterisation gradients, measured on the selected run.

All the math is in vae_core.lab_gradients; this page picks settings, runs it and draws.
"""
import dataclasses
import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages import _ui
from vae_core.labs import gradients as lg

COLORS = {"score": "#d62728", "baseline": "#ff7f0e", "reparam": "#1f77b4"}
BASELINES = {"leave-one-out mean of f": "loo", "f at the posterior mean": "mean"}

st.title("Gradient estimators")
st.caption("The study notes ask: *is the reparameterization trick for reducing variance, or to make the "
           "equation differentiable?* This lab estimates the encoder's gradient ∇φ E_q(z|x)[log p(x|z)] "
           "three ways on your model and measures how noisy each one is.")


# --- the model part -------------------------------------------------------------------------
def model_lab(name: str, snap) -> None:
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
    base_label = c5.radio("Baseline b", list(BASELINES), help="What the control variate subtracts from f(z).")
    ls = tuple(4**i for i in range(int(round(math.log(l_max, 4))) + 1))
    settings = (n_img, ls, repeats, ref, BASELINES[base_label])
    key = (name, snap.step, settings)

    start = st.button("Run the gradient lab", type="primary", help="Takes a few seconds on a CPU for the default settings.")
    x = data.x_test[_ui.spread(len(data.x_test), n_img)]
    result = _ui.result_on_request(
        "gradients", key, start,
        lambda progress: lg.gradient_study(snap.model, x, ls=ls, repeats=repeats, max_groups=max(8, repeats),
                                           reference_samples=ref, baseline=BASELINES[base_label], progress=progress),
        "Press **Run the gradient lab** to measure the three estimators on this run's current weights.")
    if result is None:
        return
    show_model_result(result)


def _variance_figure(r: lg.GradientStudy) -> go.Figure:
    fig = go.Figure()
    for e in lg.ESTIMATORS:
        fig.add_scatter(x=r.ls, y=r.total_variance[e], name=lg.LABELS[e], mode="lines+markers",
                        line=dict(color=COLORS[e]))
    fig.update_xaxes(type="log", title_text="L, draws per image")
    fig.update_yaxes(type="log", title_text="total variance of one estimate", exponentformat="power")
    fig.update_layout(title="Variance vs. L (sum over all encoder parameters)", height=380,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def _distance_figure(r: lg.GradientStudy) -> go.Figure:
    fig = go.Figure()
    for e in lg.ESTIMATORS:
        fig.add_scatter(x=r.ls, y=np.array(r.distance[e]) / r.reference_norm, name=lg.LABELS[e],
                        mode="lines+markers", line=dict(color=COLORS[e]))
        fig.add_scatter(x=r.ls, y=np.array(r.expected_distance[e]) / r.reference_norm, mode="lines",
                        line=dict(color=COLORS[e], dash="dot"), name="noise alone", showlegend=e == "score")
    fig.update_xaxes(type="log", title_text="L, draws per image")
    fig.update_yaxes(type="log", title_text="‖average − reference‖ / ‖reference‖", dtick=1)
    fig.update_layout(title="How far each estimator's average lands from the reference", height=380,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:,.0f}" if v >= 100 else f"{v:.2g}"


def show_model_result(r: lg.GradientStudy) -> None:
    i0 = 0  # the smallest L measured
    ratio = r.total_variance["score"][i0] / r.total_variance["reparam"][i0]
    j = next((i for i, v in enumerate(r.total_variance["baseline"]) if math.isfinite(v)), None)
    left, right = st.columns([3, 2])
    left.plotly_chart(_variance_figure(r), width="stretch", key="grad-variance")
    with right:
        st.markdown(
            f"**What you see.** At L = {r.ls[i0]}, one score-function gradient has **{ratio:,.0f}×** the "
            f"variance of a reparameterised one (a {math.log10(ratio):.1f}-order-of-magnitude gap). Every line "
            "falls like 1/L, so the score function would need about that many times more draws to be as precise.")
        if j is not None:
            cut = r.total_variance["score"][j] / r.total_variance["baseline"][j]
            left_over = r.total_variance["baseline"][j] / r.total_variance["reparam"][j]
            st.markdown(f"The baseline cuts the score function's variance **{cut:,.0f}×** at L = {r.ls[j]}, "
                        f"yet it stays **{left_over:,.0f}×** above reparameterisation.")
        st.markdown(
            "**Why.** The reparameterisation estimator uses ∇z log p(x|z): for each draw it is told which way "
            "to move z to explain the image better. The score function only uses the *value* f(z) = log p(x|z), "
            "a large number (about the image's negative reconstruction loss) multiplied by a random direction "
            "∇φ log q(z|x); the direction that matters only emerges after averaging many draws. A baseline "
            "subtracts most of that large value, but it cannot supply the missing slope. So the trick does both: "
            "it makes the sampling step differentiable, *and* that is what buys the lower variance.")
        st.caption(f"{r.n_images} test images · φ = all {r.n_params:,} encoder parameters · variance = sum over "
                   f"parameters of each one's variance across {min(r.groups)}–{max(r.groups)} independent estimates "
                   f"· computed in {r.seconds:.1f} s")

    left, right = st.columns([3, 2])
    left.plotly_chart(_distance_figure(r), width="stretch", key="grad-distance")
    with right:
        rel = {e: r.rel_error["score" if e == "score" else e][i0] for e in ("score", "reparam")}
        st.markdown(
            "**All three are unbiased.** Each estimator's average over its independent estimates is compared "
            f"with a reparameterised reference from {r.reference_samples:,} draws per image. The solid lines sit "
            "on the dotted ones, the distance that noise alone would leave (its own spread plus the reference's): "
            "the estimators aim at the same gradient and differ only in scatter.")
        st.markdown(
            f"What one optimiser step sees: at L = {r.ls[i0]} a single score-function estimate is off by "
            f"**{rel['score']:.0f}×** the gradient's own length, a reparameterised one by **{rel['reparam']:.2f}×**.")
        short = {"score": "score function", "baseline": "+ baseline", "reparam": "reparam."}
        rows = [{"L": L, **{short[e]: _fmt(r.rel_error[e][i]) for e in lg.ESTIMATORS}} for i, L in enumerate(r.ls)]
        st.caption("Error of one estimate, relative to ‖reference‖")
        st.dataframe(rows, hide_index=True, width="stretch")

    st.subheader("SGVB estimators A and B")
    a, b = r.elbo["A"], r.elbo["B"]
    c1, c2, c3 = st.columns([1, 1, 3])
    c1.metric("A · Monte Carlo KL", f"{a['mean_variance']:.3g}",
              help="Estimator A, Kingma & Welling eq. 6: variance of the one-draw ELBO estimate per image, nats²")
    c2.metric("B · analytic KL", f"{b['mean_variance']:.3g}",
              help="Estimator B, Kingma & Welling eq. 7: variance of the one-draw ELBO estimate per image, nats²")
    quieter = "B" if b["mean_variance"] < a["mean_variance"] else "A"
    c3.markdown(
        f"Variance (nats²) of a one-draw ELBO estimate per image, mean over the batch; both average "
        f"{a['mean_elbo']:.1f} vs {b['mean_elbo']:.1f} nats, the same ELBO. B replaces the sampled "
        "log q(z|x) − log p(z) by its exact expectation, the KL, which removes that term's noise. "
        + ("Here B is the quieter one, as Kingma & Welling expect." if quieter == "B" else
           "Here A is the quieter one: on a trained model the noise of log q(z|x) − log p(z) partly cancels the noise "
           "of log p(x|z) (if q were the exact posterior, log p(x,z) − log q(z|x) = log p(x) for every z, and A would "
           "have no variance at all), while B keeps all of log p(x|z)'s noise."))


# --- the toy --------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner="Sampling the toy…")
def _toy_fields(mu: float, sigma: float, c: float, baseline: str) -> dict:
    # Cached as a plain dict: a pickled dataclass would not survive vae_core being reloaded.
    t = lg.toy_study(mu=mu, sigma=sigma, c=c, ls=(1, 4, 16, 64, 256), repeats=1000, baseline=baseline, seed=0)
    return dataclasses.asdict(t)


def _toy(mu: float, sigma: float, c: float, baseline: str) -> lg.ToyStudy:
    return lg.ToyStudy(**_toy_fields(mu, sigma, c, baseline))


def toy_lab() -> None:
    st.divider()
    st.subheader("A 1-D toy with a known answer")
    c1, c2, c3, c4 = st.columns(4)
    mu = c1.slider("μ", -3.0, 3.0, 1.5, 0.25)
    sigma = c2.slider("σ", 0.1, 2.0, 0.5, 0.1)
    c = c3.slider("c", -3.0, 3.0, 0.0, 0.25)
    base = BASELINES[c4.radio("Baseline", list(BASELINES), key="toy-baseline")]
    t = _toy(mu, sigma, c, base)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("∂/∂μ: mean ± 95% CI", "∂/∂log σ: mean ± 95% CI",
                                                        "variance of one estimate"))
    for k, e in enumerate(lg.ESTIMATORS):
        mean, se = np.array(t.mean[e]), np.array(t.se[e])
        xs = np.array(t.ls) * (1.12 ** (k - 1))  # nudge sideways so the error bars do not overlap
        for col in (0, 1):
            fig.add_scatter(x=xs, y=mean[:, col], error_y=dict(type="data", array=1.96 * se[:, col]), mode="markers",
                            marker=dict(color=COLORS[e]), name=lg.LABELS[e], showlegend=col == 0, row=1, col=col + 1)
        fig.add_scatter(x=t.ls, y=np.array(t.variance[e]).sum(1), mode="lines+markers", line=dict(color=COLORS[e]),
                        name=lg.LABELS[e], showlegend=False, row=1, col=3)
    for col, exact in ((1, t.exact[0]), (2, t.exact[1])):
        fig.add_scatter(x=[t.ls[0] / 1.5, t.ls[-1] * 1.5], y=[exact, exact], mode="lines", name="exact gradient",
                        line=dict(color="black", dash="dash"), showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(type="log", title_text="L")
    fig.update_yaxes(type="log", row=1, col=3, exponentformat="power")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, width="stretch", key="toy")
    ratio = np.array(t.variance["score"]).sum(1)[0] / np.array(t.variance["reparam"]).sum(1)[0]
    st.markdown(
        f"q(z) = N(μ, σ²) and f(z) = (z − c)², so E_q f = (μ − c)² + σ² and the exact gradient is "
        f"∂/∂μ = 2(μ − c) = **{t.exact[0]:.3g}**, ∂/∂log σ = 2σ² = **{t.exact[1]:.3g}** (dashed lines). "
        f"Every estimator's average over {t.groups[0]:,} independent estimates covers the exact value within its "
        "95% interval at every L: none is biased (the leave-one-out baseline needs L ≥ 2). They differ only in spread: at L = 1 the score "
        f"function's variance is **{ratio:.0f}×** the reparameterisation's. Move μ away from c and the score function "
        "gets worse, because f(z) grows and it multiplies its random direction by f's whole value; a baseline "
        "removes the part of f that every draw shares.")


snap = _ui.require_snapshot("The gradient-estimator lab")
if snap is not None:
    run = _ui.selected_run()
    _ui.snapshot_caption(run, snap)
    model_lab(run, snap)
toy_lab()
