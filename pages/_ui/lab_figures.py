"""Plotly figures for the labs: pure functions from a lab's result to a figure (no ``st.``
calls), so each can be unit-tested on a hand-made result.

Degenerate results (a decoder that ignores z, a single latent dimension, a sweep with one
run) still give a figure: zeros simply vanish from log axes and the pages say why in words.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vae_core.labs import beta as lb
from vae_core.labs import disentangle as dis
from vae_core.labs import gradients as lg
from vae_core.labs import marginal as lm

GRADIENT_COLORS = {"score": "#d62728", "baseline": "#ff7f0e", "reparam": "#1f77b4"}
PROPOSAL_COLORS = {"prior": "#d62728", "posterior": "#1f77b4"}
PROPOSAL_FILL = {"prior": "rgba(214,39,40,0.18)", "posterior": "rgba(31,119,180,0.18)"}
MARGIN = dict(l=10, r=10, t=40, b=10)

# A run of a sweep as the β lab draws it: its state in the sweep and what was measured on it.
SweepPoint = tuple[lb.SweepRunState, lb.RunPanel]


def _layout(fig: go.Figure, title: str | None, height: int, legend_y: float | None = -0.25, top: int = 40) -> go.Figure:
    """The labs' common layout: tight margins, the legend (if any) in a row under the plot."""
    fig.update_layout(height=height, margin=dict(MARGIN, t=top))
    if title:
        fig.update_layout(title=title)
    if legend_y is not None:
        fig.update_layout(legend=dict(orientation="h", y=legend_y))
    return fig


# --- gradient estimators ------------------------------------------------------------------
def gradient_variance(r: lg.GradientStudy) -> go.Figure:
    """Total variance of one estimate against L, one line per estimator, log-log."""
    fig = go.Figure()
    for e in lg.ESTIMATORS:
        fig.add_scatter(x=r.ls, y=r.total_variance[e], name=lg.LABELS[e], mode="lines+markers",
                        line=dict(color=GRADIENT_COLORS[e]))
    fig.update_xaxes(type="log", title_text="L, draws per image")
    fig.update_yaxes(type="log", title_text="total variance of one estimate", exponentformat="power")
    return _layout(fig, "Variance vs. L (sum over all encoder parameters)", 380)


def gradient_distance(r: lg.GradientStudy) -> go.Figure:
    """How far each estimator's average lands from the reference (solid) and what noise alone
    would leave (dotted); relative to the reference's length unless that length is zero."""
    scale = r.reference_norm if r.reference_norm > 0 else 1.0
    fig = go.Figure()
    for e in lg.ESTIMATORS:
        fig.add_scatter(x=r.ls, y=np.array(r.distance[e]) / scale, name=lg.LABELS[e],
                        mode="lines+markers", line=dict(color=GRADIENT_COLORS[e]))
        fig.add_scatter(x=r.ls, y=np.array(r.expected_distance[e]) / scale, mode="lines",
                        line=dict(color=GRADIENT_COLORS[e], dash="dot"), name="noise alone", showlegend=e == "score")
    fig.update_xaxes(type="log", title_text="L, draws per image")
    y_title = "‖average − reference‖ / ‖reference‖" if r.reference_norm > 0 else "‖average − reference‖ (reference = 0)"
    fig.update_yaxes(type="log", title_text=y_title, dtick=1)
    return _layout(fig, "How far each estimator's average lands from the reference", 380)


