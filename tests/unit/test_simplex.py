"""The Topics lab's simplex (vae_core/labs/simplex.py): the grid's quadrature against integrals
known in closed form, the Dirichlet against torch.distributions, the logistic normal against a
2-D Gaussian, its normalisation and its own Monte Carlo draws, and the divergences' direction."""
import numpy as np
import pytest
import torch
from scipy.special import polygamma
from scipy.stats import beta as beta_dist
from scipy.stats import multivariate_normal

from vae_core.engine.objectives import dirichlet_laplace_prior
from vae_core.labs import simplex as sx


# --- the grid -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_grid_is_the_simplex_cut_into_n_squared_triangles(n):
    g = sx.simplex_grid(n)
    assert g.bary.shape == (n * n, 3) and g.xy.shape == (n * n, 2)
    np.testing.assert_allclose(g.bary.sum(1), 1.0)
    assert (g.bary > 0).all()  # centroids: strictly inside, where every log density is finite
    assert len({tuple(np.round(b, 12)) for b in g.bary}) == n * n
    assert g.cell_area * n * n == pytest.approx(0.5)  # the simplex's area in (theta_1, theta_2)
    # The centroid rule is exact for linear functions: integral of theta_k over the simplex is 1/6.
    np.testing.assert_allclose(g.bary.sum(0) * g.cell_area, [1 / 6] * 3, rtol=1e-12)
    # ... and converges for others: integral of theta_1 theta_2 is 1/24.
    if n == 40:
        assert (g.bary[:, 0] * g.bary[:, 1]).sum() * g.cell_area == pytest.approx(1 / 24, rel=1e-3)
    # The plane coordinates are the barycentric mix of the corners: theta = e_k lands on corner k.
    np.testing.assert_allclose(g.xy, g.bary @ sx.CORNERS)
    with pytest.raises(ValueError, match="at least 1 cell"):
        sx.simplex_grid(0)


# --- the Dirichlet ----------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [(0.3, 0.3, 0.3), (2.0, 0.5, 7.0), (1.0, 1.0, 1.0)])
def test_dirichlet_log_density_matches_torch(alpha):
    theta = torch.distributions.Dirichlet(torch.tensor(alpha, dtype=torch.float64)).sample((50,))
    expected = torch.distributions.Dirichlet(torch.tensor(alpha, dtype=torch.float64)).log_prob(theta)
    np.testing.assert_allclose(sx.log_dirichlet(theta.numpy(), alpha), expected.numpy(), rtol=1e-10, atol=1e-10)
    # A number is the symmetric Dirichlet; Dirichlet(1, 1, 1) is uniform with density 2.
    np.testing.assert_allclose(sx.log_dirichlet(theta.numpy(), 1.0), np.log(2.0))


def test_dirichlet_integrates_to_one_on_the_grid_when_it_is_bounded():
    g = sx.simplex_grid(80)
    assert np.exp(sx.log_dirichlet(g.bary, (2.0, 3.0, 4.0))).sum() * g.cell_area == pytest.approx(1.0, abs=1e-3)


def test_dirichlet_draws_in_log_space_have_the_right_moments_and_never_underflow():
    rng = np.random.default_rng(0)
    alpha = np.array([0.2, 1.0, 5.0])
    log_theta = sx.sample_log_dirichlet(alpha, 200_000, rng)
    np.testing.assert_allclose(np.exp(log_theta).sum(1), 1.0)
    np.testing.assert_allclose(np.exp(log_theta).mean(0), alpha / alpha.sum(), atol=3e-3)
    y = log_theta[:, :2] - log_theta[:, 2:]
    np.testing.assert_allclose(y.var(0), sx.log_ratio_variance(alpha), rtol=0.03)
    np.testing.assert_allclose(sx.log_ratio_variance(alpha), polygamma(1, alpha[:2]) + polygamma(1, alpha[2]))
    tiny = sx.sample_log_dirichlet([0.01, 0.01, 0.01], 10_000, rng)
    assert np.isfinite(tiny).all() and tiny.min() < -300  # theta below 1e-130: exp() would have given 0


# --- the logistic normal ---------------------------------------------------------------------
LAPLACE = [(0.3, 0.3, 0.3), (1.0, 1.0, 1.0), (0.5, 2.0, 4.0)]


@pytest.mark.parametrize("alpha", LAPLACE)
def test_logistic_normal_is_the_gaussian_of_log_ratios_over_prod_theta(alpha):
    mu, var = sx.laplace_approximation(alpha)
    theta = np.random.default_rng(1).dirichlet(np.ones(3), size=20)
    y = np.log(theta[:, :2] / theta[:, 2:])
    cov = np.diag(var[:2]) + var[2]  # z_1 - z_3 and z_2 - z_3 share -z_3
    expected = multivariate_normal(mu[:2] - mu[2], cov).logpdf(y) - np.log(theta).sum(1)
    np.testing.assert_allclose(sx.log_logistic_normal(theta, mu, var), expected, rtol=1e-10)
    # Shifting every coordinate of mu changes nothing: z is defined up to an additive constant.
    np.testing.assert_allclose(sx.log_logistic_normal(theta, mu + 5.0, var), expected, rtol=1e-10)


@pytest.mark.parametrize("alpha", LAPLACE)
def test_logistic_normal_integrates_to_one(alpha):
    g = sx.simplex_grid(200)
    mu, var = sx.laplace_approximation(alpha)
    mass = np.exp(sx.log_logistic_normal(g.bary, mu, var)).sum() * g.cell_area
    assert mass == pytest.approx(1.0, abs=0.01)


