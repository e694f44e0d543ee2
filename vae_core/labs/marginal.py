"""Lab: estimating the marginal likelihood log p(x) by importance sampling.

The question it answers: why "sampling z from Q gives an estimator which converges much faster
than sampling z from N(0, 1)"? Both are importance sampling (e.g. Burda et al. 2016, eq. 8):

    log p(x) = log E_{z ~ r}[ p(x, z) / r(z) ]  ~  log 1/K sum_k w_k,   w_k = p(x|z_k) p(z_k) / r(z_k)

with proposal r = the prior p(z) (then w_k = p(x|z_k)) or r = the encoder's q(z|x) (then the
estimate is the importance-weighted bound L_K, which is the ELBO at K = 1). Both converge to
log p(x) as K grows, but how fast depends on how often r proposes z where p(x|z) p(z) is not
negligible. Under the prior almost no z explains a given image, so one lucky draw dominates the
sum; the effective sample size ESS = (sum w)^2 / sum w^2 (Kong 1992) says how many draws count.

Efficiency: one set of K_max draws per repeat gives the estimate at every K <= K_max through a
running log-sum-exp (torch.logcumsumexp); draws are decoded in chunks so memory stays bounded.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..engine.evaluate import evaluate_elbo, evaluate_iwae
from ..engine.protocol import Posterior
from ..engine.objectives import auto_chunk_size, elbo_terms, log_importance_weights, sample_posterior

PROPOSALS = ("prior", "posterior")
LABELS = {"prior": "z from the prior N(0, I)", "posterior": "z from the encoder q(z|x)"}
Progress = Callable[[float, str], None]


def proposal(model, x: torch.Tensor, which: str) -> Posterior:
    """The proposal r(z) for each row of x as a diagonal Gaussian: the prior or q(z|x)."""
    post = model.encode(x)
    if which == "posterior":
        return post
    if which == "prior":
        # N(0, I) written as a "posterior", so the same sampler and weight formula serve both:
        # log w = log p(x|z) + log p(z) - log N(z; 0, I) = log p(x|z).
        return Posterior(torch.zeros_like(post.mu), torch.zeros_like(post.logvar))
    raise ValueError(f"unknown proposal {which!r}: use 'prior' or 'posterior'")


@torch.no_grad()
def log_weights(model, x: torch.Tensor, prop: Posterior, k: int, chunk: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """log w for k draws per row of x from ``prop``: (k, B). Drawn ``chunk`` at a time in the
    same order as ``objectives.iwae_bound``, so with the same generator state and chunk size
    the draws are identical."""
    chunk = k if chunk is None else max(1, min(chunk, k))
    out, done = [], 0
    while done < k:
        n = min(chunk, k - done)
        z = sample_posterior(prop, n, generator)  # (n, B, D)
        out.append(log_importance_weights(model, x, z, prop))
        done += n
    return torch.cat(out)


def running_estimates(logw: torch.Tensor, ks) -> torch.Tensor:
    """log (1/K) sum_{k<=K} w_k for each K in ks, from log w (K_max, ...): (len(ks), ...)."""
    idx = torch.as_tensor(list(ks), dtype=torch.long)
    lse = torch.logcumsumexp(logw.double(), dim=0)[idx - 1]
    return lse - idx.double().log().reshape(-1, *([1] * (logw.dim() - 1)))


def running_ess(logw: torch.Tensor, ks) -> torch.Tensor:
    """Effective sample size (sum w)^2 / sum w^2 of the first K draws, for each K in ks."""
    idx = torch.as_tensor(list(ks), dtype=torch.long)
    lw = logw.double()
    return (2 * torch.logcumsumexp(lw, 0)[idx - 1] - torch.logcumsumexp(2 * lw, 0)[idx - 1]).exp()


def log_spaced(k_max: int, n: int = 30) -> list[int]:
    """About n distinct integers from 1 to k_max, evenly spaced on a log scale (both ends included)."""
    return sorted({int(round(v)) for v in np.logspace(0, math.log10(max(1, k_max)), num=n)} | {1, int(k_max)})


# --- one image, two proposals ----------------------------------------------------------------
@dataclass
class MarginalStudy:
    """log p(x) estimates for one image as a function of K, per proposal.

    estimates[p]: (len(ks), repeats) nats; ess[p]: (len(ks), repeats).
    elbo: the ELBO (analytic KL, many draws); iwae: the mean over repeats of the q(z|x) estimate
    at K_max, i.e. the importance-weighted bound L_{K_max}.
    top_weight[p]: the largest normalised weight w_k / sum w at K_max, mean over repeats.
    log_w_sample[p]: the log weights of the first repeat (for a histogram).
    exact: log p(x) when it can be had exactly: in closed form (the linear-Gaussian model) or by
        quadrature for a 1-D or 2-D latent space; else None.
    """

    ks: list[int]
    repeats: int
    estimates: dict[str, np.ndarray]
    ess: dict[str, np.ndarray]
    elbo: float
    iwae: float
    top_weight: dict[str, float]
    log_w_sample: dict[str, np.ndarray] = field(default_factory=dict)
    exact: float | None = None
    seconds: float = 0.0

    def log_weight_span(self, which: str) -> float:
        """max - min of the first repeat's log weights (nats): how unevenly the proposal's draws count."""
        w = self.log_w_sample.get(which)
        return float(np.ptp(w)) if w is not None and len(w) else float("nan")

    def final(self, which: str) -> tuple[float, float]:
        """(mean, standard deviation over repeats) of the estimate at K_max."""
        v = self.estimates[which][-1]
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


@torch.no_grad()
def marginal_study(model, x: torch.Tensor, k_max: int = 5000, repeats: int = 10, n_ks: int = 30,
                   elbo_samples: int = 1000, seed: int = 0, progress: Progress | None = None) -> MarginalStudy:
    """Importance-sampling estimates of log p(x) for one example x, with a batch dimension of 1.

    Each repeat draws k_max z from each proposal; the estimate at every K is the running
    log-mean-exp of the first K weights, so the curves of one repeat share their draws.
    """
    t0 = time.perf_counter()
    say = progress or (lambda *_: None)
    if x.shape[0] != 1:
        raise ValueError(f"one example with a batch dimension of 1, got shape {tuple(x.shape)}")
    x1 = x
    xr = x1.expand(repeats, *x1.shape[1:])  # the repeats are a batch of the same image
    ks = log_spaced(k_max, n_ks)
    pixels = x1[0].numel()
    chunk = auto_chunk_size(repeats, pixels, budget_floats=4_000_000)
    g = torch.Generator(device=x.device).manual_seed(seed)
    estimates, ess, top, sample = {}, {}, {}, {}
    for i, which in enumerate(PROPOSALS):
        prop = proposal(model, xr, which)
        parts, done = [], 0
        while done < k_max:  # chunked here too, only to report progress
            n = min(chunk, k_max - done)
            parts.append(log_weights(model, xr, prop, n, chunk, g))
            done += n
            say((i + done / k_max) / (len(PROPOSALS) + 0.1), f"{LABELS[which]}: {done:,} of {k_max:,} draws × {repeats} repeats")
        logw = torch.cat(parts)  # (k_max, R)
        estimates[which] = running_estimates(logw, ks).numpy()
        ess[which] = running_ess(logw, ks).numpy()
        top[which] = float((logw.double().max(0).values - torch.logsumexp(logw.double(), 0)).exp().mean())
        sample[which] = logw[:, 0].double().numpy()
    say(len(PROPOSALS) / (len(PROPOSALS) + 0.1), "ELBO")
    elbo = elbo_terms(model, x1, samples=elbo_samples, kl_estimator="analytic", generator=g).elbo.item()
    exact = exact_log_px(model, x1)
    say(1.0, "done")
    return MarginalStudy(ks, repeats, estimates, ess, elbo, float(estimates["posterior"][-1].mean()), top,
                         sample, exact, time.perf_counter() - t0)


def exact_log_px(model, x1: torch.Tensor) -> float | None:
    """log p(x) of one image when it can be had exactly: in closed form (the linear-Gaussian
    model), or by quadrature for a 1-D or 2-D latent space (``labs.exact``); else None."""
    if hasattr(model, "exact_log_px"):
        return model.exact_log_px(x1).item()
    from .exact import MAX_DIM, quadrature

    if 1 <= getattr(model, "latent_dim", 0) <= MAX_DIM:
        return quadrature(model, x1)[0].log_px
    return None


# --- the test set ----------------------------------------------------------------------------
@dataclass
class TestSetNLL:
    n_images: int
    k: int
    iwae: float  # mean L_k, nats (higher is better)
    elbo: float  # mean ELBO on the same images
    seconds: float

    @property
    def nll(self) -> float:
        """The IWAE estimate of the negative log-likelihood, -L_k (nats)."""
        return -self.iwae

    @property
    def gap(self) -> float:
        """L_k - ELBO: how much the ELBO under-states log p(x) on average (a lower bound on it)."""
        return self.iwae - self.elbo


def test_set_nll(model, x: torch.Tensor, k: int = 1000, batch_size: int = 20, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> TestSetNLL:
    """Mean importance-weighted bound with k samples (evaluate_iwae) and the ELBO over x."""
    t0 = time.perf_counter()
    iwae = evaluate_iwae(model, x, k, batch_size=batch_size, seed=seed, progress=progress)
    elbo = evaluate_elbo(model, x, seed=seed)["elbo"]
    return TestSetNLL(len(x), k, iwae, elbo, time.perf_counter() - t0)


test_set_nll.__test__ = False  # not a pytest test, despite the name
TestSetNLL.__test__ = False
