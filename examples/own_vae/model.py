"""A small convolutional sigma-VAE, written without any Latent Explorer code.

Inputs and decoder means live in [-1, 1] (tanh output). The likelihood is
Gaussian with one learned scalar log standard deviation, ``log_sigma``.
"""
import torch
from torch import nn


class ConvVAE(nn.Module):
    def __init__(self, latent_dim: int = 8, width: int = 32, hidden: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        # 1x28x28 -> width x14x14 -> 2*width x7x7 -> hidden
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden), nn.SiLU(),
        )
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        # latent -> 2*width x7x7 -> width x14x14 -> 1x28x28
        self.from_code = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * width * 7 * 7), nn.SiLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1), nn.Tanh(),
        )
        # Learned scalar log sigma of the Gaussian likelihood (the "sigma-VAE").
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 1, 28, 28) in [-1, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = self.features(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> Gaussian mean, (B, 1, 28, 28) in [-1, 1]."""
        h = self.from_code(z).view(-1, 2 * self.width, 7, 7)
        return self.upsample(h)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def load() -> ConvVAE:
    """Factory: called with no arguments, returns a fresh (untrained) model."""
    return ConvVAE()
