"""The text parts of the Train, Reconstructions and Latent space pages, for a topic-model run
(family ``prodlda`` or ``lda``): the new-run form's topic-model fields, the live panel's topics,
a test document beside its reconstruction, and the test documents placed by their topic
proportions. Engine calls go through ``vae_core``; figures come from ``text_figures``.

Session state: the widgets train_text_dataset, train_text_path, train_text_family and the
form's fields; recon_doc (the document Reconstructions shows; the random button and the list
set it) and recon_doc_pick; ls_text_method, ls_text_colour and ls_text_scatter (the scatter's
selection); SELECTED_POINT (the clicked document's test index, as for images) and
_ls_text_tsne (the t-SNE layout in use while a run trains). The text-only slots are declared
here, beside the only code that reads them.
"""
from __future__ import annotations

import html
import math

import numpy as np
import streamlit as st
import torch

from vae_core.data import list_datasets
from vae_core.data.text import DEFAULT_VOCAB_SIZE
from vae_core.engine.config import MAX_HIDDEN, MAX_LATENT_DIM, MAX_VOCAB, TopicModelConfig
from vae_core.engine.objectives import elbo_terms, multinomial_log_coefficient
from vae_core.explore import project_2d
from vae_core.runs import rundir as rd
from vae_core.runs.manager import TOPIC_TRAIN_DEFAULTS

from . import state
from . import text_figures as tf
from .cache import per_snapshot, pinned
from .guard import guard
from .images import spread
from .runs import flash, manager, refresh_every, rerun_when_run_ends, run_config, select_run, snapshot, snapshot_caption
from .state import Pinned, Slot
from .text_runs import TextContext, test_proportions, topic_words, vocabulary

RECON_DOC: Slot[int] = Slot("recon_doc", int)
LS_TEXT_SCATTER: Slot[dict] = Slot("ls_text_scatter", dict)
LS_TEXT_TSNE: Slot[Pinned] = Slot("_ls_text_tsne", Pinned)  # value: (Projection, theta it was computed from)

OWN_TEXT = "Your own text…"
FAMILIES = {"ProdLDA": "prodlda", "LDA": "lda"}
N_WORDS = 12  # words per bar chart
PERPLEXITY_SAMPLES = 20  # draws of z for a ProdLDA document's ELBO, as the run's reported perplexity uses
LIST_DOCS = 300  # documents offered in Reconstructions' list
MAX_DOCS = 2000  # documents on the Latent space scatter (and what t-SNE is fitted on)
SNIPPET = 90  # characters of a post shown on hover and in the list
POST_CHARS = 6000  # characters of a post shown in full; longer ones are cut there
NO_TEST_DOCUMENTS = ("This corpus has no test document with a vocabulary word, so there is nothing to show here: "
                     "add documents (a fifth of them is held out for testing).")


# --- Train: the form of a new topic run -------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _text_datasets():
    return list_datasets(modality="text")  # probes the shipped file: not on every rerun


def new_topic_run() -> None:
    """The Train page's new-run section for text: the corpus, ProdLDA or LDA, their settings,
    and Start. The corpus is read and its vocabulary counted when the run starts (once per
    corpus and vocabulary size; the disk cache keeps it)."""
    infos = _text_datasets()
    ready = [d.name for d in infos if d.available and not d.needs_path]
    col_data, col_about = st.columns([1, 2])
    choice = col_data.selectbox("Dataset", ready + [OWN_TEXT], key="train_text_dataset",
                                help="Unavailable corpora, and why, are listed below.")
    spec = choice
    if choice == OWN_TEXT:
        path = col_data.text_input("Path on this machine", key="train_text_path",
                                   placeholder="/path/to/folder, posts.jsonl or posts.csv").strip()
        spec = f"text:{path}" if path else ""
        col_about.caption("**Your own text**: a folder of .txt files, one document each (a subfolder's name is "
                          "the class), a .jsonl with a `text` field and an optional `label`, or a .csv with a "
                          "`text` column. A fifth of the documents is held out for testing.")
    elif (info := next((d for d in infos if d.name == choice), None)) is not None:
        col_about.caption(f"**{choice}**: {info.detail}")
    if missing := [d for d in infos if not d.available]:
        with col_data.expander(f"{len(missing)} corpus(es) unavailable here"):
            st.markdown("\n".join(f"- **{d.name}**: {d.detail}" for d in missing))
    family = FAMILIES[col_data.radio(
        "Topic model", list(FAMILIES), horizontal=True, key="train_text_family",
        help="ProdLDA: a VAE whose encoder gives each document's topic proportions and whose decoder is a product "
             "of experts (Srivastava & Sutton 2017). LDA: the classical model, fitted by online variational "
             "Bayes (Hoffman, Blei & Bach 2010) through scikit-learn.")]
    col_about.caption("The corpus is read and its words counted when the run starts (once per corpus and "
                      "vocabulary size; later runs read the cache).")
    fields = _topic_fields(family, spec)
    if fields is None:
        return
    model, train, name = fields
    with guard("Could not start the run"):
        with st.spinner(f"Reading and counting the words of **{spec}**…"):
            config = run_config(spec, family=family, model=model, train=train)
        res = manager().start(config, name=name)
        select_run(res.name)
        flash(res.message)
        st.rerun()


