"""Topic models: coherence and diversity of topics, perplexity, a synthetic LDA corpus with known
topics, the matching of learned topics to true ones, and classical LDA by online variational Bayes
(scikit-learn) as the baseline for ProdLDA (``engine.prodlda``).

Word ids index the vocabulary's columns; a corpus is a (documents x V) matrix of word counts, a
SciPy CSR matrix or a dense array.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from ..engine.objectives import (  # noqa: F401 (perplexity_from_bound: re-exported)
    corpus_log_coefficient, elbo_terms, multinomial_log_coefficient, perplexity_from_bound)


# --- Reading topics -----------------------------------------------------------------------
def top_words(topic_word: np.ndarray | torch.Tensor, n: int = 10) -> list[list[int]]:
    """The ids of each topic's ``n`` largest entries, largest first: (K, V) -> K lists of n ids.

    Works on beta (ProdLDA's ``topics()``) or on topic-word distributions alike."""
    w = topic_word.detach().cpu().numpy() if isinstance(topic_word, torch.Tensor) else np.asarray(topic_word)
    n = min(int(n), w.shape[1])
    return [list(map(int, row)) for row in np.argsort(-w, axis=1, kind="stable")[:, :n]]


# --- Coherence and diversity --------------------------------------------------------------
def npmi(topics_top_words: Sequence[Sequence[int]], doc_word_binary) -> tuple[float, np.ndarray]:
    """Normalised PMI coherence of each topic's top words: (mean over topics, per topic (K,)).

    For each pair of a topic's words, with probabilities estimated by document co-occurrence in
    the reference corpus ``doc_word_binary`` (documents x V, CSR or dense; any non-zero entry
    counts as "the word occurs in the document"):

        NPMI(wi, wj) = log(P(wi, wj) / (P(wi) P(wj))) / -log P(wi, wj)

    (Bouma 2009), in [-1, 1]: 1 when the words only ever occur together, 0 when they occur
    independently, -1 when they never occur together. Conventions at the edges: a pair that never
    co-occurs (P(wi, wj) = 0, a word absent from the corpus included) scores -1, and a pair that
    occurs in every document (P(wi, wj) = 1, where the ratio is 0/0) scores 1. A topic's score is
    the mean over its pairs, the corpus score the mean over topics (the topic coherence of Lau,
    Newman & Baldwin 2014; Röder, Both & Hinneburg 2015's C_NPMI with whole documents as windows).
    """
    x = sp.csr_matrix(doc_word_binary)
    x.data = (x.data != 0).astype(np.float64)
    x.eliminate_zeros()
    n_docs = x.shape[0]
    if n_docs == 0:
        raise ValueError("NPMI needs a reference corpus of at least one document")
    scores = np.empty(len(topics_top_words))
    for t, words in enumerate(topics_top_words):
        words = [int(w) for w in words]
        if len(words) < 2:
            raise ValueError(f"topic {t} has {len(words)} top word(s): NPMI needs at least 2")
        sub = x[:, words]
        joint = np.asarray((sub.T @ sub).todense()) / n_docs  # P(wi, wj); the diagonal is P(wi)
        marg = np.diag(joint)
        i, j = np.triu_indices(len(words), k=1)
        p_ij, p_i, p_j = joint[i, j], marg[i], marg[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log(p_ij / (p_i * p_j)) / -np.log(p_ij)
        value = np.where(p_ij <= 0, -1.0, np.where(p_ij >= 1, 1.0, value))
        scores[t] = value.mean()
    return float(scores.mean()), scores


def topic_diversity(top_words: Sequence[Sequence[int]], n: int = 25) -> float:
    """The share of unique words among the top ``n`` of every topic: |union| / (n K), in
    [1/K, 1] (Dieng, Ruiz & Blei 2020, "Topic Modeling in Embedding Spaces"; n = 25 there).
    Each topic needs at least ``n`` top words (``top_words(topic_word, n)``)."""
    if not top_words:
        raise ValueError("topic diversity needs at least one topic")
    short = [k for k, words in enumerate(top_words) if len(words) < n]
    if short:
        raise ValueError(f"topic diversity over the top {n} words needs {n} words per topic; "
                         f"topic {short[0]} has {len(top_words[short[0]])}")
    unique = {int(w) for words in top_words for w in list(words)[:n]}
    return len(unique) / (n * len(top_words))


# --- Perplexity ---------------------------------------------------------------------------
@torch.no_grad()
def elbo_perplexity(model, counts, samples: int = 20, batch_size: int = 512, seed: int = 0) -> float:
    """A model's ELBO perplexity on a corpus (documents x V counts): ``perplexity_from_bound`` of
    the ELBO (``objectives.elbo_terms``, ``samples`` draws per document, in eval mode) minus each
    document's multinomial coefficient, so that it bounds the word sequences like LDA's. An upper
    bound on the model's true perplexity."""
    from ..engine.protocol import device_of

    device, dtype = device_of(model)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total_bound, total_words = 0.0, 0.0
    try:
        for start in range(0, counts.shape[0], batch_size):
            x = _dense_rows(counts, start, start + batch_size, device, dtype)
            terms = elbo_terms(model, x, samples=samples, generator=gen)
            total_bound += float((terms.elbo - multinomial_log_coefficient(x)).double().sum())
            total_words += float(x.double().sum())
    finally:
        model.train(was_training)
    return perplexity_from_bound(total_bound, total_words)


def _dense_rows(counts, start: int, stop: int, device, dtype) -> torch.Tensor:
    rows = counts[start:stop]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    return torch.as_tensor(rows, dtype=dtype, device=device)


# --- A synthetic corpus from LDA's generative process -------------------------------------
class SyntheticCorpus(NamedTuple):
    """counts: (n_docs, V) word counts, CSR of float32; beta: the true topics (K, V), rows
    summing to 1; theta: each document's topic proportions (n_docs, K)."""

    counts: sp.csr_matrix
    beta: np.ndarray
    theta: np.ndarray


def synthetic_lda_corpus(n_docs: int, vocab_size: int, topics: int, alpha: float, eta: float,
                         doc_length: float, seed: int, beta: np.ndarray | None = None) -> SyntheticCorpus:
    """Documents drawn from LDA (Blei, Ng & Jordan 2003; the study notes' eq. 13), with known topics.

        beta_k ~ Dirichlet(eta) over the V words, k = 1..K  (or the ``beta`` given, (K, V))
        for each document d:  n_d ~ Poisson(doc_length) (at least 1),  theta_d ~ Dirichlet(alpha)
            for each word:  z ~ Mult(theta_d),  w ~ Mult(beta_z)

    Summed over z, a document's words are n_d draws from sum_k theta_dk beta_k, so its counts are
    drawn at once from Mult(n_d, theta_d beta): the same distribution of counts.
    """
    rng = np.random.default_rng(seed)
    if beta is None:
        beta = rng.dirichlet(np.full(vocab_size, float(eta)), size=topics)
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (topics, vocab_size) or (beta < 0).any():
        raise ValueError(f"beta must be ({topics}, {vocab_size}) non-negative, got {beta.shape}")
    beta = beta / beta.sum(1, keepdims=True)
    theta = rng.dirichlet(np.full(topics, float(alpha)), size=n_docs)
    lengths = np.maximum(rng.poisson(doc_length, size=n_docs), 1)
    word_probs = theta @ beta
    word_probs /= word_probs.sum(1, keepdims=True)
    counts = rng.multinomial(lengths, word_probs)
    return SyntheticCorpus(sp.csr_matrix(counts.astype(np.float32)), beta, theta)


# --- Matching learned topics to true ones -------------------------------------------------
Similarity = Literal["cosine", "hellinger"]


def topic_similarity(beta_true: np.ndarray, beta_est: np.ndarray, similarity: Similarity = "cosine") -> np.ndarray:
    """Similarity of every true topic to every estimated one, (K_true, K_est), in [0, 1].

    Rows are topic-word distributions (non-negative; each is normalised to sum 1). "cosine": the
    cosine of the angle between the two distributions as vectors; "hellinger": 1 - H(p, q) with
    H(p, q) = sqrt(1 - sum_v sqrt(p_v q_v)) the Hellinger distance.
    """
    p = _distributions(beta_true, "beta_true")
    q = _distributions(beta_est, "beta_est")
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"the topics are over different vocabularies: {p.shape[1]} and {q.shape[1]} words")
    if similarity == "cosine":
        pn = p / np.linalg.norm(p, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        return np.clip(pn @ qn.T, 0.0, 1.0)
    if similarity == "hellinger":
        bc = np.sqrt(p) @ np.sqrt(q).T  # the Bhattacharyya coefficient
        return 1.0 - np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))
    raise ValueError(f"similarity must be 'cosine' or 'hellinger', got {similarity!r}")


