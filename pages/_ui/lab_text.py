"""The labs' explanations: pure functions from a lab's result to markdown (no ``st.`` calls),
so the numbers a paragraph quotes and the wording it picks can be unit-tested.

Every function copes with degenerate results (a decoder that ignores z, one latent
dimension, a code that is the same for every image) by saying so instead of dividing by zero.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vae_core.labs import beta as lb
from vae_core.labs import disentangle as dis
from vae_core.labs import gradients as lg
from vae_core.labs import marginal as lm
from vae_core.labs.exact import ExactPosterior

from .exact_figures import PosteriorShape, posterior_shape, reparam_cells
from .lab_figures import SweepPoint, decoder_tag

FLAT_NATS = 1e-3  # log weights spanning less than this: every draw counts the same
COLLAPSED_NATS = 0.05  # a code (or one of its dimensions) with less KL than this carries next to nothing
UNKNOWN_BELOW = 0.05  # a factor whose best dim has less than 5% of its entropy is "not encoded"


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:,.0f}" if v >= 100 else f"{v:.2g}"


# --- gradient estimators ------------------------------------------------------------------
GRADIENT_WHY = (
    "**Why.** The reparameterisation estimator uses ∇z log p(x|z): for each draw it is told which way "
    "to move z to explain the image better. The score function only uses the *value* f(z) = log p(x|z), "
    "a large number (about the image's negative reconstruction loss) multiplied by a random direction "
    "∇φ log q(z|x); the direction that matters only emerges after averaging many draws. A baseline "
    "subtracts most of that large value, but it cannot supply the missing slope. So the trick does both: "
    "it makes the sampling step differentiable, *and* that is what buys the lower variance.")


def gradient_variance_text(r: lg.GradientStudy) -> str:
    """What the variance plot shows: the score function's variance as a multiple of the
    reparameterisation's, and what the baseline buys; or why there is nothing to compare."""
    var = r.total_variance
    score, reparam = var["score"][0], var["reparam"][0]
    if r.reference_norm <= 0:
        return ("**Nothing to estimate here.** The reference gradient is exactly zero: this model's decoder gives "
                "the same output for every z, so log p(x|z) does not depend on the code and the encoder cannot "
                "change it. The reparameterised estimate follows the slope of log p(x|z), which is zero on every "
                "draw, so its variance is **0** (no line on a log scale); the score function still multiplies "
                f"f's value by random directions, a variance of **{_fmt(score)}** that is all noise, and a baseline "
                "subtracts that constant value and the noise with it. Pick a trained run to compare the estimators.")
    if not (reparam > 0 and score > 0):
        return (f"**What you see.** At L = {r.ls[0]} the measured variances are {_fmt(score)} (score function) and "
                f"{_fmt(reparam)} (reparameterisation): one of them is zero, so there is no ratio to quote.")
    ratio = score / reparam
    text = (f"**What you see.** At L = {r.ls[0]}, one score-function gradient has **{ratio:,.0f}×** the "
            f"variance of a reparameterised one (a {math.log10(ratio):.1f}-order-of-magnitude gap). Every line "
            "falls like 1/L, so the score function would need about that many times more draws to be as precise.")
    j = next((i for i, v in enumerate(var["baseline"]) if math.isfinite(v) and v > 0 and var["reparam"][i] > 0), None)
    if j is not None:
        text += (f"\n\nThe baseline cuts the score function's variance **{var['score'][j] / var['baseline'][j]:,.0f}×** "
                 f"at L = {r.ls[j]}, yet it stays **{var['baseline'][j] / var['reparam'][j]:,.0f}×** above "
                 "reparameterisation.")
    return text


def gradient_caption(r: lg.GradientStudy) -> str:
    return (f"{r.n_images} test images · φ = all {r.n_params:,} encoder parameters · variance = sum over "
            f"parameters of each one's variance across {min(r.groups)}–{max(r.groups)} independent estimates "
            f"· computed in {r.seconds:.1f} s")


