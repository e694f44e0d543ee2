"""The image VAE family: a Gaussian encoder q(z|x) = N(mu, diag sigma^2) and a decoder p(x|z)
on images, with an MLP or a convolutional body.

Notation follows Kingma & Welling (2014): phi are encoder parameters, theta decoder
parameters. ``log_likelihood`` is the one place where this family's log p(x|z) is computed.
It satisfies ``protocol.LatentModel``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig
from .objectives import image_log_likelihood
from .protocol import InputSpec, Posterior


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

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("image", tuple(self.config.input_shape), (0.0, 1.0))

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

    @torch.no_grad()
    def start_output_at(self, channel_mean: torch.Tensor) -> None:
        """Start the conv decoder's output at each channel's mean intensity (C,), in [0, 1]: its last
        bias becomes logit(mean). Otherwise it starts at 0.5 everywhere and spends its first steps
        learning the background through one bias per channel, while the KL term pushes every code to
        the prior; on dark-background data (MNIST, shapes) that collapsed the posterior at every
        learning rate tried (bench/RESULTS.md, "Defaults on every dataset"). The MLP's per-pixel
        output bias learns the background at once and is left alone."""
        if self.config.body != "conv" or not len(self.dec_convs):
            return
        mean = channel_mean.to(self.dec_convs[-1].bias).clamp(1e-3, 1 - 1e-3)
        self.dec_convs[-1].bias.copy_(torch.logit(mean))

    def decoder_mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in [0, 1] from the decoder output (the image a user sees)."""
        return torch.sigmoid(decoded)

    def sample_x(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z), clipped to [0, 1] for display."""
        mean = self.decoder_mean(decoded)
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
            return image_log_likelihood(x, decoded, "bernoulli")
        return image_log_likelihood(x, torch.sigmoid(decoded), "gaussian", self.log_sigma)

    @torch.no_grad()
    def log_likelihood_at(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """log p(x|z) for codes z (S, B, D) computed with less work, or None where this model has
        no shortcut (the caller then decodes). Evaluation only: no autograd.

        For the MLP body with a Bernoulli decoder and logits l = W h + b over pixels p,
        log p(x|z) = sum_p x_p l_p - softplus(l_p), and softplus(l) = l/2 + |l|/2 - log sigmoid(|l|), so

            log p(x|z) = (W^T (x - 1/2)) . h + (x - 1/2) . b - sum_p |l_p| / 2 + log prod_p sigmoid(|l_p|).

        The first two terms are a hidden-size dot per sample (no pass over pixels). The product
        replaces a log per pixel (the costly half of softplus) by a log per 32 pixels: pairs of
        columns are multiplied five times over, and as each factor lies in [1/2, 1] no product
        underflows. The (S * B, pixels) logits are made a block of ``workers.BLOCK_ROWS`` rows at a
        time, so each block stays in cache between the matmul and the passes over it, and the
        blocks run on single-threaded workers (``workers.map_blocks``). Equal to
        ``log_likelihood(x, decode(z))`` up to float rounding (tests check it). A subclass that
        overrides ``decode`` or ``log_likelihood`` gets None: the shortcut relies on their form.
        """
        own = type(self).decode is VAE.decode and type(self).log_likelihood is VAE.log_likelihood
        if not own or self.config.body != "mlp" or self.config.likelihood != "bernoulli":
            return None
        from . import workers

        first, last = self.dec[0], self.dec[2]
        w1, b1, w2, b2 = first.weight, first.bias, last.weight, last.bias
        n_s, n_b = z.shape[0], z.shape[1]
        xc = x.reshape(n_b, -1) - 0.5  # (B, P)
        v, c = xc @ w2, xc @ b2  # (B, H), (B,)
        zt = z.transpose(0, 1)  # (B, S, D): a block is some images' samples
        if n_s == 0 or n_b == 0:
            return torch.zeros((n_s, n_b), dtype=z.dtype, device=z.device)
        rows = workers.BLOCK_ROWS if z.device.type == "cpu" else 1 << 62
        per_image = max(1, min(n_b, rows // max(1, n_s)))  # images per block
        per_sample = min(n_s, max(1, rows))  # samples per block, when one image's samples are more than a block
        spans = [(i, min(i + per_image, n_b), s, min(s + per_sample, n_s))
                 for i in range(0, n_b, per_image) for s in range(0, n_s, per_sample)]

        def block(span):
            i0, i1, s0, s1 = span
            h = F.linear(zt[i0:i1, s0:s1], w1, b1).relu_()  # (b, s, H)
            out = (h * v[i0:i1, None]).sum(-1).add_(c[i0:i1, None])  # (b, s): the first two terms
            logits = torch.addmm(b2, h.reshape(-1, h.shape[-1]), w2.t())  # (b * s, P), the cache-sized block
            logits.abs_()
            out.sub_(logits.sum(-1).view(out.shape), alpha=0.5)
            q, width = logits.sigmoid_(), logits.shape[1]
            for _ in range(5):  # each column ends a product of at most 63 factors in [1/2, 1]: >= 2^-63
                if width < 2:
                    break
                half = width // 2
                q[:, :half].mul_(q[:, half:2 * half])
                if width % 2:
                    q[:, :1].mul_(q[:, 2 * half:width])
                width = half
            return out.add_(q[:, :width].log_().sum(-1).view(out.shape))

        parts = workers.map_blocks(block, spans, z.device)
        out = torch.empty((n_b, n_s), dtype=parts[0].dtype, device=z.device)
        for (i0, i1, s0, s1), part in zip(spans, parts):
            out[i0:i1, s0:s1] = part
        return out.t()
