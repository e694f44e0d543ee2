"""Plotly figures for the topic models: pure functions from numbers to a figure or a table (no
``st.`` calls), unit-tested without Streamlit. The Topics lab draws all of them (the text explorer
pages' own figures, word bars among them, are ``text_figures``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vae_core.labs.planted import METHODS, PlantedRecovery
from vae_core.labs.simplex import SimplexDensities
from vae_core.labs.topics import match_topics

MARGIN = dict(l=10, r=10, t=40, b=10)
PAIR_COLORS = ("#1f77b4", "#ff7f0e")  # model A, model B
LOG_DENSITY_RANGE = 6.0  # nats of log density the simplex colours span: a factor e^6 ~ 400
TOP_QUANTILE = 0.99  # the colours' top: a Dirichlet with alpha < 1 is infinite at the corners


def _layout(fig: go.Figure, title: str | None, height: int, top: int = 40) -> go.Figure:
    """Tight margins that grow to fit the axes' labels (topic words, "planted 1")."""
    fig.update_layout(height=height, margin=dict(MARGIN, t=top))
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    if title:
        fig.update_layout(title=title)
    return fig


# --- the simplex ------------------------------------------------------------------------------
def simplex_color_range(d: SimplexDensities) -> tuple[float, float]:
    """The shared colour scale's (bottom, top) in log density: the top at the ``TOP_QUANTILE`` of
    both panels' values, the bottom ``LOG_DENSITY_RANGE`` nats under it; values beyond are clipped."""
    top = float(np.quantile(np.concatenate([d.log_dirichlet, d.log_logistic_normal]), TOP_QUANTILE))
    return top - LOG_DENSITY_RANGE, top


def simplex_pair(d: SimplexDensities) -> go.Figure:
    """Dirichlet(alpha) beside the logistic normal of its Laplace approximation on the triangle,
    one dot per grid cell coloured by log density on one shared, clipped scale. Corners: topic 1
    bottom left, topic 2 bottom right, topic 3 on top (as ``simplex.CORNERS``)."""
    alpha = ", ".join(f"{a:g}" for a in d.alpha) if len(set(d.alpha)) > 1 else f"{d.alpha[0]:g}"
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "ternary"}, {"type": "ternary"}]],
                        subplot_titles=(f"Dirichlet(α = {alpha})", "its Laplace approximation (logistic normal)"),
                        horizontal_spacing=0.12)
    lo, hi = simplex_color_range(d)
    theta = d.grid.bary
    size = max(2.0, 360 / d.grid.n)  # dots that about fill their cells at the figure's size
    for col, (log_density, name) in enumerate(((d.log_dirichlet, "Dirichlet"),
                                               (d.log_logistic_normal, "logistic normal")), start=1):
        fig.add_trace(go.Scatterternary(
            a=theta[:, 2], b=theta[:, 0], c=theta[:, 1], mode="markers", name=name, showlegend=False,
            marker=dict(color=np.clip(log_density, lo, hi), coloraxis="coloraxis", size=size, symbol="circle",
                        line=dict(width=0)),
            customdata=np.exp(log_density),
            hovertemplate="θ = (%{b:.3f}, %{c:.3f}, %{a:.3f})<br>density %{customdata:.3g}<extra>" + name + "</extra>"),
            row=1, col=col)
    axis = dict(ticks="", showticklabels=False, showgrid=False, linecolor="#444", min=0)
    for key in ("ternary", "ternary2"):
        fig.layout[key].update(sum=1, aaxis=dict(axis, title="topic 3"), baxis=dict(axis, title="topic 1"),
                               caxis=dict(axis, title="topic 2"), bgcolor="white")
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=lo, cmax=hi,
                                     colorbar=dict(title="log density", len=0.8, x=1.08)))
    _layout(fig, None, 420, top=60)
    return fig.update_layout(margin=dict(l=40, r=70, b=30))  # room for the corners' names and the colour bar


# --- two models' topics, aligned --------------------------------------------------------------
def align(topic_word_a: np.ndarray, topic_word_b: np.ndarray) -> list[tuple[int | None, int | None, float]]:
    """Pairs (topic of A, topic of B, cosine) of best match (``topics.match_topics``: Hungarian on
    the cosine of topic-word rows), best first; when one model has more topics, its unmatched ones
    follow with None for the partner and NaN for the cosine."""
    a, b = np.asarray(topic_word_a, dtype=np.float64), np.asarray(topic_word_b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two models have different vocabularies ({a.shape[1]:,} and {b.shape[1]:,} words): "
                         "compare runs trained on the same dataset with the same vocabulary size")
    if len(a) <= len(b):
        perm, cos = match_topics(a, b)
        pairs = [(k, int(perm[k]), float(cos[k])) for k in range(len(a))]
    else:
        perm, cos = match_topics(b, a)
        pairs = [(int(perm[j]), j, float(cos[j])) for j in range(len(b))]
    pairs.sort(key=lambda p: -p[2])
    seen_a, seen_b = {p[0] for p in pairs}, {p[1] for p in pairs}
    pairs += [(k, None, np.nan) for k in range(len(a)) if k not in seen_a]
    pairs += [(None, j, np.nan) for j in range(len(b)) if j not in seen_b]
    return pairs