def gradient_bias_text(r: lg.GradientStudy) -> str:
    """The distance plot: all three are unbiased; how far one estimate is off, relative to the gradient."""
    text = ("**All three are unbiased.** Each estimator's average over its independent estimates is compared "
            f"with a reparameterised reference from {r.reference_samples:,} draws per image. The solid lines sit "
            "on the dotted ones, the distance that noise alone would leave (its own spread plus the reference's): "
            "the estimators aim at the same gradient and differ only in scatter.\n\n")
    if r.reference_norm <= 0:
        return text + ("The reference gradient is zero, so there is no length to measure errors against: the plot "
                       "shows absolute distances and the table below stays empty.")
    return text + (f"What one optimiser step sees: at L = {r.ls[0]} a single score-function estimate is off by "
                   f"**{r.rel_error['score'][0]:.0f}×** the gradient's own length, a reparameterised one by "
                   f"**{r.rel_error['reparam'][0]:.2f}×**.")


def gradient_error_rows(r: lg.GradientStudy) -> list[dict]:
    """One row per L: each estimator's error of one estimate relative to ‖reference‖ ("–" when undefined)."""
    short = {"score": "score function", "baseline": "+ baseline", "reparam": "reparam."}
    ok = r.reference_norm > 0
    return [{"L": L, **{short[e]: _fmt(r.rel_error[e][i] if ok else math.nan) for e in lg.ESTIMATORS}}
            for i, L in enumerate(r.ls)]


def elbo_estimators_text(r: lg.GradientStudy) -> str:
    """SGVB estimators A and B: which one is quieter on this model, and why."""
    a, b = r.elbo["A"], r.elbo["B"]
    text = (f"Variance (nats²) of a one-draw ELBO estimate per image, mean over the batch; both average "
            f"{a['mean_elbo']:.1f} vs {b['mean_elbo']:.1f} nats, the same ELBO. B replaces the sampled "
            "log q(z|x) − log p(z) by its exact expectation, the KL, which removes that term's noise. ")
    if max(a["mean_variance"], b["mean_variance"]) <= 1e-12:
        return text + ("Here neither has any noise: log p(x|z) does not depend on z and q(z|x) is the prior, so "
                       "every draw gives the same ELBO.")
    if b["mean_variance"] < a["mean_variance"]:
        return text + "Here B is the quieter one, as Kingma & Welling expect."
    return text + ("Here A is the quieter one: on a trained model the noise of log q(z|x) − log p(z) partly cancels the "
                   "noise of log p(x|z) (if q were the exact posterior, log p(x,z) − log q(z|x) = log p(x) for every z, "
                   "and A would have no variance at all), while B keeps all of log p(x|z)'s noise.")


def toy_text(t: lg.ToyStudy) -> str:
    """The 1-D toy: the exact gradient, and how much noisier the score function is at L = 1."""
    score, reparam = np.array(t.variance["score"]).sum(1)[0], np.array(t.variance["reparam"]).sum(1)[0]
    spread = (f"at L = 1 the score function's variance is **{score / reparam:.0f}×** the reparameterisation's"
              if reparam > 0 else "at L = 1 the reparameterisation's variance is zero")
    return (f"q(z) = N(μ, σ²) and f(z) = (z − c)², so E_q f = (μ − c)² + σ² and the exact gradient is "
            f"∂/∂μ = 2(μ − c) = **{t.exact[0]:.3g}**, ∂/∂log σ = 2σ² = **{t.exact[1]:.3g}** (dashed lines). "
            f"Every estimator's average over {t.groups[0]:,} independent estimates covers the exact value within its "
            "95% interval at every L: none is biased (the leave-one-out baseline needs L ≥ 2). They differ only in "
            f"spread: {spread}. Move μ away from c and the score function gets worse, because f(z) grows and it "
            "multiplies its random direction by f's whole value; a baseline removes the part of f that every draw shares.")