def toy_gradients(t: lg.ToyStudy) -> go.Figure:
    """The 1-D toy: both gradient components with 95% intervals and the exact value, and the variance."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("∂/∂μ: mean ± 95% CI", "∂/∂log σ: mean ± 95% CI",
                                                        "variance of one estimate"))
    for k, e in enumerate(lg.ESTIMATORS):
        mean, se = np.array(t.mean[e]), np.array(t.se[e])
        xs = np.array(t.ls) * (1.12 ** (k - 1))  # nudge sideways so the error bars do not overlap
        for col in (0, 1):
            fig.add_scatter(x=xs, y=mean[:, col], error_y=dict(type="data", array=1.96 * se[:, col]), mode="markers",
                            marker=dict(color=GRADIENT_COLORS[e]), name=lg.LABELS[e], showlegend=col == 0,
                            row=1, col=col + 1)
        fig.add_scatter(x=t.ls, y=np.array(t.variance[e]).sum(1), mode="lines+markers",
                        line=dict(color=GRADIENT_COLORS[e]), name=lg.LABELS[e], showlegend=False, row=1, col=3)
    for col, exact in ((1, t.exact[0]), (2, t.exact[1])):
        fig.add_scatter(x=[t.ls[0] / 1.5, t.ls[-1] * 1.5], y=[exact, exact], mode="lines", name="exact gradient",
                        line=dict(color="black", dash="dash"), showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(type="log", title_text="L")
    fig.update_yaxes(type="log", row=1, col=3, exponentformat="power")
    return _layout(fig, None, 360, legend_y=-0.3)


# --- marginal likelihood ------------------------------------------------------------------
def marginal_estimates(r: lm.MarginalStudy, zoom: bool = False) -> go.Figure:
    """log p(x) estimates against K per proposal (mean ± 1 s.d. band), the ELBO, the IWAE bound
    and, when the model knows it, the exact log p(x). Each band is drawn just before its line."""
    fig = go.Figure()
    ks = np.array(r.ks)
    for p in lm.PROPOSALS:
        est = r.estimates[p]
        mean, sd = est.mean(1), est.std(1, ddof=1) if r.repeats > 1 else np.zeros(len(ks))
        fig.add_scatter(x=np.concatenate([ks, ks[::-1]]), y=np.concatenate([mean + sd, (mean - sd)[::-1]]),
                        fill="toself", fillcolor=PROPOSAL_FILL[p], line=dict(width=0), hoverinfo="skip",
                        showlegend=False)
        fig.add_scatter(x=ks, y=mean, mode="lines", line=dict(color=PROPOSAL_COLORS[p], width=2), name=lm.LABELS[p])
    fig.add_hline(y=r.elbo, line=dict(color="gray", dash="dash"), annotation_text=f"ELBO {r.elbo:.1f}",
                  annotation_position="bottom right")
    fig.add_hline(y=r.iwae, line=dict(color="black", dash="dot"),
                  annotation_text=f"IWAE bound, K = {r.ks[-1]:,}: {r.iwae:.1f}", annotation_position="top left")
    if zoom:
        q = r.estimates["posterior"]
        lo = min(r.elbo, float((q.mean(1) - q.std(1)).min()))
        hi = max(r.iwae, float((q.mean(1) + q.std(1)).max()), r.exact if r.exact is not None else -np.inf)
        pad = 0.15 * (hi - lo) + 0.5
        fig.update_yaxes(range=[lo - pad, hi + pad])
    else:
        ys = np.concatenate([r.estimates[p].ravel() for p in lm.PROPOSALS] + [[r.elbo, r.iwae]])
        if np.ptp(ys) < 1.0:  # flat curves (a decoder that ignores z): two nats of view, not rounding noise
            fig.update_yaxes(range=[float(ys.mean()) - 1.0, float(ys.mean()) + 1.0])
    if r.exact is not None:
        fig.add_hline(y=r.exact, line=dict(color="green"), annotation_text="exact log p(x)")
    fig.update_xaxes(type="log", title_text="K, number of draws")
    fig.update_yaxes(title_text="estimate of log p(x), nats")
    return _layout(fig, f"log (1/K) Σ w_k: mean ± 1 s.d. over {r.repeats} repeats", 420, legend_y=-0.2)


def marginal_ess(r: lm.MarginalStudy) -> go.Figure:
    """Effective sample size against K per proposal, with ESS = K for reference."""
    fig = go.Figure()
    fig.add_scatter(x=r.ks, y=r.ks, mode="lines", line=dict(color="gray", dash="dot"), name="every draw counts (ESS = K)")
    for p in lm.PROPOSALS:
        fig.add_scatter(x=r.ks, y=r.ess[p].mean(1), mode="lines", line=dict(color=PROPOSAL_COLORS[p]), name=lm.LABELS[p])
    fig.update_xaxes(type="log", title_text="K")
    fig.update_yaxes(type="log", title_text="ESS = (Σw)² / Σw²")
    return _layout(fig, "Effective sample size", 330, legend_y=-0.3)


def marginal_weights(r: lm.MarginalStudy) -> go.Figure:
    """Overlaid histograms of one repeat's log weights per proposal."""
    fig = go.Figure()
    for p in lm.PROPOSALS:
        fig.add_histogram(x=r.log_w_sample[p], nbinsx=80, marker_color=PROPOSAL_COLORS[p], opacity=0.6, name=lm.LABELS[p])
    fig.update_xaxes(title_text="log w = log p(x, z) − log r(z), nats")
    fig.update_yaxes(title_text="draws")
    fig.update_layout(barmode="overlay")
    return _layout(fig, "Log weights of one repeat", 330, legend_y=-0.3)


