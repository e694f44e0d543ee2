"""Sample, Traverse and Encode on a topic-model run (family ``prodlda`` or ``lda``): what those pages
draw when the selected run models text. Each page calls ``route(view)`` first; on an image run it
returns at once and the page goes on as before. The models are used through ``TopicModel`` only
(``topic_word_probs``, ``topic_proportions``, ``word_probs``, ``sample_theta``); the numbers and
figures come from ``text_explore_figures`` (pure).

Traverse's live drag is a small components-v2 widget: every slider position's top words are
precomputed on the server (``STEPS`` per topic, one ``word_probs`` call), and the browser swaps
the bars as the mouse moves, reporting the position to Python on release. It counts redraws in
``window.__ltFrames`` and keeps the last one in ``window.__ltLast`` for the browser tests.

Session state: the slots below (this module's own; the hand-off in is ``state.TRAVERSE_BASE``,
set by "Traverse from this text" on Encode, with the text's theta as its ``z``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

from vae_core.runs import rundir as rd

from . import state
from . import text_explore_figures as tx
from .cache import per_snapshot
from .guard import guard, guarded
from .runs import (
    manager,
    refresh_every,
    require_snapshot,
    rerun_when_run_ends,
    selected_run,
    snapshot,
    snapshot_caption,
    traverse_from,
)
from .text_figures import topic_mixture, topic_name
from .text_runs import (
    TextContext,
    test_proportions,
    text_context,
    topic_words,
    vocabulary,
)

DRAW_COUNTS = [1, 2, 3, 4, 6, 8, 9, 12]
DRAW_WORDS = 10  # bars per sampled draw
N_NEAREST = 8
MAX_TEXT_CHARS = 200_000  # the paste box; an upload is capped in bytes (tx.MAX_TEXT_BYTES)
MIN_SHARE = 0.01  # topics under 1% are left out of a document's mixture bars
PRIOR, DOCUMENT, CHOSEN = "prior", "document", "chosen"
DIVERGED = "the model's word probabilities are not finite: its weights have probably diverged; train again " \
           "with a smaller learning rate"


# --- what the pages show, for the next rerun and for tests ---------------------------------------
@dataclass(frozen=True)
class TextDraws:
    run: str
    step: int
    seed: int
    thetas: list[list[float]]  # (N, K)
    words: list[list[str]]  # each draw's top words


@dataclass(frozen=True)
class TextTraverse:
    run: str
    topic: int
    position: int
    theta: list[float]  # (K,)
    words: list[str]
    probs: list[float]


@dataclass(frozen=True)
class TextEncoded:
    run: str
    theta: list[float]  # (K,)
    known: int  # vocabulary words read
    unknown: int  # content words left out
    nearest: list[int]  # test-document rows, nearest first


SAMPLE_SHOWN: state.Slot[TextDraws] = state.Slot("_text_sample_shown", TextDraws)
TRAVERSE_SHOWN: state.Slot[TextTraverse] = state.Slot("_text_traverse_shown", TextTraverse)
ENCODE_SHOWN: state.Slot[TextEncoded] = state.Slot("_text_encode_shown", TextEncoded)
TRAVERSE_KIND: state.Slot[str] = state.Slot("text_traverse_base", str)  # the base radio
TRAVERSE_DOC_SEED: state.Slot[int] = state.Slot("text_traverse_doc_seed", int)  # which test document
TRAVERSE_CHOSEN_SEEN: state.Slot[str] = state.Slot("_text_traverse_chosen_seen", str)
TRAVERSE_RESETS: state.Slot[int] = state.Slot("_text_traverse_resets", int)  # Reset presses: the widget restarts
TRAVERSE_SIG: state.Slot[tuple] = state.Slot("_text_traverse_sig", tuple)  # the base the sliders were last set to


def traverse_pos(k: int) -> state.Slot[int]:
    """Topic k's slider position (an index into its path) when live drag is off."""
    return state.Slot(f"text_traverse_pos_{k}", int)


def reset_positions(K: int) -> None:
    """Every slider back to the base: the server's forget their positions, the live widget restarts."""
    for k in range(K):
        traverse_pos(k).pop()
    state.bump(TRAVERSE_RESETS)