# --- marginal likelihood ------------------------------------------------------------------
def marginal_summary(r: lm.MarginalStudy) -> str:
    """What the estimate plot shows: whether the prior's estimate has caught up with the encoder's,
    and, when the exact log p(x) is known, how far each estimate still is from it."""
    text = _marginal_summary(r)
    exact = marginal_exact_text(r)
    return text if exact is None else f"{text}\n\n{exact}"


def _below(gap: float) -> str:
    """How far an estimate is under the exact value, in words (noise can put it a little above)."""
    if abs(gap) < 0.005:
        return "on it (within 0.01 nats)"
    return f"{gap:.2f} nats below" if gap > 0 else f"{-gap:.2f} nats above (sampling noise)"


def marginal_exact_text(r: lm.MarginalStudy) -> str | None:
    """The green line: the exact log p(x) and how far the ELBO and both estimates at the largest K
    are from it; None when the model's exact log p(x) is unknown (more than two latent dims)."""
    if r.exact is None:
        return None
    (pm, _), (qm, _) = r.final("prior"), r.final("posterior")
    return (f"**The exact value.** This model's log p(x) is known: **{r.exact:.2f}** nats (the green line; by "
            "quadrature over z for a 1-D or 2-D latent space, in closed form for the linear-Gaussian model). Both "
            f"estimates converge towards it as K grows: at K = {r.ks[-1]:,} the encoder's is {_below(r.exact - qm)}, "
            f"the prior's {_below(r.exact - pm)}, and the ELBO, which no K changes, is {_below(r.exact - r.elbo)}.")


def _marginal_summary(r: lm.MarginalStudy) -> str:
    (pm, ps), (qm, qs) = r.final("prior"), r.final("posterior")
    if max(r.log_weight_span(p) for p in lm.PROPOSALS) < FLAT_NATS:
        return (f"**What you see.** Both estimates are flat at **{pm:.1f}** nats: every draw from either proposal gets "
                f"the same weight (the prior's log weights span {r.log_weight_span('prior'):.1g} nats), because this "
                "model's decoder gives the same output whatever z is. Then p(x|z) = p(x) for every z, the ELBO is "
                "already exact, and importance sampling has nothing to correct.")
    text = (f"**What you see.** With K = {r.ks[-1]:,} draws the prior-sampling estimate is **{pm:.1f} ± {ps:.1f}** "
            f"nats, the encoder-sampling one **{qm:.1f} ± {qs:.1f}** (mean ± s.d. over {r.repeats} repeats). Both "
            "estimate the same log p(x) and both get there as K → ∞. The encoder's curve starts at the ELBO "
            f"({r.elbo:.1f}) and rises {r.iwae - r.elbo:.1f} nats; ")
    gap = qm - pm
    if gap > max(1.0, 3 * (ps + qs)):
        return text + (f"the prior's climbs from far below and is still **{gap:.1f} nats** under the encoder's "
                       "(which is itself, on average, below log p(x)).")
    return text + (f"here the prior's has caught up (the two differ by {abs(gap):.1f} nats). With only a "
                   "few latent dimensions or a blurry decoder, enough of N(0, I) explains the image that plain "
                   "prior draws find it; on a model with more latent dimensions (the default 16 on MNIST) the "
                   "prior falls far behind.")


def marginal_why(r: lm.MarginalStudy) -> str:
    """Why sampling from the encoder converges faster, told from this image's log-weight spreads."""
    span_p, span_q = r.log_weight_span("prior"), r.log_weight_span("posterior")
    head = ("**Why.** log p(x) = log E_z~r[p(x|z) p(z) / r(z)] holds for any proposal r, but only z that "
            "explain *this* image (where p(x|z) is not negligible) contribute, and they may fill a tiny corner of "
            "the prior. ")
    if span_p > span_q + 1.0:
        return head + (f"Here the log weights of draws from N(0, I) span {span_p:.0f} nats (histogram below): when "
                       "that span is wide, the average is decided by the luckiest draw and comes out too low until K "
                       "is huge (the log of a noisy average is biased low). The encoder q(z|x) was trained to propose "
                       f"those z: its log weights span {span_q:.0f} nats, so a handful of draws already lands close.")
    return head + (f"Here that corner is not tiny: the prior's log weights span {span_p:.0f} nats and the encoder's "
                   f"{span_q:.0f} (histogram below), so draws from N(0, I) explain this image about as often as the "
                   "encoder's do. That happens with few latent dimensions or a decoder that ignores z; with more "
                   "dimensions the prior's corner shrinks fast and its estimate falls far behind.")


