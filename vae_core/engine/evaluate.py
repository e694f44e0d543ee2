"""Test-set evaluation: ELBO, the importance-weighted bound (IWAE NLL) and active units.

Shared by the trainer (test ELBO each epoch), the CLI's ``eval`` and the UI. Every function
takes a data set ``x`` as a float tensor or a ``data.ImageSet`` (uint8 underneath) and reads it
a batch at a time onto the model's device, so memory stays bounded whatever its size.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data.imageset import iter_float_batches
from . import workers
from .objectives import (auto_chunk_size, elbo_terms, gaussian_kl_per_dim, gaussian_kl_to_prior_per_dim, iwae_bound,
                         prior_of)
from .protocol import Posterior, device_of

IWAE_CHUNK_FLOATS = 8_000_000  # decoder outputs per chunk in evaluate_iwae
# ... for a model whose shortcut makes its decoder outputs a cache-sized block at a time on the
# CPU (``VAE.log_likelihood_at``): only the codes and weights, (chunk, batch) x (latent + 1), are
# held per chunk, and fewer, larger chunks mean fewer waits for the slowest worker
IWAE_SHORTCUT_CHUNK_FLOATS = 40_000_000
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
    the chunk's tensors stay nearer the cache, and the matmuls are still large. (A model whose
    shortcut never holds a chunk's decoder outputs gets larger chunks on the CPU:
    ``IWAE_SHORTCUT_CHUNK_FLOATS``.) See ``evaluate_iwae_result`` for a deadline, a partial bound
    and the time taken.
    """
    return evaluate_iwae_result(model, x, k, batch_size, seed, progress).bound or 0.0


@dataclass(frozen=True)
class IwaeResult:
    """The IWAE bound with k samples over the first ``images`` of ``total`` examples.

    bound: mean over those images (nats per example), None when none was finished.
    stopped: None when it ran to the end; "max_seconds" (the deadline) or "interrupted"
    (Ctrl-C) when it stopped early: then the bound is over fewer images than asked, a partial one.
    """

    k: int
    bound: float | None
    images: int
    total: int
    seconds: float
    stopped: str | None = None

    @property
    def partial(self) -> bool:
        return self.images < self.total


class _Deadline(Exception):
    pass


