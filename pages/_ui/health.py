"""Whether a snapshot can be shown at all, said in words before any view tries.

A diverged run can have finite weights whose encoder or decoder still returns NaN or inf
(the pictures would be noise and PCA fails with "SVD did not converge"), and an untrained or
all-zero run maps every image to the same code. A few test images tell these apart in one
small forward pass; the pages then say what is wrong once instead of failing view by view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae_core import explore
from vae_core.runs.rundir import Snapshot

from .cache import per_snapshot
from .guard import explain, guard
from .images import spread

N_PROBE = 64  # test images encoded and decoded for the check

DIVERGED = "the weights have probably diverged; train again with a smaller learning rate."


@dataclass(frozen=True)
class Health:
    """problem: a sentence for the page, or None.  fatal: nothing on the page can be shown."""

    problem: str | None = None
    fatal: bool = False


@per_snapshot(max_entries=16)
def health(snap: Snapshot, n_test: int, *, x_test=None) -> Health:
    """The snapshot's health on up to ``N_PROBE`` of the ``n_test`` test images ``x_test``
    (with none, only the decoder is checked, on prior draws)."""
    model = snap.model
    with guard("check", show=False) as g:
        if n_test:
            codes = explore.encode(model, x_test[spread(n_test, N_PROBE)])
            if not (np.isfinite(codes.mu).all() and np.isfinite(codes.sigma).all()):
                return Health(f"This snapshot's encoder returns NaN or infinite codes, so there is nothing to show: {DIVERGED}", True)
            z = codes.mu
        else:
            z = explore.sample_prior(model, N_PROBE, seed=0)[0]
        images = explore.decode(model, z)
        if not np.isfinite(images).all():
            return Health(f"This snapshot's decoder returns NaN or infinite values, so there are no images to show: {DIVERGED}", True)
        if n_test and not explore.has_spread(codes.mu):
            return Health("Every test image gets the same code: this snapshot's encoder ignores its input (untrained or "
                          "all-zero weights?), so the latent views show a single point and every reconstruction looks the same.")
        if not explore.has_spread(images.reshape(len(images), -1)):
            return Health("Every code decodes to the same image: this snapshot's decoder ignores z (untrained or all-zero "
                          "weights?), so samples and traversals all look alike.")
    if g.failed:
        return Health(f"This snapshot cannot encode the run's own test images: {explain(g.error)}", True)
    return Health()
