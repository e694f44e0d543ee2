"""Lab: the exact posterior p(z|x) of a model with a 1-D or 2-D latent space, by quadrature.

The study notes open with the identity (Kingma & Welling 2014, eq. 1)

    log p(x) = KL(q(z|x) || p(z|x)) + L(theta, phi; x),

and every other view shows only L, the ELBO. With D <= 2 the integral

    p(x) = ∫ p(x|z) p(z) dz  ~  sum_g w_g p(x|z_g) p(z_g) * cell area    (trapezoid rule)

is cheap enough to compute on a grid, and so are the true posterior p(z_g|x) = p(x, z_g) / p(x)
and the gap KL(q || p(z|x)) = E_q[log q(z|x) - log p(z|x)].

How the grid is chosen, per image:
1. A coarse grid over a box that covers the prior (±6) and q(z|x) (mu ± 6 sigma) finds where
   p(x, z) has its mass, including several modes.
2. The fine box is the bounding box of the cells within ``MASS_NATS`` of the largest one (plus one
   cell), joined with q's mu ± 5 sigma so that the KL term, an expectation under q, is covered too.
   If the posterior still has mass on the fine box's edge, the box grows and the step repeats.
3. The resolution doubles until log p(x) changes by less than ``tol`` (0.01 nats) between the grid
   and every other vertex of it (the same decodes at half the resolution); the finer estimate is
   kept and ``points_per_axis`` says which grid that was. On the smooth, fast-decaying integrands
   here the trapezoid rule converges much faster than any power of the spacing, so a few dozen
   points across the posterior's bulk already agree to far under 0.01 nats.

The ELBO is the project's: E_q[log p(x|z)] - KL(q || p(z)) with the analytic Gaussian KL
(``objectives.kl_to_prior``); its expectation is taken on the same grid, weighted by q
(deterministic, unlike the one-draw estimate the trainer logs). KL(q || p(z|x)) is
E_q[log q(z|x) - log p(z|x)] on the grid. Their sum equals log p(x) only as far as the grid's
estimate of E_q[log q - log p(z)] equals the analytic KL, so the identity checks that the grid
resolves q; step 3 refines until that expectation, too, is stable to ``tol``.

Decoding is batched over grid points and images, ``auto_chunk_size`` at a time, so memory stays
bounded whatever the resolution.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..engine.objectives import auto_chunk_size, kl_to_prior, log_joint, log_normal_diag, log_prior, prior_of
from ..engine.protocol import Posterior, device_of

MAX_DIM = 2
PRIOR_HALF_WIDTH = 6.0  # a Gaussian prior holds all but e^-18 of its density within ±6 sd per axis
Q_HALF_WIDTH = 6.0  # sigmas of q(z|x) the coarse box covers
Q_FINE_HALF_WIDTH = 5.0  # sigmas of q(z|x) the fine box keeps, for the KL term
MASS_NATS = 30.0  # cells more than this below the largest hold a negligible share of the mass
EDGE_NATS = 20.0  # a fine box whose edge is within this of the peak is grown
COARSE_POINTS = {1: 257, 2: 33}  # vertices per axis of the search grid
FINE_START = {1: 32, 2: 16}  # n: the first fine grid has 2n + 1 vertices per axis
FINE_MAX = {1: 32768, 2: 1024}
Progress = Callable[[int, int], None]


class NeedsLowDimension(ValueError):
    """Quadrature needs a 1-D or 2-D latent space; the message says so for people."""


def check_dim(model) -> int:
    d = int(model.latent_dim)
    if not 1 <= d <= MAX_DIM:
        raise NeedsLowDimension(
            f"the exact posterior needs a model with a 1-D or 2-D latent space (this one has {d}): on a grid, "
            f"the cost grows as the points per axis to the power D, so beyond D = 2 it is out of reach; "
            "train a model with --latent-dim 2 to see it")
    return d


# --- grids -------------------------------------------------------------------------------------
def _grid_points(lo: torch.Tensor, hi: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The vertices of an m^D grid spanning each image's box: z (m^D, B, D), and each image's cell
    area (B,). Point g = (i, j) sits at row i * m + j (axis 0 first)."""
    b, d = lo.shape
    step = (hi - lo) / (m - 1)  # (B, D)
    u = torch.arange(m, dtype=lo.dtype, device=lo.device)
    idx = u[:, None] if d == 1 else torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    z = lo[None] + idx[:, None, :] * step[None]  # (G, B, D)
    return z, step.prod(-1)


