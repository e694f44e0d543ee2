"""The exact-posterior section's figure and text builders (pages/_ui/exact_figures.py and the
exact-posterior part of lab_text.py) on hand-made posteriors whose shape is known, and on the
linear-Gaussian model, whose posterior is Gaussian and whose log p(x) is known in closed form."""
from __future__ import annotations

import math
import re
import types

import numpy as np
import pytest
import torch

from pages._ui import exact_figures as xf
from pages._ui import lab_text as text
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.labs import exact as ex
from vae_core.labs import marginal as lm


def _moments(axes, log_post):
    """Mean and covariance of a gridded density (equal cells)."""
    p = np.exp(log_post)
    if len(axes) == 1:
        w = p / p.sum()
        m = (w * axes[0]).sum()
        return np.array([m]), np.array([[(w * (axes[0] - m) ** 2).sum()]])
    g0, g1 = np.meshgrid(*axes, indexing="ij")
    zs = np.stack([g0.ravel(), g1.ravel()], 1)
    w = (p / p.sum()).ravel()
    m = (w[:, None] * zs).sum(0)
    return m, ((zs - m).T * w) @ (zs - m)


def posterior_2d(mean=(0.5, -1.0), sd=(0.8, 0.4), rho=0.6, q_mu=(0.9, -1.0), q_sigma=(0.5, 0.3), n=81,
                 log_px=-100.0, kl=1.25, identity_error=0.0) -> ex.ExactPosterior:
    """A correlated Gaussian p(z|x) on an n × n grid of ±6 sd, with a diagonal q beside it."""
    mean, sd = np.asarray(mean), np.asarray(sd)
    axes = [np.linspace(m - 6 * s, m + 6 * s, n) for m, s in zip(mean, sd)]
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1) - mean
    inv = np.linalg.inv(cov)
    log_post = -0.5 * np.einsum("...i,ij,...j->...", g, inv, g) - np.log(2 * np.pi * np.sqrt(np.linalg.det(cov)))
    m, c = _moments(axes, log_post)
    return ex.ExactPosterior(axes, log_post, np.array(q_mu), np.array(q_sigma), log_px, log_px - kl + identity_error,
                             kl, 3.0, n, True, 0.001, m, c, 0.5)


def posterior_1d(modes=((-1.5, 0.4, 0.6), (1.5, 0.5, 0.4)), q_mu=0.3, q_sigma=0.7, n=801, log_px=-40.0, kl=0.4):
    """A mixture of Gaussians (mean, sd, weight) as p(z|x) on a line, with q beside it."""
    z = np.linspace(-6, 6, n)
    p = sum(w * xf.normal_pdf(z, m, s) for m, s, w in modes)
    m, c = _moments([z], np.log(p))
    return ex.ExactPosterior([z], np.log(p), np.array([q_mu]), np.array([q_sigma]), log_px, log_px - kl, kl, 0.2,
                             n, True, 0.001, m, c, 0.1)


def trace(fig, name):
    hits = [t for t in fig.data if t.name == name]
    assert len(hits) == 1, (name, [t.name for t in fig.data])
    return hits[0]


# --- the posterior figures ----------------------------------------------------------------------
def test_heatmap_is_the_posterior_density_on_its_grid_with_q_ellipses_and_the_prior():
    ep = posterior_2d()
    fig = xf.posterior_figure(ep)
    heat = trace(fig, "p(z|x)")
    assert heat.type == "heatmap"
    np.testing.assert_allclose(heat.x, ep.axes[0])
    np.testing.assert_allclose(heat.y, ep.axes[1])
    # z[row = z1][col = z0]: the transpose of log_posterior's [axis 0, axis 1]
    np.testing.assert_allclose(np.asarray(heat.z), np.exp(ep.log_posterior).T)
    for k in (1, 2):
        e = trace(fig, f"q(z|x) {k}σ")
        x, y = np.asarray(e.x), np.asarray(e.y)
        assert x.max() - ep.q_mu[0] == pytest.approx(k * ep.q_sigma[0]) and ep.q_mu[0] - x.min() == pytest.approx(k * ep.q_sigma[0])
        assert y.max() - ep.q_mu[1] == pytest.approx(k * ep.q_sigma[1], rel=1e-3)
        # every point on the k-σ ellipse of N(μ, diag σ²)
        np.testing.assert_allclose(((x - ep.q_mu[0]) / ep.q_sigma[0]) ** 2 + ((y - ep.q_mu[1]) / ep.q_sigma[1]) ** 2, k**2)
    prior = [t for t in fig.data if t.name == "prior N(0, I): 1, 2, 3σ"]
    assert [round(float(np.hypot(t.x, t.y).max()), 6) for t in prior] == [1.0, 2.0, 3.0]
    assert list(trace(fig, "E[z|x] (exact)").x) == [pytest.approx(ep.posterior_mean[0])]
    assert list(trace(fig, "μ of q(z|x)").y) == [pytest.approx(ep.q_mu[1])]
    # the view: on the grid, and both of q's ellipses in it
    for i, rng in enumerate((fig.layout.xaxis.range, fig.layout.yaxis.range)):
        assert rng[0] <= ep.q_mu[i] - 2 * ep.q_sigma[i] and rng[1] >= ep.q_mu[i] + 2 * ep.q_sigma[i]
        assert rng[0] >= ep.axes[i][0] - 1e-9 and rng[1] <= ep.axes[i][-1] + 1e-9
    assert fig.layout.yaxis.scaleanchor == "x"  # equal scales: q's circles look like circles


