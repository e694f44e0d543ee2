"""Test-set evaluation: ELBO, the importance-weighted bound (IWAE NLL) and active units.

Shared by the trainer (test ELBO each epoch), the CLI's ``eval`` and the UI. Every function
takes a data set ``x`` as a float tensor or a ``data.ImageSet`` (uint8 underneath) and reads it
a batch at a time onto the model's device, so memory stays bounded whatever its size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data.imageset import iter_float_batches
from .objectives import auto_chunk_size, elbo_terms, gaussian_kl_per_dim, iwae_bound
from .protocol import device_of

IWAE_CHUNK_FLOATS = 8_000_000  # decoder outputs per chunk in evaluate_iwae
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): a unit is active if Var_x E_q[z_d] > 0.01


@dataclass(frozen=True, eq=False)
class TestSetEvaluation:
    """The ELBO's terms as means over a data set (nats per example) and q(z|x) of every
    example: mu and logvar, (N, D) each, on the data's device."""

    log_likelihood: float
    kl: float
    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def elbo(self) -> float:
        return self.log_likelihood - self.kl

    def terms(self) -> dict[str, float]:
        return {"log_likelihood": self.log_likelihood, "kl": self.kl, "elbo": self.elbo}


@torch.no_grad()
def evaluate_test_set(model, x, batch_size: int = 1000, seed: int = 0) -> TestSetEvaluation:
    """Mean ELBO and its terms over x, one posterior sample per example, seeded; the posteriors
    it computed on the way come back too, so a caller that also wants the codes encodes once."""
    was_training = getattr(model, "training", False)
    model.eval()
    device, _ = device_of(model)
    g = torch.Generator(device=device).manual_seed(seed)
    ll_sum = torch.zeros((), device=device, dtype=torch.float64)
    kl_sum = torch.zeros((), device=device, dtype=torch.float64)
    mus, logvars = [], []
    for xb in iter_float_batches(x, batch_size, device):
        post = model.encode(xb)
        t = elbo_terms(model, xb, generator=g, post=post)
        ll_sum += t.log_likelihood.double().sum()
        kl_sum += t.kl.double().sum()
        mus.append(post.mu)
        logvars.append(post.logvar)
    model.train(was_training)
    n = max(1, len(x))
    d = getattr(model, "latent_dim", 0)
    mu = torch.cat(mus) if mus else torch.zeros((0, d), device=device)
    logvar = torch.cat(logvars) if logvars else torch.zeros((0, d), device=device)
    return TestSetEvaluation(ll_sum.item() / n, kl_sum.item() / n, mu, logvar)


def evaluate_elbo(model, x, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean test ELBO and its terms (nats per example), one posterior sample per example, seeded."""
    return evaluate_test_set(model, x, batch_size, seed).terms()


@torch.no_grad()
def evaluate_iwae(
    model,
    x,
    k: int,
    batch_size: int = 100,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Mean importance-weighted bound with k samples over x (nats per example; -result is the IWAE NLL).

    Memory is bounded: ``batch_size`` examples at a time, samples drawn in chunks sized by
    ``auto_chunk_size`` so the decoder output never exceeds ~8M floats (32 MB). Chunks that
    size ran faster than 32M-float ones on a 2-core CPU (bench/RESULTS.md, IWAE section):
    the chunk's tensors stay nearer the cache, and the matmuls are still large.
    """
    model.eval()
    device, _ = device_of(model)
    g = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    done = 0
    for xb in iter_float_batches(x, batch_size, device):
        chunk = auto_chunk_size(len(xb), xb[0].numel(), budget_floats=IWAE_CHUNK_FLOATS)
        total += iwae_bound(model, xb, k, chunk_size=chunk, generator=g).double().sum()
        done += len(xb)
        if progress:
            progress(done, len(x))
    return total.item() / max(1, len(x))


@torch.no_grad()
def posterior_stats(model, x, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Per-dimension statistics of q(z|x) over a data set: see ``code_stats``."""
    model.eval()
    device, _ = device_of(model)
    mus, logvars = [], []
    for xb in iter_float_batches(x, batch_size, device):
        post = model.encode(xb)
        mus.append(post.mu)
        logvars.append(post.logvar)
    return code_stats(torch.cat(mus), torch.cat(logvars))


def code_stats(mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-dimension statistics of posteriors mu, logvar (N, D) over a data set.

    Returns mu, logvar, kl_per_dim (D,) mean KL per dimension in nats, mean_variance (D,) =
    Var_x E_q[z_d], and active (D,) bool.
    """
    kl = gaussian_kl_per_dim(mu, logvar).mean(0)
    var = mu.var(0, unbiased=False) if len(mu) > 1 else torch.zeros(mu.shape[1], device=mu.device)
    return {"mu": mu, "logvar": logvar, "kl_per_dim": kl, "mean_variance": var, "active": var > ACTIVE_UNIT_THRESHOLD}


def principal_axes(mu: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k principal axes of codes mu (N, D), by SVD of the centred codes.

    Returns (mean (D,), components (k', D) with orthonormal rows, explained-variance ratio
    (k',)), k' = min(k, N, D). Each component's sign is fixed so that its largest-magnitude
    loading is positive, as scikit-learn's ``svd_flip`` does, so the picture does not flip
    between snapshots. Codes with no spread at all (a collapsed encoder) get ratio 0.
    """
    m = np.asarray(mu, dtype=np.float64)
    n, d = m.shape
    mean = m.mean(0) if n else np.zeros(d)
    kk = min(k, n, d) if n >= 2 else 0
    if kk == 0:
        return mean, np.zeros((0, d)), np.zeros(0)
    _, s, vt = np.linalg.svd(m - mean, full_matrices=False)  # (min(N, D),), (min(N, D), D)
    comps = vt[:kk]
    signs = np.sign(comps[np.arange(kk), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    total = var.sum()
    ratio = var[:kk] / total if total > 0 else np.zeros(kk)
    return mean, comps, ratio
