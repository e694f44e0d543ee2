"""The registry of model families: how a run's config becomes a model.

Loading a checkpoint goes through ``build_model(config)``, never through a family's class
directly, so a new family (a topic model, a user's own VAE) is one entry here plus its
config class in ``config.MODEL_CONFIGS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .config import ConfigError, RunConfig
from .protocol import LatentModel
from .vae import VAE


@dataclass(frozen=True)
class Family:
    """A model family: its name in ``config.json``, a sentence for people, and its builder."""

    name: str
    description: str
    build: Callable[[RunConfig], nn.Module]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("image_vae", "VAE on images, MLP or convolutional body, Bernoulli or Gaussian decoder",
               lambda config: VAE(config.model)),
    )
}


def build_model(config: RunConfig) -> nn.Module:
    """A freshly initialised model of the config's family (it satisfies ``LatentModel``)."""
    family = FAMILIES.get(config.family)
    if family is None:
        raise ConfigError(f"unknown model family {config.family!r}: this build knows {', '.join(FAMILIES)}")
    model = family.build(config)
    if not isinstance(model, LatentModel):  # a family's builder must honour the contract
        raise TypeError(f"the {config.family} family built a {type(model).__name__}, which is not a LatentModel")
    return model
