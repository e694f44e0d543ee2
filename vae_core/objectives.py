"""Objectives, in nats per example. Each formula lives here once.

Signs are in the names: ``elbo`` is the evidence lower bound (higher is better);
``ElboTerms.loss`` is the negative (beta-)ELBO that the optimiser minimises.

Any ``model`` here needs three methods (``vae_core.model.VAE`` has them, and so does
the exact linear-Gaussian model in ``vae_core.linear_gaussian``):
  encode(x) -> Posterior(mu, logvar)          q(z|x)
  decode(z) -> decoder output for z (..., D)
  log_likelihood(x, decoded) -> log p(x|z)   (...)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from .model import LOG_2PI, Posterior


# --- Gaussian densities ---------------------------------------------------------------
def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each latent dimension, (B, D).

    Kingma & Welling (2014), Appendix B: -KL = 1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl(post: Posterior) -> torch.Tensor:
    """Analytic KL(q(z|x) || p(z)) summed over dimensions, (B,)."""
    return gaussian_kl_per_dim(post.mu, post.logvar).sum(-1)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: the prior p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def sample_posterior(post: Posterior, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterised draws z = mu + sigma * eps, eps ~ N(0, I): (S, B, D)."""
    eps = torch.randn((n_samples, *post.mu.shape), generator=generator, device=post.mu.device, dtype=post.mu.dtype)
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
) -> ElboTerms:
    """SGVB estimate of the ELBO's terms with L = ``samples`` draws per example.

    Estimator B (analytic KL) is Kingma & Welling eq. (7); estimator A (Monte Carlo KL,
    log q(z|x) - log p(z) at the same draws) is eq. (6).
    """
    post = model.encode(x)
    z = sample_posterior(post, samples, generator)  # (L, B, D)
    log_px_z = model.log_likelihood(x, model.decode(z))  # (L, B)
    if kl_estimator == "analytic":
        kl = gaussian_kl(post)
    else:
        kl = (log_normal_diag(z, post.mu, post.logvar) - log_standard_normal(z)).mean(0)
    return ElboTerms(log_likelihood=log_px_z.mean(0), kl=kl)


def _is_own_vae(model) -> bool:
    """True for vae_core's VAE with its own decode and log_likelihood: the IWAE shortcut below
    relies on their exact form, so a subclass overriding either takes the generic path."""
    from .model import VAE

    return isinstance(model, VAE) and type(model).decode is VAE.decode \
        and type(model).log_likelihood is VAE.log_likelihood


# --- Importance sampling ------------------------------------------------------------------
def log_importance_weights(model, x: torch.Tensor, z: torch.Tensor, post: Posterior) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for z of shape (S, B, D): (S, B)."""
    log_px_z = _mlp_bernoulli_log_px(model, x, z) if not torch.is_grad_enabled() else None
    if log_px_z is None:
        log_px_z = model.log_likelihood(x, model.decode(z))
    return log_px_z + log_standard_normal(z) - log_normal_diag(z, post.mu, post.logvar)


def _mlp_bernoulli_log_px(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
    """log p(x|z) for vae_core's MLP VAE with a Bernoulli decoder, computed with less work; None
    for any other model (the caller then takes the generic path). Evaluation only: no autograd.

    log p(x|z) = x . logits - sum softplus(logits), and with logits = W h + b the first term is
    (W^T x) . h + x . b: a 400-long dot per sample instead of a pass over all pixels, so the big
    (S, B, pixels) tensor is written once by the matmul and turned into softplus in place.
    Equal to ``model.log_likelihood(x, model.decode(z))`` up to float rounding (tests/test_fast_paths.py).
    """
    if not _is_own_vae(model) or model.config.body != "mlp" or model.config.likelihood != "bernoulli":
        return None
    dec = model.dec
    if len(dec) != 3 or not (isinstance(dec[0], torch.nn.Linear) and isinstance(dec[1], torch.nn.ReLU)
                             and isinstance(dec[2], torch.nn.Linear)):
        return None
    h = torch.nn.functional.linear(z, dec[0].weight, dec[0].bias).relu_()  # (..., B, H)
    out_w, out_b = dec[2].weight, dec[2].bias  # (P, H), (P,)
    xf = x.reshape(x.shape[0], -1)  # (B, P)
    x_dot_logits = (h * (xf @ out_w)).sum(-1) + xf @ out_b  # (..., B)
    logits = torch.addmm(out_b, h.reshape(-1, h.shape[-1]), out_w.t())  # (S*B, P)
    torch.nn.functional.softplus(logits, 1, 20, out=logits)  # threshold 20: exact in float32
    return x_dot_logits - logits.sum(-1).view(h.shape[:-1])


def iwae_bound(
    model,
    x: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-weighted bound log (1/k) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x): (B,).

    Burda et al. (2016). k = 1 is the ELBO; it rises towards log p(x) as k grows. Samples are
    drawn ``chunk_size`` at a time and combined with a running log-sum-exp, so memory stays
    bounded for k in the thousands (use it under torch.no_grad() for evaluation).
    """
    post = model.encode(x)
    chunk = k if chunk_size is None else max(1, min(chunk_size, k))
    running = None  # (B,) log sum of weights seen so far
    done = 0
    while done < k:
        n = min(chunk, k - done)
        z = sample_posterior(post, n, generator)  # (n, B, D)
        lse = torch.logsumexp(log_importance_weights(model, x, z, post), dim=0)
        running = lse if running is None else torch.logaddexp(running, lse)
        done += n
    return running - math.log(k)


def auto_chunk_size(batch: int, pixels: int, budget_floats: int = 32_000_000) -> int:
    """Samples per chunk so that the decoder output (chunk, batch, pixels) stays within ~budget floats."""
    return max(1, budget_floats // max(1, batch * pixels))