def _topic_fields(family: str, spec: str) -> tuple[dict, dict, str | None] | None:
    """The form's fields for ``family``; (model, train, run name) once Start is pressed.
    Keys carry the family: ProdLDA's and LDA's defaults (epochs, α) differ."""
    defaults, key = TOPIC_TRAIN_DEFAULTS[family], f"train_{family}"
    prod = family == "prodlda"
    with st.form(f"new-{family}-run"):
        c = st.columns(4 if prod else 3)
        topics = c[0].number_input("Topics K", min_value=2, max_value=MAX_LATENT_DIM, value=20, key=f"{key}_k",
                                   help="How many topics the model learns: its latent dimensions.")
        alpha = c[1].number_input(
            "Dirichlet α", min_value=0.001 if prod else 0.0001, max_value=1000.0,
            value=float(TopicModelConfig.alpha) if prod else None, format="%g", key=f"{key}_alpha",
            placeholder="1/K", help="The prior's concentration on each document's topic proportions: below 1 a "
            "document is about few topics. " + ("ProdLDA's prior is the Laplace approximation of Dirichlet(α)."
                                                if prod else "Empty is 1/K, scikit-learn's default."))
        vocab = c[2].number_input("Vocabulary size", min_value=2, max_value=MAX_VOCAB, value=DEFAULT_VOCAB_SIZE,
                                  step=500, key=f"{key}_vocab", help="The most frequent words kept (English stop "
                                  "words and words in under 2 documents or over 95% of them are left out).")
        if prod:
            hidden = c[3].number_input("Hidden units", min_value=1, max_value=MAX_HIDDEN, value=TopicModelConfig.hidden,
                                       key=f"{key}_hidden", help="The width of the encoder's two layers.")
            c = st.columns(4)
            dropout = c[0].number_input("Dropout", min_value=0.0, max_value=0.95, value=TopicModelConfig.dropout,
                                        step=0.05, format="%.2f", key=f"{key}_dropout",
                                        help="On the encoder's last layer and on θ while training.")
            lr = c[1].number_input("Learning rate", min_value=1e-6, max_value=1.0, value=defaults["lr"], format="%.0e",
                                   key=f"{key}_lr", help="Adam's peak rate (the cosine schedule decays it).")
            c_epochs, c_name = c[2], c[3]
        else:
            c_epochs, c_name = st.columns(2)
        epochs = c_epochs.number_input("Epochs", min_value=1, max_value=100000, value=defaults["epochs"],
                                       key=f"{key}_epochs", help="Passes over the training documents."
                                       + (" The learning rate decays to 0 by the last one." if prod else ""))
        run_name = c_name.text_input("Run name (optional)", max_chars=64, key=f"{key}_name",
                                     placeholder="letters, digits, '.', '_' or '-'")
        submitted = st.form_submit_button("Start training", type="primary", disabled=not spec)
    if not submitted:
        return None
    model = {"topics": int(topics), "alpha": None if alpha is None else float(alpha), "vocab_size": int(vocab)}
    train = {"epochs": int(epochs)}
    if prod:
        model |= {"hidden": int(hidden), "dropout": float(dropout)}
        train["lr"] = float(lr)
    return model, train, run_name.strip() or None


# --- Train: the live panel's topics ---------------------------------------------------------------
def live_topics(run: str) -> None:
    """The selected snapshot's topics, each with its 10 most probable words (refreshed with the panel)."""
    snap = snapshot(run)
    if snap is None:
        return
    with guard("Could not read the topics of this snapshot") as g:
        words = topic_words(snap, vocabulary(snap), 10)
    if g.failed:
        return
    st.markdown(f"**Topics** at step {snap.step:,} (epoch {snap.epoch}): each topic's 10 most probable words")
    # Rows are 35 px: K = 20 topics show without a scrollbar, more scroll.
    st.dataframe(tf.topics_table(words), hide_index=True, width="stretch", height=35 * (min(len(words), 20) + 1) + 3)