# --- routing ---------------------------------------------------------------------------------------
def selected_is_text() -> bool:
    """Whether the selected run is a topic model, from its config.json alone (no weights loaded)."""
    name = selected_run()
    if name is None:
        return False
    try:
        return rd.read_config(manager().path(name)).is_text
    except rd.RunError:
        return False  # the image page's own checks say what is wrong with it


def route(view: Callable[[], None]) -> None:
    """On a topic-model run: draw ``view`` and stop the page. On any other run: return, draw nothing."""
    if selected_is_text():
        view()
        st.stop()


def _snapshot_and_vocab(page: str):
    """The snapshot and its vocabulary, or the empty state / one sentence and st.stop()."""
    snap = require_snapshot(page)
    if snap is None:
        st.stop()
    with guard("This topic run's vocabulary cannot be read") as g:
        vocab = vocabulary(snap)
    if g.failed:
        st.stop()
    return snap, vocab


def _live_snapshot(run: str, fallback: rd.Snapshot) -> rd.Snapshot:
    """The newest snapshot for a fragment that follows training (the page's own when none is newer)."""
    rerun_when_run_ends(run)
    snap = snapshot(run) or fallback
    snapshot_caption(run, snap)
    return snap


def alphas(snap: rd.Snapshot) -> tuple[float, ...]:
    """The Dirichlet prior's alpha, one per topic, as the run's config gives it."""
    m = snap.config.model
    return tuple(m.alphas()) if hasattr(m, "alphas") else (float(m.prior_alpha()),) * int(m.topics)


def _finite(a: np.ndarray) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(DIVERGED)
    return a


def _mixture(theta: np.ndarray, first: list[list[str]], title: str):
    """``topic_mixture`` without the topics under ``MIN_SHARE``, tall enough for its title and axis
    when only one or two topics are left."""
    fig = topic_mixture(theta, first, title=title, min_share=MIN_SHARE)
    return fig.update_layout(height=max(fig.layout.height or 0, 200))


def _topic_table(snap: rd.Snapshot, vocab, n: int = 10) -> tuple[np.ndarray, list[list[str]]]:
    """(topic-word probabilities (K, V), each topic's first ``n`` words)."""
    tw = _finite(snap.model.topic_word_probs().detach().cpu().numpy())
    return tw, topic_words(snap, vocab, n)


# --- Sample ----------------------------------------------------------------------------------------
def sample_page() -> None:
    st.title("Sample")
    snap, vocab = _snapshot_and_vocab("Sample")
    name = selected_run()
    st.caption("A topic model is a generative model of documents: draw topic proportions θ from the prior, and "
               "the model gives the word distribution of a document with that mix of topics. No corpus is read: "
               "the run's vocabulary is enough.")
    st.markdown(tx.prior_text(snap.config.family, alphas(snap)))
    state.SAMPLE_SEED.setdefault(0)
    c_seed, c_btn, c_n, _ = st.columns([1.2, 1, 2, 2], vertical_alignment="bottom")
    seed = c_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key=state.SAMPLE_SEED.key)
    c_btn.button("New draws", on_click=state.bump, args=(state.SAMPLE_SEED,), width="stretch",
                 help="Next seed: fresh draws from the prior.", key="text_sample_new")
    n = c_n.select_slider("Draws", DRAW_COUNTS, value=6, key="text_sample_n")
    st.fragment(_sample_view, run_every=refresh_every(name))(name, snap, vocab, int(seed), int(n))


def _sample_view(run: str, fallback: rd.Snapshot, vocab, seed: int, n: int) -> None:
    snap = _live_snapshot(run, fallback)
    with guard("Could not sample from this snapshot") as g:
        model = snap.model
        thetas = _finite(model.sample_theta(n, seed=seed).detach().cpu().numpy().astype(np.float64))  # (n, K)
        probs = _finite(model.word_probs(torch.from_numpy(thetas).float()).detach().cpu().numpy())  # (n, V)
        tw, first = _topic_table(snap, vocab)
    if g.failed:
        return
    owners = tx.word_owners(tw)
    tops = [tx.top_words(p, vocab.words, DRAW_WORDS) for p in probs]
    SAMPLE_SHOWN.set(TextDraws(run, snap.step, seed, thetas.tolist(), [w for w, _ in tops]))
    st.plotly_chart(tx.mixtures_figure(thetas, first, title=f"{n} draws of θ from the prior, seed {seed}"),
                    width="stretch", key="text_sample_mix")
    numbered = " (numbers: topics; hover a segment for its words)" if thetas.shape[1] > tx.LEGEND_TOPICS else ""
    st.caption(f"Each row is one draw's topic proportions θ{numbered}; below, the words of a document with that θ, "
               "each bar in the colour of the topic that gives the word its highest probability.")
    x_max = max(float(p.max()) for _, p in tops)  # one scale: draws compare by bar length
    ncols = min(3, n)
    cols = st.columns(ncols)
    idx = {w: i for i, w in enumerate(vocab.words)}
    for i, (words, p) in enumerate(tops):
        lead = int(np.argmax(thetas[i]))
        title = f"draw {i + 1} · {100 * thetas[i, lead]:.0f}% {topic_name(lead, first[lead], 2)}"
        cols[i % ncols].plotly_chart(tx.owned_word_bars(words, p, owners[[idx[w] for w in words]], first, title=title,
                                                        x_max=x_max), width="stretch", key=f"text_sample_words_{i}")


