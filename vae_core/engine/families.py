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
from .external import ExternalVAE, build_inner, to_cpu_float
from .protocol import LatentModel
from .vae import VAE


@dataclass(frozen=True)
class ExternalSource:
    """Where an external model's code is: its factory and the folder it is imported from.

    Only the CLI's ``import-model`` and a run directory it signed on this machine
    (``runs.external_source.trusted_source``) make one: building it runs the user's code.
    """

    factory: str
    python_path: str | None = None


def _build_external(config: RunConfig, source: "ExternalSource | None") -> nn.Module:
    if source is None:
        raise ConfigError("this run's model was trained elsewhere and imported (family 'external'): it is explored "
                          "here, never trained, and only a run directory made by import-model can build it")
    inner, _ = to_cpu_float(build_inner(source.factory, source.python_path))
    return ExternalVAE(inner, config.model)


@dataclass(frozen=True)
class Family:
    """A model family: its name in ``config.json``, a sentence for people, and its builder."""

    name: str
    description: str
    build: Callable[[RunConfig, "ExternalSource | None"], nn.Module]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("image_vae", "VAE on images, MLP or convolutional body, Bernoulli or Gaussian decoder",
               lambda config, source: VAE(config.model)),
        Family("external", "a VAE trained elsewhere, imported with its own code (python -m vae_core import-model)",
               _build_external),
    )
}


def build_model(config: RunConfig, external: ExternalSource | None = None) -> nn.Module:
    """A freshly initialised model of the config's family (it satisfies ``LatentModel``).

    external: for the external family, where its code is (see ``ExternalSource``)."""
    family = FAMILIES.get(config.family)
    if family is None:
        raise ConfigError(f"unknown model family {config.family!r}: this build knows {', '.join(FAMILIES)}")
    model = family.build(config, external)
    if not isinstance(model, LatentModel):  # a family's builder must honour the contract
        raise TypeError(f"the {config.family} family built a {type(model).__name__}, which is not a LatentModel")
    return model