# --- per-document numbers -------------------------------------------------------------------------
def document_perplexity(model, x: torch.Tensor) -> np.ndarray:
    """Each document's perplexity exp(−bound_d / n_d) from a lower bound on the log probability of
    its word sequence, for counts x (B, V): (B,). ProdLDA: the ELBO (``PERPLEXITY_SAMPLES`` seeded
    draws) less the multinomial coefficient, as the run's test perplexity. LDA: its own bound for
    the document (``LdaModel.document_bounds``: without q(β)'s corpus-wide term)."""
    n = x.sum(-1).double()
    if hasattr(model, "document_bounds"):  # LDA
        bound = torch.from_numpy(np.asarray(model.document_bounds(x), np.float64))
    else:
        with torch.no_grad():
            terms = elbo_terms(model, x, samples=PERPLEXITY_SAMPLES, generator=torch.Generator().manual_seed(0))
        bound = (terms.elbo - multinomial_log_coefficient(x)).double()
    return torch.where(n > 0, torch.exp(-bound / n.clamp_min(1)), torch.tensor(math.nan, dtype=torch.float64)).numpy()


def bound_name(family: str) -> str:
    if family == "lda":
        return ("LDA's variational bound for this document (q(θ) fitted to it by scikit-learn's E-step, without "
                "the corpus-wide term of q(β)), per word")
    return (f"the ELBO with {PERPLEXITY_SAMPLES} samples of z, less the multinomial coefficient (so it bounds the "
            "word sequence, as LDA's does), per word")


def group_name(ctx: TextContext, index: int) -> str:
    """The test document's class ("sci.space"), or "" when the corpus has no labels."""
    y, names = int(ctx.data.y_test[index]), ctx.data.class_names
    return names[y] if names and 0 <= y < len(names) else ""


def snippet(text: str, n: int = SNIPPET) -> str:
    """The start of a post on one line, escaped for plotly's hover (which reads a few HTML tags)."""
    flat = " ".join(text.split())
    return html.escape(flat[:n] + ("…" if len(flat) > n else ""))


def show_post(text: str) -> None:
    """The post as plain text (no markdown: a post is not ours to format), cut at ``POST_CHARS``."""
    cut = len(text) > POST_CHARS
    st.text(text[:POST_CHARS] if text.strip() else "(this document has no text)")
    if cut:
        st.caption(f"… the first {POST_CHARS:,} of {len(text):,} characters.")


# --- Reconstructions ----------------------------------------------------------------------------------
def reconstructions(ctx: TextContext) -> None:
    """A test document's words beside its reconstruction's, its perplexity and topic mixture."""
    st.caption("A topic model reads a document as a bag of words. It encodes the word counts to topic "
               "proportions θ, and its decoder turns θ into a distribution over words. On the left are the "
               "document's most frequent words (share of its counted words); on the right, the words the model "
               "finds most probable for it. The **perplexity** is exp(−bound per word): the number of equally "
               "likely words the model is as unsure as; lower is better.")
    data = ctx.data
    n = len(data.x_test)
    if not n:
        st.info(NO_TEST_DOCUMENTS)
        return
    RECON_DOC.set(min(max(RECON_DOC.get() or 0, 0), n - 1))  # a smaller corpus than the last run's
    c_idx, c_btn, c_list = st.columns([1, 1, 3], vertical_alignment="bottom")
    c_idx.number_input("Test document #", min_value=0, max_value=n - 1, step=1, key=RECON_DOC.key,
                       help=f"0 to {n - 1:,}: the position among the {n:,} test documents.")
    c_btn.button("Random document", on_click=_random_document, args=(n,), width="stretch",
                 help="Another test document (seeded: the seed goes up by one per press).")
    offered = spread(n, LIST_DOCS)
    c_list.selectbox("…or choose one from the list", offered, index=None, key="recon_doc_pick",
                     placeholder=f"{len(offered)} test documents, evenly spread", on_change=_picked,
                     format_func=lambda i: f"#{i} · " + (f"{g} · " if (g := group_name(ctx, i)) else "")
                     + html.unescape(snippet(data.docs_test[i], 70)))
    st.fragment(_document, run_every=refresh_every(ctx.name))(ctx, int(RECON_DOC.get()))


def _random_document(n: int) -> None:
    seed = state.bump(state.RECON_SEED)
    RECON_DOC.set(int(np.random.default_rng(seed).integers(n)))
    st.session_state["recon_doc_pick"] = None


