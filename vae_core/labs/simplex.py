"""Dirichlet(alpha) beside its Laplace approximation on the 2-simplex (K = 3), for the Topics lab.

ProdLDA cannot reparameterise a Dirichlet, so its prior on the topic proportions is the logistic
normal that the Laplace approximation N(mu, diag var) in the softmax basis induces on
theta = softmax(z) (``objectives.dirichlet_laplace_prior``; Srivastava & Sutton 2017). This module
puts both densities on a grid over the simplex and measures where they agree: their means, how
much mass each puts near the corners, and two divergences estimated from exact Dirichlet draws.

Densities are with respect to Lebesgue measure on the first K-1 coordinates (theta_1, theta_2),
the usual convention for the Dirichlet; the simplex has area 1/2 in those coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import gammaln, logsumexp, polygamma

from ..engine.objectives import dirichlet_laplace_prior

K = 3
# The three corners of the triangle in the plane, for plotting: topic 1 bottom left, topic 2
# bottom right, topic 3 on top (an equilateral triangle with unit sides).
CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
CORNER_SHARE = 0.9  # "near a corner": one topic has more than this share of the document


# --- the two densities ----------------------------------------------------------------------
def log_dirichlet(theta: np.ndarray, alpha) -> np.ndarray:
    """log Dir(theta; alpha) = log Gamma(sum alpha) - sum log Gamma(alpha_k) + sum (alpha_k - 1) log theta_k,
    for theta (..., K) on the simplex: (...)."""
    return _log_dirichlet(np.log(np.asarray(theta, dtype=np.float64)), _alpha(alpha, np.shape(theta)[-1]))


def _log_dirichlet(log_theta: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    norm = gammaln(alpha.sum()) - gammaln(alpha).sum()
    return norm + ((alpha - 1.0) * log_theta).sum(-1)


def log_logistic_normal(theta: np.ndarray, mu, var) -> np.ndarray:
    """The log density on the simplex of theta = softmax(z), z ~ N(mu, diag var) with K coordinates,
    for theta (..., K): (...).

    softmax(z) = softmax(z + c) for any constant c, so theta depends on z only through the K-1
    differences y_j = z_j - z_K = log(theta_j / theta_K), which are Gaussian:

        y ~ N(m, S),  m_j = mu_j - mu_K,  S = diag(var_1..var_{K-1}) + var_K 1 1^T.

    The map y -> (theta_1..theta_{K-1}) is one to one, with dy_j/dtheta_i = delta_ij / theta_j
    + 1 / theta_K (theta_K = 1 - sum_j theta_j), whose determinant is
    (prod_{j<K} 1/theta_j)(1 + sum_{j<K} theta_j / theta_K) = 1 / prod_k theta_k. So

        p(theta) = N(log(theta_{-K} / theta_K); m, S) / prod_k theta_k,

    the logistic-normal density of Aitchison & Shen (1980), "Logistic-normal distributions: some
    properties and uses", Biometrika 67(2), with its (m, S) read off the K-coordinate Gaussian.
    """
    log_theta = np.log(np.asarray(theta, dtype=np.float64))
    k = log_theta.shape[-1]
    return _log_logistic_normal(log_theta, _vector(mu, k, "mu"), _vector(var, k, "var"))


def _log_logistic_normal(log_theta: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    k = log_theta.shape[-1]
    y = log_theta[..., :-1] - log_theta[..., -1:]  # (..., K-1)
    m = mu[:-1] - mu[-1]
    s = np.diag(var[:-1]) + var[-1]  # (K-1, K-1): the shared z_K adds var_K to every entry
    chol = np.linalg.cholesky(s)
    white = np.linalg.solve(chol, (y - m).reshape(-1, k - 1).T).T.reshape(y.shape)  # L^-1 (y - m)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    log_gauss = -0.5 * ((white**2).sum(-1) + log_det + (k - 1) * np.log(2 * np.pi))
    return log_gauss - log_theta.sum(-1)


def laplace_approximation(alpha) -> tuple[np.ndarray, np.ndarray]:
    """(mu, var), each (K,): ``objectives.dirichlet_laplace_prior`` of Dirichlet(alpha), the prior
    ProdLDA uses, as float64 arrays."""
    mu, var = dirichlet_laplace_prior(torch.as_tensor(np.asarray(alpha, dtype=np.float64)))
    return mu.numpy(), var.numpy()


# --- exact draws, in log space ----------------------------------------------------------------
def sample_log_dirichlet(alpha, n: int, rng: np.random.Generator) -> np.ndarray:
    """log theta for n draws theta ~ Dirichlet(alpha): (n, K).

    theta_k = G_k / sum_i G_i with G_k ~ Gamma(alpha_k). For alpha < 1 a Gamma draw can underflow
    to 0 (theta_k below 1e-300 happens), so it is drawn in log space by Marsaglia & Tsang's (2000)
    boost: G = G' U^(1/alpha) with G' ~ Gamma(alpha + 1) and U ~ Uniform(0, 1) is Gamma(alpha)."""
    alpha = _alpha(alpha, None)
    log_g = np.log(rng.gamma(alpha + 1.0, size=(n, alpha.size))) + np.log(rng.uniform(size=(n, alpha.size))) / alpha
    return log_g - logsumexp(log_g, axis=1, keepdims=True)


def sample_log_logistic_normal(mu, var, n: int, rng: np.random.Generator) -> np.ndarray:
    """log theta for n draws theta = softmax(z), z ~ N(mu, diag var): (n, K)."""
    mu, var = np.asarray(mu, dtype=np.float64), np.asarray(var, dtype=np.float64)
    z = mu + np.sqrt(var) * rng.standard_normal((n, mu.size))
    return z - logsumexp(z, axis=1, keepdims=True)


# --- the grid ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimplexGrid:
    """The centroids of the n^2 congruent small triangles that cut the simplex into n parts per side.

    bary: (n^2, 3) barycentric coordinates theta, strictly inside (no theta_k is 0); xy: (n^2, 2)
    the same points in the plane (``CORNERS``); cell_area: each point's triangle's area in
    (theta_1, theta_2) coordinates, 1 / (2 n^2), so sum(density * cell_area) is the midpoint
    rule's integral over the simplex.
    """

    n: int
    bary: np.ndarray
    xy: np.ndarray
    cell_area: float


def simplex_grid(n: int) -> SimplexGrid:
    """The midpoint grid of the simplex with n cells per side (``SimplexGrid``)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the grid needs at least 1 cell per side, got {n}")
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    i, j = i.ravel(), j.ravel()
    up = i + j <= n - 1  # triangles (i, j), (i+1, j), (i, j+1) in units of 1/n
    down = i + j <= n - 2  # triangles (i+1, j), (i, j+1), (i+1, j+1)
    t1 = np.concatenate([(3 * i[up] + 1), (3 * i[down] + 2)]) / (3.0 * n)
    t2 = np.concatenate([(3 * j[up] + 1), (3 * j[down] + 2)]) / (3.0 * n)
    bary = np.stack([t1, t2, 1.0 - t1 - t2], axis=1)
    return SimplexGrid(n, bary, bary @ CORNERS, 1.0 / (2 * n * n))


