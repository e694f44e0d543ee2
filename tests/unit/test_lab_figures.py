"""The labs' figure builders and explanation texts (pages/_ui/lab_figures.py, lab_text.py),
on hand-made results and small real studies: no Streamlit script runs here."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.labs import beta as lb
from vae_core.labs import disentangle as dis
from vae_core.labs import gradients as lg
from vae_core.labs import marginal as lm

LS = [1, 4, 16]


def gradient_study(score=(900.0, 220.0, 60.0), baseline=(np.nan, 20.0, 5.0), reparam=(3.0, 0.8, 0.2),
                   reference_norm=2.0, elbo_variance=(4.0, 2.5)) -> lg.GradientStudy:
    var = {"score": list(score), "baseline": list(baseline), "reparam": list(reparam)}
    dist = {e: [np.sqrt(v / 8) if np.isfinite(v) else np.nan for v in vs] for e, vs in var.items()}
    rel = {e: [np.sqrt(v) / reference_norm if reference_norm else 1e300 for v in vs] for e, vs in var.items()}
    elbo = {"A": {"mean_variance": elbo_variance[0], "mean_std": 1.0, "mean_elbo": -40.0},
            "B": {"mean_variance": elbo_variance[1], "mean_std": 1.0, "mean_elbo": -40.1}}
    return lg.GradientStudy(LS, [8, 8, 4], var, dist, dist, rel, reference_norm, 512, 1234, 32, "loo", elbo, 1.5)


def traces(fig, name=None):
    return [t for t in fig.data if name is None or t.name == name]


# --- gradient estimators ------------------------------------------------------------------------
def test_gradient_variance_has_one_coloured_line_per_estimator_on_log_axes():
    r = gradient_study()
    fig = figs.gradient_variance(r)
    assert [t.name for t in fig.data] == [lg.LABELS[e] for e in lg.ESTIMATORS]
    for e in lg.ESTIMATORS:
        (t,) = traces(fig, lg.LABELS[e])
        assert t.line.color == figs.GRADIENT_COLORS[e]
        assert list(t.x) == LS and list(t.y)[1:] == r.total_variance[e][1:]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_gradient_distance_is_relative_to_the_reference_unless_it_is_zero():
    r = gradient_study(reference_norm=2.0)
    fig = figs.gradient_distance(r)
    (score,) = traces(fig, lg.LABELS["score"])
    assert np.allclose(score.y, np.array(r.distance["score"]) / 2.0)
    assert len(traces(fig, "noise alone")) == 3 and sum(t.showlegend is not False for t in traces(fig, "noise alone")) == 1
    assert "/ ‖reference‖" in fig.layout.yaxis.title.text

    flat = figs.gradient_distance(gradient_study(reference_norm=0.0))
    (score,) = traces(flat, lg.LABELS["score"])
    assert np.all(np.isfinite(score.y))  # no division by the zero reference
    assert "reference = 0" in flat.layout.yaxis.title.text


def test_gradient_text_quotes_the_measured_ratios():
    r = gradient_study()
    words = text.gradient_variance_text(r)
    assert "one score-function gradient has **300×** the variance" in words  # 900 / 3
    assert "2.5-order-of-magnitude" in words
    assert "cuts the score function's variance **11×** at L = 4" in words  # 220 / 20
    assert "stays **25×** above" in words  # 20 / 0.8
    assert text.gradient_caption(r).startswith("32 test images · φ = all 1,234 encoder parameters")
    assert "across 4–8 independent estimates" in text.gradient_caption(r)
    assert "off by **15×**" in text.gradient_bias_text(r)  # sqrt(900) / 2


def test_gradient_text_on_a_decoder_that_ignores_z():
    # What a run with all-zero weights measures: the reference gradient and every slope are 0.
    r = gradient_study(baseline=(np.nan, 0.0, 0.0), reparam=(0.0, 0.0, 0.0), reference_norm=0.0, elbo_variance=(0.0, 0.0))
    words = text.gradient_variance_text(r)
    assert "Nothing to estimate here" in words and "variance is **0**" in words and "**900**" in words and "baseline subtracts that constant value" in words
    assert "×" not in words  # no ratio of a zero variance
    assert "no length to measure errors against" in text.gradient_bias_text(r)
    assert all(v == "–" for row in text.gradient_error_rows(r) for k, v in row.items() if k != "L")
    assert "neither has any noise" in text.elbo_estimators_text(r)


def test_error_rows_and_the_quieter_elbo_estimator():
    r = gradient_study()
    rows = text.gradient_error_rows(r)
    assert [row["L"] for row in rows] == LS
    assert rows[0]["+ baseline"] == "–" and rows[0]["score function"] == "15"
    assert "Here A is the quieter one" not in text.elbo_estimators_text(r)
    assert "Here B is the quieter one" in text.elbo_estimators_text(r)
    assert "Here A is the quieter one" in text.elbo_estimators_text(gradient_study(elbo_variance=(1.0, 2.0)))


def test_toy_figure_and_text_follow_the_study():
    t = lg.toy_study(mu=1.5, sigma=0.5, c=0.0, ls=(1, 4, 16), repeats=200, seed=0)
    fig = figs.toy_gradients(t)
    exact = traces(fig, "exact gradient")
    assert [list(e.y) for e in exact] == [[3.0, 3.0], [0.5, 0.5]]
    for e in lg.ESTIMATORS:  # both components and the variance panel, in the estimator's colour
        assert {tr.xaxis for tr in traces(fig, lg.LABELS[e])} == {"x", "x2", "x3"}
        assert {tr.marker.color or tr.line.color for tr in traces(fig, lg.LABELS[e])} == {figs.GRADIENT_COLORS[e]}
    assert fig.layout.xaxis.type == fig.layout.xaxis3.type == fig.layout.yaxis3.type == "log"
    ratio = np.array(t.variance["score"]).sum(1)[0] / np.array(t.variance["reparam"]).sum(1)[0]
    words = text.toy_text(t)
    assert "∂/∂μ = 2(μ − c) = **3**" in words and "∂/∂log σ = 2σ² = **0.5**" in words
    assert f"**{ratio:.0f}×** the reparameterisation's" in words


# --- marginal likelihood -----------------------------------------------------------------------
def marginal_study(prior_mean=-60.0, post_mean=-50.0, sd=0.5, span=(40.0, 5.0), exact=None, repeats=5,
                   elbo_gap=3.0) -> lm.MarginalStudy:
    ks = [1, 10, 100]
    rng = np.random.default_rng(0)
    est = {"prior": prior_mean + sd * rng.standard_normal((3, repeats)),
           "posterior": post_mean + sd * rng.standard_normal((3, repeats))}
    ess = {"prior": np.ones((3, repeats)), "posterior": np.array([[1.0], [8.0], [70.0]]).repeat(repeats, 1)}
    logw = {p: np.linspace(-s, 0, 50) + m for p, s, m in zip(lm.PROPOSALS, span, (prior_mean, post_mean))}
    return lm.MarginalStudy(ks, repeats, est, ess, post_mean - elbo_gap, float(est["posterior"][-1].mean()),
                            {"prior": 0.9, "posterior": 0.1}, logw, exact, 2.0)


def test_estimate_figure_bands_lines_and_the_exact_line_only_when_known():
    r = marginal_study()
    fig = figs.marginal_estimates(r)
    lines = [t for t in fig.data if t.fill != "toself"]
    assert [t.name for t in lines] == [lm.LABELS[p] for p in lm.PROPOSALS]
    assert [t.line.color for t in lines] == [figs.PROPOSAL_COLORS[p] for p in lm.PROPOSALS]
    assert [fig.data.index(t) for t in lines] == [1, 3]  # each band just before its line
    assert fig.layout.xaxis.type == "log"
    notes = [a.text for a in fig.layout.annotations]
    assert not any("exact" in n for n in notes)
    assert sorted(s.y0 for s in fig.layout.shapes) == sorted([r.elbo, r.iwae])

    known = figs.marginal_estimates(marginal_study(exact=-48.0), zoom=True)
    assert "exact log p(x)" in [a.text for a in known.layout.annotations]
    assert -48.0 in [s.y0 for s in known.layout.shapes]
    lo, hi = known.layout.yaxis.range
    assert lo < -53.0 and hi > -48.0  # the zoom keeps the ELBO and the exact value in view


def test_estimate_figure_on_a_real_linear_gaussian_shows_its_exact_log_px():
    model = LinearGaussian(x_dim=4, z_dim=2, sigma=0.5, seed=0)
    model.set_exact_posterior_encoder()
    x = model.sample(2, seed=1)[1:2].detach()
    r = lm.marginal_study(model, x, k_max=200, repeats=3, elbo_samples=50)
    fig = figs.marginal_estimates(r)
    assert r.exact is not None and r.exact in [s.y0 for s in fig.layout.shapes]


def test_ess_and_weight_figures():
    r = marginal_study()
    ess = figs.marginal_ess(r)
    assert ess.layout.xaxis.type == ess.layout.yaxis.type == "log"
    assert list(traces(ess, "every draw counts (ESS = K)")[0].y) == r.ks
    hist = figs.marginal_weights(r)
    assert [t.type for t in hist.data] == ["histogram", "histogram"] and hist.layout.barmode == "overlay"
    assert [t.marker.color for t in hist.data] == [figs.PROPOSAL_COLORS[p] for p in lm.PROPOSALS]


def test_marginal_wording_switches_on_the_measured_gap():
    behind = text.marginal_summary(marginal_study(prior_mean=-60.0, post_mean=-50.0, sd=0.1))
    gap = re.search(r"still \*\*([\d.]+) nats\*\* under", behind)
    assert gap and 9.0 < float(gap.group(1)) < 11.0 and "caught up" not in behind
    caught = text.marginal_summary(marginal_study(prior_mean=-50.2, post_mean=-50.0, sd=0.1))
    assert "has caught up" in caught and "still" not in caught
    assert "span 40 nats" in text.marginal_why(marginal_study()) and "span 5 nats" in text.marginal_why(marginal_study())
    assert "prior **1.0**, encoder **70.0**" in text.marginal_ess_text(marginal_study())


def test_marginal_why_does_not_claim_the_encoder_is_tighter_when_it_is_not():
    wide_q = text.marginal_why(marginal_study(span=(5.0, 9.0)))  # as on a 1-D model
    assert "span 5 nats and the encoder's 9" in wide_q and "handful of draws" not in wide_q
    assert "handful of draws" in text.marginal_why(marginal_study(span=(40.0, 5.0)))


def test_marginal_wording_when_every_draw_has_the_same_weight():
    flat = marginal_study(prior_mean=-44.4, post_mean=-44.4, sd=0.0, span=(0.0, 0.0), elbo_gap=0.0)
    words = text.marginal_summary(flat)
    assert "Both estimates are flat at **-44.4** nats" in words and "still" not in words
    lo, hi = figs.marginal_estimates(flat).layout.yaxis.range  # a window of nats, not of rounding noise
    assert hi - lo == pytest.approx(2.0) and lo < -44.4 < hi
    assert figs.marginal_estimates(marginal_study()).layout.yaxis.range is None  # curves that move: autoscale


# --- β and the decoder -------------------------------------------------------------------------
def run_panel(rate: float, distortion: float, likelihood="bernoulli", sigma=None, sq_error=10.0, latent_dim=3) -> lb.RunPanel:
    img = np.zeros((2, 1, 4, 4), np.float32)
    return lb.RunPanel(100, 1, likelihood, 1.0, lb.RateDistortion(rate, distortion), sq_error, sigma, img, img, img,
                       img, np.linspace(-3, 3, 2), 0, rate, int(rate > 0.05), latent_dim)


def state(label: str, value, status="finished") -> lb.SweepRunState:
    return lb.SweepRunState(f"sw-{label}", label, value, status, 1.0, status == "training", True)


def test_rate_distortion_points_are_sorted_by_beta_with_the_equal_elbo_line():
    points = [(state("beta4", 4.0), run_panel(1.0, 60.0)), (state("beta0.25", 0.25, "training"), run_panel(9.0, 40.0)),
              (state("beta1", 1.0), run_panel(4.0, 45.0))]
    fig = figs.rate_distortion(points, "RD")
    runs, line = traces(fig, "runs")[0], traces(fig, "same ELBO as β=1 (R + D = const)")[0]
    assert list(runs.x) == [9.0, 4.0, 1.0] and list(runs.y) == [40.0, 45.0, 60.0]
    assert list(runs.text) == ["β=0.25 (training)", "β=1", "β=4"]
    assert np.allclose(np.array(line.x) + np.array(line.y), 49.0)  # R + D of the β = 1 run
    assert fig.layout.title.text == "RD"
    without_one = figs.rate_distortion(points[:2], "RD")
    assert [t.name for t in without_one.data] == ["runs"]


def test_one_point_and_a_zero_rate_are_explained():
    only = [(state("beta1", 1.0), run_panel(0.0, 44.4))]
    fig = figs.rate_distortion(only, "RD")
    assert len(fig.data[0].x) == 1 and max(fig.data[1].x) >= 1.0  # the equal-ELBO line keeps a length
    notes = text.sweep_notes(only)
    assert any("one point" in n for n in notes)
    assert any("**beta1** has a rate of 0.00 nats" in n for n in notes)
    assert text.sweep_notes([(state("beta1", 1.0), run_panel(5.0, 40.0)), (state("beta4", 4.0), run_panel(2.0, 50.0))]) == []
    rows = text.beta_rows(only)
    assert rows[0]["active dims"] == "0/3" and rows[0]["ELBO"] == -44.4


def test_decoder_figure_and_rows():
    points = [(state("bernoulli", None), run_panel(3.0, 50.0)),
              (state("sigma-learned", None), run_panel(6.0, -100.0, "gaussian_learned", 0.3, sq_error=16.0)),
              (state("sigma0.4", 0.4), run_panel(2.0, 10.0, "gaussian_fixed", 0.4)),
              (state("sigma0.1", 0.1), run_panel(8.0, -50.0, "gaussian_fixed", 0.1))]
    fig = figs.decoder_rate_error(points)
    assert list(fig.data[0].text) == ["σ=0.1", "σ=0.4", "learned σ=0.300", "Bernoulli"]
    assert list(fig.layout.xaxis.range) == [pytest.approx(-0.05 * 8.0 * 1.15), pytest.approx(8.0 * 1.15)]
    rows = {row["decoder"]: row for row in text.decoder_rows(figs.decoder_order(points))}
    assert rows["σ=0.1"]["1/(2σ²)"] == 50.0 and "1/(2σ²)" not in rows["Bernoulli"]
    assert rows["learned σ=0.300"]["σ* = √(sq. error / D)"] == 1.0  # sqrt(16 / 16 pixels)
    assert len(text.learned_sigma_notes(points)) == 1  # 0.3 is far from σ* = 1
    zero = figs.decoder_rate_error([(state("sigma0.1", 0.1), run_panel(0.0, 5.0, "gaussian_fixed", 0.1))])
    lo, hi = zero.layout.xaxis.range
    assert lo < 0 < hi  # an axis, not a single value, when every rate is 0, and the point not cut in half


# --- disentanglement ---------------------------------------------------------------------------
def factor_report(dims: int = 4, kl=None, importance=None) -> dis.FactorReport:
    names = ("shape", "scale", "rotation", "x", "y")
    k = len(names)
    nmi = np.full((dims, k), 0.01)
    for j in range(min(dims, k)):
        nmi[j, j] = 0.6
    top = np.array([min(j, dims - 1) for j in range(k)])
    second = np.array([(t + 1) % dims if dims > 1 else -1 for t in top])
    gap = nmi[top, range(k)] - (nmi[second, range(k)] if dims > 1 else 0)
    m = dis.MigResult(float(gap.mean()), gap, nmi, top, second)
    imp = np.full((dims, k), 1.0 / dims) if importance is None else importance
    d = dis.DciResult(0.5, 0.4, 0.9, imp, np.ones(dims), np.ones(k), np.full(k, 0.9))
    kl = np.full(dims, 2.0) if kl is None else np.asarray(kl, float)
    trav = np.zeros((k, 3, 1, 4, 4), np.float32)
    return dis.FactorReport(names, m, d, kl, trav, np.tile(np.linspace(-1, 1, 3), (k, 1)), 1000)


def test_heatmaps_are_factors_by_dims():
    r = factor_report(dims=4)
    (heat,) = figs.mutual_information(r).data
    assert np.asarray(heat.z).shape == (5, 4)
    assert list(heat.y) == list(r.factor_names) and heat.x[0] == "z0<br>2.0 nats"
    assert (heat.zmin, heat.zmax) == (0, 1)
    (imp,) = figs.dci_importance(r).data
    assert np.asarray(imp.z).shape == (5, 4) and list(imp.x) == ["z0", "z1", "z2", "z3"]
    (one,) = figs.mutual_information(factor_report(dims=1)).data
    assert np.asarray(one.z).shape == (5, 1)


def test_factor_rows_and_warnings():
    r = factor_report(dims=4)
    head, caption = text.factor_row(r, 0)
    assert head.startswith("**shape** → z0") and "then z1 0.01" in head and caption == "z0 from -1.00 to 1.00"
    head, caption = text.factor_row(r, 4)  # "y": its best dim (z3) knows 0.01 of it
    assert "→ no dimension" in head and "knows next to nothing about y" in caption
    assert text.code_warning(r) is None
    assert "Measured on 1,000 training images" in text.how_to_read_mi(r)

    one = factor_report(dims=1)
    assert "then z" not in text.factor_row(one, 0)[0]
    assert "one latent dimension" in text.code_warning(one)
    assert "collapsed onto the prior" in text.code_warning(factor_report(kl=[0.01, 0.02, 0.0, 0.01]))
    empty = factor_report(kl=[0.0] * 4, importance=np.zeros((4, 5)))
    assert "Every image gets the same code" in text.code_warning(empty)


def test_decoder_sweep_caption():
    assert text.decoder_sweep_caption([0.1, 0.4], True, False) == "Runs: Gaussian decoders with σ = 0.1, 0.4, a learned σ; β = 1."
