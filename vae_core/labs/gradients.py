"""Lab: three Monte Carlo estimators of the encoder's gradient, measured on the user's model.

The question it answers: "is the reparameterization trick for reducing variance or to make the
equation differentiable?" Both: it needs f to be differentiable in z, and in exchange it
uses the slope of f, not only its value. This module measures the consequence.

Target: g = grad_phi E_{q_phi(z|x)}[f(z)] with f(z) = log p_theta(x|z), theta held fixed,
averaged over a batch of images. Estimators, with L draws per image:

  score function (REINFORCE, Williams 1992; Kingma & Welling 2014, the identity before eq. 2.3):
      grad_phi E_q[f(z)] = E_q[f(z) grad_phi log q_phi(z|x)]  ~  1/L sum_l f(z_l) grad_phi log q_phi(z_l|x)
  score function with a baseline (a control variate, Paisley, Blei & Jordan 2012):
      1/L sum_l (f(z_l) - b_l) grad_phi log q_phi(z_l|x), unbiased for any b_l independent of z_l
      because E_q[grad_phi log q_phi(z|x)] = 0. We use coefficient 1 (no fitted per-parameter
      coefficient) and one of two baselines:
        "loo":  the leave-one-out mean of f over the other L-1 draws of the same image (as in
                Kool, van Hoof & Welling 2019; Mnih & Rezende 2016). Needs L >= 2.
        "mean": f at the posterior mean, f(mu), one extra decode per image; works for L = 1.
  reparameterisation (Kingma & Welling 2014, section 2.4):
      z = mu + sigma * eps, eps ~ N(0, I)  =>  1/L sum_l grad_phi f(mu_phi + sigma_phi eps_l)

Why this is cheap: phi reaches the objective only through each image's posterior parameters
(mu, log sigma^2). So every estimator is J^T v, where v (B, 2D) estimates the gradient with
respect to those parameters and J is the encoder's Jacobian. We get v for all draws at once
with autograd on per-draw copies of (mu, log sigma^2) (only the decoder runs per draw), and map
all estimates to phi-space in one batched vector-Jacobian product (torch vmap under autograd).
Nothing is restricted: phi is every parameter the encoder's output depends on.

Summary of spread: the *total variance*, the sum over all encoder parameters of each
parameter's variance across independent estimates (the trace of the covariance), which is the
expected squared distance of one estimate from its mean.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from ..engine.objectives import auto_chunk_size, elbo_terms, log_normal_diag, sample_posterior
from ..engine.protocol import Posterior

ESTIMATORS = ("score", "baseline", "reparam")
LABELS = {
    "score": "score function (REINFORCE)",
    "baseline": "score function + baseline",
    "reparam": "reparameterisation",
}
Baseline = Literal["loo", "mean"]
Progress = Callable[[float, str], None]


# --- per-draw terms ------------------------------------------------------------------------
@dataclass
class DrawTerms:
    """Everything the estimators need from each draw z_l ~ q(z|x), for a batch of B images.

    f: (N, B) f(z_l).
    score: (N, B, 2D) grad of log q(z_l|x) with respect to (mu, log sigma^2), z_l held fixed.
    pathwise: (N, B, 2D) grad of f(mu + sigma eps_l) with respect to (mu, log sigma^2).
    """

    f: torch.Tensor
    score: torch.Tensor
    pathwise: torch.Tensor


def iter_draw_terms(f, mu: torch.Tensor, logvar: torch.Tensor, n: int, chunk: int, generator: torch.Generator | None = None):
    """Yield DrawTerms for n draws per row of (mu, logvar) (B, D), ``chunk`` draws at a time.

    ``f`` maps z (n, B, D) to (n, B) and must be differentiable in z (the reparameterisation
    estimator needs it; the score function only uses its value).
    """
    mu, logvar = mu.detach(), logvar.detach()
    done = 0
    with torch.enable_grad():
        while done < n:
            m = min(chunk, n - done)
            # Per-draw copies of the posterior parameters: the gradient of a sum over draws with
            # respect to copy l is the gradient of draw l alone, so one backward gives all of them.
            mu_l = mu.expand(m, *mu.shape).clone().requires_grad_(True)
            lv_l = logvar.expand(m, *logvar.shape).clone().requires_grad_(True)
            z = sample_posterior(Posterior(mu_l, lv_l), 1, generator)[0]  # (m, B, D), z = mu + sigma eps
            fz = f(z)  # (m, B)
            d_mu, d_lv = torch.autograd.grad(fz.sum(), (mu_l, lv_l))
            # Score: z is a sample, not a function of phi, so it is held fixed (detached).
            logq = log_normal_diag(z.detach(), mu_l, lv_l)
            s_mu, s_lv = torch.autograd.grad(logq.sum(), (mu_l, lv_l))
            yield DrawTerms(fz.detach(), torch.cat([s_mu, s_lv], -1), torch.cat([d_mu, d_lv], -1))
            done += m


def draw_terms(f, mu, logvar, n, chunk=None, generator=None) -> DrawTerms:
    parts = list(iter_draw_terms(f, mu, logvar, n, chunk or n, generator))
    return DrawTerms(*(torch.cat([getattr(p, k) for p in parts]) for k in ("f", "score", "pathwise")))


def group_estimates(terms: DrawTerms, L: int, groups: int, baseline: Baseline = "loo",
                    f_at_mean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Split the first groups*L draws into disjoint groups of L: ``groups`` independent
    L-sample estimates per estimator, each (groups, B, 2D) in (mu, log sigma^2)-space."""
    n = groups * L
    f = terms.f[:n].reshape(groups, L, -1)  # (G, L, B)
    s = terms.score[:n].reshape(groups, L, *terms.score.shape[1:])  # (G, L, B, 2D)
    r = terms.pathwise[:n].reshape(groups, L, *terms.pathwise.shape[1:])
    if baseline == "loo":
        # Mean of f over the other L-1 draws: independent of draw l, so the estimate stays unbiased.
        b = (f.sum(1, keepdim=True) - f) / (L - 1) if L > 1 else torch.full_like(f, math.nan)
    elif baseline == "mean":
        if f_at_mean is None:
            raise ValueError("baseline='mean' needs f_at_mean, f evaluated at the posterior mean (B,)")
        b = f_at_mean.reshape(1, 1, -1)
    else:
        raise ValueError(f"unknown baseline {baseline!r}: use 'loo' or 'mean'")
    return {
        "score": (f.unsqueeze(-1) * s).mean(1),
        "baseline": ((f - b).unsqueeze(-1) * s).mean(1),
        "reparam": r.mean(1),
    }


