"""Plotly figures for the text pages (topic models): pure functions from numbers and words to
figures, no ``st.`` calls, unit-tested on hand-made inputs (tests/unit/test_text_figures.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

MARGIN = dict(l=10, r=10, t=30, b=10)
TOPIC_COLOURS = qualitative.Dark24 + qualitative.Light24
CLASS_COLOURS = TOPIC_COLOURS  # 20 newsgroups need more than 10 colours, and none pale on white


def topic_colour(k: int) -> str:
    """One colour per topic, the same on every text page."""
    return TOPIC_COLOURS[k % len(TOPIC_COLOURS)]


def topic_name(k: int, words: Sequence[str] = (), n: int = 3) -> str:
    """"topic 3 · space nasa orbit": the topic's number (from 1) and its first ``n`` words."""
    head = f"topic {k + 1}"
    return f"{head} · {' '.join(words[:n])}" if len(words) else head


def word_bars(words: Sequence[str], probs: Sequence[float], title: str = "", colour: str = "#1f77b4",
              height: int | None = None) -> go.Figure:
    """A horizontal bar per word, the most probable at the top; ``probs`` are probabilities (shown
    as percentages)."""
    p = np.asarray(probs, dtype=float) * 100.0
    fig = go.Figure(go.Bar(x=p[::-1], y=list(words)[::-1], orientation="h", marker_color=colour,
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
                           text=[f"{v:.1f}%" for v in p[::-1]], textposition="outside", cliponaxis=False))
    fig.update_layout(title=title or None, margin=MARGIN, height=height or 60 + 22 * max(1, len(words)),
                      xaxis=dict(title="probability (%)", range=[0, max(1e-9, float(p.max(initial=0))) * 1.25]),
                      yaxis=dict(automargin=True), showlegend=False)
    return fig


def topic_mixture(theta: np.ndarray, topic_words: Sequence[Sequence[str]], title: str = "",
                  min_share: float = 0.0) -> go.Figure:
    """One bar per topic of a document's (or a draw's) topic proportions theta (K,), largest
    first, each labelled with the topic's first words; topics below ``min_share`` are left out."""
    theta = np.asarray(theta, dtype=float)
    order = [k for k in np.argsort(-theta, kind="stable") if theta[k] >= min_share] or [int(np.argmax(theta))]
    names = [topic_name(int(k), topic_words[k] if k < len(topic_words) else ()) for k in order]
    fig = go.Figure(go.Bar(x=theta[order][::-1] * 100.0, y=names[::-1], orientation="h",
                           marker_color=[topic_colour(int(k)) for k in order][::-1],
                           hovertemplate="%{y}: %{x:.1f}%<extra></extra>"))
    fig.update_layout(title=title or None, margin=MARGIN, height=60 + 24 * len(order),
                      xaxis=dict(title="share of the document (%)", range=[0, 100]), yaxis=dict(automargin=True),
                      showlegend=False)
    return fig


# --- Train: a topic run's curves -----------------------------------------------------------------
def _numbers(records: Sequence[dict], key: str, x_key: str) -> tuple[list, list]:
    """(x, y) of the records that carry a finite number under ``key`` (a record may lack it:
    LDA logs no loss and no KL, an older run no perplexity)."""
    rows = [r for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
            and np.isfinite(r[key])]
    return [r.get(x_key) for r in rows], [float(r[key]) for r in rows]


