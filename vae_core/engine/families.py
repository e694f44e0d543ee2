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
from .lda import LdaModel
from .prodlda import ProdLDA
from .protocol import LatentModel
from .topic_model import TopicModel
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
    """A model family: its name in ``config.json``, a sentence for people, its builder and the
    contract its models keep (``LatentModel``, a VAE; ``TopicModel``; a topic VAE keeps both)."""

    name: str
    description: str
    build: Callable[[RunConfig, "ExternalSource | None"], nn.Module]
    contracts: tuple[type, ...] = (LatentModel,)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("image_vae", "VAE on images, MLP or convolutional body, Bernoulli or Gaussian decoder",
               lambda config, source: VAE(config.model)),
        Family("external", "a VAE trained elsewhere, imported with its own code (python -m vae_core import-model)",
               _build_external),
        Family("prodlda", "ProdLDA, a topic-model VAE on word counts (Srivastava & Sutton 2017)",
               lambda config, source: ProdLDA(config.model), (LatentModel, TopicModel)),
        Family("lda", "classical LDA by online variational Bayes (scikit-learn; Hoffman, Blei & Bach 2010)",
               lambda config, source: LdaModel(config.model), (TopicModel,)),
    )
}


def build_model(config: RunConfig, external: ExternalSource | None = None) -> nn.Module:
    """A freshly initialised model of the config's family (it satisfies ``LatentModel``).

    external: for the external family, where its code is (see ``ExternalSource``)."""
    family = FAMILIES.get(config.family)
    if family is None:
        raise ConfigError(f"unknown model family {config.family!r}: this build knows {', '.join(FAMILIES)}")
    model = family.build(config, external)
    for contract in family.contracts:  # a family's builder must honour its contracts
        if not isinstance(model, contract):
            raise TypeError(f"the {config.family} family built a {type(model).__name__}, "
                            f"which is not a {contract.__name__}")
    return model


def is_latent_model(config: RunConfig) -> bool:
    """Whether the config's family builds a VAE (``LatentModel``): encode, decode, ELBO."""
    family = FAMILIES.get(config.family)
    return family is not None and LatentModel in family.contracts