def marginal_ess_text(r: lm.MarginalStudy) -> str:
    k = r.ks[-1]
    ess_p, ess_q = r.ess["prior"][-1].mean(), r.ess["posterior"][-1].mean()
    note = ""
    if ess_q < 0.05 * k:
        note = (" Even the encoder's ESS is a small fraction of K: q(z|x) does not match the true posterior "
                f"exactly, and the rise from the ELBO to L_K ({r.iwae - r.elbo:.1f} nats) measures that mismatch.")
    return (f"**Effective sample size** at K = {k:,}: prior **{ess_p:,.1f}**, encoder **{ess_q:,.1f}** draws. "
            f"The largest single weight carries {100 * r.top_weight['prior']:.0f}% of the prior's sum and "
            f"{100 * r.top_weight['posterior']:.0f}% of the encoder's.{note}")


# --- the exact posterior (1-D and 2-D latents) ------------------------------------------------------
EXACT_INTRO = (
    "The study notes open with the identity **log p(x) = ELBO + KL(q(z|x) ‖ p(z|x))** (Kingma & Welling 2014, "
    "eq. 1), and every other view shows only the ELBO. With one or two latent dimensions, p(x) = ∫ p(x|z) p(z) dz "
    "can be computed on a grid of z (quadrature), and with it the true posterior p(z|x) = p(x|z) p(z) / p(x) and "
    "the gap between the two: how far the encoder's Gaussian q(z|x) is from the posterior it approximates.")


def _sign(v: float) -> str:
    return f"{v:.3f}" if v >= 0 else f"−{-v:.3f}"


def exact_identity(ep: ExactPosterior) -> str:
    """"ELBO + KL = … = log p(x) (quadrature, N points per axis)", with the numbers shown above it."""
    total = ep.elbo + ep.kl_q_posterior
    grid = f"quadrature, {ep.points_per_axis:,} points per axis"
    line = f"ELBO + KL = {_sign(ep.elbo)} + {ep.kl_q_posterior:.3f} = **{_sign(total)}**"
    err = ep.identity_error
    if abs(err) < 0.0005:
        return f"{line} = log p(x) ({grid})."
    if abs(err) < 0.02:
        return (f"{line} ≈ log p(x) = {_sign(ep.log_px)} ({grid}; the {abs(err):.4f}-nat difference is the "
                "quadrature's own error).")
    return (f"{line}, but log p(x) = {_sign(ep.log_px)} ({grid}): they differ by {abs(err):.3f} nats, more than the "
            "quadrature should leave" + ("" if ep.converged else "; the grid did not converge") + ".")


