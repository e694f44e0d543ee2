"""ProdLDA, the neural topic model of Srivastava & Sutton (2017), "Autoencoding Variational
Inference for Topic Models": a VAE over bag-of-words count vectors.

Generative model, for a document of n words with counts x (V,):

    z ~ N(mu0, diag sigma0^2)          the Laplace approximation of Dirichlet(alpha) in the
                                       softmax basis (``objectives.dirichlet_laplace_prior``)
    theta = softmax(z)                 topic proportions (K,)
    x ~ Mult(n, softmax(BN(beta^T theta)))   a product of experts: the topics' word weights are
                                       added in log space before one normalisation, unlike LDA's
                                       mixture sum_k theta_k beta_k

Inference: q(z|x) = N(mu(x), diag sigma^2(x)), from an MLP with two softplus layers of ``hidden``
units and dropout, each head batch-normalised. Training maximises the ELBO of ``objectives``
(``elbo_terms``): the KL is taken to the model's ``prior`` (protocol's optional member).

Batch normalisation follows the authors' code (TensorFlow's ``batch_norm`` defaults: a learned
shift, no learned scale) on the two encoder heads and on the decoder's word logits, where the
learned shift is a background log-frequency per word. ``model.eval()`` switches every batch norm to
its running statistics and turns dropout off: outputs are then deterministic and a batch of one
document works; in training mode a batch needs at least two documents.

The topics are read from ``beta``'s rows (``topics()``, (K, V)), as in the paper.
It satisfies ``protocol.LatentModel`` with input kind "text".
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import TopicModelConfig
from .objectives import dirichlet_laplace_prior, multinomial_log_likelihood
from .protocol import InputSpec, Posterior

DEFAULT_SAMPLE_WORDS = 100  # words in one ``sample_x`` draw unless told otherwise


class ShiftBatchNorm(nn.Module):
    """Batch normalisation over the batch dimension of (N, C) with unit scale and a learned shift:
    (x - mean) / sqrt(var + eps) + shift (TensorFlow's batch_norm with center=True, scale=False).

    Training mode uses the batch's statistics and updates the running ones (``momentum``); eval
    mode uses the running ones.
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.shift = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            raise ValueError("batch normalisation in training mode needs at least 2 rows per batch; "
                             "call model.eval() to encode or decode one document")
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.shift,
                            self.training, self.momentum, self.eps)

    def with_running_stats(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode transform, whatever the mode (no statistics are updated)."""
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.shift, False, 0.0, self.eps)


class ProdLDA(nn.Module):
    """ProdLDA sized from ``TopicModelConfig``: latent_dim = K topics over V words."""

    # Adam's moment decay rates for this model (``optim.make_optimizer``): Srivastava & Sutton
    # (2017, section 3.3) train with a high first-moment decay, 0.99, against the component
    # collapse where a few topics take every document early in training.
    adam_betas = (0.99, 0.999)

    def __init__(self, config: TopicModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        v, k, h, p = config.vocab_size, config.topics, config.hidden, config.dropout
        self.enc = nn.Sequential(nn.Linear(v, h), nn.Softplus(), nn.Linear(h, h), nn.Softplus(), nn.Dropout(p))
        self.mu_head = nn.Linear(h, k)
        self.mu_bn = ShiftBatchNorm(k)
        self.logvar_head = nn.Linear(h, k)
        self.logvar_bn = ShiftBatchNorm(k)
        self.theta_dropout = nn.Dropout(p)
        # beta: one row of word weights per topic, (K, V); the word logits are theta @ beta.
        self.beta = nn.Parameter(torch.empty(k, v))
        nn.init.xavier_uniform_(self.beta)
        self.word_bn = ShiftBatchNorm(v)
        mu0, var0 = dirichlet_laplace_prior(torch.tensor(config.alphas(), dtype=torch.float64))
        self.register_buffer("prior_mu", mu0.float())
        self.register_buffer("prior_logvar", var0.log().float())

    # --- the protocol ------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.topics

    @property
    def input_spec(self) -> InputSpec:
        """A bag of words: V counts, whole numbers in [0, inf) stored as floats."""
        return InputSpec("text", (self.config.vocab_size,), (0.0, math.inf))

    @property
    def prior(self) -> Posterior:
        """p(z) = N(mu0, diag sigma0^2), the Laplace approximation of Dirichlet(alpha), each (K,)."""
        return Posterior(self.prior_mu, self.prior_logvar)

    def encode(self, x: torch.Tensor) -> Posterior:
        """q(z|x) for counts x (B, V): mu and log-variance, each (B, K)."""
        h = self.enc(x)
        return Posterior(self.mu_bn(self.mu_head(h)), self.logvar_bn(self.logvar_head(h)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Word log-probabilities log softmax(BN(theta @ beta)), theta = softmax(z) (dropped out while
        training), for z (..., K): (..., V)."""
        lead = z.shape[:-1]
        theta = self.theta_dropout(torch.softmax(z.reshape(-1, z.shape[-1]), dim=-1))
        return F.log_softmax(self.word_bn(theta @ self.beta), dim=-1).reshape(*lead, self.config.vocab_size)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log Mult(x | n, p) in nats, with the multinomial coefficient (``objectives``), counts x
        (B, V) against log-probabilities (..., B, V): (..., B)."""
        return multinomial_log_likelihood(x, decoded)

    def decoder_mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """The word probabilities p (..., V), which sum to 1: E[x|z] = n p for a document of n words."""
        return decoded.exp()

    def sample_x(self, decoded: torch.Tensor, generator: torch.Generator | None = None,
                 n_words: int = DEFAULT_SAMPLE_WORDS) -> torch.Tensor:
        """One draw x ~ Mult(n_words, p): a count vector (..., V) of ``n_words`` words (the decoder's
        output does not carry a document's length; pass the one wanted)."""
        probs = self.decoder_mean(decoded)
        flat = probs.reshape(-1, probs.shape[-1])
        words = torch.multinomial(flat, n_words, replacement=True, generator=generator)
        counts = torch.zeros_like(flat).scatter_add_(1, words, torch.ones_like(words, dtype=flat.dtype))
        return counts.reshape(probs.shape)

    # --- topics ------------------------------------------------------------------------
    def topics(self) -> torch.Tensor:
        """beta, (K, V): topic k's weight on each word; its largest entries are the topic's top
        words (Srivastava & Sutton 2017 read the topics from beta).

        A caveat: the decoder batch-normalises each word's logit, which makes the ELBO blind to a
        positive scale and a shift of each word's column of beta, so ranks across words within a
        row carry some arbitrariness. On the synthetic corpus of tests/unit/test_topics.py,
        beta's top 5 words share about 50-60% with the true topic's, ``topic_word_probs``'s about
        90%: compare topics with the latter."""
        return self.beta.detach().clone()

    @torch.no_grad()
    def topic_word_probs(self) -> torch.Tensor:
        """The decoder's word distribution for a document wholly about one topic (theta = e_k),
        with the batch norm's running statistics: (K, V), each row summing to 1."""
        return torch.softmax(self.word_bn.with_running_stats(self.beta), dim=-1)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @torch.no_grad()
    def word_probs(self, theta: torch.Tensor) -> torch.Tensor:
        """The decoder's word distribution for topic proportions theta (..., K), with the batch
        norm's running statistics (eval mode's decoder without dropout): (..., V)."""
        lead = theta.shape[:-1]
        flat = theta.reshape(-1, theta.shape[-1]).to(self.beta)
        return torch.softmax(self.word_bn.with_running_stats(flat @ self.beta), dim=-1).reshape(*lead, -1)

    def sample_theta(self, n: int, seed: int = 0) -> torch.Tensor:
        """n topic-proportion vectors softmax(z), z ~ p(z) (the logistic-normal prior), (n, K)."""
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(n, self.latent_dim, generator=g)
        z = self.prior_mu.cpu() + (0.5 * self.prior_logvar.cpu()).exp() * eps
        return torch.softmax(z, dim=-1)

    @torch.no_grad()
    def topic_proportions(self, x: torch.Tensor) -> torch.Tensor:
        """softmax of q(z|x)'s mean for counts x (B, V): each document's topic proportions (B, K)
        (in the model's current mode: call ``eval()`` first for deterministic ones)."""
        return torch.softmax(self.encode(x).mu, dim=-1)