# --- Traverse --------------------------------------------------------------------------------------
def traverse_page() -> None:
    st.title("Traverse")
    snap, _ = _snapshot_and_vocab("Traverse")
    ctx = text_context(snap, need_corpus=False)
    run, K = ctx.name, snap.model.latent_dim
    move = "z" if snap.config.family == "prodlda" else "share"
    st.caption(("Start from a document's topic proportions θ, then move one topic's coordinate: the bars are the "
                "words of a document with the new θ. ")
               + ("ProdLDA: the slider moves z_k, in prior standard deviations, and θ = softmax(z); the other topics "
                  "keep their ratios." if move == "z" else
                  "LDA: the slider sets θ_k and the other topics are rescaled to fill the rest, in their ratios."))
    base = _text_base(ctx, K)
    if base is None:
        st.stop()
    theta, label = base
    st.subheader("Move one topic")
    st.fragment(_traverse_panel, run_every=refresh_every(run))(run, snap, ctx, theta, label, move)


def _chosen(run: str, K: int) -> state.TraverseBase | None:
    """A base handed over from Encode for this run, when it is a point of this model's simplex."""
    tb = state.TRAVERSE_BASE.for_run(run)
    with guard("The chosen base is not a topic mixture", show=False) as bad:
        z = np.asarray(tb.z, dtype=np.float64).reshape(-1) if tb else None
    ok = tb is not None and not bad.failed and len(z) == K and np.isfinite(z).all() and (z >= 0).all() \
        and abs(z.sum() - 1) < 1e-3
    return tb if ok else None


def _text_base(ctx: TextContext, K: int) -> tuple[np.ndarray, str] | None:
    """The base radio and the theta it gives (K,), with its label; None after saying why it failed."""
    run, snap, data = ctx.name, ctx.snap, ctx.data
    chosen = _chosen(run, K)
    have_docs = data is not None and len(data.x_test) > 0
    options = [PRIOR] + ([DOCUMENT] if have_docs else []) + ([CHOSEN] if chosen else [])
    if chosen and TRAVERSE_CHOSEN_SEEN.get() != chosen.token:  # a new hand-off is selected once
        TRAVERSE_KIND.set(CHOSEN)
        TRAVERSE_CHOSEN_SEEN.set(chosen.token)
    if TRAVERSE_KIND.get() not in options:
        TRAVERSE_KIND.set(DOCUMENT if have_docs else PRIOR)
    names = {PRIOR: "The prior mean", DOCUMENT: "A random test document",
             CHOSEN: f"Chosen: {chosen.label}" if chosen else ""}
    pick, more = st.columns([3, 1], vertical_alignment="center")
    kind = pick.radio("Start from", options, format_func=names.get, horizontal=True, key=TRAVERSE_KIND.key,
                      help="The sliders start at this document's topic proportions. 'Traverse from this text' on "
                           "Encode adds your own text.")
    if not have_docs and ctx.corpus_problem:
        st.caption(f"No test documents to start from: {ctx.corpus_problem}")
    with guard("Could not compute the base topic proportions") as g:
        if kind == PRIOR:
            theta = tx.prior_mean(alphas(snap))
            label = "the prior mean, θ_k = α_k / Σα" + (" (every topic equal)" if len(set(theta.tolist())) == 1 else "")
        elif kind == DOCUMENT:
            i = int(np.random.default_rng(TRAVERSE_DOC_SEED.get() or 0).integers(len(data.x_test)))
            theta = _finite(snap.model.topic_proportions(data.x_test[i:i + 1]).detach().cpu().numpy()[0])
            label = f"test document #{i}" + (f" · {tx.md_escape(group)}" if (group := _group(data, i)) else "")
            more.button("Another document", on_click=state.bump, args=(TRAVERSE_DOC_SEED,), key="text_traverse_another")
            with st.expander(f"Base: {label} · {tx.snippet(data.docs_test[i], 70)}"):
                st.text(tx.excerpt(data.docs_test[i]))
        else:
            theta, label = np.asarray(chosen.z, dtype=np.float32), chosen.label
    if g.failed:
        return None
    return np.asarray(theta, dtype=np.float32), label