def test_a_fine_grid_is_drawn_coarser_with_the_same_mass():
    ep = posterior_2d(n=401)
    heat = trace(xf.posterior_figure(ep), "p(z|x)")
    z = np.asarray(heat.z)
    assert max(z.shape) <= xf.MAX_SIDE[False] and len(heat.x) == z.shape[1]
    fine = np.exp(ep.log_posterior)
    assert z.mean() == pytest.approx(fine[: z.shape[1] * 3, : z.shape[0] * 3].mean(), rel=1e-9)
    small = trace(xf.posterior_figure(ep, small=True, title="KL 1.25 nats"), "p(z|x)")
    assert max(np.asarray(small.z).shape) <= xf.MAX_SIDE[True]


def test_small_heatmap_has_the_ellipses_and_no_legend():
    fig = xf.posterior_figure(posterior_2d(), small=True, title="KL 1.25 nats")
    assert fig.layout.showlegend is False and fig.layout.height <= 250 and fig.layout.title.text == "KL 1.25 nats"
    assert {t.name for t in fig.data} >= {"p(z|x)", "q(z|x) 1σ", "q(z|x) 2σ"}


def test_one_dimension_draws_the_two_densities_as_curves_and_the_prior():
    ep = posterior_1d()
    fig = xf.posterior_figure(ep)
    exact, q, prior = trace(fig, "p(z|x) (exact)"), trace(fig, "q(z|x)"), trace(fig, "prior N(0, 1)")
    z = np.asarray(exact.x)
    np.testing.assert_allclose(z, ep.axes[0])
    np.testing.assert_allclose(exact.y, np.exp(ep.log_posterior))
    qz, pz = np.asarray(q.x), np.asarray(prior.x)
    assert qz[0] == z[0] and qz[-1] == z[-1] and len(qz) >= len(z) // 4  # the closed forms: smooth, over the grid
    np.testing.assert_allclose(q.y, np.exp(-0.5 * ((qz - 0.3) / 0.7) ** 2) / (0.7 * math.sqrt(2 * math.pi)))
    np.testing.assert_allclose(prior.y, np.exp(-0.5 * pz**2) / math.sqrt(2 * math.pi))
    assert not any(t.type == "heatmap" for t in fig.data)


# --- the change of variables ---------------------------------------------------------------------
def test_change_of_variables_maps_each_eps_cell_to_mu_plus_sigma_eps_and_keeps_its_probability():
    mu, sigma = np.array([1.5, -0.5]), np.array([0.4, 2.0])
    fig = xf.reparam_figure(mu, sigma)
    left, right = [t for t in fig.data if t.type == "heatmap"]
    eps = np.asarray(left.x)
    assert eps[0] == -3.0 and eps[-1] == 3.0 and len(eps) == 13  # 12 × 12 square cells, by their edges
    np.testing.assert_allclose(left.y, eps)
    np.testing.assert_allclose(right.x, mu[0] + sigma[0] * eps)  # the corners of each z cell: μ + σ ε
    np.testing.assert_allclose(right.y, mu[1] + sigma[1] * eps)
    centres = (eps[:-1] + eps[1:]) / 2
    p_eps = np.outer(np.exp(-centres**2 / 2), np.exp(-centres**2 / 2)) / (2 * np.pi)
    np.testing.assert_allclose(np.asarray(left.z), p_eps.T)
    np.testing.assert_allclose(np.asarray(right.z), p_eps.T / sigma.prod())  # q(z) = p(ε) / ∏σ
    # q(z) ∏dz = p(ε) ∏dε, cell by cell
    area_eps = np.outer(np.diff(eps), np.diff(eps)).T
    area_z = np.outer(np.diff(right.x), np.diff(right.y)).T
    np.testing.assert_allclose(np.asarray(right.z) * area_z, np.asarray(left.z) * area_eps)
    # the outlined cell is the same cell on both sides
    (a, b) = fig.layout.shapes
    assert (b.x0, b.x1) == pytest.approx((mu[0] + sigma[0] * a.x0, mu[0] + sigma[0] * a.x1))
    assert (b.y0, b.y1) == pytest.approx((mu[1] + sigma[1] * a.y0, mu[1] + sigma[1] * a.y1))


