"""Objectives, in nats per example. Each formula lives here once.

Signs are in the names: ``elbo`` is the evidence lower bound (higher is better);
``ElboTerms.loss`` is the negative (beta-)ELBO that the optimiser minimises.

Any ``model`` here needs the three methods of ``protocol.LatentModel`` that define the
probabilities (the image VAE has them, and so does the exact linear-Gaussian model in
``linear_gaussian``):
  encode(x) -> Posterior(mu, logvar)          q(z|x)
  decode(z) -> decoder output for z (..., D)
  log_likelihood(x, decoded) -> log p(x|z)   (...)
and p(z) is N(0, I) unless the model declares its own diagonal Gaussian ``prior`` (the optional
protocol member; ``prior_of``), as the topic model does (``prodlda``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch.nn import functional as F

from .protocol import Posterior

if TYPE_CHECKING:
    from .config import TrainConfig

LOG_2PI = math.log(2 * math.pi)


# --- Decoder likelihoods, per element ------------------------------------------------------
def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(l)) = x l - softplus(l) elementwise, i.e. -BCE-with-logits.

    Valid for x in [0, 1] as the usual relaxation (Kingma & Welling 2014, appendix C.1). Written
    out, it takes fewer passes over an (L, B, pixels) tensor, forward and backward, than the
    BCE kernel with x expanded to that shape.
    """
    return x * logits - F.softplus(logits)


class _BernoulliLogLikelihoodSum(torch.autograd.Function):
    """sum_p [x_p l_p - softplus(l_p)] over the last dimension, with its gradient written out.

    Forward, with s = sigmoid(l) and softplus(l) = max(l, 0) - log sigmoid(|l|):

        sum_p x_p l_p - max(l_p, 0) + log prod_p sigmoid(|l_p|),   sigmoid(|l|) = max(s, 1 - s),

    the product taken over groups of 16 pixels (each factor lies in [1/2, 1], so a product of 16
    is at least 2^-16 and never underflows): one log per 16 pixels instead of softplus's log per
    pixel, the costly part of it.

    Backward: d/dl_p = x_p - sigmoid(l_p), so grad_l = (x - s) * grad, from the s the forward
    kept. x gets no gradient (``bernoulli_log_likelihood_sum`` only comes here when it needs none).
    Equal to the elementwise formula summed, up to float rounding (tests check value and gradient).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(logits)
        p = logits.shape[-1]
        group = next(g for g in (16, 8, 4, 2, 1) if p % g == 0)
        sig_abs = torch.maximum(s, 1 - s).view(*logits.shape[:-1], p // group, group)
        log_sig_abs = sig_abs.prod(-1).log_().sum(-1)
        ctx.save_for_backward(x, s)
        return (x * logits).sum(-1) - logits.clamp(min=0).sum(-1) + log_sig_abs

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, s = ctx.saved_tensors
        return None, (x - s).mul_(grad.unsqueeze(-1))


def bernoulli_log_likelihood_sum(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``bernoulli_log_likelihood(x, logits).sum(-1)``: log p(x|z) over the last dimension,
    (..., P) -> (...), x broadcast against the logits.

    Where x needs no gradient (data always), one fused function computes it in fewer passes over
    the (L, B, pixels) tensor, forward and backward (``_BernoulliLogLikelihoodSum``); otherwise the
    elementwise formula is summed.
    """
    if (x.requires_grad or not logits.is_floating_point() or logits.shape[-1] == 0
            or torch.broadcast_shapes(x.shape, logits.shape) != logits.shape):
        return bernoulli_log_likelihood(x, logits).sum(-1)
    x = x.to(logits.dtype) if x.dtype != logits.dtype else x
    return _BernoulliLogLikelihoodSum.apply(x, logits.contiguous())


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, sigma^2) elementwise: -(x - mean)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2
    (Kingma & Welling 2014, appendix C.2, with a shared sigma)."""
    return -0.5 * ((x - mean) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * LOG_2PI


# --- Gaussian densities ---------------------------------------------------------------
def gaussian_kl_to_prior_per_dim(mu: torch.Tensor, logvar: torch.Tensor,
                                 prior_mu: torch.Tensor | float, prior_logvar: torch.Tensor | float) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(mu0, sigma0^2)) for each latent dimension, broadcast: (B, D).

    The KL between two Gaussians (the KL term of Srivastava & Sutton 2017's ELBO, against their
    Laplace prior; Kingma & Welling 2014, Appendix B, is the case mu0 = 0, sigma0 = 1):

        -KL = 1/2 [1 + log(sigma^2 / sigma0^2) - (mu - mu0)^2 / sigma0^2 - sigma^2 / sigma0^2].

    ``prior_mu`` and ``prior_logvar`` broadcast against ``mu`` ((D,) or (1, D) for a model's prior,
    plain 0.0 for N(0, 1): then every operation is exact and the standard formula is reproduced
    bit for bit).
    """
    log_ratio = logvar - prior_logvar  # log sigma^2 / sigma0^2
    if isinstance(prior_logvar, torch.Tensor):
        inv_prior_var = torch.exp(-prior_logvar)
    else:
        inv_prior_var = math.exp(-prior_logvar)
    return -0.5 * (1 + log_ratio - (mu - prior_mu).pow(2) * inv_prior_var - log_ratio.exp())


