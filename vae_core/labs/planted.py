"""Recovering planted topics: a corpus drawn from LDA's own generative process (the study notes'
eq. 13) with known topics, fitted by ProdLDA and by online LDA, each method's topics matched to
the planted ones. For the Topics lab; runs in the calling process (a page's, or a test's), small
enough to take seconds on one core.

The recipe is the one tests/unit/test_topics.py measures: K = 5 topics over V = 50 words drawn
from Dirichlet(eta = 0.1), 2,000 documents of about 50 words with alpha = 0.1; ProdLDA trained by
Adam (lr 1e-2, 200 documents a step, 300 steps), LDA by 5 passes of online variational Bayes.
Both recover every topic at a cosine above 0.9 there.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..engine.config import TopicModelConfig
from ..engine.objectives import elbo_terms
from ..engine.prodlda import ProdLDA
from .topics import (
    fit_lda,
    lda_topic_word,
    match_topics,
    synthetic_lda_corpus,
    topic_similarity,
)

# A matched topic at a cosine above this counts as recovered. Two planted topics drawn from
# Dirichlet(0.1) over 50 words have cosines below about 0.4, and an untrained ProdLDA's topics
# reach about 0.5 (tests/unit/test_topics.py): above 0.9 an estimate is unmistakably its topic.
THRESHOLD = 0.9
PRODLDA_ALPHA = 1.0  # ProdLDA's own prior, as in the measured recipe (LDA is given the true alpha)
PRODLDA_LR, PRODLDA_BATCH = 1e-2, 200
LDA_EPOCHS, LDA_BATCH = 5, 128
METHODS = ("ProdLDA", "LDA")


@dataclass(frozen=True)
class PlantedRecovery:
    """What each method recovered of the planted topics.

    true_topics: the planted topics, (K, V), rows summing to 1.
    estimates: per method ("ProdLDA", "LDA"), its topics as word distributions (K, V), rows summing
        to 1, permuted so that row k is the one matched to planted topic k (Hungarian, cosine).
    cosine: per method, each planted topic's cosine with its match, (K,).
    similarity: per method, every planted topic's cosine with every (permuted) estimate, (K, K);
        the diagonal is ``cosine``.
    seconds: per method, the wall time it trained for.
    threshold: the cosine above which a topic counts as recovered (``THRESHOLD``).
    The rest: the corpus and training settings it was made with.
    """

    true_topics: np.ndarray
    estimates: dict[str, np.ndarray]
    cosine: dict[str, np.ndarray]
    similarity: dict[str, np.ndarray]
    seconds: dict[str, float]
    threshold: float
    topics: int
    vocab_size: int
    n_docs: int
    alpha: float
    eta: float
    doc_length: float
    seed: int
    steps: int

    def recovered(self, method: str) -> int:
        """How many planted topics ``method`` matched at a cosine above the threshold."""
        return int((self.cosine[method] > self.threshold).sum())


@contextlib.contextmanager
def one_thread():
    """Torch and the BLAS under scikit-learn on one thread for the block, restored after: tiny
    matrices gain nothing from threads, and on a shared 2-core machine two threads per product made
    300 ProdLDA steps take 35 s instead of 1.5 s (tests/unit/test_topics.py)."""
    from threadpoolctl import threadpool_limits

    keep = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(keep)


def train_prodlda(counts: sp.csr_matrix, topics: int, steps: int, seed: int,
                  progress: Callable[[int], None] | None = None) -> ProdLDA:
    """ProdLDA on ``counts`` by Adam on the ELBO (``objectives.elbo_terms``), batches of
    ``PRODLDA_BATCH`` documents drawn with replacement; returned in eval mode.
    progress(step) is called after each step."""
    torch.manual_seed(seed)
    model = ProdLDA(TopicModelConfig(vocab_size=counts.shape[1], topics=topics, alpha=PRODLDA_ALPHA))
    x = torch.as_tensor(counts.toarray(), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=PRODLDA_LR)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = x[torch.randint(0, x.shape[0], (PRODLDA_BATCH,), generator=g)]
        loss = elbo_terms(model, batch, generator=g).loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1)
    return model.eval()


def planted_recovery(topics: int = 5, vocab_size: int = 50, n_docs: int = 2000, alpha: float = 0.1,
                     eta: float = 0.1, doc_length: float = 50.0, seed: int = 0, steps: int = 300,
                     progress: Callable[[int, int], None] | None = None) -> PlantedRecovery:
    """Draw a corpus from LDA with planted topics (``topics.synthetic_lda_corpus``), fit ProdLDA
    (``steps`` Adam steps) and online LDA (``LDA_EPOCHS`` passes, told the true alpha and eta),
    and match each one's topics to the planted ones (``topics.match_topics``, Hungarian on cosine).

    progress(done, total) counts ProdLDA's steps, then LDA's mini-batches. On one thread the
    defaults take a few seconds.
    """
    topics, vocab_size, n_docs, steps = int(topics), int(vocab_size), int(n_docs), int(steps)
    if topics < 2 or vocab_size < topics:
        raise ValueError(f"need at least 2 topics and at least as many words as topics, "
                         f"got {topics} topics over {vocab_size} words")
    if n_docs < 2 or steps < 1:
        raise ValueError(f"need at least 2 documents and 1 training step, got {n_docs} and {steps}")
    corpus = synthetic_lda_corpus(n_docs=n_docs, vocab_size=vocab_size, topics=topics, alpha=alpha, eta=eta,
                                  doc_length=doc_length, seed=seed)
    lda_batches = LDA_EPOCHS * -(-n_docs // LDA_BATCH)
    total = steps + lda_batches
    report = progress or (lambda done, total: None)

    estimates, seconds = {}, {}
    with one_thread():
        start = time.perf_counter()
        model = train_prodlda(corpus.counts, topics, steps, seed, progress=lambda s: report(s, total))
        estimates["ProdLDA"] = model.topic_word_probs().double().numpy()
        seconds["ProdLDA"] = time.perf_counter() - start

        start = time.perf_counter()
        lda = fit_lda(corpus.counts, topics=topics, alpha=alpha, eta=eta, epochs=LDA_EPOCHS, batch_size=LDA_BATCH,
                      seed=seed, progress=lambda done, _: report(steps + done, total))
        estimates["LDA"] = lda_topic_word(lda)
        seconds["LDA"] = time.perf_counter() - start

    matched, cosine, similarity = {}, {}, {}
    for method, est in estimates.items():
        perm, cos = match_topics(corpus.beta, est)
        matched[method] = est[perm] / est[perm].sum(1, keepdims=True)
        cosine[method] = cos
        similarity[method] = topic_similarity(corpus.beta, matched[method])
    return PlantedRecovery(true_topics=corpus.beta, estimates=matched, cosine=cosine, similarity=similarity,
                           seconds=seconds, threshold=THRESHOLD, topics=topics, vocab_size=vocab_size, n_docs=n_docs,
                           alpha=float(alpha), eta=float(eta), doc_length=float(doc_length), seed=int(seed),
                           steps=steps)