def exact_gap_text(ep: ExactPosterior) -> str:
    """How much of log p(x) the ELBO misses, said three ways, and what that says about q."""
    kl, lp = ep.kl_q_posterior, ep.log_px
    share = f" ({100 * kl / abs(lp):.2g}% of |log p(x)|)" if abs(lp) > 1e-9 else ""
    odds = (f"exp(ELBO) is {100 * math.exp(-kl):.3g}% of p(x)" if kl < 5 else
            f"exp(ELBO) = e^−{kl:.1f} · p(x), a {kl / math.log(10):.0f}-order-of-magnitude under-estimate of p(x)")
    text = f"**The gap.** The ELBO misses log p(x) by exactly KL(q ‖ p(z|x)) = **{kl:.3f} nats**{share}: {odds}. "
    gaussian = "Gaussian" if len(ep.axes) == 1 else "diagonal Gaussian"
    if kl < 0.01:
        text += "q(z|x) is, to the eye and in nats, the true posterior: the ELBO is as tight as a bound can be."
    elif kl < 0.5:
        text += (f"q(z|x) is close to the true posterior; what is left is the difference in shape a {gaussian} "
                 "cannot follow (below).")
    else:
        text += ("That is a visible mismatch: the encoder's Gaussian sits, or spreads, differently from where p(z|x) "
                 "has its mass (the picture shows where).")
    return text + (f" For comparison, KL(q ‖ p(z)) = {ep.kl_q_prior:.2f} nats is the rate, what the code costs "
                   "against the prior; it is part of the ELBO, not of the gap.")


def _axis(i: int, d: int) -> str:
    return "z" if d == 1 else f"z{i}"


def _signed(v: float) -> str:
    """+0.42 or −0.42, and +0.00 rather than −0.00."""
    v = 0.0 if abs(v) < 0.005 else v
    return f"+{v:.2f}" if v >= 0 else f"−{-v:.2f}"


def exact_shape_text(ep: ExactPosterior, shape: PosteriorShape | None = None) -> str:
    """Is the posterior a Gaussian q could match? Modes, skew and correlation read off the grid,
    and how far q's mean and widths are from the posterior's, in posterior standard deviations."""
    shape = shape or posterior_shape(ep)
    d = len(ep.axes)
    if shape.modes > 1:
        others = ", ".join(f"{100 * h:.0f}%" for h in shape.mode_heights[1:4])
        head = (f"**Shape.** The exact posterior has **{shape.modes} modes** (the others reach {others} of the "
                "highest peak's density): the image is explained by codes in separate places. q(z|x) is one Gaussian, "
                "so it can cover one mode or straddle them, never both. ")
    else:
        head = "**Shape.** The exact posterior has **one mode**. "
    skewed = [i for i in range(d) if abs(shape.skewness[i]) >= 0.5]
    if skewed:
        head += ("It is skewed along " + " and ".join(f"{_axis(i, d)} (skewness {_signed(shape.skewness[i])})" for i in skewed)
                 + ", and a Gaussian is symmetric. ")
    elif shape.modes == 1:
        head += "It is nearly symmetric (skewness " + ", ".join(_signed(s) for s in shape.skewness) + "). "
    if d == 2 and abs(shape.correlation) >= 0.3:
        head += (f"Its two coordinates are correlated (ρ = {_signed(shape.correlation)}), a tilted ellipse that q, "
                 "with a diagonal covariance, cannot turn to follow. ")
    elif d == 2:
        head += f"Its coordinates are nearly uncorrelated (ρ = {_signed(shape.correlation)}), as a diagonal q assumes. "
    off = shape.mahalanobis
    where = ("practically on it" if off < 0.25 else "within one standard deviation" if off < 1 else
             "outside the bulk of the posterior")
    along = ", ".join(f"{_signed(shape.mean_offset[i])} along {_axis(i, d)}" for i in range(d))
    head += (f"\n\nq's mean sits **{off:.2f} posterior standard deviations** from the posterior mean E[z|x], "
             f"{where} ({along}). ")
    widths = []
    for i in range(d):
        r = shape.width_ratio[i]
        how = "about as wide" if 0.9 <= r <= 1.1 else ("narrower" if r < 1 else "wider")
        widths.append(f"along {_axis(i, d)}, q's σ is {r:.2f}× the posterior's sd ({how})")
    widths_text = "; ".join(widths)
    head += widths_text[0].upper() + widths_text[1:] + ". "
    if any(shape.width_ratio < 0.9):
        head += ("A q narrower than the posterior is what minimising KL(q ‖ p) favours: it is penalised for putting "
                 "mass where p has little, not for missing some of p's.")
    return head.strip()