@torch.no_grad()
def evaluate_iwae_result(
    model,
    x,
    k: int,
    batch_size: int = 100,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
    interruptible: bool = False,
    clock: Callable[[], float] = time.monotonic,
    progress_within_batch: bool = False,
) -> IwaeResult:
    """``evaluate_iwae`` that may stop early and says how far it got.

    max_seconds: stop before a batch that would not finish in time (judged by the time per
    image so far) and abandon a batch in progress once the time is up; the bound is then over
    the finished batches. interruptible: a KeyboardInterrupt (Ctrl-C) does the same instead of
    propagating. ``progress(done, total)`` is called after each batch and, with
    ``progress_within_batch``, also between chunks of samples (``done`` then counts the images of
    the batch in progress in proportion to its samples drawn: for a slow model a batch can take
    minutes).
    The draws, and so the bound over any set of finished batches, are those of a full run.

    On the CPU, a model with an evaluation shortcut (``log_likelihood_at``) runs its blocks on
    single-threaded workers and the loop's own small ops on one thread (``workers.block_parallel``).
    """
    was_training = getattr(model, "training", False)
    model.eval()
    device, _ = device_of(model)
    g = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    done, n, stopped = 0, len(x), None
    start = clock()

    chunks = [0, 1, 0]  # chunks done in this batch, chunks per batch, images in it

    def check():
        if max_seconds is not None and clock() - start >= max_seconds:
            raise _Deadline
        if progress_within_batch and progress and 0 < chunks[0] < chunks[1]:
            progress(done + chunks[2] * chunks[0] // chunks[1], n)
        chunks[0] += 1

    blocked = False  # the model's shortcut makes decoder outputs a block at a time here
    with contextlib.ExitStack() as stack:
        try:
            for xb in iter_float_batches(x, batch_size, device):
                if done == 0:
                    blocked = _has_cpu_shortcut(model, xb, device)
                    if blocked and torch.get_num_threads() > 1:
                        stack.enter_context(workers.block_parallel())
                if max_seconds is not None and done:
                    spent = clock() - start
                    if spent + spent / done * len(xb) > max_seconds:
                        stopped = "max_seconds"
                        break
                chunk = auto_chunk_size(len(xb), xb[0].numel(),
                                        budget_floats=IWAE_SHORTCUT_CHUNK_FLOATS if blocked else IWAE_CHUNK_FLOATS)
                chunks[:] = [0, -(-k // max(1, min(chunk, k))), len(xb)]
                watch = max_seconds is not None or (progress_within_batch and progress is not None)
                bound = iwae_bound(model, xb, k, chunk_size=chunk, generator=g, check=check if watch else None)
                total += bound.double().sum()
                done += len(xb)
                if progress:
                    progress(done, n)
        except _Deadline:
            stopped = "max_seconds"
        except KeyboardInterrupt:
            if not interruptible:
                raise
            stopped = "interrupted"
        finally:
            model.train(was_training)
    mean = total.item() / done if done else (None if n else 0.0)
    return IwaeResult(k=k, bound=mean, images=done, total=n, seconds=clock() - start,
                      stopped=stopped if done < n else None)


def _has_cpu_shortcut(model, xb: torch.Tensor, device: torch.device) -> bool:
    """Whether the model's decoder outputs are made block by block: on the CPU, for a model whose
    ``log_likelihood_at`` answers (tried on one image and its mean code)."""
    shortcut = getattr(model, "log_likelihood_at", None)
    if shortcut is None or device.type != "cpu" or len(xb) == 0:
        return False
    return shortcut(xb[:1], model.encode(xb[:1]).mu[None]) is not None


IWAE_K_LADDER = (5000, 2000, 1000, 500, 200, 100, 50, 20, 10)  # the k values "auto" chooses from


@dataclass(frozen=True)
class IwaeCost:
    """What ``evaluate_iwae`` costs here, per example: ``fixed_s`` whatever k (encoding, per-batch
    work) plus ``per_sample_s`` for each importance sample."""

    fixed_s: float
    per_sample_s: float

    def seconds(self, k: int, n_images: int) -> float:
        return n_images * (self.fixed_s + self.per_sample_s * k)


def probe_iwae_cost(model, x, batch_size: int = 100, ks: tuple[int, int] = (5, 45), seed: int = 0,
                    clock: Callable[[], float] = time.monotonic) -> IwaeCost:
    """Time ``evaluate_iwae`` on the first ``batch_size`` examples at two small k (after an
    untimed warm-up on two) and fit time = fixed + per-sample * k: seconds a larger k would take
    scale from there (k is linear in the work; chunks of samples only get fuller)."""
    xs = x.subset(slice(0, batch_size)) if hasattr(x, "subset") else x[:batch_size]
    if len(xs) == 0:
        return IwaeCost(0.0, 0.0)
    warm = xs.subset(slice(0, 2)) if hasattr(xs, "subset") else xs[:2]
    evaluate_iwae_result(model, warm, 2, batch_size=batch_size, seed=seed)
    lo, hi = (evaluate_iwae_result(model, xs, k, batch_size=batch_size, seed=seed, clock=clock).seconds / len(xs)
              for k in ks)
    per_sample = (hi - lo) / (ks[1] - ks[0])
    if per_sample <= 0.1 * hi / ks[1]:  # timing noise (a busy machine): all of it per sample, the safe side
        return IwaeCost(0.0, hi / ks[1])
    return IwaeCost(max(0.0, lo - per_sample * ks[0]), per_sample)


def choose_iwae_k(cost: IwaeCost, n_images: int, budget_s: float,
                  ladder: tuple[int, ...] = IWAE_K_LADDER) -> tuple[int, float, bool]:
    """The largest k on the ladder whose estimated time over ``n_images`` is within the budget:
    (k, estimated seconds, True). When none fits: (the smallest k, its estimate, False)."""
    for k in sorted(ladder, reverse=True):
        if cost.seconds(k, n_images) <= budget_s:
            return k, cost.seconds(k, n_images), True
    k = min(ladder)
    return k, cost.seconds(k, n_images), False


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
    return code_stats(torch.cat(mus), torch.cat(logvars), prior_of(model))


def code_stats(mu: torch.Tensor, logvar: torch.Tensor, prior: "Posterior | None" = None) -> dict[str, torch.Tensor]:
    """Per-dimension statistics of posteriors mu, logvar (N, D) over a data set.

    Returns mu, logvar, kl_per_dim (D,) mean KL per dimension in nats (to ``prior``, a model's own
    diagonal Gaussian prior, or N(0, I) when None), mean_variance (D,) = Var_x E_q[z_d], and
    active (D,) bool.
    """
    if prior is None:
        kl = gaussian_kl_per_dim(mu, logvar).mean(0)
    else:
        kl = gaussian_kl_to_prior_per_dim(mu, logvar, prior.mu.to(mu), prior.logvar.to(mu)).mean(0)
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
