"""Plotly figures for the explorer pages: pure functions from engine results (numpy arrays,
``vae_core.explore`` dataclasses) to figures, with no ``st.`` calls, so each is unit-tested on
hand-made inputs. Also the small pure helpers that decide where points go on a figure.

Degenerate inputs (every code the same, one latent dim, no labels) still give a figure; the
pages say in words what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from vae_core import explore

ACTIVE, INACTIVE = "#1f77b4", "#c7c7c7"  # KL bars of active and collapsed dims
MARGIN = dict(l=10, r=10, t=10, b=10)
STRIP_ROW = -1.0  # the strip view's row for points that are not test images


# --- names -----------------------------------------------------------------------------------
def class_text(y: int, class_names: Sequence[str]) -> str:
    """Readable class of a label: "digit 7", "Trouser", or "" when unlabelled."""
    if not 0 <= y < len(class_names):
        return ""
    c = class_names[y]
    return f"digit {c}" if c.isdigit() else c


def group_name(y: int, class_names: Sequence[str]) -> str:
    """A legend entry for label ``y``: the class name, the label number, or "test images"."""
    if 0 <= y < len(class_names):
        return class_names[y]
    return str(y) if y >= 0 else "test images"


def loss_label(objective: str, beta: float, samples: int) -> str:
    """What the training loss is, for the curve's legend: the objective the run minimises."""
    if objective == "iwae":
        # β plays no part in the importance-weighted bound (Burda et al. 2016)
        return f"loss (−IWAE bound, k = {samples})"
    return "loss (−ELBO)" if beta == 1 else f"loss (−β-ELBO, β = {beta:g})"


# --- Train ------------------------------------------------------------------------------------
def training_curves(steps: list[dict], epochs: list[dict], loss_name: str) -> go.Figure:
    """Loss terms per logged step (left); the test and validation ELBO per epoch (right), with
    the best snapshot (the best validation ELBO) marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss terms (nats per example)",
                                                        "ELBO per epoch (nats)"))
    s = [r["step"] for r in steps]
    fig.add_scatter(x=s, y=[r["loss"] for r in steps], name=loss_name, row=1, col=1)
    fig.add_scatter(x=s, y=[-r["log_likelihood"] for r in steps], name="reconstruction (−log p(x|z))", row=1, col=1)
    fig.add_scatter(x=s, y=[r["kl"] for r in steps], name="KL(q‖p)", row=1, col=1)
    if epochs:
        fig.add_scatter(x=[r["epoch"] for r in epochs], y=[r["test_elbo"] for r in epochs], name="test ELBO",
                        mode="lines+markers", row=1, col=2)
        val = [r for r in epochs if isinstance(r.get("val_elbo"), (int, float))]
        if val:
            fig.add_scatter(x=[r["epoch"] for r in val], y=[r["val_elbo"] for r in val], name="validation ELBO",
                            mode="lines+markers", row=1, col=2)
            best = max(val, key=lambda r: r["val_elbo"])
            fig.add_scatter(x=[best["epoch"]], y=[best["val_elbo"]], name="best snapshot", mode="markers",
                            marker=dict(symbol="star", size=14, color="gold", line=dict(width=1, color="black")),
                            hovertemplate="best snapshot: epoch %{x}<br>validation ELBO %{y:.2f}<extra></extra>",
                            row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=330, margin=dict(MARGIN, t=40), legend=dict(orientation="h", y=-0.25))
    return fig


# --- where points go ----------------------------------------------------------------------------
def strip_y(labels: np.ndarray) -> np.ndarray:
    """Display-only y for a 1-D latent: one row per class plus a fixed small jitter, so dots
    don't hide each other. Unlabelled examples (y = -1) share row 0."""
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(labels))
    return np.maximum(labels, 0) + jitter


@dataclass(frozen=True, eq=False)
class CodeView:
    """Test codes and some other codes (samples, an upload) placed on one pair of axes.

    xy: (N, 2) the test codes.  points: (M, 2) the other codes.  kind: "strip" (one latent dim:
    x is z0, one row per class, the other codes on row -1), "identity" (two dims, plotted
    directly) or "pca" (the first two principal axes of the test codes).
    """

    xy: np.ndarray
    points: np.ndarray
    kind: str
    axes: tuple[str, str]
    note: str