def reparam_text(mu, sigma) -> str:
    """The change-of-variables caption: z = μ + σ ⊙ ε scales cell sizes by ∏σ and densities by 1/∏σ,
    with this image's numbers and the outlined cell's."""
    c = reparam_cells(mu, sigma)
    d = len(c.z_edges)
    k = c.marked
    de = float(c.eps_edges[1] - c.eps_edges[0])
    size = de**d
    p = float(c.p_eps[(k,) * d])
    q = float(c.q_z[(k,) * d])
    word = "length" if d == 1 else "area"
    vec = (lambda v: f"{float(np.ravel(v)[0]):.3f}") if d == 1 else (lambda v: "(" + ", ".join(f"{float(x):.3f}" for x in v) + ")")
    prod = "σ" if d == 1 else "∏σ = σ0 σ1"
    cell = (f"[{c.eps_edges[k]:g}, {c.eps_edges[k + 1]:g}]" + ("²" if d == 2 else ""))
    return (f"z = μ + σ ⊙ ε with this image's μ = {vec(mu)} and σ = {vec(sigma)}. Every ε cell ({word} {size:g}) "
            f"becomes a z cell whose {word} is multiplied by {prod} = **{c.jacobian:.4g}** ({size:g} → {size * c.jacobian:.4g}), "
            f"and the density is divided by the same {c.jacobian:.4g}: q(z) = p(ε) / {c.jacobian:.4g}. So "
            f"**q(z) ∏dz = p(ε) ∏dε**, every cell keeps its probability. The outlined cell, ε in {cell}: "
            f"p(ε) = {p:.4g} × {word} {size:g} = {p * size:.4g} on the left, q(z) = {q:.4g} × {word} "
            f"{size * c.jacobian:.4g} = {q * size * c.jacobian:.4g} on the right. That is why E_q[f(z)] = "
            "E_ε[f(μ + σ ⊙ ε)]: an average over z can be taken over ε, whose distribution does not depend on μ or σ, "
            "and the gradient passes through μ and σ.")


def exact_gallery_text(kl: np.ndarray, elbo: np.ndarray, log_px: np.ndarray, worst: Sequence[int], converged: bool,
                       points_per_axis: int, n_all: int | None = None) -> str:
    """The test-set view: how large the gap is on average and at its worst, over the images searched.
    ``worst``: the test indices of the worst fits, worst first; ``n_all``: the test set's size."""
    n = len(kl)
    if n == 0:
        return "No images were searched."
    where = f"{n:,} test images" + (f" (evenly spread over all {n_all:,})" if n_all and n_all > n else "")
    text = (f"Over {where}, KL(q ‖ p(z|x)) averages **{kl.mean():.3f} nats** (median {np.median(kl):.3f}); the "
            f"largest is **{kl.max():.3f}**" + (f" (test image #{int(worst[0])})" if len(worst) else "") + ". "
            f"Mean log p(x) {log_px.mean():.2f}, mean ELBO {elbo.mean():.2f}: on average the ELBO under-states "
            f"log p(x) by {(log_px - elbo).mean():.3f} nats, all of it the encoder's mismatch. ")
    text += ("Below, the images with the largest gap and their posteriors: look for posteriors with two modes, "
             "a tilt or a long tail, which a diagonal Gaussian cannot follow, and for q sitting beside the posterior "
             "rather than on it.")
    if not converged:
        text += (f" (Some grids stopped at {points_per_axis:,} points per axis before log p(x) settled to 0.01 nats.)")
    return text


# --- β and the decoder --------------------------------------------------------------------
BETA_WHAT_YOU_SEE = (
    "**What you see.** Each point is one model, trained with the loss "
    "*distortion + β × rate*. **Rate** is how many nats the code carries about an image (the KL term, "
    "how far q(z|x) is from the unit Gaussian). **Distortion** is how many nats the decoder still "
    "needs to rebuild it.\n\n"
    "A small β makes the code cheap to use: high rate, sharp reconstructions, but codes that wander away "
    "from N(0, I), so prior samples look worse. A large β squeezes the code towards the prior: low rate, "
    "blurry reconstructions, fewer active dimensions. β = 1 is the ELBO; the dotted line joins the points "
    "with the same ELBO (−ELBO = rate + distortion). (Higgins et al. 2017; Alemi et al. 2018.)")

