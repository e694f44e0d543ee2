"""Classical LDA as a run's model: scikit-learn's online variational Bayes held in a module whose
buffers are its whole state, so a snapshot is a safetensors file like any other family's.

LDA (Blei, Ng & Jordan 2003; the study notes' eq. 13): theta_d ~ Dir(alpha), beta_k ~ Dir(eta),
each word's topic z ~ Cat(theta_d) and the word w ~ Cat(beta_z). Online variational Bayes
(Hoffman, Blei & Bach 2010) keeps a Dirichlet q(beta_k) = Dir(lambda_k) per topic and updates
lambda from each mini-batch's local fit q(theta_d) = Dir(gamma_d) with step rho_t. The E-step, the
update and the bound are scikit-learn's ``LatentDirichletAllocation``; this module only stores
lambda (``components``, (K, V)) and the update count t, and answers the topic-model questions the
explorer asks (``topic_model.TopicModel``).

It is not a gradient model: the trainer's LDA worker (``runs.lda_trainer``) calls ``update``.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .config import LdaConfig


def _csr(x) -> sparse.csr_matrix:
    """Counts as float64 CSR, from a tensor, an array, a CountSet or a sparse matrix."""
    if hasattr(x, "csr"):
        x = x.csr
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return sparse.csr_matrix(x, dtype=np.float64)


class LdaModel(nn.Module):
    """LDA with K topics over V words; ``components`` is lambda, the topics' variational Dirichlet
    parameters, and ``updates`` the number of mini-batch updates made (t in rho_t)."""

    def __init__(self, config: LdaConfig, total_documents: int = 1):
        super().__init__()
        config.validate()
        self.config = config
        # lambda starts as scikit-learn starts it: Gamma(100, 1/100) draws (set by ``start``).
        self.register_buffer("components", torch.ones(config.topics, config.vocab_size, dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total_documents", torch.tensor(int(total_documents), dtype=torch.int64))
        # The E-step starts each document's gamma from random draws; the generator is seeded from here.
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64))
        self._sk = None  # the scikit-learn estimator, rebuilt from the buffers when they change

    # --- scikit-learn ------------------------------------------------------------------------
    def _estimator(self, batch_size: int = 128, seed: int = 0):
        from sklearn.decomposition import LatentDirichletAllocation

        c = self.config
        lda = LatentDirichletAllocation(
            n_components=c.topics, doc_topic_prior=c.prior_alpha(), topic_word_prior=c.prior_eta(),
            learning_method="online", learning_offset=c.learning_offset, learning_decay=c.learning_decay,
            batch_size=batch_size, total_samples=max(1, int(self.total_documents)), random_state=seed)
        return lda

    def start(self, total_documents: int, seed: int = 0) -> None:
        """Initialise lambda as scikit-learn does, for a corpus of ``total_documents``."""
        self.total_documents.fill_(int(total_documents))
        self.seed.fill_(int(seed))
        lda = self._estimator(seed=seed)
        lda._init_latent_vars(self.config.vocab_size, dtype=np.float64)
        self.components.copy_(torch.from_numpy(lda.components_))
        self.updates.zero_()
        self._sk = lda  # its generator goes on from the initial draws, as scikit-learn's own fit does

    def sklearn(self):
        """The fitted scikit-learn estimator with this module's state (cached until it changes)."""
        from sklearn.decomposition._online_lda_fast import _dirichlet_expectation_2d

        if self._sk is None:
            lda = self._estimator(seed=int(self.seed))
            lda._init_latent_vars(self.config.vocab_size, dtype=np.float64)  # priors, and the generator's draws
            lda.components_ = self.components.detach().cpu().numpy().astype(np.float64).copy()
            lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(lda.components_))
            lda.n_batch_iter_ = int(self.updates) + 1  # scikit-learn counts from 1
            lda.n_features_in_ = self.config.vocab_size
            self._sk = lda
        return self._sk

    def update(self, counts) -> None:
        """One online VB update of lambda from a mini-batch of documents (B, V)."""
        lda = self.sklearn()
        lda.partial_fit(_csr(counts))
        self.components.copy_(torch.from_numpy(lda.components_))
        self.updates.fill_(int(lda.n_batch_iter_) - 1)

    def load_state_dict(self, *args, **kwargs):
        out = super().load_state_dict(*args, **kwargs)
        self._sk = None
        return out

    # --- the topic model -------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.topics

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @torch.no_grad()
    def topic_word_probs(self) -> torch.Tensor:
        """E_q[beta_k]: lambda normalised by row, (K, V) float32."""
        c = self.components
        return (c / c.sum(1, keepdim=True)).float()

    @torch.no_grad()
    def document_gamma(self, counts) -> np.ndarray:
        """gamma, q(theta_d)'s Dirichlet parameters for each document, (N, K), by scikit-learn's E-step."""
        return self.sklearn()._unnormalized_transform(_csr(counts))

    @torch.no_grad()
    def topic_proportions(self, counts) -> torch.Tensor:
        """E_q[theta_d] = gamma_d / sum(gamma_d) for each document, (N, K)."""
        g = self.document_gamma(counts)
        return torch.from_numpy(g / g.sum(1, keepdims=True)).float()

    @torch.no_grad()
    def word_probs(self, theta: torch.Tensor) -> torch.Tensor:
        """The word distribution of a document with topic proportions theta (..., K): the mixture
        theta @ E[beta], (..., V)."""
        return theta.float() @ self.topic_word_probs().to(theta.device)

    def sample_theta(self, n: int, seed: int = 0) -> torch.Tensor:
        """n topic-proportion vectors from the prior Dir(alpha), (n, K)."""
        rng = np.random.default_rng(seed)
        return torch.from_numpy(rng.dirichlet([self.config.prior_alpha()] * self.latent_dim, size=n)).float()

    @torch.no_grad()
    def corpus_bound(self, counts) -> float:
        """scikit-learn's variational lower bound on log p of the documents' word sequences (no
        multinomial coefficient), with q(beta)'s term once for the whole set, in nats."""
        x = _csr(counts)
        return float(self.sklearn()._approx_bound(x, self.document_gamma(x), sub_sampling=False))

    @torch.no_grad()
    def document_bounds(self, counts) -> np.ndarray:
        """Each document's own share of ``corpus_bound``: its E_q[log p(w_d, theta_d)] - E_q[log
        q(theta_d)] (without q(beta)'s corpus-wide term), (N,) nats."""
        lda, x = self.sklearn(), _csr(counts)
        gamma = self.document_gamma(x)
        topic_term = lda._approx_bound(x[:0], gamma[:0], sub_sampling=False)
        return np.array([lda._approx_bound(x[i:i + 1], gamma[i:i + 1], sub_sampling=False) - topic_term
                         for i in range(x.shape[0])])

    @torch.no_grad()
    def evaluate(self, counts) -> tuple[float, float]:
        """(the mean of ``document_bounds``, ``perplexity``) over a corpus, from one E-step."""
        lda, x = self.sklearn(), _csr(counts)
        gamma = self.document_gamma(x)
        bound = float(lda._approx_bound(x, gamma, sub_sampling=False))
        topic_term = float(lda._approx_bound(x[:0], gamma[:0], sub_sampling=False))
        words = float(x.sum())
        return (bound - topic_term) / max(1, x.shape[0]), float(np.exp(-bound / max(words, 1e-12)))

    def perplexity(self, counts) -> float:
        """scikit-learn's perplexity: exp(-corpus_bound / words), an upper bound on the true one."""
        return float(self.sklearn().perplexity(_csr(counts)))
