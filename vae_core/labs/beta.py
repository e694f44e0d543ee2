"""Lab: β and the decoder's likelihood, measured on the user's own models.

Two questions, answered with sweeps of small runs:
- "There's a trade off between how accurate our network can be and how close its latent
  variable can match the unit gaussian": the β-VAE objective (Higgins et al. 2017)
      E_q[log p(x|z)] - β KL(q(z|x) || p(z))
  trades *rate* R = KL(q||p) (nats the code carries about x) against *distortion*
  D = -E_q[log p(x|z)] (nats the decoder still needs). Sweeping β traces the rate-distortion
  curve of Alemi et al. (2018, "Fixing a Broken ELBO", section 3); β = 1 is the ELBO, whose
  negative is R + D.
- "P(X|z) = N(X | f(z), σ²I), but where is σ?": the Gaussian decoder's log-likelihood is
      log p(x|z) = -D log σ - ||x - f(z)||² / (2σ²) - (D/2) log 2π   (``engine.vae.VAE.log_likelihood``),
  so σ only scales the squared error. Multiplying the objective by 2σ² shows a Gaussian VAE
  is a squared-error autoencoder with KL weight 2σ²β: a larger σ is a larger β (Doersch 2016,
  "Tutorial on VAEs", section 2.4.3; Lucas et al. 2019, "Don't Blame the ELBO"). A learned σ
  settles where it maximises the likelihood, σ* = sqrt(mean squared error per pixel)
  (Rybkin et al. 2021, "Simple and Effective VAE Training with Calibrated Decoders").

Sweeps train in the background (``runs.sweeps``: one worker, runs in turn); everything here
reads run directories and snapshots. The sweep lifecycle names are re-exported below so a page
reaches the whole lab through this module. No streamlit; the formulas are reused from
``evaluate`` and ``explore`` (each lives in one place).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import numpy as np
import torch

from .. import explore
from ..data.imageset import iter_float_batches
from ..engine.config import RunConfig
from ..engine.evaluate import evaluate_elbo
from ..engine.protocol import device_of
from ..runs import sweeps
from ..runs.manager import RunManager
from ..runs.sweeps import (  # re-exported: the page reaches a sweep's lifecycle through this lab
    Sweep as Sweep, SweepRunState as SweepRunState, list_sweeps as list_sweeps, stop_sweep as stop_sweep,
    sweep_active as sweep_active, sweep_of as sweep_of, sweep_states as sweep_states,
)

DEFAULT_BETAS = (0.25, 0.5, 1.0, 2.0, 4.0)
BETA_CHOICES = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_SIGMAS = (0.05, 0.1, 0.2, 0.4)
SIGMA_LADDER = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)  # the values the page's σ range slider picks from
# A sweep's default budget: an MLP that trains each run in well under a minute on one CPU core
# (MNIST: 35 steps per epoch), so five runs draw a curve within a few minutes.
DEFAULT_BUDGET = {"epochs": 8, "latent_dim": 16, "body": "mlp"}

SweepKind = Literal["beta", "sigma"]


# --- Building sweeps ----------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: ``label`` names it (run ``<prefix>-<label>``), ``value`` is what varies
    (β, or σ; None for a learned σ or a Bernoulli decoder)."""

    label: str
    value: float | None
    config: RunConfig


def sweep_configs(base_config: RunConfig, betas: Sequence[float] | None = None, sigmas: Sequence[float] | None = None,
                  learned_sigma: bool = False, bernoulli: bool = False) -> list[SweepPoint]:
    """Copies of ``base_config`` that differ in one thing only.

    betas: one run per β (``beta0.25``, …), everything else as in the base.
    sigmas: one Gaussian-decoder run per fixed σ (``sigma0.05``, …); ``learned_sigma`` adds a run
    whose σ is a parameter (``sigma-learned``, starting at the base's decoder_sigma) and
    ``bernoulli`` a Bernoulli-decoder reference (``bernoulli``). One axis per sweep: β or the decoder.
    """
    if betas is not None and (sigmas is not None or learned_sigma or bernoulli):
        raise ValueError("a sweep varies one thing: pass betas, or sigmas/learned_sigma/bernoulli")
    points: list[SweepPoint] = []

    def variant(label: str, value: float | None, **changes) -> None:
        cfg = copy.deepcopy(base_config)
        for key, v in changes.items():
            section, field_name = key.split("__")
            setattr(getattr(cfg, section), field_name, v)
        points.append(SweepPoint(label, value, cfg.validate()))

    if betas is not None:
        for b in sorted(set(float(b) for b in betas)):
            variant(f"beta{b:g}", b, train__beta=b)
    else:
        for s in sorted(set(float(s) for s in (sigmas or ()))):
            variant(f"sigma{s:g}", s, model__likelihood="gaussian_fixed", model__decoder_sigma=s)
        if learned_sigma:
            variant("sigma-learned", None, model__likelihood="gaussian_learned")
        if bernoulli:
            variant("bernoulli", None, model__likelihood="bernoulli")
    if not points:
        raise ValueError("the sweep is empty: choose at least one β or decoder")
    return points


def start_sweep(manager: RunManager, points: Sequence[SweepPoint], prefix: str, kind: SweepKind) -> list[str]:
    """Start a sweep in the background (one worker process, runs in turn); returns its run names."""
    return sweeps.start(manager, [p.config for p in points], prefix, labels=[p.label for p in points],
                        meta={"kind": kind, "values": [p.value for p in points]})


# --- Measurements -------------------------------------------------------------------------
class RateDistortion(NamedTuple):
    """Test-set averages in nats per example (Alemi et al. 2018):
    rate = KL(q(z|x) || p(z)), distortion = -E_q[log p(x|z)]; the ELBO is -(rate + distortion)."""

    rate: float
    distortion: float

    @property
    def elbo(self) -> float:
        return -(self.rate + self.distortion)


