"""What the explorer asks of a topic model, whichever family it is (``prodlda``, ``lda``).

A topic model over a V-word vocabulary has K topics, each a distribution over words, and gives
each document a point on the (K-1)-simplex, its topic proportions theta. The text pages and the
Topics lab use only this; ProdLDA also satisfies ``protocol.LatentModel`` (it is a VAE), LDA
does not (its q(theta) is a Dirichlet and it is fitted without gradients).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TopicModel(Protocol):
    """latent_dim: K topics; vocab_size: V words. Every method works in eval mode on the CPU."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def topic_word_probs(self) -> torch.Tensor:
        """(K, V): each topic's distribution over words, rows summing to 1."""

    def topic_proportions(self, counts: torch.Tensor) -> torch.Tensor:
        """(N, K): each document's topic proportions theta, from its word counts (N, V)."""

    def word_probs(self, theta: torch.Tensor) -> torch.Tensor:
        """(..., V): the word distribution of a document with topic proportions theta (..., K)."""

    def sample_theta(self, n: int, seed: int = 0) -> torch.Tensor:
        """(n, K): topic proportions drawn from the model's prior."""
