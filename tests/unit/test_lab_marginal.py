"""The marginal-likelihood lab against a model whose log p(x) is exact (linear-Gaussian), and
the running-K estimates against direct computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.objectives import iwae_bound
from vae_core.labs import marginal as lm


@pytest.fixture(scope="module")
def model_and_x():
    """x_dim=6, z_dim=3, sigma=0.5: the posterior is narrow enough (std 0.24-0.7 against the prior's 1)
    that prior sampling is visibly worse, yet it converges within 20,000 draws. The encoder is the
    exact posterior, perturbed, so q(z|x) is good but not perfect (as a trained encoder would be)."""
    model = LinearGaussian(x_dim=6, z_dim=3, sigma=0.5, seed=0)
    model.set_exact_posterior_encoder()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.A.add_(0.1 * torch.randn(model.A.shape, generator=g, dtype=model.A.dtype))
        model.enc_logvar.add_(0.3)
    x = model.sample(4, seed=3)[1:2].detach()
    return model, x


@pytest.fixture(scope="module")
def study(model_and_x):
    model, x = model_and_x
    return lm.marginal_study(model, x, k_max=20_000, repeats=20, seed=0)


def test_both_proposals_converge_to_the_exact_log_px(study, model_and_x):
    model, x = model_and_x
    exact = model.exact_log_px(x).item()
    assert study.exact == pytest.approx(exact)
    for p, tol in (("prior", 0.1), ("posterior", 0.02)):
        mean, sd = study.final(p)
        assert abs(mean - exact) < tol, (p, mean, sd, exact)


def test_prior_sampling_has_larger_variance_and_smaller_ess(study):
    # At every K, the spread over repeats under the prior exceeds the one under q(z|x).
    sd_prior = study.estimates["prior"].std(1)
    sd_q = study.estimates["posterior"].std(1)
    assert (sd_prior > sd_q).all()
    assert sd_prior[-1] > 3 * sd_q[-1]
    assert study.ess["prior"][-1].mean() < 0.2 * study.ess["posterior"][-1].mean()
    k = np.array(study.ks)[:, None]
    for p in lm.PROPOSALS:
        assert (study.ess[p] >= 1 - 1e-9).all() and (study.ess[p] <= k + 1e-9).all()
    # The prior's log weights spread wider than the encoder's (what the page's text quotes).
    assert study.log_weight_span("prior") > study.log_weight_span("posterior") > 0


def test_posterior_estimate_starts_at_the_elbo_and_stays_below_log_px_on_average(study):
    # Mean of log w under q is the ELBO; the mean of L_K rises with K and stays below log p(x).
    q = study.estimates["posterior"].mean(1)
    se_k1 = study.estimates["posterior"][0].std(ddof=1) / math.sqrt(study.repeats)
    assert q[0] == pytest.approx(study.elbo, abs=4 * se_k1 + 0.05)
    assert q[0] < q[-1] <= study.exact + 0.01
    assert study.iwae == pytest.approx(q[-1])


def test_running_estimates_equal_direct_computation():
    g = torch.Generator().manual_seed(0)
    logw = torch.randn(500, 3, generator=g, dtype=torch.float64) * 4
    ks = [1, 2, 7, 100, 499, 500]
    run = lm.running_estimates(logw, ks)
    ess = lm.running_ess(logw, ks)
    for i, k in enumerate(ks):
        direct = torch.logsumexp(logw[:k], 0) - math.log(k)
        torch.testing.assert_close(run[i], direct)
        w = logw[:k].exp()
        torch.testing.assert_close(ess[i], w.sum(0) ** 2 / (w**2).sum(0))


def test_curve_end_equals_iwae_bound_on_the_same_draws(model_and_x):
    model, x = model_and_x
    xr = x.expand(4, -1)
    prop = lm.proposal(model, xr, "posterior")
    logw = lm.log_weights(model, xr, prop, 300, chunk=64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        direct = iwae_bound(model, xr, 300, chunk_size=64, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(lm.running_estimates(logw, [300])[0], direct.double())


def test_prior_proposal_weights_are_the_likelihood(model_and_x):
    model, x = model_and_x
    prop = lm.proposal(model, x, "prior")
    z = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        lw = lm.log_weights(model, x, prop, 5, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(lw, model.log_likelihood(x, model.decode(z)))


def test_log_spaced_grid():
    ks = lm.log_spaced(5000, 30)
    assert ks[0] == 1 and ks[-1] == 5000 and ks == sorted(set(ks)) and 20 <= len(ks) <= 31


def test_test_set_nll_reports_progress_and_bounds(model_and_x):
    model, _ = model_and_x
    x = model.sample(30, seed=4).detach()
    seen = []
    res = lm.test_set_nll(model, x, k=200, batch_size=10, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(10, 30), (20, 30), (30, 30)]
    exact = model.exact_log_px(x).mean().item()
    assert res.elbo < res.iwae <= exact + 0.05 and res.gap > 0 and res.nll == -res.iwae