def coarse_cell(theta: np.ndarray, n: int) -> np.ndarray:
    """Which of ``simplex_grid(n)``'s triangles each point lies in, as one integer."""
    a, b = n * theta[:, 0], n * theta[:, 1]
    i, j = np.floor(a).astype(int), np.floor(b).astype(int)
    up = (a - i) + (b - j) < 1
    return (i * n + j) * 2 + up


def test_logistic_normal_density_matches_a_histogram_of_its_draws():
    # Draws: softmax of Gaussian z. Prediction: the density integrated over each triangle of a
    # coarse grid (by the fine grid nested inside it). They must agree within sampling noise.
    mu, var = np.array([0.4, -0.2, 0.0]), np.array([0.5, 0.8, 0.3])
    n_draws, coarse = 100_000, 5
    draws = np.exp(sx.sample_log_logistic_normal(mu, var, n_draws, np.random.default_rng(2)))
    fine = sx.simplex_grid(coarse * 40)
    mass = np.exp(sx.log_logistic_normal(fine.bary, mu, var)) * fine.cell_area
    cells = coarse_cell(fine.bary, coarse)
    keys = np.unique(cells)
    assert keys.size == coarse * coarse  # the fine grid nests in the coarse one
    predicted = np.array([mass[cells == k].sum() for k in keys])
    observed = np.array([(coarse_cell(draws, coarse) == k).mean() for k in keys])
    tolerance = 4 * np.sqrt(predicted * (1 - predicted) / n_draws) + 1e-3
    assert (np.abs(observed - predicted) < tolerance).all(), np.c_[observed, predicted]
    # And a wrong density fails the same check: the variance of z_3 matters.
    wrong = np.exp(sx.log_logistic_normal(fine.bary, mu, np.array([0.5, 0.8, 1.0]))) * fine.cell_area
    wrong_pred = np.array([wrong[cells == k].sum() for k in keys])
    assert (np.abs(observed - wrong_pred) > tolerance).any()


# --- both, and how far apart ----------------------------------------------------------------
def test_densities_use_the_laplace_prior_and_exact_dirichlet_moments():
    d = sx.densities((0.5, 2.0, 4.0), n=60, samples=40_000)
    mu, var = dirichlet_laplace_prior(torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64))
    np.testing.assert_allclose(d.mu, mu.numpy())
    np.testing.assert_allclose(d.var, var.numpy())
    np.testing.assert_allclose(d.mean_dirichlet, [0.5 / 6.5, 2 / 6.5, 4 / 6.5])
    # The logistic normal's mean by Monte Carlo agrees with the same mean by quadrature on the grid.
    fine = sx.simplex_grid(200)
    q = np.exp(sx.log_logistic_normal(fine.bary, d.mu, d.var))
    np.testing.assert_allclose(d.mean_logistic_normal, (fine.bary * q[:, None]).sum(0) * fine.cell_area, atol=5e-3)
    assert d.log_dirichlet.shape == d.log_logistic_normal.shape == (3600,)
    assert d.mass_logistic_normal == pytest.approx(1.0, abs=0.02)
    assert d.mass_dirichlet < 1.0  # alpha_1 < 1: an infinite density at an edge the centroids miss
    # P(one topic > 0.9) under the Dirichlet: the three events are disjoint, theta_k ~ Beta(a_k, a0 - a_k).
    a = np.array(d.alpha)
    corner = sum(beta_dist.sf(sx.CORNER_SHARE, ak, a.sum() - ak) for ak in a)
    assert d.corner_dirichlet == pytest.approx(corner, abs=4 * np.sqrt(corner * (1 - corner) / d.samples) + 1e-4)


def test_symmetric_densities_have_the_centre_as_mean():
    d = sx.densities(2.0, n=20, samples=20_000)
    assert d.alpha == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(d.mean_dirichlet, 1 / 3)
    np.testing.assert_allclose(d.mean_logistic_normal, 1 / 3, atol=0.01)


def test_the_approximation_is_worse_below_alpha_one():
    low, high = sx.densities(0.3, n=30), sx.densities(3.0, n=30)
    assert 0 <= high.tv < low.tv <= 1
    assert low.tv - high.tv > 10 * (low.tv_se + high.tv_se)
    assert low.kl > 5 * high.kl > 0
    # Below 1 the Dirichlet piles mass into the corners, which the logistic normal cannot follow.
    assert low.corner_dirichlet > 2 * low.corner_logistic_normal
    # The diagonal Laplace approximation is narrower along an edge by (1 - 1/K) = 2/3 as alpha grows.
    far = sx.densities(1000.0, n=10, samples=100)
    assert far.spread_logistic_normal / far.spread_dirichlet == pytest.approx(2 / 3, rel=1e-3)
    assert high.spread_logistic_normal / high.spread_dirichlet < 0.7


def test_bad_arguments_are_refused():
    for bad in (0.0, -1.0, (1.0, 2.0), (1.0, 1.0, np.nan), ((1.0,),)):
        with pytest.raises(ValueError, match="alpha must be"):
            sx.densities(bad, n=4)
    with pytest.raises(ValueError, match="one value per topic"):
        sx.log_logistic_normal(np.full((2, 3), 1 / 3), [0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="samples must be at least 2"):
        sx.densities(1.0, samples=1)
