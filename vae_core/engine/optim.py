"""The optimiser and its learning-rate schedule: pure functions of the config and the step."""
from __future__ import annotations

import math

import torch

from .config import TrainConfig


def learning_rate(tc: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    A linear warm-up keeps the first Adam steps, whose moment estimates are still noisy,
    from throwing the weights far; the cosine decay then lets a larger peak rate converge
    (Loshchilov & Hutter 2017). A function of the step alone, so a resumed run continues
    the same curve.
    """
    if tc.lr_schedule == "constant":
        return tc.lr
    warmup = min(tc.warmup_steps, total_steps // 10)  # a short run still spends most steps decaying
    if step < warmup:
        return tc.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return tc.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def cooldown_rate(lr0: float, done: int, steps: int) -> float:
    """The learning rate ``done`` steps into a cooldown of ``steps`` steps that started at
    ``lr0``: a half cosine from lr0 down to 0 (the tail of the schedule above, compressed).

    A run whose validation ELBO has stopped improving while the rate is still high ends this
    way rather than at once: the weights settle into the minimum they wander around, which is
    where most of a decayed schedule's gain comes from (bench/RESULTS.md, early stopping).
    """
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done / max(1, steps))))


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where the build has one for the model's device, else the foreach one.

    Fused is the fast choice on CUDA, and on CPU too (bench/RESULTS.md: about 4x faster than
    foreach per optimizer step for the default MLP); both take the same step (tests check it).
    CUDA graphs, torch.compile and bf16 autocast stay off until measured on a GPU.
    """
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
