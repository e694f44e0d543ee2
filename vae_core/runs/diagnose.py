"""Diagnoses read from a run's metrics: pure functions of the ``metrics.jsonl`` records, with
a sentence for the user (or None when there is nothing to say). No streamlit, no files.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

# KL(q(z|x) || p(z)) below this, in nats per example, means the codes say almost nothing about
# the image: one latent unit that merely tells two kinds of image apart carries log 2 = 0.69
# nats, so under 0.5 nats the whole code holds less than one bit and the decoder draws nearly
# the same picture for every input. In bench/defaults_matrix.py every run that learned a code
# ended at 2.5 nats or more (most 10-35) and every collapsed one at 0.06 or less (0.01 typical),
# so 0.5 separates them with room on both sides.
COLLAPSE_KL_NATS = 0.5
# Epochs in a row under the threshold before the live panel speaks: one low epoch can be a run
# still warming up; three are a run that is not going to use its latent space by itself.
COLLAPSE_EPOCHS = 3


def posterior_collapse(metrics: Sequence[dict], *, finished: bool = False, beta: float = 1.0,
                       lr: float | None = None, threshold: float = COLLAPSE_KL_NATS, epochs: int = COLLAPSE_EPOCHS) -> str | None:
    """A warning when the posterior has collapsed, else None.

    metrics: the run's records (``rundir.read_metrics``); only ``kind: "epoch"`` records, with
        their ``test_kl`` (nats per test example), are read.
    finished: the run has ended; then its last epoch alone decides (a one- or two-epoch run
        that ends collapsed is as useless as a long one), otherwise the last ``epochs`` epochs
        must all be under ``threshold``.
    beta, lr: the run's KL weight and peak learning rate, to say whether lowering them is worth trying.
    """
    kls = [r["test_kl"] for r in metrics
           if isinstance(r, dict) and r.get("kind") == "epoch" and _number(r.get("test_kl"))]
    need = 1 if finished else max(1, int(epochs))
    if len(kls) < need or not all(kl < threshold for kl in kls[-need:]):
        return None
    last = kls[-1]
    when = (f"after {len(kls)} epoch{'s' if len(kls) != 1 else ''}" if finished or len(kls) == need
            else f"for the last {need} epochs")
    rate = f"this run's peak was {_rate(lr)}; " if lr is not None else ""
    tips = [(f"a new run with the learning rate left on auto, or a lower one ({rate}1e-3 keeps the conv "
             "encoder's units alive where 5e-3 kills them)")]
    if beta > 1:
        tips.append(f"a lower KL weight β (now {beta:g})")
    if finished:
        tips.append("more epochs, if this run was short (a few dozen steps may not get past the mean image)")
    return (f"Posterior collapse: the KL term has stayed below {threshold:g} nats per image {when} "
            f"(now {last:.2f}), so every image gets nearly the same code and the decoder draws about "
            f"the same picture for all of them. Try: {'; '.join(tips)}.")


def _rate(lr: float) -> str:
    """5e-3 rather than 0.005 or 5.00e-03."""
    mantissa, exp = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