# --- from (mu, log sigma^2)-space to the encoder's parameters -----------------------------
class EncoderJacobian:
    """J^T v for the encoder's outputs (mu, log sigma^2) of a fixed batch x."""

    def __init__(self, model, x: torch.Tensor):
        with torch.enable_grad():
            post = model.encode(x)
            self.out = torch.cat([post.mu, post.logvar], -1)  # (B, 2D)
            # phi = the parameters the encoder's output depends on (the decoder's are unused).
            named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
            grads = torch.autograd.grad(self.out.sum(), [p for _, p in named], allow_unused=True, retain_graph=True)
        self.names = [k for (k, _), g in zip(named, grads) if g is not None]
        self.params = [p for (_, p), g in zip(named, grads) if g is not None]
        if not self.params:
            raise ValueError("the model's encoder has no trainable parameters")
        self.n_params = sum(p.numel() for p in self.params)

    def vjp(self, v: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """(G, B, 2D) cotangents -> (G, P) gradients in phi-space (float32 or the model's dtype)."""
        out = []
        for i in range(0, len(v), batch):
            vb = v[i : i + batch].to(self.out.dtype)
            with torch.enable_grad():
                gs = torch.autograd.grad(self.out, self.params, vb, retain_graph=True, is_grads_batched=True)
            out.append(torch.cat([g.reshape(len(vb), -1) for g in gs], 1))
        return torch.cat(out)


# --- the study on a model ---------------------------------------------------------------------
@dataclass
class GradientStudy:
    """Measured spread and accuracy of each estimator, per L. Lists are aligned with ``ls``.

    total_variance[e][i]: sum over encoder parameters of the variance of one L-sample estimate.
    distance[e][i]: ||mean of the estimates - reference|| (how far the estimator's average is).
    expected_distance[e][i]: what that distance would be for an unbiased estimator: pure noise
        from averaging ``groups[i]`` estimates plus the reference's own noise.
    rel_error[e][i]: root-mean-square error of one estimate divided by ||reference||.
    """

    ls: list[int]
    groups: list[int]
    total_variance: dict[str, list[float]]
    distance: dict[str, list[float]]
    expected_distance: dict[str, list[float]]
    rel_error: dict[str, list[float]]
    reference_norm: float
    reference_samples: int
    n_params: int
    n_images: int
    baseline: str
    elbo: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def likelihood_fn(model, x: torch.Tensor):
    """f(z) = log p_theta(x|z) for z (n, B, D): (n, B). Decoder only; theta is not changed."""
    return lambda z: model.log_likelihood(x, model.decode(z))


def gradient_study(
    model,
    x: torch.Tensor,
    ls: tuple[int, ...] = (1, 4, 16, 64, 256),
    repeats: int = 4,
    max_groups: int = 8,
    reference_samples: int = 512,
    baseline: Baseline = "loo",
    elbo_repeats: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
) -> GradientStudy:
    """Measure the three estimators of grad_phi E_q[log p(x|z)] (batch mean) on ``x`` (B, C, H, W).

    One pool of repeats * max(ls) draws per image feeds every L: for each L the pool is cut into
    min(pool // L, max_groups) disjoint groups, each an independent L-sample estimate (so the
    largest L gets ``repeats`` estimates, smaller L up to ``max_groups``). The reference is the reparameterisation
    estimate from ``reference_samples`` further draws.
    """
    t0 = time.perf_counter()
    say = progress or (lambda *_: None)
    ls = sorted({int(v) for v in ls})
    g = torch.Generator(device=x.device).manual_seed(seed)
    f = likelihood_fn(model, x)
    with torch.no_grad():
        post = model.encode(x)
        f_mean = f(post.mu.unsqueeze(0))[0] if baseline == "mean" else None
    batch, pixels = len(x), x[0].numel()
    # The decoder's output and its graph for (chunk, B, pixels) floats: ~4M floats keeps it small.
    chunk = auto_chunk_size(batch, pixels, budget_floats=4_000_000)
    pool = repeats * ls[-1]
    total = pool + reference_samples

    parts, done = [], 0
    for t in iter_draw_terms(f, post.mu, post.logvar, pool, chunk, g):
        parts.append(t)
        done += len(t.f)
        say(0.75 * done / total, f"decoding draws: {done:,} of {pool:,} per image")
    terms = DrawTerms(*(torch.cat([getattr(p, k) for p in parts]) for k in ("f", "score", "pathwise")))
    del parts
    ref_sum = torch.zeros_like(post.mu.repeat(1, 2))
    for t in iter_draw_terms(f, post.mu, post.logvar, reference_samples, chunk, g):
        ref_sum += t.pathwise.sum(0)
        done += len(t.f)
        say(0.75 * done / total, f"reference: {done - pool:,} of {reference_samples:,} draws per image")

    jac = EncoderJacobian(model, x)
    # The objective is the batch mean, so each image's cotangent is scaled by 1/B.
    ref = jac.vjp((ref_sum / reference_samples / batch).unsqueeze(0))[0]
    ref_norm = ref.double().norm().item()

    var: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
    dist = {e: [] for e in ESTIMATORS}
    rel = {e: [] for e in ESTIMATORS}
    groups_used = []
    for i, L in enumerate(ls):
        groups = max(1, min(pool // L, max_groups))
        groups_used.append(groups)
        est = group_estimates(terms, L, groups, baseline, f_mean)
        names = [e for e in ESTIMATORS if torch.isfinite(est[e]).all()]  # LOO needs L >= 2
        # One batched vector-Jacobian product for all estimators at this L; the objective is
        # the batch mean, so each image's cotangent is scaled by 1/B.
        gp = jac.vjp(torch.cat([est[e] for e in names]) / batch) if names else None
        for e in ESTIMATORS:
            if e not in names:
                var[e].append(math.nan), dist[e].append(math.nan), rel[e].append(math.nan)
                continue
            v, d, r = _spread(gp[names.index(e) * groups : (names.index(e) + 1) * groups], ref)
            var[e].append(v), dist[e].append(d), rel[e].append(r)
        say(0.75 + 0.2 * (i + 1) / len(ls), f"encoder gradients for L = {L}")

    # The reference's own noise: reparameterisation variance per draw, over reference_samples.
    v1 = _per_draw_variance(var["reparam"], ls)
    ref_var = v1 / reference_samples
    expected = {e: [math.sqrt(v / gr + ref_var) if math.isfinite(v) else math.nan
                    for v, gr in zip(var[e], groups_used)] for e in ESTIMATORS}

    say(0.96, "ELBO estimators A and B")
    elbo = elbo_estimator_variance(model, x, repeats=elbo_repeats, seed=seed + 1)
    say(1.0, "done")
    return GradientStudy(ls, groups_used, var, dist, expected, rel, ref_norm, reference_samples,
                         jac.n_params, batch, baseline, elbo, time.perf_counter() - t0)


def _spread(gp: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """(total variance, ||mean - ref||, RMS ||estimate - ref|| / ||ref||) of G estimates (G, P).

    Computed from inner products in float64 (a G x G Gram matrix), which is much faster than
    elementwise statistics over hundreds of thousands of parameters.
    """
    g = gp.double()
    r = ref.double()
    n = len(g)
    gram = g @ g.T  # (G, G)
    gr = g @ r  # (G,)
    rr = r @ r
    mean_sq = gram.sum() / n**2  # ||mean||^2
    total_var = ((gram.trace() / n - mean_sq) * n / (n - 1)).item() if n > 1 else math.nan
    dist = (mean_sq - 2 * gr.mean() + rr).clamp_min(0).sqrt().item()
    rms = (gram.diagonal() - 2 * gr + rr).mean().clamp_min(0).sqrt().item()
    ref_norm = rr.sqrt().item()
    rel = rms / ref_norm if ref_norm > 0 else math.nan  # no relative error against a zero gradient
    return max(total_var, 0.0) if n > 1 else math.nan, dist, rel


def _per_draw_variance(variances: list[float], ls: list[int]) -> float:
    """Variance of a single draw, from the smallest L measured (variance of a mean of L i.i.d. is v1/L)."""
    for v, L in zip(variances, ls):
        if math.isfinite(v):
            return v * L
    return math.nan


# --- SGVB estimators A and B (Kingma & Welling 2014, eqs. 6 and 7) -----------------------
@torch.no_grad()
def elbo_estimator_variance(model, x: torch.Tensor, repeats: int = 200, samples: int = 1, seed: int = 0) -> dict[str, dict[str, float]]:
    """Spread of the ELBO estimate per example across ``repeats`` independent estimates.

    A (Monte Carlo KL, eq. 6) and B (analytic KL, eq. 7) estimate the same ELBO; B replaces the
    sampled log q(z|x) - log p(z) by its expectation, removing that part of the noise.
    Returns {"A": {...}, "B": {...}} with mean_variance (nats^2, averaged over examples),
    mean_std (nats) and mean_elbo (nats).
    """
    out = {}
    reps = x.repeat(repeats, *([1] * (x.dim() - 1)))  # (R*B, ...): each row its own draw
    chunk_rows = max(len(x), (20_000 // max(1, len(x))) * len(x))
    for name, kind in (("A", "monte_carlo"), ("B", "analytic")):
        g = torch.Generator(device=x.device).manual_seed(seed)  # same draws for A and B
        vals = torch.cat([elbo_terms(model, reps[i : i + chunk_rows], samples=samples, kl_estimator=kind, generator=g).elbo
                          for i in range(0, len(reps), chunk_rows)])
        e = vals.reshape(repeats, len(x)).double()
        out[name] = {"mean_variance": e.var(0).mean().item(), "mean_std": e.std(0).mean().item(),
                     "mean_elbo": e.mean().item()}
    return out


# --- a 1-D toy with a known answer --------------------------------------------------------
@dataclass
class ToyStudy:
    """q(z) = N(mu, sigma^2), f(z) = (z - c)^2, so E_q f = (mu - c)^2 + sigma^2 and the exact
    gradient is d/dmu = 2 (mu - c), d/dlog sigma = 2 sigma^2.

    mean[e], se[e], variance[e]: (len(ls), 2) for (d/dmu, d/dlog sigma): the average of the
    ``groups`` estimates, its standard error, and the variance of one L-sample estimate.
    """

    ls: list[int]
    groups: list[int]
    exact: tuple[float, float]
    mean: dict[str, list[list[float]]]
    se: dict[str, list[list[float]]]
    variance: dict[str, list[list[float]]]
    mu: float
    sigma: float
    c: float


def toy_exact_gradient(mu: float, sigma: float, c: float) -> tuple[float, float]:
    return 2.0 * (mu - c), 2.0 * sigma**2


def toy_study(mu: float = 1.5, sigma: float = 0.5, c: float = 0.0, ls: tuple[int, ...] = (1, 4, 16, 64, 256),
              repeats: int = 2000, baseline: Baseline = "loo", seed: int = 0) -> ToyStudy:
    """The three estimators on the toy, in double precision, with the same machinery as the VAE.

    Every L gets ``repeats`` independent L-sample estimates (disjoint draws), so the confidence
    interval of their mean narrows with L exactly as the estimator's variance does.
    """
    ls = sorted({int(v) for v in ls})
    g = torch.Generator().manual_seed(seed)
    m = torch.tensor([[mu]], dtype=torch.float64)
    lv = torch.tensor([[2.0 * math.log(sigma)]], dtype=torch.float64)
    f = lambda z: (z - c).pow(2).sum(-1)  # noqa: E731
    pool = repeats * ls[-1]
    terms = draw_terms(f, m, lv, pool, chunk=min(pool, 1_000_000), generator=g)
    f_mean = f(m.unsqueeze(0))[0]
    means, ses, variances = ({e: [] for e in ESTIMATORS} for _ in range(3))
    groups_used = []
    for L in ls:
        groups = repeats
        groups_used.append(groups)
        est = group_estimates(terms, L, groups, baseline, f_mean)
        for e in ESTIMATORS:
            # (G, 1, 2) in (mu, log sigma^2); d/dlog sigma = 2 d/dlog sigma^2.
            v = est[e][:, 0, :] * torch.tensor([1.0, 2.0], dtype=torch.float64)
            var = v.var(0, unbiased=True)
            means[e].append(v.mean(0).tolist())
            variances[e].append(var.tolist())
            ses[e].append((var / groups).sqrt().tolist())
    return ToyStudy(ls, groups_used, toy_exact_gradient(mu, sigma, c), means, ses, variances, mu, sigma, c)