def test_change_of_variables_in_one_dimension_uses_bars_of_equal_area():
    fig = xf.reparam_figure(np.array([0.3]), np.array([0.5]))
    left, right = fig.data
    assert left.type == right.type == "bar"
    np.testing.assert_allclose(right.x, 0.3 + 0.5 * np.asarray(left.x))
    np.testing.assert_allclose(right.width, 0.5 * np.asarray(left.width))
    np.testing.assert_allclose(np.asarray(right.y) * right.width, np.asarray(left.y) * left.width)


# --- the numbers the words use ----------------------------------------------------------------------
def test_shape_of_a_correlated_gaussian():
    ep = posterior_2d(rho=0.6)
    s = xf.posterior_shape(ep)
    assert s.modes == 1 and s.correlation == pytest.approx(0.6, abs=1e-3)
    np.testing.assert_allclose(s.sd, [0.8, 0.4], rtol=1e-3)
    np.testing.assert_allclose(s.skewness, 0.0, atol=1e-6)
    np.testing.assert_allclose(s.mean_offset, [(0.9 - 0.5) / 0.8, 0.0], atol=1e-3)
    np.testing.assert_allclose(s.width_ratio, [0.5 / 0.8, 0.3 / 0.4], rtol=1e-3)
    delta = np.array([0.4, 0.0])
    assert s.mahalanobis == pytest.approx(math.sqrt(delta @ np.linalg.solve(ep.posterior_cov, delta)), rel=1e-6)