def _group(data, i: int) -> str:
    y = int(data.y_test[i])
    names = data.class_names or ()
    return names[y] if 0 <= y < len(names) else ""


@dataclass(frozen=True, eq=False)
class TraversePack:
    """Every topic's path from one base under one snapshot, with each position's top words."""

    paths: list[tx.TopicPath]
    tops: list[tuple[np.ndarray, np.ndarray]]  # per path: word indices (S, n), probabilities (S, n)


@per_snapshot(max_entries=8, spinner="Computing the words along each topic's slider…")
def traverse_pack(snap: rd.Snapshot, base_key: tuple, move: str, *, theta: np.ndarray) -> TraversePack:
    """All K topics' paths from ``theta`` and their word distributions' top words: one
    ``word_probs`` call on the (K·S, K) thetas; only the top words are kept."""
    model, K = snap.model, snap.model.latent_dim
    prior = getattr(model, "prior", None)
    sigma = np.exp(0.5 * prior.logvar.detach().cpu().numpy()) if (move == "z" and prior is not None) else np.ones(K)
    paths = [tx.topic_path(theta, k, move, sigma=float(sigma[k])) for k in range(K)]
    grid = torch.from_numpy(np.concatenate([p.thetas for p in paths]))  # (K*S, K)
    probs = _finite(model.word_probs(grid).detach().cpu().numpy()).reshape(K, -1, model.vocab_size)
    return TraversePack(paths, [tx.frames(p) for p in probs])


def _traverse_panel(run: str, fallback: rd.Snapshot, ctx: TextContext, theta: np.ndarray, label: str, move: str) -> None:
    """The sliders and the word bars; reruns by itself while the run trains (new words, same base)."""
    snap = _live_snapshot(run, fallback)
    with guard("Could not compute the words along the sliders") as g:
        pack = traverse_pack(snap, tuple(np.round(theta.astype(np.float64), 6)), move, theta=theta)
        tw, first = _topic_table(snap, ctx.vocab)
    if g.failed:
        return
    owners = tx.word_owners(tw)
    K = len(pack.paths)
    if TRAVERSE_SIG.get() != (run, move, *np.round(theta, 6).tolist()):  # a new base: every slider at its start
        reset_positions(K)
        TRAVERSE_SIG.set((run, move, *np.round(theta, 6).tolist()))
    # Switching restarts the live widget from the base: a release it reported earlier is void.
    live = st.toggle("Live drag", value=True, key="text_traverse_live", on_change=state.bump, args=(TRAVERSE_RESETS,),
                     help="On: the word bars follow the slider while you drag (frames precomputed on the server, "
                          "swapped in your browser). Off: a topic picker and a Streamlit slider, drawn on release.")
    st.caption(f"Base: {label}.")
    if live:
        order = [int(k) for k in np.argsort(-theta, kind="stable")]  # the base's main topics first
        token = f"{run}|{hash(tuple(np.round(theta, 5)))}|{TRAVERSE_RESETS.get() or 0}"
        payload = tx.traverse_payload([pack.paths[k] for k in order], [pack.tops[k] for k in order], ctx.words,
                                      first, owners, theta, token)
        topic, pos = _live_widget(payload, token)
        path = pack.paths[topic if topic is not None else order[0]]
        pos = pos if topic is not None else path.start
    else:
        pick, right = st.columns([2, 3])
        with pick:
            topic = st.selectbox("Topic", list(range(len(pack.paths))), format_func=lambda k: topic_name(k, first[k]),
                                 key="text_traverse_topic")
            path = pack.paths[topic]
            traverse_pos(topic).setdefault(path.start)
            pos = st.select_slider(f"θ of {topic_name(topic)}" if move == "share" else f"z of {topic_name(topic)}",
                                   options=list(range(len(path.labels))), format_func=lambda i: path.labels[i],
                                   key=traverse_pos(topic).key)
        idx, p = pack.tops[topic]
        words = [ctx.words[i] for i in idx[pos]]
        right.plotly_chart(tx.owned_word_bars(words, p[pos], owners[idx[pos]], first, x_max=float(p.max()),
                                              title=f"Words at {path.labels[pos]}"), width="stretch",
                           key="text_traverse_bars")
        pick.plotly_chart(_mixture(path.thetas[pos], first, "Topic proportions θ"), width="stretch",
                          key="text_traverse_mix")
    st.button("Reset to base", on_click=reset_positions, args=(K,), key="text_traverse_reset")
    idx, p = pack.tops[path.topic]
    TRAVERSE_SHOWN.set(TextTraverse(run, path.topic, int(pos), path.thetas[pos].tolist(),
                                    [ctx.words[i] for i in idx[pos]], p[pos].tolist()))
    st.caption(f"Moved from base: {tx.moved_text(path, int(pos))} · snapshot step {snap.step:,}")