def code_view(mu: np.ndarray, labels: np.ndarray, pca: explore.PcaAxes, z: np.ndarray) -> CodeView:
    """Place test codes mu (N, D), labelled, and other codes z (M, D) on the same axes."""
    z = np.asarray(z, np.float32).reshape(-1, mu.shape[1])
    d = mu.shape[1]
    if d == 1:
        xy = np.stack([mu[:, 0], strip_y(labels)], 1)
        points = np.stack([z[:, 0], np.full(len(z), STRIP_ROW)], 1)
        return CodeView(xy, points, "strip", ("z0", "class"),
                        "The model has one latent dim: x is its value, and test images sit one row per class.")
    if d == 2:
        return CodeView(mu, z, "identity", ("z0", "z1"), "The latent space is 2-D: codes plotted directly.")
    ev = pca.explained_variance
    return CodeView(pca.transform(mu), pca.transform(z), "pca", (f"PC1 ({ev[0]:.0%} of variance)", f"PC2 ({ev[1]:.0%})"),
                    f"PCA of the {d}-dim codes (axes fitted on the test codes; the other points projected onto them).")


def position_in(proj: explore.Projection, z: np.ndarray, mu: np.ndarray, xy: np.ndarray) -> tuple[float, float]:
    """Where a new code z (D,) goes in a projection of codes mu (N, D) drawn at xy (N, 2)."""
    z = np.asarray(z, np.float32).reshape(-1)
    if len(z) != mu.shape[1]:
        raise ValueError(f"a {len(z)}-dim code does not fit a {mu.shape[1]}-dim model")
    if proj.method == "strip":
        return float(z[0]), STRIP_ROW
    if proj.method in ("identity", "dims"):
        return float(z[proj.dims[0]]), float(z[proj.dims[1]])
    if proj.method == "pca":
        return tuple(float(v) for v in explore.pca_fit(mu).transform(z)[0])
    return tuple(float(v) for v in explore.place_new_points_tsne(mu, xy, z)[0])


# --- Latent space -----------------------------------------------------------------------------
def latent_scatter(xy: np.ndarray, labels: np.ndarray, ids: np.ndarray, class_names: Sequence[str], *,
                   selected: Sequence[float] | None = None, star: tuple[Sequence[float], str] | None = None,
                   ellipses: Sequence[tuple[np.ndarray, np.ndarray]] = (), square: tuple[float, float] | None = None,
                   axes: tuple[str, str] | None = None, strip: bool = False, equal_axes: bool = False,
                   revision: str = "") -> go.Figure:
    """The test codes at xy (N, 2), one trace per class, each point carrying its global test
    index ``ids`` in ``customdata[0]`` (point numbers are per trace, so a click needs this)."""
    fig = go.Figure()
    groups = [(k, class_names[k]) for k in np.unique(labels) if 0 <= k < len(class_names)] or [(None, "test images")]
    for k, name in groups:
        m = np.ones(len(labels), bool) if k is None else labels == k
        fig.add_scatter(
            x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, marker=dict(size=6, opacity=0.75),
            customdata=[[int(i), class_text(int(y), class_names)] for i, y in zip(ids[m], labels[m])],
            hovertemplate="test image #%{customdata[0]} %{customdata[1]}<br>(%{x:.2f}, %{y:.2f})<extra></extra>")
    for j, (ex, ey) in enumerate(ellipses):
        fig.add_scatter(x=ex, y=ey, mode="lines", line=dict(width=1, color="rgba(60,60,60,0.45)"), hoverinfo="skip",
                        name="1σ of q(z|x)", legendgroup="ell", showlegend=j == 0)
    if square is not None:
        lo, hi = square
        fig.add_shape(type="rect", x0=lo, x1=hi, y0=lo, y1=hi, line=dict(dash="dash", width=1, color="grey"))
    if selected is not None:
        fig.add_scatter(x=[selected[0]], y=[selected[1]], mode="markers", name="selected", hoverinfo="skip",
                        marker=dict(size=16, symbol="circle-open", color="black", line=dict(width=2)))
    if star is not None:
        (sx, sy), name = star
        fig.add_scatter(x=[sx], y=[sy], mode="markers", name=name, hoverinfo="skip",
                        marker=dict(size=20, symbol="star", color="gold", line=dict(width=1.5, color="black")))
    fig.update_layout(height=520, margin=dict(MARGIN, t=30), legend=dict(title="class"),
                      uirevision=revision, clickmode="event+select")  # uirevision keeps zoom across refreshes
    if strip and class_names:
        fig.update_yaxes(tickvals=list(range(len(class_names))), ticktext=list(class_names))
    if axes:
        fig.update_xaxes(title=axes[0])
        fig.update_yaxes(title=axes[1])
    if equal_axes:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def kl_bars(kl_per_dim: np.ndarray, active: np.ndarray) -> go.Figure:
    """Mean KL per latent dim, active dims in blue and collapsed ones in grey, in dim order."""
    names = [f"z{j}" for j in range(len(kl_per_dim))]
    fig = go.Figure()
    for on, colour, label in ((True, ACTIVE, "active"), (False, INACTIVE, "inactive")):
        m = np.asarray(active) == on
        if m.any():
            fig.add_bar(x=[names[j] for j in np.flatnonzero(m)], y=np.asarray(kl_per_dim)[m], name=label,
                        marker_color=colour, hovertemplate="%{x}: %{y:.2f} nats<extra>" + label + "</extra>")
    fig.update_layout(height=260, margin=MARGIN, yaxis_title="KL (nats)", barmode="overlay", showlegend=True,
                      xaxis=dict(categoryorder="array", categoryarray=names), legend=dict(orientation="h", y=1.1))
    return fig


