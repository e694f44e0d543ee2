"""Lab: the exact posterior p(z|x) of a model with a 1-D or 2-D latent space, by quadrature.

The study notes open with the identity (Kingma & Welling 2014, eq. 1)

    log p(x) = KL(q(z|x) || p(z|x)) + L(theta, phi; x),

and every other view shows only L, the ELBO. With D <= 2 the integral

    p(x) = ∫ p(x|z) p(z) dz  ~  sum_g p(x|z_g) p(z_g) * cell area        (midpoint rule)

is cheap enough to compute on a grid, and so are the true posterior p(z_g|x) = p(x, z_g) / p(x)
and the gap KL(q || p(z|x)) = E_q[log q(z|x) - log p(z|x)].

How the grid is chosen, per image:
1. A coarse grid over a box that covers the prior (±6) and q(z|x) (mu ± 6 sigma) finds where
   p(x, z) has its mass, including several modes.
2. The fine box is the bounding box of the cells within ``MASS_NATS`` of the largest one (plus one
   cell), joined with q's mu ± 5 sigma so that the KL term, an expectation under q, is covered too.
   If the posterior still has mass on the fine box's edge, the box grows and the step repeats.
3. The resolution doubles until log p(x) changes by less than ``tol`` (0.01 nats); the finer
   estimate is kept and ``points_per_axis`` says which grid that was.

The ELBO is the project's: E_q[log p(x|z)] - KL(q || p(z)) with the analytic Gaussian KL
(``objectives.gaussian_kl``); its expectation is taken by Gauss-Hermite quadrature under q
(deterministic, unlike the one-draw estimate the trainer logs), independent of the grid, so
ELBO + KL(q || p(z|x)) = log p(x) is a real check of the numbers, not an identity by construction.

Decoding is batched over grid points and images, ``auto_chunk_size`` at a time, so memory stays
bounded whatever the resolution.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..engine.objectives import auto_chunk_size, gaussian_kl, log_joint, log_normal_diag
from ..engine.protocol import Posterior, device_of

MAX_DIM = 2
PRIOR_HALF_WIDTH = 6.0  # the prior N(0, I) holds all but e^-18 of its density within ±6 per axis
Q_HALF_WIDTH = 6.0  # sigmas of q(z|x) the coarse box covers
Q_FINE_HALF_WIDTH = 5.0  # sigmas of q(z|x) the fine box keeps, for the KL term
MASS_NATS = 30.0  # cells more than this below the largest hold a negligible share of the mass
EDGE_NATS = 20.0  # a fine box whose edge is within this of the peak is grown
COARSE_POINTS = {1: 1024, 2: 96}
FINE_START = {1: 256, 2: 48}
FINE_MAX = {1: 65536, 2: 1024}
HERMITE_NODES = {1: 64, 2: 32}
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
def _grid_points(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of an n^D grid in each image's box: z (n^D, B, D) and each image's cell area (B,)."""
    b, d = lo.shape
    step = (hi - lo) / n  # (B, D)
    u = (torch.arange(n, dtype=lo.dtype, device=lo.device) + 0.5)  # (n,)
    if d == 1:
        idx = u[:, None]  # (n, 1)
    else:
        idx = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)  # (n^2, 2), row = axis 0
    z = lo[None] + idx[:, None, :] * step[None]  # (G, B, D)
    return z, step.prod(-1)


@torch.no_grad()
def grid_log_joint(model, x: torch.Tensor, z: torch.Tensor, budget_floats: int = 16_000_000) -> torch.Tensor:
    """log p(x, z) at grid points z (G, B, D) for images x (B, ...): (G, B), float64, decoded in chunks."""
    pixels = x[0].numel()
    chunk = auto_chunk_size(x.shape[0], pixels, budget_floats)
    dtype = device_of(model)[1]
    out = [log_joint(model, x, z[i:i + chunk].to(dtype)).double() for i in range(0, z.shape[0], chunk)]
    return torch.cat(out)


