"""Plotly figures for the exact-posterior section of the marginal-likelihood lab: pure functions
from a ``vae_core.labs.exact.ExactPosterior`` (or a code's μ, σ) to a figure, no ``st.`` calls,
so each is unit-tested on a hand-made posterior. Also ``posterior_shape``, the numbers the
section's words are computed from (modes, skew, how far q's mean and widths are from the
posterior's), read off the same grid the figure draws.

Colours follow the importance-sampling figure: the exact answer is green, q(z|x) (the encoder)
blue, the prior red and faint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vae_core.labs.exact import ExactPosterior

EXACT_COLOR, Q_COLOR, PRIOR_COLOR = "#2ca02c", "#1f77b4", "rgba(214,39,40,0.45)"
EXACT_FILL = "rgba(44,160,44,0.25)"
HEATMAP_SCALE = [[0.0, "#ffffff"], [0.15, "#e5f5e0"], [0.5, "#74c476"], [1.0, "#00441b"]]
MARGIN = dict(l=10, r=10, t=40, b=10)
MAX_SIDE = {False: 160, True: 64}  # heatmap cells per axis drawn (large, small): a 1024² grid is 8 MB of JSON
MAX_POINTS = 2000  # points of a 1-D curve drawn
MODE_FLOOR = 0.01  # a local maximum counts as a mode when its density is at least this share of the peak's
VALLEY = 0.8  # ... and the density dips below this share of its height on the way to every higher mode
VIEW_FLOOR = 1e-3  # the view covers the cells with at least this share of the peak density, and q's 2.2σ box
Q_LEVELS = (1.0, 2.0)  # q(z|x)'s ellipses, in σ
PRIOR_LEVELS = (1.0, 2.0, 3.0)  # the prior's circles


# --- numbers read off the grid -------------------------------------------------------------------
@dataclass(frozen=True)
class PosteriorShape:
    """What a Gaussian q can and cannot follow in the exact posterior.

    modes: local maxima of p(z|x) on the grid with at least MODE_FLOOR of the peak density and a
    valley (below VALLEY of their height) between them and every higher mode, so a flat top with a
    ripple is one mode; mode_heights: their densities relative to the peak (largest first); sd: the posterior's
    standard deviation per axis; correlation: its correlation (0 in 1-D); skewness per axis (of
    the marginal); mean_offset: (μ_q − E[z|x]) / sd per axis; mahalanobis: that offset measured
    with the posterior covariance; width_ratio: σ_q / sd per axis.
    """

    modes: int
    mode_heights: np.ndarray
    sd: np.ndarray
    correlation: float
    skewness: np.ndarray
    mean_offset: np.ndarray
    mahalanobis: float
    width_ratio: np.ndarray


def _local_maxima(p: np.ndarray) -> np.ndarray:
    """Boolean mask of cells strictly above every neighbour (8 in 2-D, 2 in 1-D)."""
    padded = np.pad(p, 1, constant_values=-np.inf)
    core = tuple(slice(1, -1) for _ in p.shape)
    mask = np.ones(p.shape, bool)
    for shift in np.ndindex(*(3,) * p.ndim):
        if all(s == 1 for s in shift):
            continue
        window = tuple(slice(s, s + n) for s, n in zip(shift, p.shape))
        mask &= padded[core] > padded[window]
    return mask


def _modes(p: np.ndarray) -> np.ndarray:
    """Heights of the separate modes of a gridded density p (peak 1), largest first: local maxima
    of at least MODE_FLOOR, each kept only when the straight path to every higher kept mode dips
    below VALLEY of its height."""
    cells = np.argwhere(_local_maxima(p) & (p >= MODE_FLOOR))
    cells = cells[np.argsort(-p[tuple(cells.T)])]
    kept: list[np.ndarray] = []
    for c in cells:
        h = p[tuple(c)]
        steps = int(np.abs(c - kept[0]).max()) + 1 if kept else 0
        t = np.linspace(0.0, 1.0, max(steps, 2))[:, None]
        if all(p[tuple(np.round(c + t * (k - c)).astype(int).T)].min() < VALLEY * h for k in kept):
            kept.append(c)
    return np.array([p[tuple(c)] for c in kept]) if kept else np.array([1.0])


def posterior_shape(ep: ExactPosterior) -> PosteriorShape:
    """``PosteriorShape`` of one exact posterior, from its grid and moments."""
    p = np.exp(ep.log_posterior - ep.log_posterior.max())
    heights = _modes(p)
    cov = np.atleast_2d(ep.posterior_cov)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    corr = float(cov[0, 1] / (sd[0] * sd[1])) if len(sd) == 2 else 0.0
    skew = []
    for axis, z in enumerate(ep.axes):
        marginal = p if p.ndim == 1 else p.sum(axis=1 - axis)
        w = marginal / marginal.sum()
        m = (w * z).sum()
        s = math.sqrt(max((w * (z - m) ** 2).sum(), 1e-300))
        skew.append(float((w * (z - m) ** 3).sum() / s**3))
    delta = np.asarray(ep.q_mu, float) - np.asarray(ep.posterior_mean, float)
    try:
        maha = float(math.sqrt(max(delta @ np.linalg.solve(cov, delta), 0.0)))
    except np.linalg.LinAlgError:
        maha = float("inf")
    return PosteriorShape(len(heights), heights, sd, corr, np.array(skew), delta / sd, maha,
                          np.asarray(ep.q_sigma, float) / sd)


# --- display helpers ---------------------------------------------------------------------------------
def _coarsen(axes: list[np.ndarray], density: np.ndarray, max_side: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Average k-cell blocks (k the smallest factor that brings each side to at most max_side),
    keeping each block's mean position and mean density: what the eye sees of a finer grid."""
    n = len(axes[0])
    k = math.ceil(n / max_side)
    if k <= 1:
        return axes, density
    m = n // k  # a remainder of fewer than k edge cells (negligible mass by construction) is dropped
    new_axes = [a[: m * k].reshape(m, k).mean(1) for a in axes]
    d = density[(slice(0, m * k),) * density.ndim]
    d = d.reshape(m, k) if d.ndim == 1 else d.reshape(m, k, m, k)
    return new_axes, d.mean(axis=(1,) if d.ndim == 2 else (1, 3))