def topic_training_curves(steps: Sequence[dict], epochs: Sequence[dict], family: str) -> go.Figure:
    """A topic run's curves: the training objective per logged step (left), the test (and
    validation) bound per epoch (middle) and the test perplexity per epoch (right, log scale).

    ProdLDA logs its loss (−ELBO) with its two terms; LDA logs only each mini-batch's variational
    bound ("elbo"), drawn as its negative so both families' left panels go down as they learn.
    The first trace is always the step objective (the live tests count its points)."""
    lda = family == "lda"
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07, subplot_titles=(
        "Training objective (nats per document)", "Test bound per epoch (nats per document)",
        "Test perplexity per epoch (lower is better)"))
    x, loss = _numbers(steps, "loss", "step")
    if not loss:  # LDA: the mini-batch bound alone
        x, elbo = _numbers(steps, "elbo", "step")
        loss = [-v for v in elbo]
    fig.add_scatter(x=x, y=loss, name="−bound (mini-batch)" if lda else "loss (−ELBO)", row=1, col=1)
    for key, name, sign in (("log_likelihood", "reconstruction (−log p(x|z))", -1.0), ("kl", "KL(q‖p)", 1.0)):
        x, y = _numbers(steps, key, "step")
        if y:
            fig.add_scatter(x=x, y=[sign * v for v in y], name=name, row=1, col=1)
    x, y = _numbers(epochs, "test_elbo", "epoch")
    fig.add_scatter(x=x, y=y, name="test bound (LDA)" if lda else "test ELBO", mode="lines+markers", row=1, col=2)
    x, y = _numbers(epochs, "val_elbo", "epoch")
    if y:
        fig.add_scatter(x=x, y=y, name="validation ELBO", mode="lines+markers", row=1, col=2)
    x, y = _numbers(epochs, "test_perplexity", "epoch")
    fig.add_scatter(x=x, y=y, name="test perplexity", mode="lines+markers", row=1, col=3,
                    hovertemplate="epoch %{x}: perplexity %{y:.0f}<extra></extra>")
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=3)
    # Log scale: perplexity is exp(−bound per word), and the first epoch's can be 100 times the last's.
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_layout(height=330, margin=dict(MARGIN, t=40), legend=dict(orientation="h", y=-0.25))
    return fig


def topics_table(topic_words: Sequence[Sequence[str]]) -> list[dict]:
    """One row per topic, "topic 1" and its words in order, for ``st.dataframe``."""
    return [{"topic": f"topic {k + 1}", "top words": " ".join(words)} for k, words in enumerate(topic_words)]


# --- Reconstructions: a document and what the model makes of it ---------------------------------------
def top_entries(values: np.ndarray, words: Sequence[str], n: int = 10) -> tuple[list[str], np.ndarray]:
    """The ``n`` largest of ``values`` (V,) with their words, largest first (ties by word order),
    leaving out zeros: a document's top words by count, or a distribution's most probable."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if len(v) != len(words):
        raise ValueError(f"{len(v)} values for {len(words)} words")
    order = [int(i) for i in np.argsort(-v, kind="stable")[:n] if v[i] > 0]
    return [words[i] for i in order], v[order]


# --- Latent space: documents by their topic proportions -------------------------------------------------
def dominant_topics(theta: np.ndarray) -> np.ndarray:
    """(N,) int: each document's largest topic."""
    return np.asarray(theta).argmax(axis=1).astype(np.int64)


def document_scatter(xy: np.ndarray, groups: np.ndarray, ids: np.ndarray, group_names: Sequence[str], *,
                     colours: Sequence[str] | None = None, hover: Sequence[str] = (), legend: str = "",
                     selected: Sequence[float] | None = None, axes: tuple[str, str] | None = None,
                     revision: str = "") -> go.Figure:
    """Documents at xy (N, 2), one trace per group (a newsgroup, or a dominant topic; -1 is
    "no label"), each point carrying its test index ``ids`` in ``customdata[0]`` so a click names
    the document whatever trace it is in. ``hover``: a short text per point (the post's start)."""
    xy, groups, ids = np.asarray(xy, float), np.asarray(groups), np.asarray(ids)
    tips = list(hover) if len(hover) == len(ids) else [""] * len(ids)
    fig = go.Figure()
    for g in np.unique(groups):
        m = groups == g
        name = group_names[g] if 0 <= g < len(group_names) else "no label"
        colour = colours[g] if colours is not None and 0 <= g < len(colours) else None
        fig.add_scatter(  # SVG, not WebGL: clicks must work in a browser without a GPU
            x=xy[m, 0], y=xy[m, 1], mode="markers", name=name,
            marker=dict(size=6, opacity=0.75, **({"color": colour} if colour else {})),
            customdata=[[int(i), name, tips[j]] for j, i in zip(np.flatnonzero(m), ids[m])],
            hovertemplate="post #%{customdata[0]} · %{customdata[1]}<br>%{customdata[2]}<extra></extra>")
    if selected is not None:
        fig.add_scatter(x=[selected[0]], y=[selected[1]], mode="markers", name="selected", hoverinfo="skip",
                        marker=dict(size=16, symbol="circle-open", color="black", line=dict(width=2)))
    fig.update_layout(height=540, margin=dict(MARGIN, t=30), legend=dict(title=legend or None),
                      uirevision=revision, clickmode="event+select")  # uirevision keeps zoom across refreshes
    if axes:
        fig.update_xaxes(title=axes[0])
        fig.update_yaxes(title=axes[1])
    return fig