def _boxes_from_coarse(lj: torch.Tensor, z: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes (lo, hi), (B, D) each, of the cells within MASS_NATS of each image's peak, plus one cell."""
    keep = lj >= lj.max(0, keepdim=True).values - MASS_NATS  # (G, B)
    big = torch.finfo(z.dtype).max
    lo = torch.where(keep[..., None], z, big).min(0).values - step
    hi = torch.where(keep[..., None], z, -big).max(0).values + step
    return lo, hi


def _edge_heavy(lj: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """Whether each image's grid (G = n^D, B) has an edge cell within EDGE_NATS of its peak: (B,)."""
    peak = lj.max(0).values
    if d == 1:
        edge = torch.maximum(lj[0], lj[-1])
    else:
        g = lj.reshape(n, n, -1)
        edge = torch.stack([g[0].max(0).values, g[-1].max(0).values, g[:, 0].max(0).values,
                            g[:, -1].max(0).values]).max(0).values
    return edge >= peak - EDGE_NATS


@dataclass
class GridEstimate:
    """log p(x) on each image's fine grid and what it took.

    lo, hi: (B, D) fine boxes; points_per_axis: the grid the estimates come from; change: the
    largest |log p(x)| change over images at the last doubling (below ``tol`` when converged).
    """

    log_px: torch.Tensor  # (B,) float64
    lo: torch.Tensor
    hi: torch.Tensor
    points_per_axis: int
    change: float
    converged: bool
    log_joint: torch.Tensor  # (n^D, B) on the final grid
    z: torch.Tensor  # (n^D, B, D)
    cell_area: torch.Tensor  # (B,)


@torch.no_grad()
def quadrature(model, x: torch.Tensor, post: Posterior | None = None, tol: float = 0.01,
               say: Callable[[str], None] | None = None) -> GridEstimate:
    """log p(x) by adaptive midpoint quadrature for a batch x (B, ...) (see the module docstring)."""
    d = check_dim(model)
    post = model.encode(x) if post is None else post
    mu, sigma = post.mu.double(), post.sigma.double()
    say = say or (lambda _: None)
    # 1. where is the mass? a coarse grid over the prior and q
    lo = torch.minimum(mu - Q_HALF_WIDTH * sigma, torch.full_like(mu, -PRIOR_HALF_WIDTH))
    hi = torch.maximum(mu + Q_HALF_WIDTH * sigma, torch.full_like(mu, PRIOR_HALF_WIDTH))
    z, _ = _grid_points(lo, hi, COARSE_POINTS[d])
    lj = grid_log_joint(model, x, z)
    lo, hi = _boxes_from_coarse(lj, z, (hi - lo) / COARSE_POINTS[d])
    lo = torch.minimum(lo, mu - Q_FINE_HALF_WIDTH * sigma)
    hi = torch.maximum(hi, mu + Q_FINE_HALF_WIDTH * sigma)

    # 2-3. refine until doubling the resolution changes log p(x) by less than tol
    n, previous, change = FINE_START[d], None, math.inf
    while True:
        z, area = _grid_points(lo, hi, n)
        lj = grid_log_joint(model, x, z)
        heavy = _edge_heavy(lj, n, d)
        if heavy.any():  # mass on the edge: widen those boxes by half on each side and start over
            grow = (hi - lo)[heavy] * 0.5
            lo[heavy], hi[heavy] = lo[heavy] - grow, hi[heavy] + grow
            previous, change = None, math.inf
            if (hi - lo).max() > 1e3:
                break
            continue
        log_px = torch.logsumexp(lj, 0) + area.log()
        if previous is not None:
            change = float((log_px - previous).abs().max())
            say(f"{n} points per axis: log p(x) changed by {change:.2g} nats")
            if change < tol:
                break
        if n * 2 > FINE_MAX[d]:
            break
        previous, n = log_px, n * 2
    return GridEstimate(log_px, lo, hi, n, change, change < tol, lj, z, area)


# --- the ELBO by Gauss-Hermite quadrature under q ------------------------------------------------
@torch.no_grad()
def expected_log_likelihood(model, x: torch.Tensor, post: Posterior, nodes: int | None = None) -> torch.Tensor:
    """E_{q(z|x)}[log p(x|z)] by tensor-product Gauss-Hermite quadrature under each image's q: (B,)."""
    d = post.mu.shape[1]
    n = nodes or HERMITE_NODES.get(d, 8)
    eps, w = np.polynomial.hermite_e.hermegauss(n)  # nodes and weights for the weight exp(-eps^2 / 2)
    w = w / math.sqrt(2 * math.pi)
    if d == 1:
        e, wt = eps[:, None], w
    else:
        e = np.stack(np.meshgrid(*([eps] * d), indexing="ij"), -1).reshape(-1, d)
        wt = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), -1).reshape(-1, d), -1)
    dtype = post.mu.dtype
    e = torch.as_tensor(e, dtype=dtype, device=post.mu.device)
    wt = torch.as_tensor(wt, dtype=torch.float64, device=post.mu.device)
    z = post.mu[None] + post.sigma[None] * e[:, None, :]  # (N, B, D)
    chunk = auto_chunk_size(x.shape[0], x[0].numel(), 16_000_000)
    ll = torch.cat([model.log_likelihood(x, model.decode(z[i:i + chunk])).double()
                    for i in range(0, z.shape[0], chunk)])
    return (wt[:, None] * ll).sum(0)