def code_bars(mu: np.ndarray, sigma: np.ndarray, title: str, order: Sequence[int] | None = None,
              active: np.ndarray | None = None, prior_band: bool = False, height: int = 240) -> go.Figure:
    """One image's code: μ ± σ per latent dim, in ``order`` (default: dim order). Collapsed dims
    (``active`` False) are grey; ``prior_band`` shades the prior's ±1σ."""
    order = list(range(len(mu))) if order is None else [int(d) for d in order]
    colours = None if active is None else [ACTIVE if active[d] else INACTIVE for d in order]
    fig = go.Figure(go.Bar(x=[f"z{d}" for d in order], y=np.asarray(mu)[order], marker_color=colours,
                           error_y=dict(type="data", array=np.asarray(sigma)[order], thickness=1.2),
                           hovertemplate="%{x}: μ = %{y:.2f} ± %{error_y.array:.2f}<extra></extra>"))
    if prior_band:  # a posterior far outside it, or much narrower, is informative
        fig.add_hrect(y0=-1, y1=1, fillcolor="#999", opacity=0.12, line_width=0)
    fig.update_layout(height=height, margin=dict(MARGIN, t=30), showlegend=False, title=dict(text=title, font_size=13),
                      xaxis=dict(type="category"), yaxis_title="prior σ units")
    return fig


# --- Sample and Encode: test codes with other codes on top --------------------------------------
def codes_with_points(view: CodeView, labels: np.ndarray, class_names: Sequence[str], *, name: str,
                      marker: dict, errors: tuple[float | None, float | None] = (None, None),
                      row_label: str = "", revision: str = "", height: int = 420) -> go.Figure:
    """The test codes of ``view`` coloured by class, and its other points drawn over them as
    ``name`` with ``marker`` (and ±σ ``errors`` on x and y for a single point)."""
    fig = go.Figure()
    groups = [int(k) for k in np.unique(labels)]
    # An explicit qualitative palette: the theme's default pairs pale tints that vanish on white.
    palette = qualitative.T10 if len(groups) <= 10 else qualitative.Alphabet
    for i, k in enumerate(groups):
        m = labels == k
        fig.add_trace(go.Scattergl(x=view.xy[m, 0], y=view.xy[m, 1], mode="markers", name=group_name(k, class_names),
                                   marker=dict(size=5, opacity=0.6, color=palette[i % len(palette)]), hoverinfo="name"))
    ex, ey = errors
    # WebGL too: an SVG trace would be drawn underneath the WebGL points and hide in a dense cloud.
    fig.add_trace(go.Scattergl(
        x=view.points[:, 0], y=view.points[:, 1], mode="markers", name=name, marker=marker,
        hovertemplate=f"{name} %{{pointNumber}}<extra></extra>",
        error_x=dict(type="data", array=[ex], color="#111") if ex is not None else None,
        error_y=dict(type="data", array=[ey], color="#111") if ey is not None else None))
    fig.update_layout(height=height, margin=MARGIN, legend=dict(itemsizing="constant"), uirevision=revision,
                      xaxis_title=view.axes[0], yaxis_title=view.axes[1])
    if view.kind == "strip":
        fig.update_yaxes(tickvals=[STRIP_ROW] + [max(k, 0) for k in groups],  # the rows of strip_y
                         ticktext=[row_label or name] + [group_name(k, class_names) for k in groups])
    else:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
