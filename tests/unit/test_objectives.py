"""The objectives against closed forms: Gaussian KL, and exact log p(x) of a linear-Gaussian model."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_core.engine.config import ModelConfig
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.objectives import (
    ElboTerms,
    elbo_terms,
    gaussian_kl,
    gaussian_kl_per_dim,
    iwae_bound,
    log_normal_diag,
    log_standard_normal,
)
from vae_core.engine.protocol import Posterior
from vae_core.engine.vae import VAE


def test_analytic_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 7, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(64, 7, generator=g, dtype=torch.float64)
    ours = gaussian_kl_per_dim(mu, logvar)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_kl(Posterior(mu, logvar)), ref.sum(-1))


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[0.7, -1.2, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.8, 0.0]], dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    mc = (log_normal_diag(z, mu, logvar) - log_standard_normal(z)).mean()
    assert abs(mc.item() - gaussian_kl(Posterior(mu, logvar)).item()) < 0.01


def test_kl_is_zero_only_at_the_prior():
    assert gaussian_kl(Posterior(torch.zeros(1, 4), torch.zeros(1, 4))).item() == 0.0
    for mu, logvar in [(0.1, 0.0), (0.0, 0.1), (0.0, -0.1), (-2.0, 1.0)]:
        kl = gaussian_kl(Posterior(torch.full((1, 4), mu), torch.full((1, 4), logvar)))
        assert kl.item() > 0


def test_log_normal_diag_matches_torch():
    g = torch.Generator().manual_seed(2)
    z, mu, logvar = (torch.randn(10, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ref = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal_diag(z, mu, logvar), ref)
    torch.testing.assert_close(log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


@pytest.fixture
def linear_gaussian():
    model = LinearGaussian(x_dim=6, z_dim=3, sigma=0.5, seed=0)
    x = model.sample(32, seed=3).detach()
    return model, x


@torch.no_grad()
def test_elbo_is_below_log_px_for_arbitrary_encoders(linear_gaussian):
    model, x = linear_gaussian
    log_px = model.exact_log_px(x)
    g = torch.Generator().manual_seed(4)
    for trial in range(5):
        model.A.copy_(torch.randn(model.A.shape, generator=g, dtype=torch.float64))
        model.c.copy_(torch.randn(model.c.shape, generator=g, dtype=torch.float64))
        model.enc_logvar.copy_(torch.randn(model.enc_logvar.shape, generator=g, dtype=torch.float64))
        # Many samples so the Monte Carlo error is far below the gap being tested.
        elbo = elbo_terms(model, x, samples=4000, generator=g).elbo
        assert (elbo <= log_px + 1e-6).all(), (elbo - log_px).max()
        assert (log_px - elbo).mean() > 0.01  # a wrong encoder leaves a real gap


@torch.no_grad()
def test_elbo_equals_log_px_with_the_exact_posterior(linear_gaussian):
    model, x = linear_gaussian
    model.set_exact_posterior_encoder()
    g = torch.Generator().manual_seed(5)
    log_px = model.exact_log_px(x)
    # With q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: estimator A
    # (Monte Carlo KL at the same draws) has zero variance, so it is exact with one sample.
    exact = elbo_terms(model, x, samples=1, kl_estimator="monte_carlo", generator=g).elbo
    torch.testing.assert_close(exact, log_px, rtol=0, atol=1e-8)
    # Estimator B keeps the noise of E_q[log p(x|z)]: equal in expectation.
    elbo_b = elbo_terms(model, x, samples=20000, kl_estimator="analytic", generator=g).elbo
    torch.testing.assert_close(elbo_b, log_px, rtol=0, atol=3e-2)
    one = iwae_bound(model, x, k=1, generator=g)
    torch.testing.assert_close(one, model.exact_log_px(x), rtol=0, atol=1e-8)


@torch.no_grad()
def test_iwae_rises_with_k_and_reaches_log_px(linear_gaussian):
    model, x = linear_gaussian
    g = torch.Generator().manual_seed(6)
    model.A.mul_(0.5)  # an imperfect encoder
    log_px = model.exact_log_px(x).mean().item()
    bounds = []
    for k in (1, 10, 100, 5000):
        # average over repeats so the comparison is about the expectation, not noise
        reps = torch.stack([iwae_bound(model, x, k, chunk_size=700, generator=g) for _ in range(4)])
        bounds.append(reps.mean().item())
    assert bounds == sorted(bounds), bounds
    assert all(b <= log_px + 1e-3 for b in bounds)
    assert abs(bounds[-1] - log_px) < 0.1, (bounds, log_px)


@torch.no_grad()
def test_iwae_chunking_does_not_change_the_bound(linear_gaussian):
    model, x = linear_gaussian
    a = iwae_bound(model, x, 300, chunk_size=None, generator=torch.Generator().manual_seed(7))
    b = iwae_bound(model, x, 300, chunk_size=300, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
    c = iwae_bound(model, x, 300, chunk_size=7, generator=torch.Generator().manual_seed(7))
    assert (c - a).abs().max() < 0.2  # different draws, same estimator


def test_elbo_terms_signs_and_loss():
    terms = ElboTerms(log_likelihood=torch.tensor([-100.0, -80.0]), kl=torch.tensor([10.0, 20.0]))
    torch.testing.assert_close(terms.elbo, torch.tensor([-110.0, -100.0]))
    assert terms.loss(1.0).item() == pytest.approx(105.0)
    assert terms.loss(0.0).item() == pytest.approx(90.0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_fixed", "gaussian_learned"])
def test_log_likelihood_matches_torch_distributions(likelihood):
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16, likelihood=likelihood, decoder_sigma=0.3))
    x = torch.rand(4, 1, 8, 8)
    decoded = model.decode(torch.randn(4, 2))
    ours = model.log_likelihood(x, decoded)
    if likelihood == "bernoulli":
        xb = (x > 0.5).float()  # the Bernoulli pmf is defined on {0, 1}
        ours = model.log_likelihood(xb, decoded)
        ref = torch.distributions.Bernoulli(logits=decoded).log_prob(xb).flatten(1).sum(-1)
    else:
        ref = Normal(torch.sigmoid(decoded), 0.3).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_learned_sigma_is_a_parameter_and_fixed_is_not():
    learned = VAE(ModelConfig(input_shape=(1, 8, 8), likelihood="gaussian_learned"))
    fixed = VAE(ModelConfig(input_shape=(1, 8, 8), likelihood="gaussian_fixed"))
    assert any(p is learned.log_sigma for p in learned.parameters())
    assert not any(p is fixed.log_sigma for p in fixed.parameters())
    assert math.isclose(fixed.sigma.item(), 0.1, rel_tol=1e-6)