_JS = r"""
// As text_explore_figures.percent: two significant digits under 10%.
const pct = (p) => { const v = 100 * p; return (v >= 9.95 ? v.toFixed(0) : v >= 0.995 ? v.toFixed(1) : v.toPrecision(2)) + '%'; };

function render(root) {
  const d = root._d, pos = root._pos, t = d.topics[pos.row], frame = t.frames[pos.step];
  const bars = root.querySelector('.lt-bars'); bars.textContent = '';
  const shown = [];
  for (const [wi, p] of frame) {
    const row = document.createElement('div'); row.className = 'lt-bar';
    const word = document.createElement('span'); word.className = 'lt-word'; word.textContent = d.words[wi];
    const track = document.createElement('span'); track.className = 'lt-track';
    const fill = document.createElement('span'); fill.className = 'lt-fill';
    fill.style.width = Math.min(100, 100 * p / (t.scale || 1)) + '%';
    fill.style.background = d.colours[d.owners[wi]]; fill.title = d.names[d.owners[wi]];
    track.appendChild(fill);
    const val = document.createElement('span'); val.className = 'lt-pct'; val.textContent = pct(p);
    row.append(word, track, val); bars.appendChild(row);
    shown.push([d.words[wi], p]);
  }
  // theta: topic k at its share, the others in their base ratios (both families keep them).
  const K = d.base.length, k = t.topic, share = t.shares[pos.step], rest = 1 - d.base[k];
  const mix = root.querySelector('.lt-mix'); mix.textContent = '';
  for (let j = 0; j < K; j++) {
    const th = j === k ? share : (rest > 1e-12 ? d.base[j] * (1 - share) / rest : (1 - share) / (K - 1));
    if (th < 0.005) continue;
    const seg = document.createElement('span'); seg.className = 'lt-seg';
    seg.style.width = (100 * th) + '%'; seg.style.background = d.colours[j];
    seg.title = d.names[j] + ': ' + pct(th); mix.appendChild(seg);
  }
  root.querySelector('.lt-head').textContent = t.label + ' at ' + t.labels[pos.step];
  window.__ltFrames = (window.__ltFrames || 0) + 1;
  window.__ltLast = { topic: k, step: pos.step, words: shown.map((w) => w[0]), probs: shown.map((w) => w[1]) };
}

export default function(component) {
  const { data, parentElement, setStateValue } = component;
  if (!data) return;
  let root = parentElement.querySelector('.lt-root');
  const fresh = !root || root.dataset.sig !== data.token || root._d.topics.length !== data.topics.length;
  if (fresh) {
    if (root) root.remove();
    root = document.createElement('div'); root.className = 'lt-root'; root.dataset.sig = data.token;
    root.innerHTML = '<div class="lt-sliders"></div><div class="lt-words"><div class="lt-head"></div>'
      + '<div class="lt-mix"></div><div class="lt-bars"></div></div>';
    parentElement.appendChild(root);
    root._pos = { row: 0, step: data.topics[0].start };
  }
  // A new snapshot with the same base swaps the frames but keeps where the user has moved.
  root._d = data;
  if (fresh) {
    const box = root.querySelector('.lt-sliders');
    data.topics.forEach((t, row) => {
      const wrap = document.createElement('label'); wrap.className = 'lt-row';
      const sw = document.createElement('span'); sw.className = 'lt-swatch'; sw.style.background = t.colour;
      const name = document.createElement('span'); name.className = 'lt-name'; name.textContent = t.label;
      const input = document.createElement('input');
      input.type = 'range'; input.min = 0; input.max = t.labels.length - 1; input.step = 1; input.value = t.start;
      input.setAttribute('aria-label', t.label);
      const out = document.createElement('span'); out.className = 'lt-val'; out.textContent = t.labels[t.start];
      input.addEventListener('input', () => {   // fires continuously while dragging
        if (root._pos.row !== row) {            // one topic moves at a time: the others go back to the base
          root.querySelectorAll('.lt-row').forEach((r, j) => {
            if (j === row) return;
            const tj = root._d.topics[j];
            r.querySelector('input').value = tj.start; r.querySelector('.lt-val').textContent = tj.labels[tj.start];
          });
        }
        root._pos = { row, step: parseInt(input.value, 10) };
        out.textContent = root._d.topics[row].labels[root._pos.step];
        render(root);
      });
      input.addEventListener('change', () => setStateValue('pos', { token: data.token, topic: root._d.topics[row].topic,
                                                                  step: root._pos.step }));  // release
      wrap.append(sw, name, input, out); box.appendChild(wrap);
    });
  }
  render(root);
}
"""

