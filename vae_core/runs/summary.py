"""Per-snapshot summaries: what a page's first visit would otherwise compute, published by
the worker beside each weight snapshot (``summary.safetensors``).

Written at each epoch's end from the codes the test-set evaluation computed anyway, and when
a run pauses or ends; a snapshot published mid-epoch has none. Contents, for the run's test
set under the snapshot's weights:
  mu, logvar        (N, D) parameters of q(z|x) for every test example
  kl_per_dim        (D,) mean KL(q(z_d|x) || p(z_d)) in nats
  mean_variance     (D,) Var_x E_q[z_d], the active-unit statistic (Burda et al. 2016)
  pca_mean          (D,) and pca_components (k, D), pca_explained (k,): the 2-D projection basis
and, in the metadata, the ``step`` of the snapshot it belongs to. A reader uses it only when
that step matches the weights it loaded; otherwise it computes the same numbers itself.
Written atomically (temp file, fsync, rename); never unpickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..engine.evaluate import code_stats, posterior_stats, principal_axes
from ..engine.objectives import prior_of
from ..engine.protocol import Posterior
from . import rundir as rd

SUMMARY = "summary.safetensors"
_FIELDS = ("mu", "logvar", "kl_per_dim", "mean_variance", "pca_mean", "pca_components", "pca_explained")


@dataclass(frozen=True, eq=False)
class SnapshotSummary:
    """The test set under one snapshot; see the module docstring for each field."""

    step: int
    mu: np.ndarray
    logvar: np.ndarray
    kl_per_dim: np.ndarray
    mean_variance: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    pca_explained: np.ndarray


def summarise(model, x: torch.Tensor, step: int) -> SnapshotSummary:
    """The summary of ``x`` under ``model`` (any ``LatentModel``), computed here and now."""
    stats = posterior_stats(model, x)
    return summary_of_codes(stats["mu"], stats["logvar"], step, prior_of(model))


def summary_of_codes(mu: torch.Tensor, logvar: torch.Tensor, step: int, prior: Posterior | None = None) -> SnapshotSummary:
    """The summary from posteriors already computed (the trainer's end-of-epoch evaluation);
    ``prior``: the model's own prior when it has one (``objectives.prior_of``)."""
    stats = code_stats(mu, logvar, prior)
    as_np = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
    mu_np = as_np(mu)
    mean, comps, ratio = principal_axes(mu_np, k=2)
    return SnapshotSummary(step, mu_np, as_np(logvar), as_np(stats["kl_per_dim"]), as_np(stats["mean_variance"]),
                           mean.astype(np.float32), comps.astype(np.float32), ratio.astype(np.float32))


def write_summary(run_dir: Path, summary: SnapshotSummary) -> None:
    """Publish ``summary`` beside the snapshot of its step."""
    tensors = {name: torch.from_numpy(np.ascontiguousarray(getattr(summary, name))) for name in _FIELDS}
    rd.atomic_save_tensors(Path(run_dir) / SUMMARY, tensors, {"step": str(summary.step)})


def read_summary(run_dir: Path, step: int) -> SnapshotSummary | None:
    """The published summary of the snapshot at ``step``, or None if there is none for it
    (not written yet, from another snapshot, or unreadable)."""
    path = Path(run_dir) / SUMMARY
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if int(meta.get("step", -1)) != step:
                return None
            arrays = {name: f.get_tensor(name).numpy() for name in _FIELDS}
    except (OSError, SafetensorError, ValueError, KeyError, TypeError):
        return None
    return SnapshotSummary(step, **arrays)