# --- both densities and how far apart they are -------------------------------------------------
@dataclass(frozen=True)
class SimplexDensities:
    """Dirichlet(alpha) and its Laplace approximation's logistic normal, K = 3.

    log_dirichlet, log_logistic_normal: each density's log on ``grid.bary``, (n^2,).
    mu, var: the Laplace approximation N(mu, diag var) in the softmax basis, (3,) each.
    mass_dirichlet, mass_logistic_normal: the grid's midpoint-rule integral of each density. The
        logistic normal's is 1 up to the grid's resolution; the Dirichlet's falls short of 1 for
        alpha < 1, where its density is infinite at the edges the grid's centroids never reach.
    mean_dirichlet: E[theta] = alpha / sum(alpha), exact; mean_logistic_normal: by Monte Carlo
        (no closed form), from ``samples`` draws.
    corner_dirichlet, corner_logistic_normal: the probability that one topic has more than
        ``CORNER_SHARE`` of the document, by Monte Carlo.
    tv: the total variation distance (1/2) integral |p - q| in [0, 1]; kl: KL(Dir || LN) in nats.
        Both from exact Dirichlet draws: tv = E_p[(1 - q/p)^+], kl = E_p[log p - log q]; tv_se
        and kl_se are their standard errors.
    spread_dirichlet, spread_logistic_normal: Var[log(theta_1 / theta_3)] under each, exact
        (``log_ratio_variance``): how widely each spreads along an edge, in the softmax basis.
    """

    alpha: tuple[float, ...]
    grid: SimplexGrid
    log_dirichlet: np.ndarray
    log_logistic_normal: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    mass_dirichlet: float
    mass_logistic_normal: float
    mean_dirichlet: np.ndarray
    mean_logistic_normal: np.ndarray
    corner_dirichlet: float
    corner_logistic_normal: float
    tv: float
    tv_se: float
    kl: float
    kl_se: float
    spread_dirichlet: float
    spread_logistic_normal: float
    samples: int


