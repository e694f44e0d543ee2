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


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with a shorter way into the same kernel.

    The update is Adam's (Kingma & Ba 2015, Algorithm 1), taken by the one fused kernel; only the
    Python around it is cut. ``Adam.step`` spends 0.2-0.8 ms in Python (grouping tensors by
    device, checks) around a 1 ms kernel for the default MLP at one thread (bench/RESULTS.md,
    issue 12), and ``zero_grad`` adds a profiler record per call. Here, once every
    parameter has its state, ``step`` hands the lists straight to ``torch._fused_adam_``; anything
    else (the first step, which creates the state, a closure, capturable/differentiable/
    AdamW settings, tensor hyperparameters, parameters on several devices or dtypes) goes through
    ``Adam.step`` unchanged. The state and ``state_dict`` are Adam's, so resume files are the
    same; tests check that both take bit-identical steps, across a save and load too.
    """

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _lean_groups(self):
        """Per group: (group, params with a gradient, their states), or None where the lean path
        does not apply."""
        out = []
        for group in self.param_groups:
            if (not group.get("fused") or group.get("capturable") or group.get("differentiable")
                    or group.get("decoupled_weight_decay") or torch.is_tensor(group["lr"])
                    or any(torch.is_tensor(b) for b in group["betas"])):
                return None
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state.get(p) for p in params]
            for p, st in zip(params, states):
                if (not st or not torch.is_tensor(st.get("step")) or p.grad.is_sparse or p.is_complex()
                        or p.device != params[0].device or p.dtype != params[0].dtype):
                    return None
            out.append((group, params, states))
        return out

    def step(self, closure=None):
        # (Optimizer wraps ``step`` of every subclass: step hooks and the profiler record still run.)
        groups = None if closure is not None else self._lean_groups()
        if groups is None:
            return super().step(closure)
        with torch.no_grad():
            for group, params, states in groups:
                if not params:
                    continue
                steps = [st["step"] for st in states]
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adam_(
                    params, [p.grad for p in params], [st["exp_avg"] for st in states],
                    [st["exp_avg_sq"] for st in states],
                    [st["max_exp_avg_sq"] for st in states] if group["amsgrad"] else [], steps,
                    amsgrad=group["amsgrad"], lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                    weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                    grad_scale=None, found_inf=None)
        return None


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where the build has one for the model's device, else the foreach one.

    Fused is the fast choice on CUDA, and on CPU too (bench/RESULTS.md: about 4x faster than
    foreach per optimizer step for the default MLP); both take the same step (tests check it).
    The fused one is a ``LeanAdam``: the same kernel with less Python around it.
    CUDA graphs, torch.compile and bf16 autocast stay off until measured on a GPU.
    """
    # A model may ask for its own moment decay rates (ProdLDA: beta1 = 0.99, as its paper trains it).
    betas = tuple(getattr(model, "adam_betas", (0.9, 0.999)))
    try:
        return LeanAdam(model.parameters(), lr=float(lr), betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, foreach=True)