def image_log_likelihood(x: torch.Tensor, decoded: torch.Tensor, likelihood: str,
                         log_sigma: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x|z) summed over an image's pixels, (..., C, H, W) -> (...): Bernoulli with logits
    ``decoded``, or (``likelihood`` "gaussian") Gaussian with mean ``decoded`` and ``log_sigma``."""
    if likelihood == "bernoulli":
        return bernoulli_log_likelihood_sum(x.flatten(start_dim=-3), decoded.flatten(start_dim=-3))
    return gaussian_log_likelihood(x, decoded, log_sigma).flatten(start_dim=-3).sum(-1)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each latent dimension, (B, D).

    Kingma & Welling (2014), Appendix B: -KL = 1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2):
    ``gaussian_kl_to_prior_per_dim`` with mu0 = 0, sigma0 = 1.
    """
    return gaussian_kl_to_prior_per_dim(mu, logvar, 0.0, 0.0)


def gaussian_kl_to_prior(post: Posterior, prior_mu: torch.Tensor | float,
                         prior_logvar: torch.Tensor | float) -> torch.Tensor:
    """Analytic KL(N(mu, diag sigma^2) || N(mu0, diag sigma0^2)) summed over dimensions, (B,)."""
    return gaussian_kl_to_prior_per_dim(post.mu, post.logvar, prior_mu, prior_logvar).sum(-1)


def gaussian_kl(post: Posterior) -> torch.Tensor:
    """Analytic KL(q(z|x) || N(0, I)) summed over dimensions, (B,): the standard prior's case of
    ``gaussian_kl_to_prior``."""
    return gaussian_kl_to_prior(post, 0.0, 0.0)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: the prior p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


# --- The prior p(z) ---------------------------------------------------------------------
def prior_of(model) -> Posterior | None:
    """A model's own diagonal Gaussian prior p(z) = N(mu0, diag exp(logvar0)), each (D,), or None
    when it has the standard N(0, I) (``protocol``: the optional member ``prior``)."""
    prior = getattr(model, "prior", None)
    if prior is None:
        return None
    return Posterior(prior.mu.reshape(-1), prior.logvar.reshape(-1))


def log_prior(model, z: torch.Tensor) -> torch.Tensor:
    """log p(z) summed over the last dimension, under the model's prior (``prior_of``): (...)."""
    prior = prior_of(model)
    if prior is None:
        return log_standard_normal(z)
    return log_normal_diag(z, prior.mu, prior.logvar)


def kl_to_prior(model, post: Posterior) -> torch.Tensor:
    """Analytic KL(q(z|x) || p(z)) under the model's prior (``prior_of``), (B,)."""
    prior = prior_of(model)
    if prior is None:
        return gaussian_kl(post)
    return gaussian_kl_to_prior(post, prior.mu, prior.logvar)


