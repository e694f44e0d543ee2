"""The test set as one snapshot encodes it: codes, per-dimension statistics and the PCA
basis, read from the worker's per-snapshot summary when it has published one (a page's
first visit then costs a file read) and computed here otherwise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..runs.rundir import Snapshot
from ..runs.summary import read_summary, summarise
from .codes import Codes, LatentSummary
from .projection import PcaAxes


@dataclass(frozen=True, eq=False)
class EncodedTestSet:
    """codes: mu and sigma of q(z|x) for every test example, (N, D) each.
    summary: per-dim KL, activity and KL order.  pca: the 2-D PCA basis of the codes.
    published: True when read from the worker's summary file rather than computed here."""

    codes: Codes
    summary: LatentSummary
    pca: PcaAxes
    published: bool


def encoded_test_set(snap: Snapshot, x_test: torch.Tensor) -> EncodedTestSet:
    """The test set ``x_test`` (the run's own) under ``snap``."""
    s = read_summary(snap.run_dir, snap.step)
    published = s is not None and len(s.mu) == len(x_test)
    if not published:
        s = summarise(snap.model, x_test, snap.step)
    codes = Codes(mu=s.mu, sigma=np.exp(0.5 * s.logvar).astype(np.float32))
    return EncodedTestSet(codes, LatentSummary.from_stats(s.kl_per_dim, s.mean_variance),
                       PcaAxes(s.pca_mean, s.pca_components, s.pca_explained), published)