_CSS = """
.lt-root { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; font-family: var(--st-font); }
.lt-sliders { flex: 3 1 520px; display: flex; flex-direction: column; gap: 0.15rem; max-height: 34rem; overflow-y: auto; }
.lt-row { display: grid; grid-template-columns: 0.7rem minmax(8rem, 13rem) minmax(8rem, 1fr) 6.8rem; align-items: center; gap: 0.5rem;
          font-size: 0.85rem; }
.lt-swatch { width: 0.7rem; height: 0.7rem; border-radius: 2px; }
.lt-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.lt-row input { width: 100%; accent-color: var(--st-primary-color); }
.lt-val { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; font-size: 0.8rem; }
.lt-words { flex: 2 1 340px; min-width: 300px; }
.lt-head { font-size: 0.9rem; font-weight: 600; margin-bottom: 0.35rem; }
.lt-mix { display: flex; height: 0.9rem; border-radius: 3px; overflow: hidden; margin-bottom: 0.6rem;
          border: 1px solid var(--st-border-color); }
.lt-seg { height: 100%; }
.lt-bar { display: grid; grid-template-columns: 7.5rem 1fr 3.2rem; align-items: center; gap: 0.5rem; font-size: 0.85rem;
          height: 1.45rem; }
.lt-word { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-align: right; }
.lt-track { height: 0.95rem; }
.lt-fill { display: block; height: 100%; border-radius: 2px; }
.lt-pct { font-variant-numeric: tabular-nums; text-align: right; font-size: 0.8rem; }
"""

_component = st.components.v2.component("latent_explorer_text_traverse", js=_JS, css=_CSS)


def _live_widget(payload: dict, token: str) -> tuple[int | None, int]:
    """Draw the live sliders and bars; (topic, position) after the last release, or (None, 0)."""
    result = _component(key="text_traverse_widget", data=payload, default={"pos": None}, on_pos_change=lambda: None)
    value = getattr(result, "pos", None)
    # A release reported for an older base (before a reset or a new base) is ignored.
    if isinstance(value, dict) and value.get("token") == token:
        topic, step = value.get("topic"), value.get("step")
        n = len(payload["topics"][0]["labels"]) if payload["topics"] else 0
        if isinstance(topic, int) and 0 <= topic < len(payload["topics"]) and isinstance(step, int) and 0 <= step < n:
            return topic, step
    return None, 0