# --- Topic models: the Dirichlet prior and the multinomial likelihood -------------------
def dirichlet_laplace_prior(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Laplace approximation of Dirichlet(alpha) in the softmax basis: (mu (K,), var (K,)).

    With theta = softmax(h), Dirichlet(alpha) on theta is approximated by N(h; mu, diag var)
    (MacKay 1998, "Choice of basis for Laplace approximation"; Srivastava & Sutton 2017,
    "Autoencoding Variational Inference for Topic Models", eq. 3), keeping the diagonal:

        mu_k  = log alpha_k - (1/K) sum_i log alpha_i,
        var_k = (1/alpha_k) (1 - 2/K) + (1/K^2) sum_i 1/alpha_i.

    Exact moments of h_k = log theta_k - mean_i log theta_i under the Dirichlet replace log alpha
    by digamma(alpha) and 1/alpha by trigamma(alpha): close for alpha >> 1, far apart for
    alpha < 1 (tests/unit/test_topic_objectives.py measures both).
    """
    alpha = torch.as_tensor(alpha)
    if not alpha.is_floating_point():
        alpha = alpha.double()
    if alpha.dim() != 1 or alpha.numel() < 2 or not bool((alpha > 0).all()):
        raise ValueError("alpha must be a vector of at least 2 positive concentrations")
    k = alpha.numel()
    log_alpha = alpha.log()
    mu = log_alpha - log_alpha.mean()
    var = (1 - 2 / k) / alpha + alpha.reciprocal().sum() / k**2
    return mu, var


def multinomial_log_coefficient(counts: torch.Tensor) -> torch.Tensor:
    """log n! - sum_v log x_v! for count vectors (..., V), n = sum_v x_v: (...).

    The log of the number of word orders that give the same counts; ``lgamma(x + 1) = log x!``.
    """
    return torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)


def corpus_log_coefficient(counts, batch_size: int = 1000) -> float:
    """The sum of ``multinomial_log_coefficient`` over a corpus's documents (anything with
    ``batches(batch_size, device)``, a ``CountSet``), read a batch at a time: what turns a bound on
    log p(counts) into one on the word sequences (``perplexity_from_bound``)."""
    return float(sum(multinomial_log_coefficient(xb.double()).sum() for xb in counts.batches(batch_size, "cpu")))


def multinomial_log_likelihood(counts: torch.Tensor, log_probs: torch.Tensor,
                               with_coefficient: bool = True) -> torch.Tensor:
    """log Mult(x | n, p) = log n! - sum_v log x_v! + sum_v x_v log p_v over the last dimension,
    counts (..., V) broadcast against log_probs (..., V): (...).

    With the coefficient (the default) this is the probability of the count vector, a proper
    distribution over bags of words, so an ELBO built on it bounds log p(x) of the counts. Without
    it (``with_coefficient=False``) it is the probability of one word sequence with those counts,
    sum_v x_v log p_v: what ProdLDA's paper (Srivastava & Sutton 2017) and LDA (Blei, Ng & Jordan
    2003) use, and what per-word perplexity is defined on (``labs.topics.perplexity_from_bound``
    takes a word-sequence bound: subtract ``multinomial_log_coefficient`` from a count bound).
    ``log_probs`` must be finite (a log-softmax's output is).
    """
    words = (counts * log_probs).sum(-1)
    if not with_coefficient:
        return words
    return words + multinomial_log_coefficient(counts)


def perplexity_from_bound(total_log_bound: float, total_words: float) -> float:
    """exp(-sum_d bound_d / sum_d n_d): the perplexity implied by a lower bound on the log
    probability of the corpus' word sequences (no multinomial coefficient), in nats. A lower
    bound gives an upper bound on the perplexity. This is the corpus-level definition (Blei, Ng &
    Jordan 2003, section 7.1; scikit-learn's); NVDM and ProdLDA's papers average the per-document ratio
    instead, exp(-(1/D) sum_d bound_d / n_d), which weighs short documents more."""
    if not total_words > 0:
        raise ValueError("perplexity needs at least one word")
    exponent = -float(total_log_bound) / float(total_words)
    return math.inf if exponent > 700.0 else float(math.exp(exponent))  # a bound that bad says nothing finite


def sample_posterior(post: Posterior, n_samples: int, generator: torch.Generator | None = None,
                     shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Reparameterised draws z = mu + sigma * eps, eps ~ N(0, I): (S, B, D).

    shard: (rank, world) when this batch is rows ``rank::world`` of a global batch of
    B * world examples (data-parallel training): eps is drawn for the whole global batch and
    this shard's rows taken, so the draws do not depend on the number of processes.
    """
    rank, world = shard
    shape = (n_samples, post.mu.shape[0] * world, *post.mu.shape[1:])
    eps = torch.randn(shape, generator=generator, device=post.mu.device, dtype=post.mu.dtype)
    if world > 1:
        eps = eps[:, rank::world]
    return post.mu + post.sigma * eps


# --- The ELBO ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ElboTerms:
    """Per-example terms of the ELBO, each (B,), in nats.

    log_likelihood: Monte Carlo estimate of E_q[log p(x|z)] (the negative reconstruction error).
    kl: KL(q(z|x) || p(z)), analytic (estimator B) or Monte Carlo (estimator A).
    """

    log_likelihood: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_likelihood - self.kl

    def loss(self, beta: float = 1.0) -> torch.Tensor:
        """The negative beta-ELBO averaged over the batch: what the optimiser minimises."""
        return (self.kl * beta - self.log_likelihood).mean()


def elbo_terms(
    model,
    x: torch.Tensor,
    samples: int = 1,
    kl_estimator: Literal["analytic", "monte_carlo"] = "analytic",
    generator: torch.Generator | None = None,
    post: Posterior | None = None,
    shard: tuple[int, int] = (0, 1),
) -> ElboTerms:
    """SGVB estimate of the ELBO's terms with L = ``samples`` draws per example.

    Estimator B (analytic KL) is Kingma & Welling eq. (7); estimator A (Monte Carlo KL,
    log q(z|x) - log p(z) at the same draws) is eq. (6); p(z) is the model's prior (``prior_of``:
    N(0, I) unless it declares one). ``post``: q(z|x) when the caller
    has already encoded x (it must be ``model.encode(x)``). ``shard``: see ``sample_posterior``.
    """
    post = model.encode(x) if post is None else post
    z = sample_posterior(post, samples, generator, shard)  # (L, B, D)
    log_px_z = model.log_likelihood(x, model.decode(z))  # (L, B)
    if kl_estimator == "analytic":
        kl = kl_to_prior(model, post)
    else:
        kl = (log_normal_diag(z, post.mu, post.logvar) - log_prior(model, z)).mean(0)
    return ElboTerms(log_likelihood=log_px_z.mean(0), kl=kl)


# --- Importance sampling ------------------------------------------------------------------
def log_px_given_z(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for z of shape (S, B, D): (S, B).

    Without autograd, a model's own shortcut ``log_likelihood_at(x, z)`` is used where it has one.
    """
    shortcut = getattr(model, "log_likelihood_at", None)
    out = shortcut(x, z) if shortcut is not None and not torch.is_grad_enabled() else None
    return model.log_likelihood(x, model.decode(z)) if out is None else out


def log_joint(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log p(x|z) + log p(z) for z of shape (S, B, D): (S, B); p(z) is the model's
    prior (``log_prior``)."""
    return log_px_given_z(model, x, z) + log_prior(model, z)


def log_importance_weights(model, x: torch.Tensor, z: torch.Tensor, post: Posterior) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for z of shape (S, B, D): (S, B)."""
    return log_joint(model, x, z) - log_normal_diag(z, post.mu, post.logvar)


def iwae_bound(
    model,
    x: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
    check: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Importance-weighted bound log (1/k) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x): (B,).

    Burda et al. (2016). k = 1 is the ELBO; it rises towards log p(x) as k grows. Samples are
    drawn ``chunk_size`` at a time and combined with a running log-sum-exp, so memory stays
    bounded for k in the thousands (use it under torch.no_grad() for evaluation). ``check``,
    when given, is called before each chunk; it may raise to abandon the bound (a deadline).
    """
    post = model.encode(x)
    chunk = k if chunk_size is None else max(1, min(chunk_size, k))
    running = None  # (B,) log sum of weights seen so far
    done = 0
    while done < k:
        if check is not None:
            check()
        n = min(chunk, k - done)
        z = sample_posterior(post, n, generator, shard)  # (n, B, D)
        lse = torch.logsumexp(log_importance_weights(model, x, z, post), dim=0)
        running = lse if running is None else torch.logaddexp(running, lse)
        done += n
    return running - math.log(k)


def training_loss(model, x: torch.Tensor, tc: "TrainConfig",
                  shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, ElboTerms]:
    """The scalar the optimiser minimises for one batch, and the ELBO terms to log.

    "elbo": the negative beta-ELBO with ``tc.samples`` draws (SGVB); "iwae": the negative
    importance-weighted bound with k = ``tc.samples`` (Burda et al. 2016), logged beside a
    one-draw ELBO so the curves stay comparable. ``shard`` (rank, world): ``x`` is this
    process's rows of a global batch; the noise is the global batch's (``sample_posterior``).
    """
    if tc.objective == "iwae":
        bound = iwae_bound(model, x, k=tc.samples, shard=shard)
        return -bound.mean(), elbo_terms(model, x, samples=1, kl_estimator=tc.kl_estimator, shard=shard)
    terms = elbo_terms(model, x, samples=tc.samples, kl_estimator=tc.kl_estimator, shard=shard)
    return terms.loss(tc.beta), terms


def auto_chunk_size(batch: int, pixels: int, budget_floats: int = 32_000_000) -> int:
    """Samples per chunk so that the decoder output (chunk, batch, pixels) stays within ~budget floats."""
    return max(1, budget_floats // max(1, batch * pixels))
