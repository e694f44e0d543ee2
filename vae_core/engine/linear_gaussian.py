"""A linear-Gaussian latent variable model whose log p(x) and posterior are closed-form.

p(z) = N(0, I), p(x|z) = N(W z + b, sigma^2 I)  =>  p(x) = N(b, W W^T + sigma^2 I),
p(z|x) = N(S W^T (x - b) / sigma^2, S) with S = (I + W^T W / sigma^2)^-1.

It has the same encode / decode / log_likelihood interface as the image VAE, so every bound in
``objectives`` can be checked against the exact answer (tests, and the labs' ground truth).
With orthogonal columns in W the true posterior is diagonal, so a diagonal q can match it.
"""
from __future__ import annotations

import torch
from torch import nn

from .objectives import gaussian_log_likelihood
from .protocol import Posterior


class LinearGaussian(nn.Module):
    def __init__(self, x_dim: int, z_dim: int, sigma: float = 0.5, seed: int = 0, orthogonal: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64)
        if orthogonal:
            q, _ = torch.linalg.qr(w)  # orthonormal columns, then distinct scales
            w = q * torch.linspace(0.5, 2.0, z_dim, dtype=torch.float64)
        self.W = nn.Parameter(w)
        self.b = nn.Parameter(0.3 * torch.randn(x_dim, generator=g, dtype=torch.float64))
        self.register_buffer("log_sigma", torch.tensor(float(sigma), dtype=torch.float64).log())
        # Encoder q(z|x) = N(A (x - b) + c, diag exp(enc_logvar)); starts as an arbitrary guess.
        self.A = nn.Parameter(0.1 * torch.randn(z_dim, x_dim, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(z_dim, dtype=torch.float64))
        self.enc_logvar = nn.Parameter(torch.zeros(z_dim, dtype=torch.float64))

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    # --- interface shared with VAE ---
    def encode(self, x: torch.Tensor) -> Posterior:
        mu = (x - self.b) @ self.A.T + self.c
        return Posterior(mu, self.enc_logvar.expand_as(mu))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T + self.b

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return gaussian_log_likelihood(x, decoded, self.log_sigma).sum(-1)

    # --- closed forms ---
    def marginal_cov(self) -> torch.Tensor:
        return self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=self.W.dtype)

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + sigma^2 I), (B,)."""
        dist = torch.distributions.MultivariateNormal(self.b, covariance_matrix=self.marginal_cov())
        return dist.log_prob(x)

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=self.W.dtype)
        return self.decode(z) + self.sigma * torch.randn(n, self.W.shape[0], generator=g, dtype=self.W.dtype)

    @torch.no_grad()
    def set_exact_posterior_encoder(self) -> None:
        """Make q(z|x) the true posterior (exact when W has orthogonal columns)."""
        z_dim = self.W.shape[1]
        s = torch.linalg.inv(torch.eye(z_dim, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma**2)
        self.A.copy_(s @ self.W.T / self.sigma**2)
        self.c.zero_()
        self.enc_logvar.copy_(torch.diagonal(s).log())
