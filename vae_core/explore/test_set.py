"""The test set as one snapshot encodes it: codes, per-dimension statistics and the PCA
basis, read from the worker's per-snapshot summary when it has published one (a page's
first visit then costs a file read) and computed here otherwise, a batch at a time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..engine.objectives import prior_of
from ..runs.rundir import Snapshot
from ..runs.summary import read_summary, summary_of_codes
from .codes import BATCH, Codes, LatentSummary, _image_batches, _n_examples
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


@torch.no_grad()
def _posteriors(model, x, batch_size: int, progress: Callable[[int, int], None] | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """mu and logvar of q(z|x) for every example of x, (N, D) each on the CPU, a batch at a
    time (x may be a memory-mapped ImageSet far larger than memory as floats)."""
    total, done = _n_examples(x), 0
    mus, logvars = [], []
    for xb in _image_batches(model, x, batch_size):
        post = model.encode(xb)
        mus.append(post.mu.detach().to("cpu", torch.float32))
        logvars.append(post.logvar.detach().to("cpu", torch.float32))
        done += len(xb)
        if progress is not None:
            progress(done, total)
    d = model.latent_dim
    return (torch.cat(mus) if mus else torch.zeros(0, d)), (torch.cat(logvars) if logvars else torch.zeros(0, d))


def encoded_test_set(snap: Snapshot, x_test, progress: Callable[[int, int], None] | None = None,
                     batch_size: int = BATCH) -> EncodedTestSet:
    """The test set ``x_test`` (the run's own: an ImageSet or float images) under ``snap``.

    Without a published summary for this snapshot, every test image is encoded ``batch_size``
    at a time (``progress(done, total)`` after each batch); only the (N, D) codes are kept."""
    s = read_summary(snap.run_dir, snap.step)
    published = s is not None and len(s.mu) == _n_examples(x_test)
    if not published:
        mu, logvar = _posteriors(snap.model, x_test, batch_size, progress)
        s = summary_of_codes(mu, logvar, snap.step, prior_of(snap.model))
    codes = Codes(mu=s.mu, sigma=np.exp(0.5 * s.logvar).astype(np.float32))
    return EncodedTestSet(codes, LatentSummary.from_stats(s.kl_per_dim, s.mean_variance),
                       PcaAxes(s.pca_mean, s.pca_components, s.pca_explained), published)