def rate_distortion(snapshot, x: torch.Tensor, seed: int = 0) -> RateDistortion:
    """Rate and distortion of a snapshot (or model) on x, from ``evaluate.evaluate_elbo`` (seeded,
    one posterior draw per example: the same numbers the trainer logs as test KL and log-likelihood)."""
    model = getattr(snapshot, "model", snapshot)
    ev = evaluate_elbo(model, x, seed=seed)
    return RateDistortion(rate=ev["kl"], distortion=-ev["log_likelihood"])


@torch.no_grad()
def squared_error(model, x, batch_size: int = 1000) -> float:
    """Mean over examples of ||x - E[x|z=mu]||², summed over pixels: a distortion in pixel units that
    means the same for every decoder (the Gaussian's nats shift with log σ, Bernoulli's are not comparable).
    x: float images (N, C, H, W) or an ImageSet, read a batch at a time."""
    device, _ = device_of(model)
    total, n = 0.0, 0
    for xb in iter_float_batches(x, batch_size, device):
        rec = model.decoder_mean(model.decode(model.encode(xb).mu))  # (B, C, H, W)
        total += float((xb - rec).pow(2).flatten(1).sum(1).double().sum())
        n += len(xb)
    return total / max(1, n)


class GaussianBalance(NamedTuple):
    """How a Gaussian decoder with this σ weighs its two terms (per pixel, nats).

    weight: 1 / (2σ²), what multiplies the squared error in log p(x|z).
    kl_weight_vs_sq_error: 2σ²β, the KL weight of the equivalent squared-error objective
        ||x - f(z)||² + 2σ²β KL: a larger σ acts like a larger β.
    log_norm: -log σ - ½ log 2π, the constant per pixel (why Gaussian distortion in nats can be negative).
    """

    weight: float
    kl_weight_vs_sq_error: float
    log_norm: float


def gaussian_balance(sigma: float, beta: float = 1.0) -> GaussianBalance:
    return GaussianBalance(1.0 / (2.0 * sigma**2), 2.0 * sigma**2 * beta, -float(np.log(sigma)) - 0.5 * float(np.log(2 * np.pi)))


def calibrated_sigma(sq_error: float, pixels: int) -> float:
    """σ* = sqrt(||x - f(z)||² / D), the σ that maximises the Gaussian likelihood for fixed means
    (set d/dσ [-D log σ - SSE/(2σ²)] = 0; Rybkin et al. 2021). A learned σ should land near it."""
    return float(np.sqrt(max(sq_error, 0.0) / max(1, pixels)))


@dataclass(frozen=True, eq=False)
class RunPanel:
    """What the lab shows for one run of a sweep, at its latest snapshot.

    rd: rate and distortion on the test set.  sq_error: see ``squared_error``.
    sigma: the decoder σ (learned or fixed), None for Bernoulli.
    samples: (n, C, H, W) decoder means of prior draws (``explore.sample_prior``).
    noisy_samples: (n, C, H, W) full draws x ~ p(x|z) of the same codes (pixel noise of σ, or coin flips).
    recon: (m, C, H, W) decoder means for m test images spread over the test set.
    traversal: (V, C, H, W) the top-KL dim swept over ``traversal_values`` from the prior mean.
    top_dim, top_kl: that dim and its KL (nats); n_active: active units (Burda et al. 2016).
    """

    step: int
    epoch: int
    likelihood: str
    beta: float
    rd: RateDistortion
    sq_error: float
    sigma: float | None
    samples: np.ndarray
    noisy_samples: np.ndarray
    recon: np.ndarray
    traversal: np.ndarray
    traversal_values: np.ndarray
    top_dim: int
    top_kl: float
    n_active: int
    latent_dim: int


@torch.no_grad()
def run_panel(snapshot, x_test: torch.Tensor, n_samples: int = 8, n_recon: int = 8, steps: int = 7,
              seed: int = 0) -> RunPanel:
    """Everything the page draws for one run, from its snapshot and test images x_test (N, C, H, W)."""
    model = snapshot.model
    cfg = snapshot.config
    rdist = rate_distortion(model, x_test, seed=seed)
    summary = explore.latent_summary(model, x_test)
    top = int(summary.order[0])
    z, means = explore.sample_prior(model, n_samples, seed=seed)  # (n, D), (n, C, H, W)
    g = torch.Generator().manual_seed(seed)
    noisy = model.sample_x(model.decode(torch.as_tensor(z)), generator=g).numpy()  # x ~ p(x|z)
    values = np.linspace(-3, 3, steps, dtype=np.float32)
    trav = explore.traversal_grid(model, np.zeros(cfg.model.latent_dim, np.float32), [top], values)[0]  # (V, C, H, W)
    pick = np.unique(np.linspace(0, len(x_test) - 1, n_recon).round().astype(int))  # test sets are often sorted by class
    recon = explore.reconstruct(model, x_test[torch.as_tensor(pick)]).mean
    sigma = None if cfg.model.likelihood == "bernoulli" else float(model.sigma)
    return RunPanel(snapshot.step, snapshot.epoch, cfg.model.likelihood, cfg.train.beta, rdist,
                    squared_error(model, x_test), sigma, means, noisy, recon, trav, values, top,
                    float(summary.kl_per_dim[top]), summary.n_active, cfg.model.latent_dim)


def sweep_name_prefix(dataset: str) -> str:
    """A readable prefix such as ``mnist-1124-153012``; runs become ``mnist-1124-153012-beta0.25``
    (the manager adds a suffix if the prefix is taken)."""
    return f"{dataset.split(':')[0]}-{time.strftime('%m%d-%H%M%S')}"
