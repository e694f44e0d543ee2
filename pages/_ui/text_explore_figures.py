"""Pure builders for the Sample, Traverse and Encode pages on a topic-model run: numbers, words and
plotly figures from arrays (no ``st.`` calls, no model calls), unit-tested without Streamlit in
tests/unit/test_text_explore_figures.py. ``text_explore`` calls the models and lays these out.

Traversal, for both families: moving one topic's coordinate keeps the other topics' shares in
their base ratios. ProdLDA moves z_k with theta = softmax(z), so theta_j / theta_i (j, i != k) is
unchanged; LDA sets theta_k and rescales the others to sum to 1 - theta_k, which keeps them too.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import plotly.graph_objects as go

from vae_core.data import DatasetError
from vae_core.data.text import Vocabulary, _decode

from .text_figures import MARGIN, topic_colour, topic_name

STEPS = 21  # slider positions per topic: the live widget swaps between these precomputed frames
Z_SPAN = 6.0  # ProdLDA: z_k moves base ± 6 prior sigma (theta_k from ~0 to ~0.95 at K = 20, alpha = 1)
TOP_WORDS = 12  # bars per frame
MAX_TEXT_BYTES = 1_000_000  # an uploaded .txt file: about 150,000 words, counted in well under a second
TINY = 1e-12  # theta floor before a log: LDA's theta can be exactly 0 in float32

Move = Literal["z", "share"]  # ProdLDA moves z_k; LDA moves theta_k itself


# --- the prior -------------------------------------------------------------------------------------
def alpha_text(alphas: Sequence[float]) -> str:
    """"1" for a symmetric Dirichlet, "(0.1, 0.5, …)" for one per topic."""
    a = [float(v) for v in alphas]
    if len(set(a)) == 1:
        return f"{a[0]:g}"
    shown = ", ".join(f"{v:g}" for v in a[:6])
    return f"({shown}{', …' if len(a) > 6 else ''})"


def prior_text(family: str, alphas: Sequence[float]) -> str:
    """A sentence on what the model's prior over topic proportions is, with its alpha."""
    k, a = len(alphas), alpha_text(alphas)
    sparse = (" With α below 1 it prefers documents about a few topics." if max(alphas) < 1
              else " With α of 1 or more it spreads documents over many topics." if min(alphas) >= 1 else "")
    if family == "prodlda":
        return (f"**The prior is a logistic normal:** z ~ N(μ₀, diag σ₀²), θ = softmax(z), the Laplace approximation "
                f"of Dirichlet(α = {a}) over K = {k} topics (Srivastava & Sutton 2017: the reparameterisation "
                "trick cannot sample a Dirichlet, so ProdLDA samples its Gaussian stand-in)." + sparse +
                " Each draw's words come from the decoder, softmax(BN(θ β)): a product of experts, where a word "
                "needs the support of every topic present.")
    return (f"**The prior is Dirichlet(α = {a})** over K = {k} topics, as in LDA's generative process (the study "
            "notes' eq. 13)." + sparse + " Each draw's words are the mixture Σₖ θₖ βₖ of the topics' word "
            "distributions.")


def prior_mean(alphas: Sequence[float]) -> np.ndarray:
    """theta_k = alpha_k / sum(alpha): the Dirichlet's mean, and softmax(mu0) of its Laplace
    approximation (mu0_k = log alpha_k - mean log alpha), so the same base for both families."""
    a = np.asarray(alphas, dtype=np.float64)
    return (a / a.sum()).astype(np.float32)