def test_shape_counts_modes_and_skew():
    two = xf.posterior_shape(posterior_1d())
    assert two.modes == 2 and 0.5 < two.mode_heights[1] < 1.0
    # a flat top with a ripple (two local maxima, the dip between them shallow) is one mode
    ripple = posterior_1d(modes=((-0.5, 0.45, 0.5), (0.5, 0.45, 0.5)))
    p = np.exp(ripple.log_posterior)
    centre = p[len(p) // 2] / p.max()
    assert 0.8 < centre < 1.0 and (np.diff(np.sign(np.diff(p))) < 0).sum() == 2  # two local maxima, a shallow dip
    assert xf.posterior_shape(ripple).modes == 1
    skewed = xf.posterior_shape(posterior_1d(modes=((0.0, 0.5, 0.8), (1.2, 1.0, 0.2))))
    assert skewed.skewness[0] > 0.5


def test_shape_counts_two_modes_in_two_dimensions():
    ep = posterior_2d(rho=0.0)
    g0, g1 = np.meshgrid(*ep.axes, indexing="ij")
    far = np.exp(-((g0 - 2.5) ** 2 + (g1 + 1.0) ** 2) / (2 * 0.3**2))  # a second bump off to the side
    p = np.exp(ep.log_posterior)
    ep.log_posterior = np.log(p / p.max() + 0.5 * far)
    s = xf.posterior_shape(ep)
    assert s.modes == 2 and s.mode_heights[1] == pytest.approx(0.5, abs=0.05)
    assert f"**2 modes** (the others reach {100 * s.mode_heights[1]:.0f}%" in text.exact_shape_text(ep, s)


# --- the words ----------------------------------------------------------------------------------------
def test_identity_line_states_the_numbers_shown_and_the_grid():
    ep = posterior_2d(log_px=-100.0, kl=1.25)
    line = text.exact_identity(ep)
    assert line == "ELBO + KL = −101.250 + 1.250 = **−100.000** = log p(x) (quadrature, 81 points per axis)."
    off = text.exact_identity(posterior_2d(identity_error=0.006))
    assert "≈ log p(x) = −100.000" in off and "0.0060-nat difference" in off
    bad = text.exact_identity(posterior_2d(identity_error=0.5))
    assert "differ by 0.500 nats" in bad


def test_gap_text_says_how_much_of_log_px_the_elbo_misses():
    words = text.exact_gap_text(posterior_2d(log_px=-100.0, kl=1.25))
    assert "**1.250 nats** (1.2% of |log p(x)|)" in words
    assert f"exp(ELBO) is {100 * math.exp(-1.25):.3g}% of p(x)" in words and "visible mismatch" in words
    assert "the true posterior: the ELBO is as tight" in text.exact_gap_text(posterior_2d(kl=0.001))
    big = text.exact_gap_text(posterior_2d(kl=80.0))
    assert "e^−80.0" in big and "35-order-of-magnitude" in big


def test_shape_text_reads_the_grid():
    words = text.exact_shape_text(posterior_2d(rho=0.6))
    assert "**one mode**" in words and "ρ = +0.60" in words and "cannot turn to follow" in words
    s = xf.posterior_shape(posterior_2d(rho=0.6))
    assert f"**{s.mahalanobis:.2f} posterior standard deviations**" in words
    assert f"Along z0, q's σ is {s.width_ratio[0]:.2f}× the posterior's sd (narrower)" in words
    assert "+0.50 along z0, +0.00 along z1" in words  # q's mean is off along z0 only
    bimodal = text.exact_shape_text(posterior_1d())
    assert "**2 modes**" in bimodal and "ρ" not in bimodal and "along z)" in bimodal and "Along z, q's σ" in bimodal


def test_reparam_caption_states_the_jacobian_and_equal_cell_probabilities():
    words = text.reparam_text(np.array([1.5, -0.5]), np.array([0.4, 2.0]))
    assert "∏σ = σ0 σ1 = **0.8**" in words and "(0.25 → 0.2)" in words and "q(z) ∏dz = p(ε) ∏dε" in words
    probs = re.findall(r"= ([\d.]+) on the left, q\(z\) = [\d.]+ × area [\d.]+ = ([\d.]+) on the right", words)
    assert probs and probs[0][0] == probs[0][1]
    one = text.reparam_text(np.array([0.3]), np.array([0.5]))
    assert "length" in one and "σ = **0.5**" in one


def test_gallery_text_quotes_the_mean_and_the_worst():
    kl = np.array([0.5, 3.0, 1.0, 0.1])
    elbo = np.array([-10.0, -20.0, -30.0, -40.0])
    words = text.exact_gallery_text(kl, elbo, elbo + kl, [20, 40, 0], True, 65, n_all=80)
    assert "Over 4 test images (evenly spread over all 80)" in words and "**1.150 nats**" in words
    assert "**3.000** (test image #20)" in words and "under-states log p(x) by 1.150 nats" in words
    assert "before log p(x) settled" in text.exact_gallery_text(kl, elbo, elbo + kl, [1], False, 2049)


def test_marginal_summary_mentions_the_exact_value_only_when_known():
    ks = [1, 10, 100]
    est = {"prior": np.full((3, 2), -52.0), "posterior": np.full((3, 2), -50.5)}
    ess = {p: np.ones((3, 2)) for p in lm.PROPOSALS}
    logw = {"prior": np.linspace(-90, -50, 50), "posterior": np.linspace(-55, -50, 50)}
    r = lm.MarginalStudy(ks, 2, est, ess, -51.0, -50.5, {"prior": 0.9, "posterior": 0.1}, logw, -50.25, 1.0)
    words = text.marginal_summary(r)
    assert "**-50.25** nats" in words and "converge towards it" in words
    assert "the encoder's is 0.25 nats below" in words and "the prior's 1.75 nats below" in words
    assert "the ELBO, which no K changes, is 0.75 nats below" in words
    r.exact = None
    assert text.marginal_exact_text(r) is None and "exact value" not in text.marginal_summary(r)


# --- on a real model: the linear-Gaussian one, whose posterior is Gaussian -------------------------------
@pytest.mark.parametrize("z_dim", [1, 2])
def test_on_the_linear_gaussian_model(z_dim):
    model = LinearGaussian(10, z_dim)
    model.input_spec = types.SimpleNamespace(shape=(10,))  # what exact_posterior reads to add a batch axis
    x = torch.randn(1, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ep = ex.exact_posterior(model, x)
    assert ep.log_px == pytest.approx(model.exact_log_px(x).item(), abs=0.01)
    s = xf.posterior_shape(ep)
    assert s.modes == 1 and np.all(np.abs(s.skewness) < 0.05)
    fig = xf.posterior_figure(ep)
    assert any(t.name in ("p(z|x)", "p(z|x) (exact)") for t in fig.data)
    line = text.exact_identity(ep)
    assert f"{ep.points_per_axis:,} points per axis" in line and "log p(x)" in line
    assert "**one mode**" in text.exact_shape_text(ep)
    model.set_exact_posterior_encoder()  # q is the true posterior: no gap, q's mean on the posterior's
    ep = ex.exact_posterior(model, x)
    s = xf.posterior_shape(ep)
    assert s.mahalanobis < 0.01 and np.allclose(s.width_ratio, 1.0, atol=0.01)
    assert "as tight as a bound can be" in text.exact_gap_text(ep)
    assert "practically on it" in text.exact_shape_text(ep, s)