def _log_trapezoid_weights(m: int, d: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """log of the trapezoid rule's weights on an m^D vertex grid (1 inside, 1/2 per edge it lies on): (m^D,)."""
    w = torch.ones(m, dtype=dtype, device=device)
    w[0] = w[-1] = 0.5
    if d == 2:
        w = (w[:, None] * w[None, :]).reshape(-1)
    return w.log()


def _every_other(m: int, d: int, device=None) -> torch.Tensor:
    """Rows of the (m + 1) / 2 grid (every other vertex) inside the m-grid: (((m + 1) / 2)^D,)."""
    keep = torch.arange(0, m, 2, device=device)
    return keep if d == 1 else (keep[:, None] * m + keep[None, :]).reshape(-1)


@torch.no_grad()
def grid_log_joint(model, x: torch.Tensor, z: torch.Tensor, budget_floats: int = 16_000_000) -> torch.Tensor:
    """log p(x, z) at grid points z (G, B, D) for images x (B, ...): (G, B), float64, decoded in chunks."""
    pixels = x[0].numel()
    chunk = auto_chunk_size(x.shape[0], pixels, budget_floats)
    dtype = device_of(model)[1]
    out = [log_joint(model, x, z[i:i + chunk].to(dtype)).double() for i in range(0, z.shape[0], chunk)]
    return torch.cat(out)


def _log_integral(lj: torch.Tensor, m: int, d: int, area: torch.Tensor) -> torch.Tensor:
    """log ∫ p(x, z) dz by the trapezoid rule from log p(x, z) on an m^D vertex grid: (B,)."""
    return torch.logsumexp(lj + _log_trapezoid_weights(m, d, device=lj.device)[:, None], 0) + area.log()


def _boxes_from_coarse(lj: torch.Tensor, z: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes (lo, hi), (B, D) each, of the points within MASS_NATS of each image's peak, plus one step."""
    keep = lj >= lj.max(0, keepdim=True).values - MASS_NATS  # (G, B)
    big = torch.finfo(z.dtype).max
    lo = torch.where(keep[..., None], z, big).min(0).values - step
    hi = torch.where(keep[..., None], z, -big).max(0).values + step
    return lo, hi


def _edge_heavy(lj: torch.Tensor, m: int, d: int) -> torch.Tensor:
    """Whether each image's grid (G = m^D, B) has an edge point within EDGE_NATS of its peak: (B,)."""
    peak = lj.max(0).values
    if d == 1:
        edge = torch.maximum(lj[0], lj[-1])
    else:
        g = lj.reshape(m, m, -1)
        edge = torch.stack([g[0].max(0).values, g[-1].max(0).values, g[:, 0].max(0).values,
                            g[:, -1].max(0).values]).max(0).values
    return edge >= peak - EDGE_NATS


def search_boxes(model, x: torch.Tensor, post: Posterior) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1-2 of the module docstring: each image's fine box (lo, hi), (B, D) each, float64."""
    d = post.mu.shape[1]
    mu, sigma = post.mu.double(), post.sigma.double()
    prior = prior_of(model)
    p_mu, p_sd = ((0.0, 1.0) if prior is None else (prior.mu.double().to(mu.device),
                                                      prior.sigma.double().to(mu.device)))
    lo = torch.minimum(mu - Q_HALF_WIDTH * sigma, p_mu - PRIOR_HALF_WIDTH * p_sd + torch.zeros_like(mu))
    hi = torch.maximum(mu + Q_HALF_WIDTH * sigma, p_mu + PRIOR_HALF_WIDTH * p_sd + torch.zeros_like(mu))
    m = COARSE_POINTS[d]
    z, _ = _grid_points(lo, hi, m)
    lo, hi = _boxes_from_coarse(grid_log_joint(model, x, z), z, (hi - lo) / (m - 1))
    return torch.minimum(lo, mu - Q_FINE_HALF_WIDTH * sigma), torch.maximum(hi, mu + Q_FINE_HALF_WIDTH * sigma)


def _q_expectation(f: torch.Tensor, log_q: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """E_q[f] on a grid: f weighted by q's share of each point, normalised on the grid: (B,)."""
    return ((log_q + log_w).softmax(0) * f).sum(0)


@dataclass
class ImageGrid:
    """One image's final grid and its log p(x).

    lo, hi: the box (D,); points_per_axis: vertices per axis; z (G, D), log_joint (G,) and
    log_weights (G,) (trapezoid weight times cell area, in logs) at its points; change: the larger
    of |log p(x)| and |E_q[log q(z|x) - log p(z)]| between this grid and every other vertex of it,
    below ``tol`` when converged.
    """

    lo: np.ndarray
    hi: np.ndarray
    points_per_axis: int
    z: torch.Tensor
    log_joint: torch.Tensor
    log_weights: torch.Tensor
    log_px: float
    change: float
    converged: bool


@torch.no_grad()
def quadrature(model, x: torch.Tensor, post: Posterior | None = None, tol: float = 0.01,
               say: Callable[[str], None] | None = None) -> list[ImageGrid]:
    """log p(x) by adaptive trapezoid quadrature for each image of a batch x (B, ...).

    Each fine grid has 2n + 1 vertices per axis; every other vertex is the n + 1 grid, so one set of
    decodes gives the estimate at two resolutions, and their difference is the convergence test.
    Only the images that have not converged go on to the next resolution.
    """
    d = check_dim(model)
    post = model.encode(x) if post is None else post
    say = say or (lambda _: None)
    lo, hi = search_boxes(model, x, post)
    grids: list[ImageGrid | None] = [None] * x.shape[0]
    idx, n = torch.arange(x.shape[0]), FINE_START[d]
    while idx.numel():
        m = 2 * n + 1
        for grown in range(5):  # mass on a box's edge: widen that box by half on each side, again
            z, area = _grid_points(lo[idx], hi[idx], m)
            lj = grid_log_joint(model, x[idx], z)
            heavy = _edge_heavy(lj, m, d)
            if not heavy.any() or grown == 4:
                break
            rows = idx[heavy]
            span = (hi[rows] - lo[rows]) * 0.5
            lo[rows], hi[rows] = lo[rows] - span, hi[rows] + span
        log_w = _log_trapezoid_weights(m, d, device=lj.device)[:, None] + area.log()[None]  # (G, b)
        log_px = torch.logsumexp(lj + log_w, 0)
        every = _every_other(m, d, lj.device)
        half = _log_integral(lj[every], n + 1, d, area * 2**d)
        # The KL and ELBO are expectations under q: the grid must resolve q as well as p(x, z).
        log_q = log_normal_diag(z, post.mu[idx].double(), post.logvar[idx].double())  # (G, b)
        kl_prior = _q_expectation(log_q - log_prior(model, z), log_q, log_w)
        half_w = _log_trapezoid_weights(n + 1, d, device=lj.device)[:, None] + (area * 2**d).log()[None]
        kl_prior_half = _q_expectation((log_q - log_prior(model, z))[every], log_q[every], half_w)
        change = torch.maximum((log_px - half).abs(), (kl_prior - kl_prior_half).abs())
        done = (change < tol) | heavy | (2 * n > FINE_MAX[d])
        say(f"{m} points per axis: {int(done.sum())} of {idx.numel()} images within {tol:g} nats")
        for j in done.nonzero().flatten().tolist():
            i = int(idx[j])
            grids[i] = ImageGrid(lo[i].cpu().numpy(), hi[i].cpu().numpy(), m, z[:, j], lj[:, j], log_w[:, j],
                                 float(log_px[j]), float(change[j]), bool(change[j] < tol and not heavy[j]))
        idx, n = idx[~done], n * 2
    return grids


# --- one image ------------------------------------------------------------------------------------
@dataclass
class ExactPosterior:
    """One image's exact posterior on its fine grid, beside q(z|x), and the three numbers.

    axes: D arrays of grid vertices; log_posterior: log p(z|x) on the grid, shape (n,) or (n, n)
    indexed [axis 0, axis 1]; q_mu, q_sigma: the encoder's q(z|x); log_px, elbo and
    kl_q_posterior in nats; identity_error = elbo + kl_q_posterior - log_px.
    """

    axes: list[np.ndarray]
    log_posterior: np.ndarray
    q_mu: np.ndarray
    q_sigma: np.ndarray
    log_px: float
    elbo: float
    kl_q_posterior: float
    kl_q_prior: float
    points_per_axis: int
    converged: bool
    change: float
    posterior_mean: np.ndarray
    posterior_cov: np.ndarray
    seconds: float = 0.0

    @property
    def identity_error(self) -> float:
        return self.elbo + self.kl_q_posterior - self.log_px

    @property
    def cell_area(self) -> float:
        return float(np.prod([a[1] - a[0] if len(a) > 1 else 1.0 for a in self.axes]))  # vertex spacing


@dataclass
class ExactBatch:
    """Per-image numbers for a batch: log p(x), ELBO and KL(q || p(z|x)) (B,) each, and the grids."""

    log_px: np.ndarray
    elbo: np.ndarray
    kl_q_posterior: np.ndarray
    points_per_axis: int  # the finest grid any image needed
    converged: bool
    grids: list[ImageGrid]
    post: Posterior


@torch.no_grad()
def exact_batch(model, x: torch.Tensor, tol: float = 0.01) -> ExactBatch:
    """Quadrature log p(x), the ELBO and KL(q || p(z|x)) for a batch x (B, ...)."""
    x = x.to(device_of(model)[0])
    post = model.encode(x)
    grids = quadrature(model, x, post, tol)
    kl_prior = kl_to_prior(model, post).double().cpu().numpy()  # the project's analytic KL(q || p(z))
    elbo, kl = [], []
    for i, g in enumerate(grids):
        log_q = log_normal_diag(g.z, post.mu[i].double(), post.logvar[i].double())  # (G,)
        log_px_z = g.log_joint - log_prior(model, g.z)
        elbo.append(float(_q_expectation(log_px_z, log_q, g.log_weights)) - kl_prior[i])
        kl.append(float(_q_expectation(log_q - (g.log_joint - g.log_px), log_q, g.log_weights)))
    return ExactBatch(np.array([g.log_px for g in grids]), np.array(elbo), np.array(kl),
                      max(g.points_per_axis for g in grids), all(g.converged for g in grids), grids, post)


@torch.no_grad()
def exact_posterior(model, x: torch.Tensor, tol: float = 0.01) -> ExactPosterior:
    """One image's (x: (1, ...) or (...)) exact posterior, its q(z|x) and the three numbers."""
    t0 = time.perf_counter()
    d = check_dim(model)
    spec = getattr(model, "input_spec", None)
    if spec is not None and x.dim() == len(spec.shape):
        x = x[None]
    res = exact_batch(model, x[:1], tol)
    g = res.grids[0]
    m = g.points_per_axis
    axes = [np.linspace(g.lo[i], g.hi[i], m) for i in range(d)]
    log_post = (g.log_joint - g.log_px).cpu().numpy()
    p = np.exp(log_post + g.log_weights.cpu().numpy())
    zs = g.z.cpu().numpy()
    mean = (p[:, None] * zs).sum(0) / p.sum()
    cov = ((zs - mean).T * p) @ (zs - mean) / p.sum()
    return ExactPosterior(
        axes, log_post.reshape((m,) * d), res.post.mu[0].cpu().numpy(), res.post.sigma[0].cpu().numpy(),
        float(res.log_px[0]), float(res.elbo[0]), float(res.kl_q_posterior[0]),
        float(kl_to_prior(model, res.post)[0]), m, g.converged, g.change, mean, np.atleast_2d(cov),
        time.perf_counter() - t0)


# --- a test set -----------------------------------------------------------------------------------
@dataclass
class ExactTestSet:
    """Per-image log p(x), ELBO and KL(q || p(z|x)) over a set of images, and the grids used."""

    log_px: np.ndarray
    elbo: np.ndarray
    kl_q_posterior: np.ndarray
    points_per_axis: int  # the finest grid any batch needed
    converged: bool
    seconds: float

    def worst_fit(self, n: int = 6) -> np.ndarray:
        """Indices of the n images where q fits the true posterior worst (largest KL(q || p(z|x)))."""
        return np.argsort(-self.kl_q_posterior)[:n]


ExactTestSet.__test__ = False


@torch.no_grad()
def exact_test_set(model, x, batch_size: int = 25, tol: float = 0.01, progress: Progress | None = None) -> ExactTestSet:
    """``exact_batch`` over x (a tensor or an ``ImageSet``) a batch at a time, with progress(done, total)."""
    from ..data.imageset import iter_float_batches

    check_dim(model)
    t0 = time.perf_counter()
    device = device_of(model)[0]
    parts, grids, converged, done = [], [], True, 0
    for xb in iter_float_batches(x, batch_size, device):
        r = exact_batch(model, xb, tol)
        parts.append((r.log_px, r.elbo, r.kl_q_posterior))
        grids.append(r.points_per_axis)
        converged &= r.converged
        done += len(xb)
        if progress is not None:
            progress(done, len(x))
    cat = [np.concatenate(c) if parts else np.zeros(0) for c in zip(*parts)] or [np.zeros(0)] * 3
    return ExactTestSet(*cat, max(grids, default=0), converged, time.perf_counter() - t0)
