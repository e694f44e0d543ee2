"""A plain VAE written the way the pytorch/examples VAE is (our own code, not a copy).

784-400-20 MLP, ReLU, sigmoid decoder, Adam 1e-3, batch 128, BCE(sum) + analytic KL, a
``DataLoader`` over a ``TensorDataset`` with ``shuffle=True`` and ``.item()`` every step for
logging. It is the yardstick for ``train_speed.py`` and ``cli_vs_reference.py``, so it is
deliberately left in that ordinary style: no tricks in either direction.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class PlainVAE(nn.Module):
    def __init__(self, d_in: int = 784, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.d_in = d_in
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, d_in)

    def encode(self, x):
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.d_in))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def plain_loss(recon, x, mu, logvar):
    """Summed BCE plus analytic KL (Kingma & Welling, Appendix B), summed over the batch."""
    bce = F.binary_cross_entropy(recon, x.view(-1, recon.shape[-1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def make_loader(x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 128) -> DataLoader:
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, **kwargs)


def train_plain(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    device: torch.device,
    *,
    seconds: float | None = None,
    epochs: int | None = None,
    seed: int = 0,
    warmup_steps: int = 20,
    on_epoch: Callable[[int, float, PlainVAE, float], bool | None] | None = None,
) -> dict:
    """Train for ``seconds`` of loop time or ``epochs`` epochs, whichever ends first.

    ``on_epoch(epoch, train_seconds, model, train_cpu_seconds)`` runs after each epoch with the
    clocks stopped (so evaluation is not charged to training); return True to stop.
    Returns the model, steps, samples, the loop's wall and CPU time, and the post-warm-up rates
    per wall second and per CPU second (the latter is steadier on a shared machine at 1 thread).
    """
    torch.manual_seed(seed)
    model = PlainVAE(x_train[0].numel()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader(x_train, y_train, device)
    train_s, cpu_s, steps, samples = 0.0, 0.0, 0, 0
    warm_t, warm_cpu, warm_samples = None, None, 0
    epoch, done = 0, False
    while not done and (epochs is None or epoch < epochs):
        model.train()
        train_loss = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = plain_loss(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()  # the example's per-step host sync
            optimizer.step()
            steps += 1
            samples += len(data)
            if steps == warmup_steps:
                warm_t, warm_samples = train_s + (time.perf_counter() - t0), samples
                warm_cpu = cpu_s + (time.process_time() - c0)
            if seconds is not None and train_s + (time.perf_counter() - t0) >= seconds:
                done = True
                break
        train_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        if done:
            break
        epoch += 1
        if on_epoch is not None and on_epoch(epoch, train_s, model, cpu_s):
            break
    ok = warm_t is not None and train_s > warm_t
    rate = (samples - warm_samples) / (train_s - warm_t) if ok else float("nan")
    cpu_rate = (samples - warm_samples) / (cpu_s - warm_cpu) if ok and cpu_s > warm_cpu else float("nan")
    return {"model": model, "steps": steps, "samples": samples, "train_s": train_s, "cpu_s": cpu_s, "epochs": epoch,
            "samples_per_s": rate, "samples_per_cpu_s": cpu_rate}


def to_project_vae(plain: PlainVAE, input_shape=(1, 28, 28)):
    """The same weights in a ``vae_core`` VAE (Bernoulli on logits = sigmoid decoder), so both
    models go through the one evaluation function."""
    from vae_core.engine.config import ModelConfig
    from vae_core.engine.vae import VAE

    vae = VAE(ModelConfig(input_shape=tuple(input_shape), body="mlp", hidden=plain.fc1.out_features,
                          latent_dim=plain.fc21.out_features, likelihood="bernoulli")).to(plain.fc1.weight.device)
    pairs = [(vae.enc[1], plain.fc1), (vae.mu_head, plain.fc21), (vae.logvar_head, plain.fc22),
             (vae.dec[0], plain.fc3), (vae.dec[2], plain.fc4)]
    with torch.no_grad():
        for dst, src in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return vae