# --- one image ------------------------------------------------------------------------------------
@dataclass
class ExactPosterior:
    """One image's exact posterior on its fine grid, beside q(z|x), and the three numbers.

    axes: D arrays of cell centres; log_posterior: log p(z|x) on the grid, shape (n,) or (n, n)
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
        return float(np.prod([a[1] - a[0] if len(a) > 1 else 1.0 for a in self.axes]))


@dataclass
class ExactBatch:
    """Per-image numbers for a batch: log p(x), ELBO and KL(q || p(z|x)) (B,) each, and the grids."""

    log_px: np.ndarray
    elbo: np.ndarray
    kl_q_posterior: np.ndarray
    points_per_axis: int
    converged: bool
    grid: GridEstimate
    post: Posterior


@torch.no_grad()
def exact_batch(model, x: torch.Tensor, tol: float = 0.01) -> ExactBatch:
    """Quadrature log p(x), the ELBO and KL(q || p(z|x)) for a batch x (B, ...)."""
    device = device_of(model)[0]
    x = x.to(device)
    post = model.encode(x)
    est = quadrature(model, x, post, tol)
    log_q = log_normal_diag(est.z, post.mu.double()[None], post.logvar.double()[None])  # (G, B)
    q_mass = (log_q.exp() * est.cell_area[None])  # (G, B): q's share of each cell
    q_mass = q_mass / q_mass.sum(0, keepdim=True)
    log_post = est.log_joint - est.log_px[None]
    kl = (q_mass * (log_q - log_post)).sum(0)
    elbo = expected_log_likelihood(model, x, post) - gaussian_kl(post).double()
    return ExactBatch(est.log_px.cpu().numpy(), elbo.cpu().numpy(), kl.cpu().numpy(), est.points_per_axis,
                      est.converged, est, post)


@torch.no_grad()
def exact_posterior(model, x: torch.Tensor, tol: float = 0.01) -> ExactPosterior:
    """One image's (x: (1, ...) or (...)) exact posterior, its q(z|x) and the three numbers."""
    t0 = time.perf_counter()
    d = check_dim(model)
    spec = getattr(model, "input_spec", None)
    if spec is not None and x.dim() == len(spec.shape):
        x = x[None]
    res = exact_batch(model, x[:1], tol)
    est = res.grid
    n = est.points_per_axis
    lo, hi = est.lo[0].cpu().numpy(), est.hi[0].cpu().numpy()
    axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i in range(d)]
    log_post = (est.log_joint[:, 0] - est.log_px[0]).cpu().numpy()
    p = np.exp(log_post) * float(est.cell_area[0])
    zs = est.z[:, 0].cpu().numpy()
    mean = (p[:, None] * zs).sum(0) / p.sum()
    cov = ((zs - mean).T * p) @ (zs - mean) / p.sum()
    return ExactPosterior(
        axes, log_post.reshape((n,) * d), res.post.mu[0].cpu().numpy(), res.post.sigma[0].cpu().numpy(),
        float(res.log_px[0]), float(res.elbo[0]), float(res.kl_q_posterior[0]),
        float(gaussian_kl(res.post)[0]), n, res.converged, est.change, mean, np.atleast_2d(cov),
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
