"""The topic model's formulas in ``objectives``: the Laplace approximation of a Dirichlet in the
softmax basis (against its formula, and its moments against Monte Carlo draws from the
Dirichlet), the multinomial log-likelihood, the KL to a non-standard Gaussian prior, and the
optional ``prior`` member that the ELBO and the bounds honour."""
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, polygamma
from torch.distributions import Multinomial, Normal, kl_divergence

from vae_core.engine.objectives import (
    dirichlet_laplace_prior,
    elbo_terms,
    gaussian_kl,
    gaussian_kl_per_dim,
    gaussian_kl_to_prior,
    gaussian_kl_to_prior_per_dim,
    iwae_bound,
    kl_to_prior,
    log_joint,
    log_normal_diag,
    log_prior,
    log_standard_normal,
    multinomial_log_coefficient,
    multinomial_log_likelihood,
    prior_of,
)
from vae_core.engine.protocol import Posterior


# --- The Laplace approximation of Dirichlet(alpha) -------------------------------------------
def test_laplace_prior_by_hand_for_k3():
    # alpha = (0.5, 1, 2): log alpha = (-log 2, 0, log 2) has mean 0, so mu = log alpha;
    # var_k = (1/alpha_k)(1 - 2/3) + (1/9)(2 + 1 + 1/2) = 1/(3 alpha_k) + 7/18.
    mu, var = dirichlet_laplace_prior(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(mu, torch.tensor([-math.log(2), 0.0, math.log(2)], dtype=torch.float64))
    torch.testing.assert_close(var, torch.tensor([2 / 3 + 7 / 18, 1 / 3 + 7 / 18, 1 / 6 + 7 / 18], dtype=torch.float64))


@pytest.mark.parametrize("alpha", [[0.5, 1.0, 2.0], [1.0] * 20, [0.02] * 50, [3.0, 0.1], [0.7, 5.0, 1.3, 9.0, 0.2]])
def test_laplace_prior_matches_its_formula(alpha):
    a = np.array(alpha)
    k = len(a)
    mu, var = dirichlet_laplace_prior(torch.tensor(a))
    np.testing.assert_allclose(mu.numpy(), np.log(a) - np.log(a).mean(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var.numpy(), (1 / a) * (1 - 2 / k) + (1 / a).sum() / k**2, rtol=1e-12)
    assert (var > 0).all()


def test_symmetric_laplace_prior_is_centred_with_srivastava_suttons_variance():
    # alpha = 1, K = 50 (the paper's setting): mu = 0 and var = (1 - 2/K) + 1/K.
    mu, var = dirichlet_laplace_prior(torch.ones(50))
    assert mu.abs().max().item() < 1e-6
    torch.testing.assert_close(var, torch.full((50,), 1 - 2 / 50 + 1 / 50))


def test_laplace_prior_refuses_bad_alpha():
    for bad in ([1.0], [1.0, 0.0], [[1.0, 2.0]], [1.0, -2.0]):
        with pytest.raises(ValueError, match="alpha"):
            dirichlet_laplace_prior(torch.tensor(bad))


def softmax_basis_draws(alpha: np.ndarray, n: int, seed: int) -> np.ndarray:
    """h = log theta - mean_k log theta for theta ~ Dirichlet(alpha), (n, K).

    theta = g / sum(g) with g_k ~ Gamma(alpha_k), and the normaliser cancels in h, so h is
    computed from log g. log g is drawn as log Gamma(alpha + 1) + log(U) / alpha (a Gamma(alpha)
    variable is Gamma(alpha + 1) U^(1/alpha)), which stays finite for alpha < 1, where theta
    itself underflows to 0."""
    rng = np.random.default_rng(seed)
    log_g = np.log(rng.gamma(alpha + 1, size=(n, len(alpha)))) + np.log(rng.random((n, len(alpha)))) / alpha
    return log_g - log_g.mean(1, keepdims=True)


def exact_softmax_basis_moments(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[h_k] and Var[h_k] under Dirichlet(alpha): E log theta_k = digamma(alpha_k) - digamma(alpha_0),
    Cov(log theta) = diag(trigamma(alpha)) - trigamma(alpha_0), and centring removes the constant:
    the Laplace formula with log alpha -> digamma(alpha) and 1/alpha -> trigamma(alpha)."""
    k = len(alpha)
    psi, tri = digamma(alpha), polygamma(1, alpha)
    return psi - psi.mean(), tri * (1 - 2 / k) + tri.sum() / k**2


def laplace_variance_error(alpha: np.ndarray, n: int = 200_000, seed: int = 0) -> float:
    """max_k |Var_MC[h_k] - var_k| / Var_MC[h_k]: how far the Laplace variance is from the truth."""
    h = softmax_basis_draws(alpha, n, seed)
    _, var = dirichlet_laplace_prior(torch.tensor(alpha))
    return float(np.max(np.abs(h.var(0) - var.numpy()) / h.var(0)))


def test_monte_carlo_draws_match_the_exact_dirichlet_moments():
    # The sampler is right: its moments agree with digamma / trigamma, and (alpha = 10, where
    # theta does not underflow) with numpy's own Dirichlet sampler.
    for alpha in (np.array([10.0, 10.0, 10.0]), np.array([0.3, 0.3, 0.3]), np.array([0.5, 1.0, 2.0])):
        h = softmax_basis_draws(alpha, 400_000, seed=1)
        mean, var = exact_softmax_basis_moments(alpha)
        np.testing.assert_allclose(h.mean(0), mean, atol=0.02)
        np.testing.assert_allclose(h.var(0), var, rtol=0.02)
    theta = np.random.default_rng(2).dirichlet([10.0, 10.0, 10.0], size=400_000)
    h = np.log(theta) - np.log(theta).mean(1, keepdims=True)
    np.testing.assert_allclose(h.var(0), exact_softmax_basis_moments(np.full(3, 10.0))[1], rtol=0.02)


@pytest.mark.parametrize("alpha", [[10.0, 10.0, 10.0], [8.0, 10.0, 15.0], [10.0] * 20])
def test_laplace_moments_match_monte_carlo_for_large_alpha(alpha):
    # With alpha >= 8 the Laplace approximation is accurate: trigamma(a) ~ 1/a + 1/(2a^2), so the
    # variance is about 5% low at a = 10, and digamma(a) ~ log a - 1/(2a) moves the mean by
    # under 0.02. Tolerances: 10% on each variance, 0.03 on each mean (the Monte Carlo error
    # with 200,000 draws is about 0.3% and 0.001).
    a = np.array(alpha)
    h = softmax_basis_draws(a, 200_000, seed=0)
    mu, var = dirichlet_laplace_prior(torch.tensor(a))
    np.testing.assert_allclose(h.mean(0), mu.numpy(), atol=0.03)
    np.testing.assert_allclose(h.var(0), var.numpy(), rtol=0.10)


def test_laplace_mismatch_grows_as_alpha_falls_below_one():
    # At alpha = 0.3 the Dirichlet puts its mass in the simplex's corners and h has heavy tails:
    # trigamma(0.3) ~ 12.2 against 1/0.3 ~ 3.3, so the Laplace variance is ~73% too small.
    errors = {a: laplace_variance_error(np.full(3, a)) for a in (10.0, 1.0, 0.3)}
    assert errors[10.0] < 0.10
    assert errors[0.3] > errors[1.0] > errors[10.0]
    assert errors[0.3] > 0.5 and errors[0.3] > 5 * errors[10.0]


# --- The multinomial likelihood ---------------------------------------------------------------
def test_multinomial_log_likelihood_matches_torch_with_the_coefficient():
    g = torch.Generator().manual_seed(0)
    v = 12
    log_probs = torch.log_softmax(torch.randn(6, v, generator=g, dtype=torch.float64), -1)
    counts = torch.stack([torch.multinomial(log_probs[i].exp(), n, replacement=True, generator=g)
                          .bincount(minlength=v).double() for i, n in enumerate([1, 3, 10, 25, 60, 200])])
    ours = multinomial_log_likelihood(counts, log_probs)
    ref = torch.stack([Multinomial(int(c.sum()), probs=lp.exp()).log_prob(c) for c, lp in zip(counts, log_probs)])
    torch.testing.assert_close(ours, ref)
    # Without the coefficient: the probability of one word sequence with those counts.
    torch.testing.assert_close(multinomial_log_likelihood(counts, log_probs, with_coefficient=False),
                               (counts * log_probs).sum(-1))
    torch.testing.assert_close(ours - multinomial_log_coefficient(counts), (counts * log_probs).sum(-1))


def test_multinomial_coefficient_by_hand_and_broadcast_over_samples():
    counts = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
    # 3! / (2! 1! 0!) = 3 orders; 4! / 4! = 1 order.
    torch.testing.assert_close(multinomial_log_coefficient(counts), torch.tensor([math.log(3), 0.0]))
    log_probs = torch.log_softmax(torch.randn(5, 2, 3), -1)  # (L, B, V): L decoder draws
    out = multinomial_log_likelihood(counts, log_probs)
    assert out.shape == (5, 2)
    torch.testing.assert_close(out[3], multinomial_log_likelihood(counts, log_probs[3]))


# --- The KL to a general diagonal Gaussian ---------------------------------------------------
def test_general_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    mu0, logvar0 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(mu0, (0.5 * logvar0).exp()))
    torch.testing.assert_close(gaussian_kl_to_prior_per_dim(mu, logvar, mu0, logvar0), ref)
    torch.testing.assert_close(gaussian_kl_to_prior(Posterior(mu, logvar), mu0, logvar0), ref.sum(-1))
    # A (1, D) prior broadcasts the same way.
    torch.testing.assert_close(gaussian_kl_to_prior(Posterior(mu, logvar), mu0[None], logvar0[None]), ref.sum(-1))


def test_standard_kl_is_the_general_one_at_the_standard_prior_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    old = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # the formula before the general one
    assert torch.equal(gaussian_kl_per_dim(mu, logvar), old)
    assert torch.equal(gaussian_kl(Posterior(mu, logvar)), old.sum(-1))
    torch.testing.assert_close(gaussian_kl_to_prior(Posterior(mu, logvar), torch.zeros(4), torch.zeros(4)),
                               old.sum(-1))


# --- A model's own prior in the ELBO and the bounds -------------------------------------------
class TinyModel(torch.nn.Module):
    """x = z + noise in 3 dimensions, with an optional non-standard prior."""

    def __init__(self, prior: Posterior | None = None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.eye(3, dtype=torch.float64))
        if prior is not None:
            self.prior = prior

    def encode(self, x):
        return Posterior(0.5 * x, torch.full_like(x, -1.0))

    def decode(self, z):
        return z @ self.w.T

    def log_likelihood(self, x, decoded):
        return Normal(decoded, 0.7).log_prob(x).sum(-1)


PRIOR = Posterior(torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64),
                  torch.tensor([0.4, -0.3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3,), (1, 3)])
def test_the_elbo_and_log_joint_use_the_models_prior(shape):
    prior = Posterior(PRIOR.mu.reshape(shape), PRIOR.logvar.reshape(shape))
    model = TinyModel(prior)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    post = model.encode(x)
    assert prior_of(model).mu.shape == (3,)
    torch.testing.assert_close(kl_to_prior(model, post), gaussian_kl_to_prior(post, PRIOR.mu, PRIOR.logvar))
    terms = elbo_terms(model, x, samples=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.kl, gaussian_kl_to_prior(post, PRIOR.mu, PRIOR.logvar))
    # Estimator A's Monte Carlo KL is estimated against the same prior.
    mc = elbo_terms(model, x, samples=50_000, kl_estimator="monte_carlo", generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(mc.kl.numpy(), terms.kl.numpy(), atol=0.05)
    z = torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(log_prior(model, z), log_normal_diag(z, PRIOR.mu, PRIOR.logvar))
    torch.testing.assert_close(log_joint(model, x, z),
                               model.log_likelihood(x, model.decode(z)) + log_normal_diag(z, PRIOR.mu, PRIOR.logvar))


def test_a_model_without_a_prior_keeps_the_standard_normal():
    model = TinyModel()
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert prior_of(model) is None
    torch.testing.assert_close(elbo_terms(model, x).kl, gaussian_kl(model.encode(x)))
    z = torch.randn(5, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(log_joint(model, x, z),
                               model.log_likelihood(x, model.decode(z)) + log_standard_normal(z))


def test_iwae_with_a_prior_rises_above_the_elbo():
    model = TinyModel(PRIOR)
    x = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        elbo = elbo_terms(model, x, samples=2000, generator=torch.Generator().manual_seed(1)).elbo.mean()
        iwae = iwae_bound(model, x, k=2000, generator=torch.Generator().manual_seed(2)).mean()
    assert iwae > elbo + 0.1