# --- β and the decoder --------------------------------------------------------------------
def point_text(s: lb.SweepRunState) -> str:
    """A β point's label, saying when the run is not finished yet."""
    state = "" if s.state == "finished" else f" ({'training' if s.active else s.state})"
    return f"β={s.value:g}{state}"


def rate_distortion(points: Sequence[SweepPoint], title: str) -> go.Figure:
    """One point per run, joined in order of β; with a β = 1 run, its line of equal ELBO (R + D = −ELBO)."""
    got = sorted(points, key=lambda sp: sp[0].value if sp[0].value is not None else np.inf)
    fig = go.Figure()
    fig.add_scatter(x=[p.rd.rate for _, p in got], y=[p.rd.distortion for _, p in got], mode="lines+markers+text",
                    text=[point_text(s) for s, _ in got], textposition="top right", marker=dict(size=11), name="runs")
    one = next((p for s, p in got if s.value == 1.0), None)
    if one is not None:
        r = np.array([0.0, max(max(p.rd.rate for _, p in got) * 1.1, 1.0)])  # a run of rate 0 still gets a line
        fig.add_scatter(x=r, y=-one.rd.elbo - r, mode="lines", line=dict(dash="dot", color="grey"),
                        name="same ELBO as β=1 (R + D = const)")
    fig.update_layout(xaxis_title="rate: KL(q(z|x) ‖ p(z)), nats", yaxis_title="distortion: −E log p(x|z), nats")
    return _layout(fig, title, 380, top=30)


def decoder_tag(s: lb.SweepRunState, p: lb.RunPanel) -> str:
    """How the σ lab names a decoder: Bernoulli, its learned σ, or its fixed σ."""
    if p.likelihood == "bernoulli":
        return "Bernoulli"
    return f"learned σ={p.sigma:.3f}" if p.likelihood == "gaussian_learned" else f"σ={s.value:g}"


def decoder_order(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """Fixed σ from small to large, then the learned σ, then Bernoulli."""
    order = {"bernoulli": 2, "gaussian_learned": 1}
    return sorted(points, key=lambda sp: (order.get(sp[1].likelihood, 0), sp[0].value or 0))


def decoder_rate_error(points: Sequence[SweepPoint]) -> go.Figure:
    """Rate against squared error per decoder (nats of different σ are not comparable)."""
    got = decoder_order(points)
    fig = go.Figure()
    fig.add_scatter(x=[p.rd.rate for _, p in got], y=[p.sq_error for _, p in got], mode="markers+text",
                    text=[decoder_tag(s, p) for s, p in got], textposition="top center", marker=dict(size=11))
    top = max(max(p.rd.rate for _, p in got) * 1.15, 1.0)
    fig.update_xaxes(range=[-0.05 * top, top])  # room for the labels, and for a point at rate 0
    fig.update_layout(xaxis_title="rate: KL(q‖p), nats", yaxis_title="squared error ‖x − f(z)‖² per image")
    return _layout(fig, "What each decoder keeps", 360, legend_y=None, top=30)


# --- disentanglement ----------------------------------------------------------------------
def _factor_heatmap(matrix: np.ndarray, dims: list[str], factors: Sequence[str], **style) -> go.Figure:
    """A (factors, dims) matrix with its values written in the cells, first factor on top."""
    fig = go.Figure(go.Heatmap(z=matrix, x=dims, y=list(factors), text=[[f"{v:.2f}" for v in row] for row in matrix],
                               texttemplate="%{text}", **style))
    fig.update_layout(yaxis=dict(autorange="reversed"))
    return fig


def mutual_information(r: dis.FactorReport) -> go.Figure:
    """Normalised MI I(z_d; v_k) / H(v_k): factors down, latent dims (with their KL) across."""
    mi = r.mig.normalized_mi.T  # (K, D)
    dims = [f"z{d}<br>{r.kl_per_dim[d]:.1f} nats" for d in range(mi.shape[1])]
    fig = _factor_heatmap(mi, dims, r.factor_names, zmin=0, zmax=1, colorscale="Blues", colorbar=dict(title="I/H"))
    return _layout(fig, "Normalised mutual information I(z_d; v_k) / H(v_k)", 330, legend_y=None)


def dci_importance(r: dis.FactorReport) -> go.Figure:
    """The DCI forests' feature importances: factors down, latent dims across."""
    imp = r.dci.importance.T  # (K, D)
    fig = _factor_heatmap(imp, [f"z{d}" for d in range(imp.shape[1])], r.factor_names, colorscale="Greens", zmin=0)
    return _layout(fig, None, 300, legend_y=None, top=10)
