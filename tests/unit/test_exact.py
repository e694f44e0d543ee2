"""The exact posterior by quadrature (labs/exact.py) against closed forms and known answers."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.objectives import gaussian_kl, iwae_bound
from vae_core.labs import exact as ex
from vae_core.runs import rundir as rd

ROOT = Path(__file__).resolve().parents[2]


def true_posterior(m: LinearGaussian, x: torch.Tensor):
    """p(z|x) = N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1: (means (B, D), S (D, D))."""
    d = m.W.shape[1]
    s = torch.linalg.inv(torch.eye(d, dtype=m.W.dtype) + m.W.T @ m.W / m.sigma**2)
    return (x - m.b) @ m.W @ s / m.sigma**2, s


def kl_diag_to_full(mu_q, var_q, mu_p, cov_p) -> float:
    """KL(N(mu_q, diag var_q) || N(mu_p, cov_p)) in closed form."""
    d = len(mu_q)
    inv = np.linalg.inv(cov_p)
    diff = mu_p - mu_q
    return 0.5 * (np.trace(inv @ np.diag(var_q)) + diff @ inv @ diff - d
                  + math.log(np.linalg.det(cov_p)) - np.log(var_q).sum())


@pytest.fixture(params=[1, 2], ids=["1d", "2d"])
def linear(request):
    # Non-orthogonal W: the true posterior is correlated, the diagonal q cannot match it.
    m = LinearGaussian(12, request.param, sigma=0.4, seed=3, orthogonal=False)
    return m, m.sample(6, seed=4)


def test_log_px_matches_the_closed_form(linear):
    m, x = linear
    res = ex.exact_batch(m, x)
    np.testing.assert_allclose(res.log_px, m.exact_log_px(x).detach().numpy(), atol=1e-3)
    assert res.converged


def test_the_grid_posterior_is_the_exact_gaussian_posterior(linear):
    m, x = linear
    means, cov = true_posterior(m, x)
    for i in range(3):
        post = ex.exact_posterior(m, x[i:i + 1])
        np.testing.assert_allclose(post.posterior_mean, means[i].detach().numpy(), atol=1e-4)
        np.testing.assert_allclose(post.posterior_cov, cov.detach().numpy(), atol=1e-4)
        # and the density on the grid, point by point, where it is not negligible
        d = m.latent_dim
        grid = np.stack(np.meshgrid(*post.axes, indexing="ij"), -1).reshape(-1, d)
        expected = torch.distributions.MultivariateNormal(means[i].detach(), cov.detach()).log_prob(
            torch.as_tensor(grid)).numpy()
        got = post.log_posterior.reshape(-1)
        keep = expected > expected.max() - 10
        np.testing.assert_allclose(got[keep], expected[keep], atol=1e-3)


def test_kl_to_the_true_posterior_and_the_identity(linear):
    m, x = linear
    means, cov = true_posterior(m, x)
    res = ex.exact_batch(m, x)
    for i in range(len(x)):
        kl = kl_diag_to_full(res.post.mu[i].detach().numpy(), res.post.logvar[i].exp().detach().numpy(),
                             means[i].detach().numpy(), cov.detach().numpy())
        assert res.kl_q_posterior[i] == pytest.approx(kl, abs=1e-3)
    np.testing.assert_allclose(res.elbo + res.kl_q_posterior, res.log_px, atol=1e-3)  # log p(x) = ELBO + KL
    assert (res.elbo <= res.log_px + 1e-9).all()


def test_the_elbo_is_the_projects_elbo(linear):
    # The linear-Gaussian E_q[log p(x|z)] is closed-form: log N(x; W mu + b, s^2) - ||W sigma_q||^2 / (2 s^2).
    m, x = linear
    post = m.encode(x)
    mean = post.mu @ m.W.T + m.b
    exp_ll = (torch.distributions.Normal(mean, m.sigma).log_prob(x).sum(-1)
              - ((m.W**2) @ post.logvar.exp().T).sum(0) / (2 * m.sigma**2))
    res = ex.exact_batch(m, x)
    np.testing.assert_allclose(res.elbo, (exp_ll - gaussian_kl(post)).detach().numpy(), atol=1e-3)


def test_doubling_the_resolution_converges():
    m = LinearGaussian(12, 2, sigma=0.4, seed=3, orthogonal=False)
    x = m.sample(2, seed=4)
    post = m.encode(x)
    grids = ex.quadrature(m, x, post, tol=1e-6)
    lo, hi = (torch.as_tensor(np.stack([getattr(g, k) for g in grids])) for k in ("lo", "hi"))
    exact = m.exact_log_px(x).detach()
    errors = []
    for n in (6, 12, 24, 48, 96):
        z, area = ex._grid_points(lo, hi, n)
        lp = torch.logsumexp(ex.grid_log_joint(m, x, z), 0) + area.log()
        errors.append(float((lp - exact).abs().max()))
    assert errors[0] > 1e-3 and all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5, errors


def test_three_latent_dims_are_refused_with_a_sentence():
    m = LinearGaussian(12, 3)
    with pytest.raises(ex.NeedsLowDimension, match="1-D or 2-D latent space .this one has 3."):
        ex.exact_batch(m, m.sample(1))


# --- a trained 2-D VAE --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vae2d(trained_runs):
    from vae_core.data import load_dataset

    snap = rd.load_snapshot(trained_runs / "tiny2d", which="latest")
    tc = snap.config.train
    data = load_dataset(tc.dataset, seed=tc.seed)
    return snap.model, data.x_test[slice(0, 6)]


def test_on_a_trained_2d_vae_the_elbo_and_the_gap_add_up(vae2d):
    model, x = vae2d
    res = ex.exact_batch(model, x)
    assert res.converged
    assert (res.elbo <= res.log_px).all()
    assert (res.kl_q_posterior > 0).all()
    np.testing.assert_allclose(res.elbo + res.kl_q_posterior, res.log_px, atol=0.02)


def test_the_quadrature_elbo_agrees_with_a_monte_carlo_elbo(vae2d):
    from vae_core.engine.objectives import elbo_terms

    model, x = vae2d
    res = ex.exact_batch(model, x)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        runs = torch.stack([elbo_terms(model, x, samples=2000, generator=g).elbo for _ in range(5)]).double()
    mc, se = runs.mean(0).numpy(), (runs.std(0) / math.sqrt(5)).numpy()
    assert (np.abs(res.elbo - mc) < 4 * se + 0.01).all(), (res.elbo, mc, se)


def test_iwae_rises_towards_the_exact_value_and_never_passes_it(vae2d):
    model, x = vae2d
    exact = torch.as_tensor(ex.exact_batch(model, x).log_px)
    g = torch.Generator().manual_seed(0)
    means, spreads = [], []
    with torch.no_grad():
        for k in (1, 10, 100, 1000):
            runs = torch.stack([iwae_bound(model, x, k, chunk_size=500, generator=g) for _ in range(5)]).double()
            means.append(runs.mean(0))
            spreads.append(runs.std(0) / math.sqrt(5))
    means, spreads = torch.stack(means), torch.stack(spreads)
    avg, avg_se = means.mean(1), (spreads**2).sum(1).sqrt() / means.shape[1]
    # The bound's expectation rises with k; its estimate does within Monte Carlo error (3 standard errors).
    assert (avg[1:] > avg[:-1] - 3 * (avg_se[1:] + avg_se[:-1])).all(), (avg, avg_se)
    assert avg[-1] > avg[0]
    # never above log p(x) beyond Monte Carlo error, at any k
    assert (means <= exact[None] + 3 * spreads + 1e-3).all()
    assert (exact - means[-1]).mean() < (exact - means[0]).mean()


def test_the_marginal_lab_gets_the_exact_line_for_a_2d_vae(vae2d):
    from vae_core.labs.marginal import marginal_study

    model, x = vae2d
    study = marginal_study(model, x[:1], k_max=200, repeats=2, n_ks=5, elbo_samples=50)
    assert study.exact == pytest.approx(float(ex.exact_batch(model, x[:1]).log_px[0]), abs=1e-6)


def test_test_set_progress_and_worst_fit(vae2d):
    model, x = vae2d
    seen = []
    res = ex.exact_test_set(model, x, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 6), (6, 6)]
    assert len(res.log_px) == 6 and res.points_per_axis >= ex.FINE_START[2]
    worst = res.worst_fit(3)
    assert list(res.kl_q_posterior[worst]) == sorted(res.kl_q_posterior, reverse=True)[:3]


# --- eval --exact ---------------------------------------------------------------------------------
def _eval(run: Path, *flags):
    return subprocess.run([sys.executable, "-m", "vae_core", "eval", str(run), "--limit", "10", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_eval_exact_json_on_a_2d_run(trained_runs):
    proc = _eval(trained_runs / "tiny2d", "--exact", "--json", "--k", "50", "--snapshot", "latest")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("test_log_px_exact", "test_elbo", "test_iwae_k50", "exact_grid"):
        assert key in out, key
    assert out["test_iwae_k50"] <= out["test_log_px_exact"] + 0.05
    assert out["test_elbo_quadrature"] <= out["test_log_px_exact"]
    assert out["exact_grid"] >= ex.FINE_START[2] and out["exact_converged"] is True


def test_eval_exact_on_a_3d_run_is_one_line(trained_runs):
    proc = _eval(trained_runs / "tiny", "--exact")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs a model with a 1-D or 2-D latent space (this one has 3)" in lines[0], proc.stderr
