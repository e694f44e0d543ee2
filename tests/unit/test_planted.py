"""Recovering planted topics (vae_core/labs/planted.py): with the lab's defaults both ProdLDA and
online LDA find every planted topic; on a tiny corpus the result is shaped and aligned as the page
reads it, progress counts every step, and the process's thread count is restored."""
import numpy as np
import pytest
import torch

from vae_core.labs import planted as pl
from vae_core.labs.topics import topic_similarity


@pytest.fixture(scope="module")
def defaults():
    calls = []
    result = pl.planted_recovery(progress=lambda done, total: calls.append((done, total)))
    return result, calls


@pytest.mark.slow
def test_both_methods_recover_the_planted_topics_with_the_defaults(defaults):
    r, calls = defaults
    assert r.threshold == 0.9 and (r.topics, r.vocab_size, r.n_docs, r.steps) == (5, 50, 2000, 300)
    for method in pl.METHODS:
        assert r.cosine[method].mean() >= r.threshold, (method, r.cosine[method])
        assert r.recovered(method) == r.topics, (method, r.cosine[method])
    # The threshold means something here: no two planted topics are that close to each other.
    off = topic_similarity(r.true_topics, r.true_topics)[~np.eye(r.topics, dtype=bool)]
    assert off.max() < 0.5
    # 300 ProdLDA steps, then 5 passes of 16 LDA batches over 2,000 documents.
    assert calls[-1] == (380, 380) and [d for d, _ in calls] == list(range(1, 381))


def test_a_tiny_corpus_gives_aligned_distributions_and_counts_progress():
    keep = torch.get_num_threads()
    calls = []
    r = pl.planted_recovery(topics=3, vocab_size=20, n_docs=150, steps=15, seed=3,
                            progress=lambda done, total: calls.append((done, total)))
    assert torch.get_num_threads() == keep  # one thread inside only
    assert r.true_topics.shape == (3, 20)
    for method in pl.METHODS:
        est = r.estimates[method]
        assert est.shape == (3, 20) and (est >= 0).all()
        np.testing.assert_allclose(est.sum(1), 1.0)
        # Rows are permuted to the planted order: the diagonal of the similarity is each match's cosine,
        # and no other assignment of estimates to planted topics scores higher in total.
        np.testing.assert_allclose(np.diag(r.similarity[method]), r.cosine[method])
        np.testing.assert_allclose(r.similarity[method], topic_similarity(r.true_topics, est))
        best = max(sum(r.similarity[method][k, p[k]] for k in range(3))
                   for p in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]))
        assert r.cosine[method].sum() == pytest.approx(best)
        assert 0 <= r.recovered(method) <= 3 and r.seconds[method] > 0
    lda_batches = pl.LDA_EPOCHS * 2  # 150 documents in batches of 128
    assert [d for d, _ in calls] == list(range(1, 15 + lda_batches + 1))
    assert {t for _, t in calls} == {15 + lda_batches}


def test_the_seed_decides_the_result():
    a = pl.planted_recovery(topics=2, vocab_size=10, n_docs=60, steps=5, seed=1)
    b = pl.planted_recovery(topics=2, vocab_size=10, n_docs=60, steps=5, seed=1)
    np.testing.assert_array_equal(a.true_topics, b.true_topics)
    for method in pl.METHODS:
        np.testing.assert_array_equal(a.estimates[method], b.estimates[method])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least 2 topics"):
        pl.planted_recovery(topics=1)
    with pytest.raises(ValueError, match="as many words as topics"):
        pl.planted_recovery(topics=8, vocab_size=5)
    with pytest.raises(ValueError, match="at least 2 documents"):
        pl.planted_recovery(n_docs=1)