def aligned_topics(words_a: Sequence[Sequence[str]], npmi_a, topic_word_a, words_b: Sequence[Sequence[str]], npmi_b,
                   topic_word_b, name_a: str = "ProdLDA", name_b: str = "LDA") -> tuple[pd.DataFrame, go.Figure]:
    """Two models' topics side by side, aligned by best match (``align``).

    Returns a table, one row per pair (best match first): A's topic number, words and NPMI, the
    pair's cosine, B's words, NPMI and topic number (topics numbered from 1; a topic without a
    partner has empty cells there); and a bar chart of both NPMIs per pair.
    """
    if name_a == name_b:
        raise ValueError(f"the two models need different names for their columns, got {name_a!r} twice")
    npmi_a, npmi_b = np.asarray(npmi_a, dtype=np.float64), np.asarray(npmi_b, dtype=np.float64)
    pairs = align(topic_word_a, topic_word_b)

    def side(k, words, npmi):
        return (None, "", np.nan) if k is None else (k + 1, " ".join(words[k]), float(npmi[k]))

    rows = []
    for ka, kb, cos in pairs:
        ta, wa, na = side(ka, words_a, npmi_a)
        tb, wb, nb = side(kb, words_b, npmi_b)
        rows.append({f"{name_a} topic": ta, f"{name_a} words": wa, f"{name_a} NPMI": na, "match (cosine)": cos,
                     f"{name_b} words": wb, f"{name_b} NPMI": nb, f"{name_b} topic": tb})
    table = pd.DataFrame(rows)
    for col in (f"{name_a} topic", f"{name_b} topic"):
        table[col] = table[col].astype("Int64")  # whole numbers, with an empty cell for "no partner"

    labels = [_pair_label(i, ka, kb, words_a, words_b) for i, (ka, kb, _) in enumerate(pairs)]
    fig = go.Figure()
    for name, color in ((name_a, PAIR_COLORS[0]), (name_b, PAIR_COLORS[1])):
        values = table[f"{name} NPMI"]
        fig.add_bar(x=labels, y=values, name=name, marker_color=color,
                    hovertemplate="%{x}<br>NPMI %{y:.3f}<extra>" + name + "</extra>")
    fig.add_hline(y=0, line=dict(color="gray", width=1))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.08), xaxis=dict(tickangle=-40),
                      yaxis=dict(title="NPMI of the top 10 words"))
    return table, _layout(fig, "NPMI per aligned pair, best match on the left", 420, top=60)


def _pair_label(i: int, ka, kb, words_a, words_b) -> str:
    """A pair's name on the bar chart: its rank and the first words of whichever topics it has."""
    words = words_a[ka] if ka is not None else words_b[kb]
    return f"{i + 1}. {' '.join(list(words)[:3])}"


# --- planted topics --------------------------------------------------------------------------
def recovery_heatmaps(r: PlantedRecovery) -> go.Figure:
    """Each method's cosine between every planted topic (rows) and every recovered one (columns,
    in matched order, so a good recovery is a bright diagonal), every cell written out."""
    titles = [f"{m}: {r.recovered(m)} of {r.topics} above {r.threshold:g}" for m in METHODS]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.12)
    planted = [f"planted {k + 1}" for k in range(r.topics)]
    for col, method in enumerate(METHODS, start=1):
        sim, cos = r.similarity[method], r.cosine[method]
        found = [f"{method} {k + 1}<br>({cos[k]:.2f})" for k in range(r.topics)]
        fig.add_trace(go.Heatmap(z=sim, x=found, y=planted, zmin=0, zmax=1, colorscale="Blues", coloraxis="coloraxis",
                                 text=[[f"{v:.2f}" for v in row] for row in sim], texttemplate="%{text}",
                                 hovertemplate="%{y} vs %{x}: cosine %{z:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(coloraxis=dict(colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title="cosine")))
    return _layout(fig, None, 120 + 45 * r.topics, top=50)


def recovered_distributions(r: PlantedRecovery) -> go.Figure:
    """The planted topics and each method's recovered ones as K x V word distributions, side by
    side on one colour scale; words are sorted by the planted topic they belong to most, so the
    planted topics are blocks and a good recovery repeats the pattern."""
    owner = r.true_topics.argmax(0)
    order = np.lexsort((-r.true_topics.max(0), owner))  # by owning topic, then by its weight
    panels = [("planted", r.true_topics)] + [(m, r.estimates[m]) for m in METHODS]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], shared_yaxes=True,
                        horizontal_spacing=0.03)
    top = float(max(p[1].max() for p in panels))
    rows = [f"topic {k + 1}" for k in range(r.topics)]
    for col, (name, dist) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=dist[:, order], y=rows, x=[f"word {v}" for v in order], coloraxis="coloraxis",
                                 hovertemplate=name + " %{y}, %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, ticks="", title_text="words, by planted topic", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=top, colorbar=dict(title="p(word)")))
    return _layout(fig, None, 140 + 30 * r.topics, top=40)


# --- top words -------------------------------------------------------------------------------