def view_range(ep: ExactPosterior, axis: int) -> tuple[float, float]:
    """The part of an axis worth looking at: where p(z|x) has at least VIEW_FLOOR of its peak,
    joined with q's ±2.2σ (so both of its ellipses show), padded by 5% and kept on the grid."""
    z = ep.axes[axis]
    p = np.exp(ep.log_posterior - ep.log_posterior.max())
    along = p if p.ndim == 1 else p.max(axis=1 - axis)
    seen = z[along >= VIEW_FLOOR]
    lo = min(seen.min(), ep.q_mu[axis] - 2.2 * ep.q_sigma[axis])
    hi = max(seen.max(), ep.q_mu[axis] + 2.2 * ep.q_sigma[axis])
    pad = 0.05 * (hi - lo) or 0.5
    step = (z[1] - z[0]) / 2 if len(z) > 1 else 0.0
    return float(max(lo - pad, z[0] - step)), float(min(hi + pad, z[-1] + step))


def ellipse(mu: np.ndarray, sigma: np.ndarray, k: float, n: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned k-σ ellipse of N(mu, diag sigma²): its outline (x, y), closed."""
    t = np.linspace(0.0, 2.0 * np.pi, n)
    return mu[0] + k * sigma[0] * np.cos(t), mu[1] + k * sigma[1] * np.sin(t)


def normal_pdf(z: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((z - mu) / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))


# --- the posterior ------------------------------------------------------------------------------------
def posterior_figure(ep: ExactPosterior, small: bool = False, title: str | None = None) -> go.Figure:
    """The exact posterior beside q(z|x) and the prior: a heatmap in 2-D, curves in 1-D."""
    return (posterior_heatmap if len(ep.axes) == 2 else posterior_curves)(ep, small=small, title=title)


def posterior_heatmap(ep: ExactPosterior, small: bool = False, title: str | None = None) -> go.Figure:
    """p(z|x) as a heatmap on its grid (z0 across, z1 up), q(z|x)'s 1σ and 2σ ellipses over it,
    the prior N(0, I)'s 1, 2, 3σ circles faint, and both means marked."""
    axes, density = _coarsen(ep.axes, np.exp(ep.log_posterior), MAX_SIDE[small])
    fig = go.Figure()
    fig.add_heatmap(x=axes[0], y=axes[1], z=density.T, colorscale=HEATMAP_SCALE, name="p(z|x)", zsmooth="best",
                    showscale=not small, colorbar=dict(title="p(z|x)", thickness=12),
                    hovertemplate="z = (%{x:.2f}, %{y:.2f})<br>p(z|x) = %{z:.3g}<extra></extra>")
    for j, r in enumerate(PRIOR_LEVELS):
        x, y = ellipse(np.zeros(2), np.ones(2), r)
        fig.add_scatter(x=x, y=y, mode="lines", line=dict(color=PRIOR_COLOR, width=1, dash="dot"),
                        name="prior N(0, I): 1, 2, 3σ", legendgroup="prior", showlegend=j == 0, hoverinfo="skip")
    for k in Q_LEVELS:
        x, y = ellipse(ep.q_mu, ep.q_sigma, k)
        fig.add_scatter(x=x, y=y, mode="lines", name=f"q(z|x) {k:g}σ", hoverinfo="skip",
                        line=dict(color=Q_COLOR, width=1.5 if small else 2.5, dash="solid" if k == 1 else "dash"))
    if not small:
        fig.add_scatter(x=[ep.posterior_mean[0]], y=[ep.posterior_mean[1]], mode="markers", name="E[z|x] (exact)",
                        marker=dict(symbol="x-thin", size=14, color="black", line=dict(width=2.5, color="black")))
        fig.add_scatter(x=[ep.q_mu[0]], y=[ep.q_mu[1]], mode="markers", name="μ of q(z|x)",
                        marker=dict(symbol="cross-thin", size=14, color=Q_COLOR, line=dict(width=2.5, color=Q_COLOR)))
    fig.update_xaxes(range=view_range(ep, 0), title_text=None if small else "z0", constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_yaxes(range=view_range(ep, 1), title_text=None if small else "z1", scaleanchor="x", scaleratio=1,
                     constrain="domain", showgrid=False, zeroline=False)
    return _finish(fig, ep, small, title)


def posterior_curves(ep: ExactPosterior, small: bool = False, title: str | None = None) -> go.Figure:
    """A 1-D latent: p(z|x) (filled) and q(z|x) as densities over z, the prior N(0, 1) faint."""
    z, p = _coarsen(ep.axes, np.exp(ep.log_posterior), MAX_POINTS)
    z = z[0]
    mu, sigma = float(ep.q_mu[0]), float(ep.q_sigma[0])
    fine = np.linspace(z[0], z[-1], 400)  # the two closed forms, drawn smooth whatever the grid
    fig = go.Figure()
    fig.add_scatter(x=fine, y=normal_pdf(fine, 0.0, 1.0), mode="lines", name="prior N(0, 1)", hoverinfo="skip",
                    line=dict(color=PRIOR_COLOR, width=1, dash="dot"))
    # p(z|x) is known at the grid's points only: a spline through them (the grid resolves it to 0.01 nats)
    fig.add_scatter(x=z, y=p, mode="lines", name="p(z|x) (exact)", fill="tozeroy", fillcolor=EXACT_FILL,
                    line=dict(color=EXACT_COLOR, width=2.5, shape="spline" if len(z) <= 200 else "linear"),
                    hovertemplate="z = %{x:.3f}<br>p(z|x) = %{y:.3g}<extra></extra>")
    fig.add_scatter(x=fine, y=normal_pdf(fine, mu, sigma), mode="lines", name="q(z|x)",
                    line=dict(color=Q_COLOR, width=2.5), hovertemplate="z = %{x:.3f}<br>q(z|x) = %{y:.3g}<extra></extra>")
    if not small:
        fig.add_vline(x=float(ep.posterior_mean[0]), line=dict(color="black", width=1.5, dash="dash"),
                      annotation_text="E[z|x]", annotation_position="top left")
        fig.add_vline(x=mu, line=dict(color=Q_COLOR, width=1.5, dash="dash"), annotation_text="μ of q",
                      annotation_position="top right")
    fig.update_xaxes(range=view_range(ep, 0), title_text=None if small else "z")
    fig.update_yaxes(title_text=None if small else "density", rangemode="tozero")
    return _finish(fig, ep, small, title)


def _finish(fig: go.Figure, ep: ExactPosterior, small: bool, title: str | None) -> go.Figure:
    n = ep.points_per_axis
    grid = f"{n:,} points" if len(ep.axes) == 1 else f"a {n} × {n} grid"
    if small:
        fig.update_layout(height=210, margin=dict(l=0, r=0, t=28 if title else 4, b=0), showlegend=False,
                          title=dict(text=title, font=dict(size=12)) if title else None)
        fig.update_xaxes(showticklabels=False, ticks="")
        fig.update_yaxes(showticklabels=False, ticks="")
        return fig
    fig.update_layout(height=490, margin=MARGIN, title=title or f"p(z|x) by quadrature ({grid}) and q(z|x)",
                      legend=dict(orientation="h", y=-0.16, yanchor="top"), plot_bgcolor="white")
    return fig


# --- the reparameterisation as a change of variables ----------------------------------------------
@dataclass(frozen=True)
class ReparamCells:
    """The grid the change-of-variables figure draws: ε cell edges (per axis, the same on every
    axis), their images z = μ + σ ε, the density p(ε) at each cell's centre and q(z) there, and
    the outlined cell (its index per axis)."""

    eps_edges: np.ndarray
    z_edges: list[np.ndarray]
    p_eps: np.ndarray  # (n,) or (n, n) indexed [axis 0, axis 1]
    q_z: np.ndarray
    jacobian: float  # ∏σ: each cell's area (length) is multiplied by it, each density divided by it
    marked: int  # the outlined cell's index on every axis


def reparam_cells(mu, sigma, half_width: float = 3.0, cells: int | None = None) -> ReparamCells:
    """Cells of a square ε grid over [−half_width, half_width]^D and their images under z = μ + σ ⊙ ε."""
    mu, sigma = np.atleast_1d(np.asarray(mu, float)), np.atleast_1d(np.asarray(sigma, float))
    d = len(mu)
    n = cells or (12 if d == 2 else 24)
    edges = np.linspace(-half_width, half_width, n + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    p1 = normal_pdf(centres, 0.0, 1.0)
    p = p1 if d == 1 else np.outer(p1, p1)
    jac = float(np.prod(sigma))
    return ReparamCells(edges, [m + s * edges for m, s in zip(mu, sigma)], p, p / jac, jac, n // 2)


def reparam_figure(mu, sigma, half_width: float = 3.0, cells: int | None = None) -> go.Figure:
    """Left: ε ~ N(0, I) on square cells shaded by p(ε). Right: the same cells mapped by
    z = μ + σ ⊙ ε, shaded by q(z) = p(ε) / ∏σ. One cell is outlined in both."""
    c = reparam_cells(mu, sigma, half_width, cells)
    d = len(c.z_edges)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("ε ~ N(0, I): cells shaded by p(ε)", "z = μ + σ ⊙ ε: the same cells, shaded by q(z)"))
    k = c.marked
    if d == 2:
        e = c.eps_edges
        fig.add_heatmap(x=e, y=e, z=c.p_eps.T, colorscale="Blues", xgap=1, ygap=1, name="p(ε)", row=1, col=1,
                        colorbar=dict(title="p(ε)", x=0.43, thickness=10, len=0.9),
                        hovertemplate="ε cell at (%{x:.2f}, %{y:.2f})<br>p(ε) = %{z:.3g}<extra></extra>")
        fig.add_heatmap(x=c.z_edges[0], y=c.z_edges[1], z=c.q_z.T, colorscale="Blues", xgap=1, ygap=1, name="q(z)",
                        row=1, col=2, colorbar=dict(title="q(z)", x=1.0, thickness=10, len=0.9),
                        hovertemplate="z cell at (%{x:.2f}, %{y:.2f})<br>q(z) = %{z:.3g}<extra></extra>")
        for col, (ex, ey) in ((1, (e, e)), (2, (c.z_edges[0], c.z_edges[1]))):
            fig.add_shape(type="rect", x0=ex[k], x1=ex[k + 1], y0=ey[k], y1=ey[k + 1], row=1, col=col,
                          line=dict(color="#d62728", width=2.5))
        fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1, title_text="ε1")
        fig.update_yaxes(scaleanchor="x2", scaleratio=1, row=1, col=2, title_text="z1")
        fig.update_xaxes(title_text="ε0", row=1, col=1)
        fig.update_xaxes(title_text="z0", row=1, col=2)
        fig.update_xaxes(constrain="domain", showgrid=False, zeroline=False)
        fig.update_yaxes(constrain="domain", showgrid=False, zeroline=False)
    else:
        e, z = c.eps_edges, c.z_edges[0]
        colours = ["#d62728" if i == k else "#6baed6" for i in range(len(c.p_eps))]
        fig.add_bar(x=(e[:-1] + e[1:]) / 2, y=c.p_eps, width=np.diff(e), marker=dict(color=colours, line=dict(width=1, color="white")),
                    name="p(ε)", row=1, col=1, hovertemplate="ε = %{x:.2f}<br>p(ε) = %{y:.3g}<extra></extra>")
        fig.add_bar(x=(z[:-1] + z[1:]) / 2, y=c.q_z, width=np.diff(z), marker=dict(color=colours, line=dict(width=1, color="white")),
                    name="q(z)", row=1, col=2, hovertemplate="z = %{x:.3f}<br>q(z) = %{y:.3g}<extra></extra>")
        fig.update_xaxes(title_text="ε", row=1, col=1)
        fig.update_xaxes(title_text="z", row=1, col=2)
        fig.update_yaxes(title_text="p(ε)", row=1, col=1, rangemode="tozero")
        fig.update_yaxes(title_text="q(z)", row=1, col=2, rangemode="tozero")
        fig.update_layout(bargap=0)
    fig.update_layout(height=400, margin=dict(MARGIN, t=50), showlegend=False, plot_bgcolor="white")
    return fig
