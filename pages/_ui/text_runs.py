"""What the pages read of a topic-model run (family ``prodlda`` or ``lda``): its vocabulary (kept in
the run directory, so topics, samples and traversals show without the corpus), its corpus counted
over that vocabulary when the corpus is there, and per-snapshot results every text page shares.

A page that adapts to text calls ``is_text_run(snap)`` after ``runs.require_snapshot`` and then
``text_context``; the engine calls go through ``vae_core`` only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from vae_core.data import DatasetError
from vae_core.data.text import TextDataset, Vocabulary
from vae_core.labs.topics import TopicReport, top_words, topic_report
from vae_core.runs import rundir as rd
from vae_core.runs.run_data import load_run_data, run_vocabulary

from .cache import cached_result, per_snapshot, remember_result
from .runs import require_snapshot, selected_run

TEXT_DATASETS_KEPT = 2  # vectorised corpora the server keeps (20 Newsgroups: about 30 MB of sparse counts)
THETA_BATCH = 1000


def is_text_run(snap: rd.Snapshot) -> bool:
    return snap.config.is_text


@dataclass(frozen=True, eq=False)
class TextContext:
    """A text page's inputs: the run, its snapshot and vocabulary, and its corpus (None when the
    corpus is missing or has changed since the run started; ``corpus_problem`` then says why)."""

    name: str
    snap: rd.Snapshot
    vocab: Vocabulary
    data: TextDataset | None
    corpus_problem: str | None = None

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.vocab.words)


def vocabulary(snap: rd.Snapshot) -> Vocabulary:
    key = (str(snap.run_dir), "vocab")
    if (hit := cached_result("text_vocab", key)) is None:
        hit = run_vocabulary(snap.run_dir)
        remember_result("text_vocab", key, hit, limit=16)
    return hit


def corpus(snap: rd.Snapshot) -> TextDataset:
    """The run's corpus over its own vocabulary, kept for every session (raises DatasetError)."""
    tc = snap.config.train
    key = (str(snap.run_dir), tc.dataset, tc.seed, snap.config.model.vocab_size)
    if (hit := cached_result("text_datasets", key)) is not None:
        return hit
    with st.spinner(f"Reading and counting the words of **{tc.dataset}** (once)…"):
        data = load_run_data(snap.config, snap.run_dir)
    remember_result("text_datasets", key, data, limit=TEXT_DATASETS_KEPT)
    return data


def text_context(snap: rd.Snapshot, need_corpus: bool = True) -> TextContext:
    """The page's ``TextContext``; with ``need_corpus``, a page that cannot work without the corpus
    says why and stops when it is unavailable."""
    name = selected_run() or snap.run_dir.name
    try:
        vocab = vocabulary(snap)
    except DatasetError as e:
        st.error(f"This topic run has no readable vocabulary ({e}); its words cannot be shown.")
        st.stop()
    try:
        data, problem = corpus(snap), None
    except DatasetError as e:
        data, problem = None, str(e)
    if data is None and need_corpus:
        st.warning(f"The run's corpus is not available: {problem}. This page reads its documents; the Sample and "
                   "Traverse pages and the topics need only the vocabulary the run kept.")
        st.stop()
    return TextContext(name, snap, vocab, data, problem)


def text_page_context(page: str) -> TextContext | None:
    """For a page that shows images or text: the text context when the selected run is a topic
    model, else None (after the empty state, which stops the page when there is no snapshot)."""
    snap = require_snapshot(page)
    if snap is None:
        st.stop()
    return text_context(snap) if is_text_run(snap) else None


# --- per-snapshot results shared by the text pages --------------------------------------------------
@per_snapshot(max_entries=8, progress="Reading the test documents' topics")
def test_proportions(snap: rd.Snapshot, *, counts, progress) -> np.ndarray:
    """theta for every test document, (N, K) float32, a batch at a time."""
    model, n = snap.model, len(counts)
    out = []
    with torch.no_grad():
        for start in range(0, n, THETA_BATCH):
            out.append(model.topic_proportions(counts[start:start + THETA_BATCH]).cpu().numpy())
            progress(min(n, start + THETA_BATCH), n)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.latent_dim), np.float32)


@per_snapshot(max_entries=8, spinner="Scoring the topics on the test documents…")
def report(snap: rd.Snapshot, *, data: TextDataset) -> TopicReport:
    """NPMI, diversity, perplexity and top words of this snapshot (``labs.topics.topic_report``)."""
    return topic_report(snap.model, data.vocab, data.x_test)


def topic_words(snap: rd.Snapshot, vocab: Vocabulary, n: int = 10) -> list[list[str]]:
    """Each topic's ``n`` most probable words (needs only the vocabulary)."""
    words = vocab.words
    return [[words[i] for i in row] for row in top_words(snap.model.topic_word_probs(), n)]