def _picked() -> None:
    if (i := st.session_state.get("recon_doc_pick")) is not None:
        RECON_DOC.set(int(i))


def _document(ctx: TextContext, index: int) -> None:
    rerun_when_run_ends(ctx.name)
    snap = snapshot(ctx.name)
    if snap is None:
        return
    snapshot_caption(ctx.name, snap)
    data, words = ctx.data, ctx.words
    x = data.x_test[index:index + 1]  # (1, V)
    with guard("Could not reconstruct this document with this snapshot") as g:
        theta = snap.model.topic_proportions(x)  # (1, K)
        probs = snap.model.word_probs(theta)[0].cpu().numpy()  # (V,)
        perplexity = float(document_perplexity(snap.model, x)[0])
        names = topic_words(snap, ctx.vocab, 4)
    if g.failed:
        return
    counts = x[0].numpy()
    n_words = int(counts.sum())
    doc_w, doc_p = tf.top_entries(counts / max(n_words, 1), words, N_WORDS)
    rec_w, rec_p = tf.top_entries(probs, words, N_WORDS)
    group = group_name(ctx, index)
    st.subheader(f"Test document #{index}" + (f" · {group}" if group else ""))
    m1, m2, m3 = st.columns(3)
    m1.metric("Words counted", f"{n_words:,}", help="Occurrences of vocabulary words in the document.")
    m2.metric("Perplexity", f"{perplexity:,.1f}" if math.isfinite(perplexity) else "–",
              help=f"exp(−bound / words), from {bound_name(snap.config.family)}: an upper bound on the "
                   "document's perplexity under the model.")
    m3.metric("Shared top words", f"{len(set(doc_w) & set(rec_w))} of {len(doc_w)}",
              help="How many of the document's most frequent words are also among the reconstruction's most probable.")
    st.caption(f"Perplexity from {bound_name(snap.config.family)}.")
    left, right = st.columns(2)
    left.plotly_chart(tf.word_bars(doc_w, doc_p, "The document: its most frequent words"), width="stretch",
                      key="recon_doc_words")
    right.plotly_chart(tf.word_bars(rec_w, rec_p, "Its reconstruction: the most probable words given θ",
                                    colour="#ff7f0e"), width="stretch", key="recon_rec_words")
    st.plotly_chart(tf.topic_mixture(theta[0].cpu().numpy(), names, "Its topic mixture θ (topics over 1%)",
                                     min_share=0.01), width="stretch", key="recon_mixture")
    with st.expander("The post's text"):
        show_post(data.docs_test[index])


# --- Latent space -------------------------------------------------------------------------------------
VIEWS = {"PCA": "pca", "t-SNE": "tsne"}


@per_snapshot(max_entries=8, spinner="Running t-SNE on the documents' topic proportions (this takes a few seconds)…")
def tsne(snap: rd.Snapshot, n: int, *, theta: np.ndarray):
    # On sqrt(theta): Euclidean distance there is the Hellinger distance between the proportions,
    # which weighs small topics fairly (plain distances on the simplex are dominated by large ones).
    return project_2d(np.sqrt(np.clip(theta, 0.0, None)), "tsne", seed=0)


def latent_space(ctx: TextContext) -> None:
    """The test documents placed by their topic proportions; a click reads the post."""
    st.caption("Each dot is a test document, placed by its topic proportions θ (the encoder's output for ProdLDA, "
               "E_q[θ] for LDA) and coloured by its group or its main topic. Click a dot to read the post.")
    data = ctx.data
    if not len(data.x_test):
        st.info(NO_TEST_DOCUMENTS)
        return
    ids = spread(len(data.x_test), MAX_DOCS)  # global test indices of the plotted documents
    kind = "newsgroup" if data.spec == "20newsgroups" else "class"
    colour_by = ([kind] if data.class_names else []) + ["dominant topic"]
    c1, c2 = st.columns(2)
    method = VIEWS[c1.radio("View", list(VIEWS), horizontal=True, key="ls_text_method",
                            help="PCA: the two directions of largest spread of θ (linear, fast). t-SNE: a non-linear "
                                 "map that keeps documents with similar mixtures together (slow; distances between "
                                 "clusters mean little).")]
    colour = c2.radio("Colour by", colour_by, horizontal=True, key="ls_text_colour")
    st.fragment(_scatter, run_every=refresh_every(ctx.name))(ctx, ids, method, colour)


