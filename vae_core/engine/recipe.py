"""Training defaults chosen from the data's shape and the model's body: the "auto" recipe.

``TrainConfig`` and ``ModelConfig`` defaults were tuned on MNIST with the MLP (bench/RESULTS.md,
"Test ELBO at equal wall-clock"). They hold for the MLP on every dataset the app offers, but not
for the conv body: at a peak learning rate of 5e-3 its encoder's ReLUs die within its first few
Adam steps on colour images (64x64 faces: 99 % of the 4th conv layer's channels never fire again
by step 10), every image then gets the same code and the decoder learns the mean image
(bench/RESULTS.md, "Defaults on every dataset (issue 12)"). ``recipe_for`` says which values to
use instead; ``runs.manager.new_run_config`` fills them in for whatever the caller did not set,
so ``config.json`` always records the concrete values a run trained with.

Not fixed here: the conv body also collapses on dark-background data (shapes, MNIST) at every
learning rate, because its decoder starts at p = 0.5 everywhere with one output bias per channel;
that needs the bias started at the data's mean (a model change, measured in the same section).

Each entry carries a one-line reason (``Recipe.why``), shown in the Train page's help text.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import ModelConfig, TrainConfig

# The peak learning rate for the convolutional body: on 64x64 colour faces 5e-3 collapsed the
# code (seed 0) and 2e-3 collapsed it in 2 of 3 seeds, while 1e-3 never did (3 of 3 seeds kept
# 18-20 active units) and 5e-4 learned less. It costs 10 nats on fashion-mnist and gains 3 on
# MNIST against 5e-3 in the same steps (bench/defaults_matrix.py).
CONV_LR = 1e-3


@dataclass(frozen=True)
class Recipe:
    """Defaults for one (input shape, body): ``model`` and ``train`` hold ModelConfig and
    TrainConfig fields, ``why`` a one-line reason for each field set here."""

    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)


def recipe_for(input_shape: tuple[int, ...] | list[int], body: str) -> Recipe:
    """The recipe for data of shape (C, H, W) and the "mlp" or "conv" body.

    MLP, any data: the MNIST-tuned defaults (peak lr 5e-3, cosine, 100 warm-up steps); the best
    of the lr sweep 1e-3/2e-3/5e-3 on MNIST, fashion-mnist and shapes, 12 nats (2 %) short of 2e-3
    on the faces. Conv, any data: a peak lr of 1e-3 (``CONV_LR``); everything else as for the MLP.
    The likelihood stays Bernoulli on colour too: the collapse is an optimisation failure that the
    lower rate removes, and a Gaussian decoder would change what the test ELBO measures.
    The shape is not used yet: the same rate is the safe one on every shape measured.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    tc = TrainConfig()
    if body == "conv":
        return Recipe(
            train={"lr": CONV_LR},
            why={"lr": "conv body: at 5e-3 (and often 2e-3) its encoder's ReLUs die in the first steps on "
                       "colour images and every image gets the same code; 1e-3 keeps them alive"},
        )
    return Recipe(
        train={"lr": tc.lr},
        why={"lr": "MLP body: the MNIST-tuned peak rate, the best or within 2 % of the best of the sweep on "
                   "every dataset measured"},
    )


def apply_recipe(input_shape: tuple[int, ...] | list[int], model: Mapping[str, Any] | None,
                 train: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model`` and ``train`` with the recipe's values added where the caller gave none.

    A value the caller passed always wins; a ``None`` for a field the recipe sets counts as not
    given (a form's "auto"), since None is never a valid value for those fields.
    """
    model = dict(model or {})
    train = dict(train or {})
    rec = recipe_for(input_shape, model.get("body") or ModelConfig.body)
    for given, defaults in ((model, rec.model), (train, rec.train)):
        for key, value in defaults.items():
            if given.get(key) is None:
                given[key] = value
    return model, train


def auto_summary(key: str, input_shape: tuple[int, int, int] = (1, 28, 28)) -> str:
    """What "auto" means for ``key`` for each body, e.g. ``"5e-3 for the MLP, 1e-3 for conv"``
    (a form shows it before it knows which body the user will pick)."""
    parts = []
    for body, label in (("mlp", "the MLP"), ("conv", "conv")):
        rec = recipe_for(input_shape, body)
        value = rec.train.get(key, rec.model.get(key, getattr(TrainConfig, key, getattr(ModelConfig, key, None))))
        parts.append(f"{_fmt(value)} for {label}")
    return ", ".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        mantissa, _, exp = f"{value:.0e}".partition("e")
        return f"{mantissa}e{int(exp)}" if float(f"{value:.0e}") == value else f"{value:g}"
    return str(value)
