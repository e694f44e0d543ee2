"""The model-family seam: what every model the explorer and the labs may touch.

The explorer pages, the labs, the evaluation code and the trainer talk to a model only
through ``LatentModel``. A family (the image VAE today; a topic model or a user's own VAE
later) is any ``torch.nn.Module`` that provides these members; ``families.build_model``
turns a run's config into one.

Shapes: ``x`` is a batch of inputs (B, *input_spec.shape); ``z`` is (..., D) with D =
``latent_dim``; a decoder output ("decoded") is whatever the family's ``decode`` returns
for z of shape (..., D), and ``log_likelihood`` / ``decoder_mean`` know how to read it.

Optional members (not part of ``LatentModel``'s isinstance check; looked up with getattr):

``prior``: a ``Posterior`` of shape (1, D) or (D,), the model's own diagonal Gaussian prior
    p(z) = N(mu, diag exp(logvar)). Without one, p(z) = N(0, I). ``objectives.prior_of`` reads it,
    and the ELBO's analytic KL (``elbo_terms``) and log p(z) in every bound (``log_joint``) use
    it. The topic model's prior is the Laplace approximation of a Dirichlet (``prodlda``).
``log_likelihood_at(x, z)``: a family's own faster log p(x|z) for evaluation without autograd
    (``objectives.log_px_given_z``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

InputKind = Literal["image", "text"]


@dataclass(frozen=True)
class Posterior:
    """q(z|x) = N(mu, diag exp(logvar)): mean and log-variance, each (B, D)."""

    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)


@dataclass(frozen=True)
class InputSpec:
    """What one example of a model's input is.

    kind: "image" (shape (C, H, W), pixel values in ``value_range``), or "text" (a bag of words:
        shape (V,), one count per vocabulary word, whole numbers in [0, inf) stored as floats).
    shape: the shape of one example, without the batch dimension.
    value_range: the closed interval the values lie in.
    """

    kind: InputKind
    shape: tuple[int, ...]
    value_range: tuple[float, float] = (0.0, 1.0)

    @property
    def size(self) -> int:
        """Numbers per example (pixels times channels for an image)."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@runtime_checkable
class LatentModel(Protocol):
    """A latent-variable model with a Gaussian encoder: the contract the app relies on."""

    @property
    def latent_dim(self) -> int:
        """D, the size of z."""

    @property
    def input_spec(self) -> InputSpec:
        """A description of the model's input."""

    def encode(self, x: torch.Tensor) -> Posterior:
        """q(z|x) for a batch x (B, *shape)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output for codes z (..., D): the parameters of p(x|z)."""

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per example, from ``decode``'s output: (...)."""

    def decoder_mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z], what a person is shown for a decoder output: an image in [0, 1] (..., C, H, W);
        for text, the word probabilities (..., V) (E[x|z] divided by the document's length)."""

    def sample_x(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z), brought into the input's value range for display."""


def device_of(model) -> tuple[torch.device, torch.dtype]:
    """Where a model's weights live and their float type: its inputs must be brought there."""
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32