def _on_pick(run: str):
    """Remember the clicked document's test index: the live figure changes on every refresh and
    would drop its own selection."""
    def handler() -> None:
        for p in ((LS_TEXT_SCATTER.get() or {}).get("selection") or {}).get("points", []):
            cd = p.get("customdata")
            if isinstance(cd, (list, tuple)) and cd and isinstance(cd[0], (int, float)):
                return state.SELECTED_POINT.set(state.SelectedPoint(run, int(cd[0])))
    return handler


def _project(run: str, snap: rd.Snapshot, method: str, theta: np.ndarray):
    """(projection, a note on which snapshot it is from). t-SNE stays on its snapshot while the
    run trains (it takes seconds) until the update button is pressed."""
    if method == "pca":
        return project_2d(theta, "pca"), ""
    kept, training = LS_TEXT_TSNE.for_run(run), refresh_every(run) is not None
    update = training and kept is not None and kept.step != snap.step and st.button(
        "Update t-SNE to the latest snapshot", key="ls_text_tsne_update")
    pin = pinned(LS_TEXT_TSNE, run, snap, lambda: (tsne(snap, len(theta), theta=theta), theta),
                 keep=lambda k: training and not update and len(k.value[1]) == len(theta))
    note = (f" Computed on the snapshot at step {pin.step:,} (epoch {pin.epoch}); t-SNE is slow, so while the run "
            "trains it stays there until you press the update button." if training else "")
    return pin.value[0], note


def _scatter(ctx: TextContext, ids: np.ndarray, method: str, colour: str) -> None:
    rerun_when_run_ends(ctx.name)
    snap = snapshot(ctx.name)
    if snap is None:
        return
    snapshot_caption(ctx.name, snap)
    data = ctx.data
    with guard("Could not read the test documents' topics with this snapshot") as g:
        theta_all = test_proportions(snap, counts=data.x_test)  # (N, K)
        names = topic_words(snap, ctx.vocab, 3)
    if g.failed:
        return
    with guard("Could not place the documents") as g:
        proj, note = _project(ctx.name, snap, method, theta_all[ids])
    if g.failed:
        return
    if colour == "dominant topic":
        groups = tf.dominant_topics(theta_all[ids])
        group_names = [tf.topic_name(k, names[k]) for k in range(len(names))]
        colours = [tf.topic_colour(k) for k in range(len(names))]
    else:
        groups, group_names, colours = data.y_test[ids].numpy(), list(data.class_names), tf.CLASS_COLOURS
    sel = state.SELECTED_POINT.for_run(ctx.name)
    hit = np.flatnonzero(ids == sel.index) if sel else []
    fig = tf.document_scatter(proj.xy, groups, ids, group_names, colours=colours, legend=colour,
                              hover=[snippet(data.docs_test[i]) for i in ids],
                              selected=proj.xy[hit[0]] if len(hit) else None,
                              axes=("PC 1", "PC 2") if proj.method == "pca" else None,
                              revision=f"{ctx.name}-{proj.method}-{colour}")
    st.plotly_chart(fig, width="stretch", key=LS_TEXT_SCATTER.key, on_select=_on_pick(ctx.name),
                    selection_mode="points")
    shown = f"{len(ids):,} test documents" + (f", evenly spread over all {len(data.x_test):,}"
                                              if len(ids) < len(data.x_test) else "")
    if proj.method == "pca":
        ev = ", ".join(f"{v:.0%}" for v in proj.explained_variance or ())
        st.caption(f"**PCA** of the {snap.model.latent_dim} topic proportions: the two axes explain {ev} of their "
                   f"variance. {shown}. {proj.note}")
    else:
        st.caption(f"**t-SNE** of √θ (Hellinger distances between topic mixtures; perplexity 30, seed 0): nearby "
                   f"documents have similar mixtures; the axes have no units. {shown}.{note} {proj.note}")
    _selected(ctx, theta_all, names, sel.index if sel else None)


def _selected(ctx: TextContext, theta_all: np.ndarray, names: list[list[str]], index: int | None) -> None:
    st.subheader("Selected post")
    data = ctx.data
    if index is None or not 0 <= index < len(data.x_test):
        st.info("Click a dot in the scatter to read its post and see its topic mixture here.")
        return
    group = group_name(ctx, index)
    words = int(data.x_test.lengths[index])
    st.markdown(f"**Test post #{index}**" + (f" · {group}" if group else "") + f" · {words:,} words counted")
    left, right = st.columns([3, 2])
    with left.container(height=420, border=True):
        show_post(data.docs_test[index])
    right.plotly_chart(tf.topic_mixture(theta_all[index], names, "Its topic mixture θ (topics over 2%)",
                                        min_share=0.02), width="stretch", key="ls_text_mixture")
