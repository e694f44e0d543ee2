"""Lab 3 (β and the decoder): sweep configs and the Gaussian decoder's weighting."""

import numpy as np
import pytest
import torch

from tests.conftest import sweep_base_config
from vae_core.engine.config import ModelConfig
from vae_core.engine.vae import VAE
from vae_core.labs import beta as lb


def without(d: dict, section: str, key: str) -> dict:
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    d[section].pop(key)
    return d


# --- configs ------------------------------------------------------------------------------
def test_sweep_configs_vary_beta_only():
    base = sweep_base_config()
    pts = lb.sweep_configs(base, betas=[4, 0.25, 1, 0.5, 2])
    assert [p.label for p in pts] == ["beta0.25", "beta0.5", "beta1", "beta2", "beta4"]
    assert [p.config.train.beta for p in pts] == [0.25, 0.5, 1.0, 2.0, 4.0]
    rest = without(base.to_dict(), "train", "beta")
    assert all(without(p.config.to_dict(), "train", "beta") == rest for p in pts)
    assert base.train.beta == 1.0  # the base is copied, not modified


def test_sweep_configs_vary_the_decoder_only():
    base = sweep_base_config()
    pts = lb.sweep_configs(base, sigmas=[0.4, 0.05], learned_sigma=True, bernoulli=True)
    assert [p.label for p in pts] == ["sigma0.05", "sigma0.4", "sigma-learned", "bernoulli"]
    assert [p.config.model.likelihood for p in pts] == ["gaussian_fixed", "gaussian_fixed", "gaussian_learned", "bernoulli"]
    assert [p.config.model.decoder_sigma for p in pts[:2]] == [0.05, 0.4]
    rest = without(without(base.to_dict(), "model", "likelihood"), "model", "decoder_sigma")
    for p in pts:
        assert without(without(p.config.to_dict(), "model", "likelihood"), "model", "decoder_sigma") == rest
    with pytest.raises(ValueError):
        lb.sweep_configs(base, betas=[1], sigmas=[0.1])
    with pytest.raises(ValueError):
        lb.sweep_configs(base, sigmas=[])


# --- σ: the Gaussian decoder's balance ----------------------------------------------------
def gaussian(sigma: float) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=8, likelihood="gaussian_fixed",
                           decoder_sigma=sigma))


def test_larger_sigma_weighs_the_reconstruction_less():
    decoded = torch.randn(4, 1, 8, 8)  # the same decoder output for both models
    x = torch.rand(4, 1, 8, 8)
    grads = {}
    for s in (0.1, 0.4):
        xs = x.clone().requires_grad_(True)
        gaussian(s).log_likelihood(xs, decoded).sum().backward()
        grads[s] = xs.grad.abs()
    assert (grads[0.4] < grads[0.1]).all()
    # d log p / dx = -(x - f) / σ²: the ratio is exactly (σ_small / σ_large)², the weight 1/(2σ²) per σ
    torch.testing.assert_close(grads[0.4] / grads[0.1], torch.full_like(x, (0.1 / 0.4) ** 2))
    assert lb.gaussian_balance(0.1).weight / lb.gaussian_balance(0.4).weight == pytest.approx(16.0)
    assert lb.gaussian_balance(0.4).kl_weight_vs_sq_error > lb.gaussian_balance(0.1).kl_weight_vs_sq_error


def test_calibrated_sigma_maximises_the_gaussian_likelihood():
    decoded = torch.zeros(1, 1, 8, 8)  # mean sigmoid(0) = 0.5
    x = 0.5 + 0.1 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sse = float(((x - 0.5) ** 2).sum())
    grid = np.exp(np.linspace(np.log(0.02), np.log(0.5), 400))
    model, ll = gaussian(0.1), []
    with torch.no_grad():
        for s in grid:  # the same model's formula at each σ
            model.log_sigma.fill_(float(np.log(s)))
            ll.append(float(model.log_likelihood(x, decoded)))
    assert grid[int(np.argmax(ll))] == pytest.approx(lb.calibrated_sigma(sse, 64), rel=0.02)