# --- Encode ----------------------------------------------------------------------------------------
def encode_page() -> None:
    st.title("Encode your text")
    snap, _ = _snapshot_and_vocab("Encode your text")
    ctx = text_context(snap, need_corpus=False)
    snapshot_caption(ctx.name, snap)
    st.caption(f"Paste or upload a text. It is counted over the run's {len(ctx.vocab):,}-word vocabulary, as the "
               "training documents were, and the model gives its topic proportions θ; the nearest test posts are "
               "the ones with the closest θ.")
    tab_paste, tab_up = st.tabs(["Paste text", "Upload a .txt file"], key="encode_text_tab", on_change="rerun")
    with tab_paste:
        text = st.text_area("Your text", key="encode_text", height=160, max_chars=MAX_TEXT_CHARS,
                            placeholder="e.g. NASA plans a new shuttle launch to put a satellite in orbit around the moon.")
        if tab_paste.open is not False:
            if not text.strip():
                st.info("Paste or type some text above, then press Ctrl+Enter (or click outside the box) to see its "
                        "topics.")
            else:
                _encoded(ctx, text, "paste")
    with tab_up:
        f = st.file_uploader("A plain-text file (UTF-8)", type=["txt"], key="encode_text_file",
                             help=f"Read as text only, up to {tx.MAX_TEXT_BYTES / 1e6:g} MB.")
        if f is not None and tab_up.open is not False:
            with guard("Could not read this file") as g:
                text = tx.read_text_file(f.getvalue(), f.name)
            if not g.failed:
                if not text.strip():
                    st.warning(f"'{f.name}' holds only white space: there is no text to encode.")
                else:
                    _encoded(ctx, text, "upload")


@guarded("Could not encode this text")
def _encoded(ctx: TextContext, text: str, source: str) -> None:
    """Everything about one text; ``source`` ("paste" or "upload") keeps widget keys apart."""
    snap, vocab = ctx.snap, ctx.vocab
    tw = tx.text_words(vocab, text)
    if not tw.known:
        ENCODE_SHOWN.pop()
        st.warning(tx.no_known_words(tw, len(vocab)))
        return
    theta = _finite(snap.model.topic_proportions(torch.from_numpy(tw.counts)).detach().cpu().numpy()[0])  # (K,)
    topic_word, first = _topic_table(snap, vocab)
    left, right = st.columns([3, 2])
    left.plotly_chart(_mixture(theta, first, "Its topic mixture θ"), width="stretch", key=f"encode_text_mix_{source}")
    if (theta < MIN_SHARE).any():
        left.caption(f"Topics under {100 * MIN_SHARE:.0f}% are left out.")
    if note := tx.flat_note(theta):
        left.info(note)
    right.markdown(tx.words_text(tw, len(vocab)))
    ids = [vocab.words.index(w) for w, _ in tw.known]
    topics = tx.word_topics(theta, topic_word, ids)
    right.dataframe(pd.DataFrame({"word": [w for w, _ in tw.known], "count": [c for _, c in tw.known],
                                  "likely topic": [topic_name(int(k), first[k], 2) for k in topics]}),
                    hide_index=True, width="stretch", height=min(320, 38 + 35 * len(tw.known)))
    if right.button("Traverse from this text", key=f"encode_text_traverse_{source}", type="primary"):
        traverse_from(state.TraverseBase(ctx.name, theta.astype(float).tolist(), "your text"))
    nearest: list[int] = []
    if ctx.data is None:
        st.info(f"The nearest posts need the run's corpus, which is not available: {ctx.corpus_problem}")
    elif len(ctx.data.x_test):
        nearest = _nearest_posts(ctx, theta)
    ENCODE_SHOWN.set(TextEncoded(ctx.name, theta.astype(float).tolist(), tw.n_known, tw.n_unknown, nearest))


def _nearest_posts(ctx: TextContext, theta: np.ndarray) -> list[int]:
    data = ctx.data
    thetas = test_proportions(ctx.snap, counts=data.x_test)  # (N, K), once per snapshot
    idx, dist = tx.nearest(theta, thetas, N_NEAREST)
    st.markdown(f"**Nearest posts** among the {len(thetas):,} test documents, by the Hellinger distance between topic "
                "mixtures (0: the same mixture, 1: no topic in common)")
    for i, d in zip(idx, dist):
        group = tx.md_escape(_group(data, int(i)))
        lead = int(np.argmax(thetas[i]))
        head = " · ".join(filter(None, [group, f"H {d:.2f}", tx.snippet(data.docs_test[i], 70)]))
        with st.expander(head):
            st.caption(f"Test document #{int(i)} · mostly {topic_name(lead)} ({100 * thetas[i, lead]:.0f}%)")
            st.text(tx.excerpt(data.docs_test[i]))
    return [int(i) for i in idx]