BETA_IMAGES = ("**Prior samples** (decoder means of z ~ N(0, I), same z for every β) and a **traversal** of each "
               "model's most used dimension (largest KL) from −3 to 3, other dimensions at 0.")

GAUSSIAN_LOG_LIKELIHOOD = r"\log p(x|z) = -D\log\sigma - \frac{\lVert x-f(z)\rVert^2}{2\sigma^2} - \tfrac{D}{2}\log 2\pi"

SIGMA_WHERE = (
    "σ only scales the squared error. Multiply the loss by 2σ² and it becomes *squared error + 2σ²β × KL*: "
    "**a large σ is a large β** (fewer nats in the code, blurrier means), a small σ a small β. Nats of "
    "different σ are not comparable (the −D log σ term shifts them), so the plot uses squared error. "
    "A learned σ settles near √(squared error / D), the σ that fits the decoder's own errors "
    "(Rybkin et al. 2021). Bernoulli has no σ at all: its per-pixel weight is fixed by the data.")


DECODER_IMAGES = ("Per decoder: **reconstructions** (means, test images), **samples** (means of z ~ N(0, I)) and "
                  "**full draws x ~ p(x|z)** of the same z: the Gaussian adds pixel noise of size σ, Bernoulli flips coins.")


def decoder_sweep_caption(sigmas: Sequence[float], learned: bool, bernoulli: bool) -> str:
    """The runs a decoder sweep with these choices would train."""
    return (f"Runs: Gaussian decoders with σ = {', '.join(f'{s:g}' for s in sigmas)}"
            + (", a learned σ" if learned else "") + (", a Bernoulli decoder" if bernoulli else "") + "; β = 1.")


def beta_rows(points: Sequence[SweepPoint]) -> list[dict]:
    return [{"β": s.value, "state": s.state, "step": p.step, "rate (nats)": round(p.rd.rate, 2),
             "distortion (nats)": round(p.rd.distortion, 2), "ELBO": round(p.rd.elbo, 2),
             "active dims": f"{p.n_active}/{p.latent_dim}"} for s, p in points]


def sweep_notes(points: Sequence[SweepPoint], name: str = "β") -> list[str]:
    """What a plot of these runs cannot show: a single point, or runs whose code carries nothing."""
    notes = []
    if len(points) == 1:
        notes.append(f"Only one run has a snapshot so far, so the plot has one point: a trade-off needs at least "
                     f"two values of {name}. Points are added as the sweep's runs train.")
    for s, p in points:
        if p.rd.rate < COLLAPSED_NATS:
            notes.append(f"**{s.label}** has a rate of {p.rd.rate:.2f} nats: its code carries (almost) nothing "
                         "about the image (every image gets about the same code), so its pictures below barely "
                         "change from image to image or along z.")
    return notes


def decoder_rows(points: Sequence[SweepPoint]) -> list[dict]:
    rows = []
    for s, p in points:
        row = {"decoder": decoder_tag(s, p), "rate (nats)": round(p.rd.rate, 2), "squared error": round(p.sq_error, 2)}
        if p.sigma is not None:
            bal = lb.gaussian_balance(p.sigma, p.beta)
            row |= {"1/(2σ²)": round(bal.weight, 1),
                    "KL weight vs squared error (2σ²β)": round(bal.kl_weight_vs_sq_error, 4)}
        if p.likelihood == "gaussian_learned":
            row["σ* = √(sq. error / D)"] = round(lb.calibrated_sigma(p.sq_error, p.recon[0].size), 3)
        rows.append(row)
    return rows