def densities(alpha: float | tuple[float, ...], n: int = 60, samples: int = 20_000, seed: int = 0) -> SimplexDensities:
    """Dirichlet(alpha) (a float: the symmetric one) and the logistic normal of its Laplace
    approximation, on ``simplex_grid(n)``, with their moments and divergences (``SimplexDensities``)."""
    a = _alpha(alpha, K)
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"samples must be at least 2, got {samples}")
    grid = simplex_grid(n)
    mu, var = laplace_approximation(a)
    log_theta = np.log(grid.bary)
    log_p = _log_dirichlet(log_theta, a)
    log_q = _log_logistic_normal(log_theta, mu, var)
    rng = np.random.default_rng(seed)
    from_p = sample_log_dirichlet(a, samples, rng)
    from_q = sample_log_logistic_normal(mu, var, samples, rng)
    # Both divergences as expectations under the Dirichlet, whose draws are exact: a grid would
    # miss the mass that Dirichlet(alpha < 1) piles up against the edges.
    log_ratio = _log_dirichlet(from_p, a) - _log_logistic_normal(from_p, mu, var)  # log p/q, (samples,)
    tv_terms = -np.expm1(-np.maximum(log_ratio, 0.0))  # (1 - q/p)^+
    corner = np.log(CORNER_SHARE)
    return SimplexDensities(
        alpha=tuple(float(v) for v in a), grid=grid, log_dirichlet=log_p, log_logistic_normal=log_q, mu=mu, var=var,
        mass_dirichlet=float(np.exp(log_p).sum() * grid.cell_area),
        mass_logistic_normal=float(np.exp(log_q).sum() * grid.cell_area),
        mean_dirichlet=a / a.sum(), mean_logistic_normal=np.exp(from_q).mean(0),
        corner_dirichlet=float((from_p.max(1) > corner).mean()),
        corner_logistic_normal=float((from_q.max(1) > corner).mean()),
        tv=float(tv_terms.mean()), tv_se=float(tv_terms.std(ddof=1) / np.sqrt(samples)),
        kl=float(log_ratio.mean()), kl_se=float(log_ratio.std(ddof=1) / np.sqrt(samples)),
        spread_dirichlet=float(log_ratio_variance(a)[0]), spread_logistic_normal=float(var[0] + var[-1]),
        samples=samples)


def log_ratio_variance(alpha) -> np.ndarray:
    """Var[log(theta_j / theta_K)] under Dirichlet(alpha), j = 1..K-1: psi'(alpha_j) + psi'(alpha_K).

    log(theta_j / theta_K) = log G_j - log G_K for independent G_k ~ Gamma(alpha_k), and
    Var[log G] = psi'(alpha), the trigamma function. Under the diagonal Laplace approximation the
    same variance is var_j + var_K (``log_logistic_normal``). For a symmetric alpha the first is
    2 psi'(alpha) -> 2/alpha and the second 2 (1 - 1/K) / alpha. The Laplace variances are the
    diagonal of P diag(1/alpha) P with P = I - 1 1^T / K (the centring), whose off-diagonal
    entries, -1/(K alpha) for a symmetric alpha, ProdLDA drops; so its logistic normal is narrower
    by a factor (1 - 1/K) in variance however large alpha is (2/3 for K = 3, 0.98 for K = 50)."""
    a = _alpha(alpha, None)
    trigamma = polygamma(1, a)
    return trigamma[:-1] + trigamma[-1]


# --- arguments -------------------------------------------------------------------------------
def _alpha(alpha, k: int | None) -> np.ndarray:
    """alpha as a (K,) float64 array of positive values; a number means the symmetric Dirichlet."""
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 0:
        if k is None:
            raise ValueError("alpha must be one value per topic here")
        a = np.full(k, float(a))
    if a.ndim != 1 or a.size < 2 or (k is not None and a.size != k) or not np.all(a > 0) or not np.all(np.isfinite(a)):
        want = f"{k} " if k is not None else ""
        raise ValueError(f"alpha must be a positive number or {want}positive concentrations, got {alpha!r}")
    return a


def _vector(v, k: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (k,):
        raise ValueError(f"{name} must have one value per topic ({k}), got shape {a.shape}")
    return a