def match_topics(beta_true: np.ndarray, beta_est: np.ndarray,
                 similarity: Similarity = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Pair each true topic with a distinct estimated one, maximising the total similarity
    (``topic_similarity``; cosine by default) by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``).

    Returns (permutation, similarity): true topic k is matched to estimated topic
    ``permutation[k]``, with ``similarity[k]``. Both (K_true,); needs K_est >= K_true.
    """
    sim = topic_similarity(beta_true, beta_est, similarity)
    if sim.shape[1] < sim.shape[0]:
        raise ValueError(f"cannot match {sim.shape[0]} true topics to {sim.shape[1]} estimated ones")
    rows, cols = linear_sum_assignment(sim, maximize=True)
    perm = np.empty(sim.shape[0], dtype=int)
    perm[rows] = cols
    return perm, sim[np.arange(sim.shape[0]), perm]


def _distributions(topic_word, name: str) -> np.ndarray:
    w = topic_word.detach().cpu().numpy() if isinstance(topic_word, torch.Tensor) else np.asarray(topic_word)
    w = w.astype(np.float64)
    if w.ndim != 2 or (w < 0).any() or not (w.sum(1) > 0).all():
        raise ValueError(f"{name} must be (K, V) topic-word weights, non-negative, each row with some mass")
    return w / w.sum(1, keepdims=True)


# --- Classical LDA by online variational Bayes ---------------------------------------------
def fit_lda(counts, topics: int, alpha: float | None = None, eta: float | None = None, epochs: int = 10,
            batch_size: int = 128, seed: int = 0,
            progress: Callable[[int, int], None] | None = None,
            learning_offset: float = 10.0, learning_decay: float = 0.7):
    """LDA fitted by online variational Bayes (Hoffman, Blei & Bach 2010), scikit-learn's
    ``LatentDirichletAllocation``: ``partial_fit`` on shuffled mini-batches of ``batch_size``
    documents, ``epochs`` passes, each batch one update of the topics' variational parameters
    lambda with step rho_t = (learning_offset + t)^-learning_decay.

    alpha, eta: the Dirichlet priors on topic proportions and topic words (None: 1/K, as
    scikit-learn). progress(done, total) is called after each batch. Returns the fitted model
    (read its topics with ``lda_topic_word`` and its perplexity with ``lda_perplexity``).
    """
    from sklearn.decomposition import LatentDirichletAllocation

    x = sp.csr_matrix(counts, dtype=np.float64)
    n_docs = x.shape[0]
    if n_docs == 0:
        raise ValueError("LDA needs at least one document")
    lda = LatentDirichletAllocation(
        n_components=int(topics), doc_topic_prior=alpha, topic_word_prior=eta, learning_method="online",
        learning_offset=learning_offset, learning_decay=learning_decay, batch_size=int(batch_size),
        total_samples=n_docs, random_state=seed)
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(n_docs / batch_size)
    total, done = epochs * per_epoch, 0
    for _ in range(epochs):
        order = rng.permutation(n_docs)
        for start in range(0, n_docs, batch_size):
            lda.partial_fit(x[order[start:start + batch_size]])
            done += 1
            if progress is not None:
                progress(done, total)
    return lda


def lda_topic_word(lda) -> np.ndarray:
    """The fitted topics as distributions over words, (K, V): the variational Dirichlet parameters
    lambda (``components_``) normalised by row, i.e. E_q[beta_k]."""
    comp = np.asarray(lda.components_, dtype=np.float64)
    return comp / comp.sum(1, keepdims=True)


def lda_perplexity(lda, counts) -> float:
    """scikit-learn's perplexity: exp(-bound / words) with ``bound`` the variational lower bound on
    log p of the documents' word sequences (no multinomial coefficient) at q(theta) fitted to
    these documents, plus the topics' term E_q[log p(beta | eta) - log q(beta | lambda)] once
    for the whole set. So: the variational bound per word, an upper bound on the perplexity."""
    return float(lda.perplexity(sp.csr_matrix(counts, dtype=np.float64)))


# --- A topic model's report card ---------------------------------------------------------------
TOP_WORDS = 10  # words per topic for NPMI and for display (the usual choice; Lau et al. 2014)
DIVERSITY_WORDS = 25


@dataclass(frozen=True, eq=False)
class TopicReport:
    """What the issue asks of every topic model, on its run's test documents.

    topic_word: (K, V) each topic's word distribution (rows sum to 1).
    top_words: each topic's ``TOP_WORDS`` most probable words, most probable first.
    npmi_per_topic, npmi: NPMI coherence of those words by test-document co-occurrence.
    diversity: unique words among every topic's top ``DIVERSITY_WORDS``.
    perplexity: per word, from the bound ``perplexity_bound`` names.
    """

    topic_word: np.ndarray
    top_words: list[list[str]]
    npmi_per_topic: np.ndarray
    npmi: float
    diversity: float
    perplexity: float
    perplexity_bound: str

    def record(self) -> dict:
        """JSON-ready: ``eval --json``'s topic fields."""
        return {"npmi": self.npmi, "npmi_per_topic": [round(float(v), 4) for v in self.npmi_per_topic],
                "diversity": self.diversity, "perplexity": self.perplexity,
                "perplexity_bound": self.perplexity_bound, "topics": self.top_words}