def learned_sigma_notes(points: Sequence[SweepPoint]) -> list[str]:
    """For each learned σ more than 10% from its calibrated value σ*, why it has not got there."""
    notes = []
    for _, p in points:
        if p.likelihood != "gaussian_learned":
            continue
        target = lb.calibrated_sigma(p.sq_error, p.recon[0].size)
        if abs(p.sigma - target) > 0.1 * target:
            notes.append(f"The learned σ ({p.sigma:.3f}) is still on its way to σ* ({target:.3f}): it starts at the "
                         "configured σ and Adam moves log σ by at most about the learning rate per step. "
                         "More epochs close the gap.")
    return notes


# --- disentanglement ----------------------------------------------------------------------
def how_to_read_mi(r: dis.FactorReport) -> str:
    return (
        "**How to read it.** Each cell says how much of a factor's uncertainty one latent dimension removes "
        "(1 = knowing z_d tells you the factor exactly). Disentangled means one bright cell per row, in "
        "different columns. **MIG** (Chen et al. 2018) takes, per factor, the best dimension's share minus the "
        "runner-up's: two dims that both know x score 0, however much they know. **DCI** (Eastwood & Williams "
        "2018) asks a small random forest to predict each factor from the code and checks whether its "
        "importances concentrate. Collapsed dims (≈0 nats of KL) carry nothing and stay pale.\n\n"
        "Don't expect miracles from a short run: a larger β presses the code towards independent dims, but "
        "does not by itself guarantee one factor per dim (Locatello et al. 2019). Compare runs with different β.\n\n"
        f"Measured on {r.n:,} training images. MI uses one draw z ~ q(z|x) per image, binned into "
        f"{dis.DEFAULT_BINS} bins (the code the decoder receives, so a collapsed dim cannot look informative); "
        "DCI's forests read the means.")


def code_warning(r: dis.FactorReport) -> str | None:
    """Why the metrics mean little on this code (identical codes, a collapsed code, one dimension), or None."""
    kl = float(np.max(r.kl_per_dim)) if len(r.kl_per_dim) else 0.0
    if not np.any(r.dci.importance):
        return (f"**Every image gets the same code here** (the most used latent dimension carries {kl:.2f} nats), "
                "so there is nothing to disentangle. MIG and DCI come out near 0 because the code is empty, not "
                "because it is entangled: DCI's forests find no split at all, the mutual information left is the "
                "noise of one posterior draw, and DCI informativeness is the rate of guessing the commonest value.")
    if kl < COLLAPSED_NATS:
        return (f"**The code has collapsed onto the prior:** no latent dimension carries more than {kl:.2f} nats, "
                "so MIG and DCI measure noise, not how the factors are arranged. Train longer or with a smaller β.")
    if len(r.kl_per_dim) == 1:
        return ("**This run has one latent dimension**, so there is no runner-up: MIG is the best dimension's whole "
                "share and DCI disentanglement is 1 by definition. Neither says anything about separating the "
                f"{len(r.factor_names)} factors; that needs at least as many dimensions as factors.")
    return None


def factor_row(r: dis.FactorReport, k: int) -> tuple[str, str]:
    """(markdown beside the traversal, the traversal's caption) for factor k."""
    name, mi = r.factor_names[k], r.mig.normalized_mi
    d, d2 = int(r.mig.top[k]), int(r.mig.second[k])
    known = mi[d, k] >= UNKNOWN_BELOW
    second = f", then z{d2} {mi[d2, k]:.2f}" if d2 >= 0 else ""
    head = f"**{name}** → z{d}" if known else f"**{name}** → no dimension"
    span = f"z{d} from {r.traversal_values[k][0]:.2f} to {r.traversal_values[k][-1]:.2f}"
    caption = span if known else f"{span}: its best dimension, which knows next to nothing about {name}"
    return f"{head}  \nI/H {mi[d, k]:.2f}{second}  \ngap {r.mig.gap[k]:.2f}", caption
