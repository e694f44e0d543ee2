"""The gradient-estimator lab: unbiasedness against an exact gradient, variance ordering on a
VAE, SGVB estimators A and B."""
from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from vae_core.engine.config import ModelConfig
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.vae import VAE
from vae_core.labs import gradients as lg


def z_family(checks: int, level: float = 0.99) -> float:
    """Bonferroni: the two-sided quantile that makes ``checks`` intervals hold together at ``level``."""
    return NormalDist().inv_cdf(1 - (1 - level) / (2 * checks))


@pytest.fixture(scope="module")
def toy():
    return lg.toy_study(mu=1.5, sigma=0.5, c=0.0, ls=(1, 4, 16, 64), repeats=1000, seed=0)


def test_toy_exact_gradient_is_the_closed_form():
    # E (z - c)^2 = (mu - c)^2 + sigma^2: d/dmu = 2 (mu - c), d/dlog sigma = 2 sigma^2.
    assert lg.toy_exact_gradient(1.5, 0.5, 0.25) == pytest.approx((2.5, 0.5))


def test_toy_every_estimator_is_unbiased(toy):
    # 2 coordinates x len(ls) values of L per estimator: a joint 99% interval for each estimator.
    exact = torch.tensor(toy.exact)
    z = z_family(2 * len(toy.ls))
    for e in lg.ESTIMATORS:
        for i, L in enumerate(toy.ls):
            mean, se = torch.tensor(toy.mean[e][i]), torch.tensor(toy.se[e][i])
            if e == "baseline" and L == 1:  # leave-one-out needs two draws
                assert torch.isnan(mean).all()
                continue
            assert ((mean - exact).abs() <= z * se).all(), (e, L, mean, se, exact)


def test_toy_estimators_differ_only_in_variance(toy):
    var = {e: torch.tensor(toy.variance[e]).sum(1) for e in lg.ESTIMATORS}  # (len(ls),)
    assert (var["score"] > 20 * var["reparam"]).all()  # about 55x for these settings
    assert (var["baseline"][1:] < var["score"][1:]).all()
    # Means of L i.i.d. terms: variance ~ 1/L (within sampling error).
    for e in ("score", "reparam"):
        scaled = var[e] * torch.tensor(toy.ls, dtype=torch.float64)
        assert scaled.max() / scaled.min() < 1.5, (e, scaled)


def test_toy_posterior_mean_baseline_works_at_one_sample():
    t = lg.toy_study(ls=(1, 4), repeats=4000, baseline="mean", seed=1)
    var = {e: torch.tensor(t.variance[e]).sum(1) for e in lg.ESTIMATORS}
    assert (var["baseline"] < var["score"]).all()
    err = (torch.tensor(t.mean["baseline"]) - torch.tensor(t.exact)).abs()
    assert (err <= z_family(4) * torch.tensor(t.se["baseline"])).all()


def test_group_estimates_match_hand_formulas():
    # Score and pathwise terms for a Gaussian, written out: d log q / d mu = (z - mu) / sigma^2,
    # d log q / d logvar = ((z - mu)^2 / sigma^2 - 1) / 2; d f(mu + sigma eps) / d logvar = f'(z) sigma eps / 2.
    g = torch.Generator().manual_seed(3)
    mu = torch.tensor([[0.4, -1.0]], dtype=torch.float64)
    lv = torch.tensor([[0.2, -0.6]], dtype=torch.float64)
    t = lg.draw_terms(lambda z: (z**3).sum(-1), mu, lv, 6, chunk=4, generator=g)
    sig = (0.5 * lv).exp()
    # Redo the draws: sample_posterior draws eps of shape (1, chunk, B, D) for each chunk.
    g = torch.Generator().manual_seed(3)
    z = torch.cat([mu + sig * torch.randn((1, 4, 1, 2), generator=g, dtype=torch.float64)[0],
                   mu + sig * torch.randn((1, 2, 1, 2), generator=g, dtype=torch.float64)[0]])
    eps = (z - mu) / sig
    torch.testing.assert_close(t.f, (z**3).sum(-1))
    torch.testing.assert_close(t.score, torch.cat([eps / sig, (eps**2 - 1) / 2], -1))
    torch.testing.assert_close(t.pathwise, torch.cat([3 * z**2, 3 * z**2 * sig * eps / 2], -1))


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=3, hidden=32)).eval()
    x = torch.rand((6, 1, 8, 8), generator=torch.Generator().manual_seed(1)).round()
    return model, x


def test_vae_estimators_agree_with_reference_and_order_by_variance(tiny_vae):
    model, x = tiny_vae
    s = lg.gradient_study(model, x, ls=(1, 4, 16), repeats=8, max_groups=32, reference_samples=4096, seed=0)
    assert s.n_params == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("dec"))
    for i, L in enumerate(s.ls):
        v = {e: s.total_variance[e][i] for e in lg.ESTIMATORS}
        assert v["score"] > 10 * v["reparam"], (L, v)
        if L > 1:
            assert v["reparam"] < v["baseline"] < v["score"], (L, v)
        for e in lg.ESTIMATORS:
            d, expected = s.distance[e][i], s.expected_distance[e][i]
            if math.isnan(d):
                assert e == "baseline" and L == 1
                continue
            # Unbiased: the average of the estimates is as far from the reference as noise makes it.
            assert d < 3 * expected, (e, L, d, expected)
    assert set(s.elbo) == {"A", "B"}


def test_elbo_estimator_a_noisier_than_b_when_q_is_not_the_posterior(tiny_vae):
    model, x = tiny_vae
    r = lg.elbo_estimator_variance(model, x, repeats=400)
    assert r["A"]["mean_variance"] >= r["B"]["mean_variance"]
    assert r["A"]["mean_elbo"] == pytest.approx(r["B"]["mean_elbo"], abs=0.2)


def test_elbo_estimator_a_is_exact_when_q_is_the_true_posterior():
    # With q(z|x) = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: estimator A has no
    # variance at all, while B still carries the noise of log p(x|z). So A >= B is not a law.
    model = LinearGaussian(x_dim=6, z_dim=3)
    model.set_exact_posterior_encoder()
    x = model.sample(8, seed=2).detach()
    r = lg.elbo_estimator_variance(model, x, repeats=200)
    assert r["A"]["mean_variance"] < 1e-12 < r["B"]["mean_variance"]
    assert r["A"]["mean_elbo"] == pytest.approx(model.exact_log_px(x).mean().item(), abs=1e-9)