# --- words --------------------------------------------------------------------------------------------
def top_words(probs: np.ndarray, words: Sequence[str], n: int = TOP_WORDS) -> tuple[list[str], np.ndarray]:
    """The ``n`` most probable words of one distribution (V,), most probable first, and their probabilities."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    idx = np.argsort(-p, kind="stable")[:n]
    return [words[i] for i in idx], p[idx]


def word_owners(topic_word: np.ndarray) -> np.ndarray:
    """(V,) for each word the topic that gives it the highest probability: a word's bar takes that
    topic's colour, so a traversal shows one topic's words coming in."""
    return np.asarray(topic_word).argmax(axis=0).astype(np.int64)


def percent(p: float) -> str:
    """A probability as a percentage with two significant digits below 10%: "35%", "4.2%", "0.14%"
    (a 2,000-word distribution's top words are often well under 1%)."""
    v = 100.0 * float(p)
    return f"{v:.0f}%" if v >= 9.95 else f"{v:.1f}%" if v >= 0.995 else f"{v:.2g}%"


def owned_word_bars(words: Sequence[str], probs: Sequence[float], owners: Sequence[int],
                    topic_words: Sequence[Sequence[str]] = (), title: str = "", x_max: float | None = None,
                    height: int | None = None) -> go.Figure:
    """One horizontal bar per word, the most probable on top, coloured by the word's topic
    (``word_owners``). ``x_max`` (a probability) fixes the axis, so that bars grow and shrink from
    one slider position to the next instead of the axis rescaling."""
    p = np.asarray(probs, dtype=float) * 100.0
    owners = [int(o) for o in owners]
    top = (x_max * 100.0) if x_max else max(1e-9, float(p.max(initial=0)))
    hover = [topic_name(o, topic_words[o] if o < len(topic_words) else ()) for o in owners]
    fig = go.Figure(go.Bar(x=p[::-1], y=list(words)[::-1], orientation="h",
                           marker_color=[topic_colour(o) for o in owners][::-1], customdata=hover[::-1],
                           hovertemplate="%{y}: %{x:.3g}%<br>mostly %{customdata}<extra></extra>",
                           text=[percent(v / 100.0) for v in p[::-1]], textposition="outside", cliponaxis=False))
    fig.update_layout(title=title or None, margin=MARGIN, height=height or 60 + 22 * max(1, len(words)),
                      xaxis=dict(title="probability (%)", range=[0, top * 1.2]), yaxis=dict(automargin=True),
                      showlegend=False)
    return fig


LEGEND_TOPICS = 8  # above this many topics the stacked bars carry topic numbers instead of a legend
LABEL_SHARE = 0.06  # a segment this wide or wider shows its topic's number


def mixtures_figure(thetas: np.ndarray, topic_words: Sequence[Sequence[str]], row_names: Sequence[str] = (),
                    title: str = "") -> go.Figure:
    """Several topic mixtures (N, K) as stacked horizontal bars, one row per draw (the first on
    top), one colour per topic: the draws compared at a glance. With many topics a legend would
    dwarf the bars, so wide segments are numbered instead (hover names every one)."""
    thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
    n, k = thetas.shape
    rows = list(row_names) or [f"draw {i + 1}" for i in range(n)]
    legend = k <= LEGEND_TOPICS
    fig = go.Figure()
    for t in range(k):
        name = topic_name(t, topic_words[t] if t < len(topic_words) else ())
        share = thetas[::-1, t]
        fig.add_trace(go.Bar(x=share * 100.0, y=rows[::-1], orientation="h", name=name, marker_color=topic_colour(t),
                             text=None if legend else [str(t + 1) if s >= LABEL_SHARE else "" for s in share],
                             textposition="inside", insidetextanchor="middle", textfont=dict(color="white", size=11),
                             hovertemplate="%{y}: %{x:.1f}%<extra>" + name + "</extra>"))
    fig.update_layout(barmode="stack", title=title or None, margin=MARGIN, height=80 + 30 * n, showlegend=legend,
                      xaxis=dict(title="share of the document (%)", range=[0, 100]),
                      yaxis=dict(automargin=True, tickmode="array", tickvals=rows, ticktext=rows),
                      legend=dict(x=1.02, y=1, font=dict(size=11)))
    return fig


# --- traversal ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TopicPath:
    """One topic moved from the base: ``thetas`` (S, K) at each slider position, the slider's
    ``values`` (z_k for ProdLDA, theta_k for LDA), a label per position and where the base is."""

    topic: int
    move: Move
    values: np.ndarray  # (S,)
    thetas: np.ndarray  # (S, K), rows on the simplex
    labels: list[str]
    start: int  # the position of the base

    @property
    def shares(self) -> np.ndarray:
        """theta_k at each position, (S,)."""
        return self.thetas[:, self.topic]


def _rescale_others(base: np.ndarray, k: int, share: np.ndarray) -> np.ndarray:
    """(S, K): theta_k = share, the other topics in their base ratios summing to 1 - share."""
    others = base.astype(np.float64).copy()
    others[k] = 0.0
    total = others.sum()
    # A base that is all topic k leaves no ratio to keep: the rest is spread evenly.
    others = others / total if total > TINY else np.where(np.arange(len(base)) == k, 0.0, 1.0 / (len(base) - 1))
    out = np.outer(1.0 - share, others)
    out[:, k] = share
    return out


def topic_path(base_theta: np.ndarray, k: int, move: Move, sigma: float = 1.0, steps: int = STEPS,
               span: float = Z_SPAN) -> TopicPath:
    """Topic k's slider positions from ``base_theta`` (K,).

    "z" (ProdLDA): z = log theta (softmax is blind to a constant, so this is the base's code up to
    one), z_k takes ``steps`` values base ± ``span`` prior sigma, the base in the middle; theta = softmax(z).
    "share" (LDA): theta_k from 0 to 1, evenly spaced on each side of the base's own value, which is
    one of the positions; the other topics are rescaled (``_rescale_others``).
    """
    base = np.asarray(base_theta, dtype=np.float64).reshape(-1)
    if not (np.isfinite(base).all() and (base >= 0).all() and base.sum() > 0):
        raise ValueError("the base topic proportions are not a point of the simplex")
    base = base / base.sum()
    K = len(base)
    if not 0 <= k < K:
        raise ValueError(f"topic {k} is out of range for {K} topics")
    if move == "z":
        half = steps // 2
        z = np.log(np.maximum(base, TINY))
        values = z[k] + float(sigma) * span * np.arange(-half, half + 1) / max(half, 1)
        zs = np.repeat(z[None], len(values), axis=0)
        zs[:, k] = values
        zs -= zs.max(axis=1, keepdims=True)  # softmax, stable
        thetas = np.exp(zs) / np.exp(zs).sum(axis=1, keepdims=True)
        offsets = (values - z[k]) / float(sigma)
        labels = [f"z {o:+.1f}σ · θ {100 * t:.0f}%" for o, t in zip(offsets, thetas[:, k])]
        start = half
    else:
        b = float(base[k])
        below = int(round(b * (steps - 1)))  # positions under the base, so both sides step about 1/(S-1)
        below = min(max(below, 1 if b > 0 else 0), steps - 1 - (1 if b < 1 else 0))
        values = np.concatenate([np.linspace(0.0, b, below + 1), np.linspace(b, 1.0, steps - below)[1:]])
        thetas = _rescale_others(base, k, values)
        labels = [f"θ {100 * v:.0f}%" for v in values]
        start = below
    return TopicPath(k, move, values.astype(np.float32), thetas.astype(np.float32), labels, start)


def frames(word_probs: np.ndarray, n: int = TOP_WORDS) -> tuple[np.ndarray, np.ndarray]:
    """Each position's top ``n`` words: indices (S, n) into the vocabulary and probabilities (S, n),
    most probable first, from the word distributions (S, V)."""
    p = np.asarray(word_probs, dtype=np.float64)
    idx = np.argsort(-p, axis=1, kind="stable")[:, :n]
    return idx, np.take_along_axis(p, idx, axis=1)


def traverse_payload(paths: Sequence[TopicPath], tops: Sequence[tuple[np.ndarray, np.ndarray]],
                     words: Sequence[str], topic_words: Sequence[Sequence[str]], owners: np.ndarray,
                     base_theta: np.ndarray, token: str) -> dict:
    """What the live widget needs, all precomputed: per topic, the slider's labels and theta_k, and
    each position's top words as [index into ``words``, probability] (``tops``: each path's
    ``frames``); ``words`` holds only the words some frame shows, with ``owners`` (their topic's
    index into ``colours``). JSON-able; probabilities rounded to 5 decimals for size."""
    used: dict[int, int] = {}
    topics = []
    for path, (idx, p) in zip(paths, tops):
        rows = [[[used.setdefault(int(i), len(used)), round(float(q), 5)] for i, q in zip(ri, rp)]
                for ri, rp in zip(idx, p)]
        k = path.topic
        topics.append({"topic": k, "label": topic_name(k, topic_words[k] if k < len(topic_words) else ()),
                       "colour": topic_colour(k), "labels": list(path.labels), "start": int(path.start),
                       "shares": [round(float(s), 5) for s in path.shares], "frames": rows,
                       "scale": round(float(np.max(p, initial=0.0)), 5)})
    vocab = sorted(used, key=used.get)
    K = len(base_theta)
    return {"token": token, "topics": topics, "words": [words[i] for i in vocab],
            "owners": [int(owners[i]) for i in vocab], "colours": [topic_colour(k) for k in range(K)],
            "names": [topic_name(k, topic_words[k] if k < len(topic_words) else ()) for k in range(K)],
            "base": [round(float(t), 5) for t in base_theta]}


def moved_text(path: TopicPath, position: int) -> str:
    """"topic 2 · nasa orbit moon: θ 25% → 61%" (and its z shift for ProdLDA), or that nothing moved."""
    if position == path.start:
        return "nothing yet: the sliders are at the base"
    head = f"{topic_name(path.topic)}: θ {100 * path.shares[path.start]:.0f}% → {100 * path.shares[position]:.0f}%"
    if path.move == "z":
        head += f" (z {path.labels[position].split(' · ')[0].removeprefix('z ')})"
    return head


# --- your text ----------------------------------------------------------------------------------------
def read_text_file(payload: bytes, name: str, limit: int = MAX_TEXT_BYTES) -> str:
    """An uploaded file's bytes as text: UTF-8 (a byte-order mark dropped), never executed or
    unpickled. Raises DatasetError, worded for a person, on an empty, too large, binary or
    non-UTF-8 file (the corpus reader's own check, so both say the same)."""
    where = f"'{name}'"
    if not payload:
        raise DatasetError(f"{where} is empty: choose a file with some text in it")
    if len(payload) > limit:
        raise DatasetError(f"{where} is {len(payload) / 1e6:.1f} MB; the limit is {limit / 1e6:g} MB of text. "
                           "Upload or paste a part of it")
    return _decode(payload, where)


@dataclass(frozen=True, eq=False)
class TextWords:
    """A text counted over a run's vocabulary: ``counts`` (1, V) float32 for the model, the
    vocabulary words found (with counts, most frequent first) and the content words that are not
    in the vocabulary (stop words and words under 3 letters are never counted)."""

    counts: np.ndarray
    known: list[tuple[str, int]]
    unknown: list[tuple[str, int]]

    @property
    def n_known(self) -> int:
        return sum(c for _, c in self.known)

    @property
    def n_unknown(self) -> int:
        return sum(c for _, c in self.unknown)


def text_words(vocab: Vocabulary, text: str) -> TextWords:
    """Count ``text`` with the run's vocabulary exactly as its corpus was counted."""
    counts = vocab.transform(text)[0:1].numpy().astype(np.float32)  # (1, V)
    words = vocab.words
    nz = np.flatnonzero(counts[0])
    known = sorted(((words[i], int(counts[0, i])) for i in nz), key=lambda wc: (-wc[1], wc[0]))
    # The vectorizer's own tokens (stop words out): whatever it keeps that the vocabulary lacks.
    analyze = vocab.options.vectorizer(vocab.words).build_analyzer()
    in_vocab = set(words)
    missing: dict[str, int] = {}
    for token in analyze(text):
        if token not in in_vocab:
            missing[token] = missing.get(token, 0) + 1
    unknown = sorted(missing.items(), key=lambda wc: (-wc[1], wc[0]))
    return TextWords(counts, known, unknown)


def words_text(tw: TextWords, vocab_size: int, shown: int = 30) -> str:
    """The words the model read and the ones it could not, in a sentence or two (markdown)."""
    if not tw.known:
        return ""
    listed = ", ".join(f"{w} ×{c}" if c > 1 else w for w, c in tw.known[:shown])
    more = f", … ({len(tw.known) - shown} more)" if len(tw.known) > shown else ""
    out = (f"**The model read {tw.n_known:,} word{'s' if tw.n_known != 1 else ''}** "
           f"({len(tw.known):,} distinct, of its {vocab_size:,}-word vocabulary): {listed}{more}.")
    if tw.unknown:
        eg = ", ".join(w for w, _ in tw.unknown[:8])
        out += (f"  \n{tw.n_unknown:,} word{'s are' if tw.n_unknown != 1 else ' is'} not in the vocabulary and "
                f"{'were' if tw.n_unknown != 1 else 'was'} left out (e.g. {eg}).")
    return out


def no_known_words(tw: TextWords, vocab_size: int) -> str:
    """Why a text has no topic mixture: none of its words is in the vocabulary (or it has none)."""
    if not tw.unknown:
        return ("This text has no word the model counts: stop words (the, and, of, …), numbers and words under "
                "3 letters are left out, as they were for the corpus. Paste a sentence with some content words.")
    eg = ", ".join(w for w, _ in tw.unknown[:8])
    return (f"None of this text's words is in the model's {vocab_size:,}-word vocabulary (it has {eg}"
            f"{', …' if len(tw.unknown) > 8 else ''}), so it has no topic mixture. Try text about what the corpus "
            "is about.")


def flat_note(theta: np.ndarray) -> str:
    """A caution when a text's mixture is close to even (no topic above twice its even share): the
    model found little topic signal in it (short texts often give that), so its nearest posts are
    simply other undecided documents. Empty otherwise."""
    theta = np.asarray(theta, dtype=float)
    if theta.max() >= 2.0 / len(theta):
        return ""
    return (f"No topic stands out (the largest share is {100 * theta.max():.0f}%, against {100 / len(theta):.0f}% for "
            "an even spread): the model reads little topic signal in this text, and its nearest posts are other "
            "documents it is unsure about. A longer text usually helps.")


def word_topics(theta: np.ndarray, topic_word: np.ndarray, word_ids: Sequence[int]) -> np.ndarray:
    """For each word the topic most likely to have produced it in this document: argmax_k theta_k
    p(w | topic k) (LDA's responsibility; for ProdLDA's product of experts, a reading aid)."""
    tw = np.asarray(topic_word)[:, list(word_ids)]  # (K, n)
    return (np.asarray(theta, dtype=np.float64).reshape(-1, 1) * tw).argmax(axis=0)


# --- nearest documents -----------------------------------------------------------------------------------
def hellinger(theta: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """The Hellinger distance between one topic mixture (K,) and each of (N, K): from 0 (the same
    mixture) to 1 (no topic in common); a true metric on the simplex, kinder to small shares than
    Euclidean distance."""
    a = np.sqrt(np.clip(np.asarray(theta, dtype=np.float64).reshape(1, -1), 0, None))
    b = np.sqrt(np.clip(np.asarray(thetas, dtype=np.float64), 0, None))
    return np.sqrt(np.clip(0.5 * ((a - b) ** 2).sum(axis=1), 0.0, 1.0))


def nearest(theta: np.ndarray, thetas: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` documents of ``thetas`` (N, K) nearest ``theta`` by ``hellinger``: indices and
    distances, nearest first (ties by index)."""
    d = hellinger(theta, thetas)
    idx = np.lexsort((np.arange(len(d)), d))[:n]
    return idx, d[idx]


def md_escape(text: str) -> str:
    """``text`` with every ASCII punctuation mark backslash-escaped: Streamlit reads labels and
    captions as markdown, and a post's *stars*, [brackets], e-mail addresses or :shortcodes: must
    show as written."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


def snippet(text: str, n: int = 80) -> str:
    """The start of a document on one line, for a label: whitespace collapsed, cut at a word,
    markdown escaped (``md_escape``)."""
    flat = " ".join(text.split())
    if len(flat) > n:
        flat = (flat[:n].rsplit(" ", 1)[0] or flat[:n]) + " …"
    return md_escape(flat) or "(no text)"


def excerpt(text: str, n: int = 1500) -> str:
    """The start of a document for reading: up to ``n`` characters, cut at a line or word."""
    text = text.strip()
    if len(text) <= n:
        return text or "(no text)"
    cut = text[:n]
    for sep in ("\n", " "):
        if (i := cut.rfind(sep)) > n // 2:
            cut = cut[:i]
            break
    return cut.rstrip() + "\n…"
