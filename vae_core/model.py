"""The VAE: a Gaussian encoder q(z|x) = N(mu, diag sigma^2) and a decoder p(x|z).

Notation follows Kingma & Welling (2014): phi are encoder parameters, theta decoder
parameters. ``log_likelihood`` is the one place where log p(x|z) is computed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Posterior:
    """Parameters of q(z|x): mean and log-variance, each (B, D)."""

    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)


def _conv_sizes(h: int, w: int, max_layers: int = 4) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (k=4, p=1) until the map is about 4x4."""
    sizes = [(h, w)]
    while len(sizes) <= max_layers and min(sizes[-1]) > 5:
        h, w = sizes[-1]
        sizes.append(((h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1))
    return sizes


class VAE(nn.Module):
    """MLP or convolutional VAE sized from ``ModelConfig.input_shape``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        c, h, w = config.input_shape
        d_in = c * h * w
        d_z = config.latent_dim
        hid = config.hidden

        if config.body == "mlp":
            # D-hidden-(mu, logvar) and z-hidden-D, as in Kingma & Welling's MNIST experiments.
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d_in, hid), nn.ReLU())
            self.dec = nn.Sequential(nn.Linear(d_z, hid), nn.ReLU(), nn.Linear(hid, d_in))
            self._sizes: list[tuple[int, int]] = []
        else:
            self._sizes = _conv_sizes(h, w)
            chans = [c] + [config.conv_channels * 2**i for i in range(len(self._sizes) - 1)]
            enc_layers: list[nn.Module] = []
            for cin, cout in zip(chans[:-1], chans[1:]):
                enc_layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU()]
            fh, fw = self._sizes[-1]
            flat = chans[-1] * fh * fw
            self.enc = nn.Sequential(*enc_layers, nn.Flatten(), nn.Linear(flat, hid), nn.ReLU())
            self.dec_fc = nn.Sequential(nn.Linear(d_z, hid), nn.ReLU(), nn.Linear(hid, flat), nn.ReLU())
            self.dec_convs = nn.ModuleList(
                nn.ConvTranspose2d(cin, cout, 4, 2, 1) for cin, cout in zip(chans[:0:-1], chans[-2::-1])
            )
            self._chans = chans
        self.mu_head = nn.Linear(hid, d_z)
        self.logvar_head = nn.Linear(hid, d_z)

        log_sigma = torch.tensor(math.log(config.decoder_sigma))
        if config.likelihood == "gaussian_learned":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    # --- q(z|x) -------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Posterior:
        h = self.enc(x)  # (B, hidden)
        return Posterior(self.mu_head(h), self.logvar_head(h))

    # --- p(x|z) -------------------------------------------------------------
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for z of shape (..., D): logits (Bernoulli) or pre-sigmoid mean (Gaussian), (..., C, H, W)."""
        lead = z.shape[:-1]
        z = z.reshape(-1, z.shape[-1])
        if self.config.body == "mlp":
            out = self.dec(z)
        else:
            fh, fw = self._sizes[-1]
            out = self.dec_fc(z).view(-1, self._chans[-1], fh, fw)
            targets = self._sizes[-2::-1]
            for i, (conv, size) in enumerate(zip(self.dec_convs, targets)):
                out = conv(out, output_size=size)
                if i < len(self.dec_convs) - 1:
                    out = F.relu(out)
        return out.reshape(*lead, *self.config.input_shape)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in [0, 1] from the decoder output (the image a user sees)."""
        return torch.sigmoid(decoded)

    def sample_image(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z), clipped to [0, 1] for display."""
        mean = self.mean_image(decoded)
        if self.config.likelihood == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (mean + self.sigma * noise).clamp(0, 1)

    @property
    def sigma(self) -> torch.Tensor:
        """Gaussian decoder sigma (unused by the Bernoulli decoder)."""
        return self.log_sigma.exp()

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over pixels: (..., C, H, W) -> (...)."""
        if self.config.likelihood == "bernoulli":
            # log Bernoulli(x; sigmoid(l)) = x*l - softplus(l), i.e. -BCE-with-logits; valid for x in
            # [0, 1] as the usual relaxation. Written out, it takes fewer passes over the (L, B, pixels)
            # tensor, forward and backward, than the BCE kernel with x expanded to that shape.
            ll = x * decoded - F.softplus(decoded)
        else:
            mean = torch.sigmoid(decoded)
            # log N(x; mean, sigma^2) per pixel
            ll = -0.5 * ((x - mean) / self.sigma) ** 2 - self.log_sigma - 0.5 * LOG_2PI
        return ll.flatten(start_dim=-3).sum(-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