def topic_report(model, vocab: Sequence[str], counts, samples: int = 20, seed: int = 0) -> TopicReport:
    """The report of a topic model (``engine.topic_model.TopicModel``) over the test counts
    ``counts`` (documents x V, a CountSet or CSR), with ``vocab`` naming the words."""
    x = counts.csr if hasattr(counts, "csr") else sp.csr_matrix(counts)
    topic_word = model.topic_word_probs().detach().cpu().numpy().astype(np.float64)
    ids = top_words(topic_word, max(TOP_WORDS, DIVERSITY_WORDS))
    mean, per_topic = npmi([row[:TOP_WORDS] for row in ids], x)
    if hasattr(model, "evaluate"):  # LDA: scikit-learn's own bound
        _, perplexity = model.evaluate(x)
        bound = ("scikit-learn's variational bound of online LDA (q(theta) fitted per test document, q(beta)'s "
                 "term once for the set), per word: an upper bound on the perplexity")
    else:
        perplexity = elbo_perplexity(model, x, samples=samples, seed=seed)
        bound = (f"the ELBO with {samples} samples of z per test document, less each document's multinomial "
                 "coefficient, per word: an upper bound on the perplexity")
    return TopicReport(topic_word, [[vocab[i] for i in row[:TOP_WORDS]] for row in ids], per_topic, mean,
                       topic_diversity(ids, DIVERSITY_WORDS), perplexity, bound)


@torch.no_grad()
def iwae_perplexity(model, counts, k: int, seed: int = 0) -> float:
    """ProdLDA's perplexity from the importance-weighted bound with ``k`` samples (Burda et al.
    2016), less each document's multinomial coefficient: a tighter upper bound than the ELBO's."""
    from ..data.text import CountSet
    from ..engine.evaluate import evaluate_iwae

    x = counts.csr if hasattr(counts, "csr") else sp.csr_matrix(counts)
    cs = CountSet(sp.csr_matrix(x, dtype=np.float32))
    mean_bound = evaluate_iwae(model, cs, k=k, seed=seed)
    return perplexity_from_bound(mean_bound * len(cs) - corpus_log_coefficient(cs), float(x.sum()))
