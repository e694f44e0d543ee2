"""Fast paths compute what the plain paths compute: same loss, same Adam step, same IWAE bound."""
import pytest
import torch
from torch.nn import functional as F

from vae_core.engine.config import ModelConfig, RunConfig, TrainConfig
from vae_core.engine.evaluate import evaluate_iwae
from vae_core.engine.objectives import (
    elbo_terms,
    iwae_bound,
    sample_posterior,
    training_loss,
)
from vae_core.engine.optim import make_optimizer
from vae_core.engine.vae import VAE

SHAPE = (1, 28, 28)


def default_mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return VAE(ModelConfig(input_shape=SHAPE, body="mlp", hidden=400, latent_dim=20, likelihood="bernoulli", **kw))


def batch(n=32, seed=1, binary=False):
    x = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))
    return x.round() if binary else x


def plain_loss(model, x, eps):
    """The pytorch/examples formula written out by hand: sigmoid decoder, BCE(sum) + analytic KL,
    summed over the batch, with the reparameterisation noise ``eps`` given."""
    h = F.relu(F.linear(x.flatten(1), model.enc[1].weight, model.enc[1].bias))
    mu, logvar = model.mu_head(h), model.logvar_head(h)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = torch.sigmoid(model.dec[2](F.relu(model.dec[0](z))))
    bce = F.binary_cross_entropy(recon, x.flatten(1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


@pytest.mark.parametrize("binary", [False, True])
def test_training_loss_and_gradients_equal_the_plain_formula(binary):
    model = default_mlp()
    x = batch(binary=binary)
    cfg = RunConfig(model=model.config, train=TrainConfig())
    torch.manual_seed(5)
    loss, _ = training_loss(model, x, cfg.train)  # what the trainer minimises: the batch mean
    torch.manual_seed(5)
    eps = torch.randn(1, len(x), 20)[0]  # the same draw sample_posterior makes
    ref = plain_loss(model, x, eps)
    torch.testing.assert_close(loss * len(x), ref, rtol=1e-5, atol=1e-3)

    ours = torch.autograd.grad(loss * len(x), list(model.parameters()))
    theirs = torch.autograd.grad(ref, list(model.parameters()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("body", ["mlp", "conv"])
def test_bernoulli_form_equals_bce_with_logits_and_elbo_terms_uses_it(body):
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=SHAPE, body=body, hidden=64, latent_dim=5, conv_channels=4))
    x = batch(8)
    logits = 8 * torch.randn(3, *x.shape, generator=torch.Generator().manual_seed(2))  # large |l| too
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(2).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, logits), -bce, rtol=1e-5, atol=1e-3)
    terms = elbo_terms(model, x, samples=3, generator=torch.Generator().manual_seed(6))
    z = sample_posterior(model.encode(x), 3, torch.Generator().manual_seed(6))
    ref = model.log_likelihood(x, model.decode(z)).mean(0)
    torch.testing.assert_close(terms.log_likelihood, ref, rtol=1e-5, atol=1e-3)
    ours = torch.autograd.grad(terms.log_likelihood.sum(), list(model.parameters()))
    theirs = torch.autograd.grad(ref.sum(), list(model.parameters()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_subclass_with_its_own_likelihood_keeps_it():
    class Tempered(VAE):
        def log_likelihood(self, x, decoded):
            return 0.5 * super().log_likelihood(x, decoded)

    torch.manual_seed(0)
    model = Tempered(ModelConfig(input_shape=SHAPE, hidden=32, latent_dim=3))
    plain = VAE(model.config)
    plain.load_state_dict(model.state_dict())
    x = batch(4)
    with torch.no_grad():
        half = elbo_terms(model, x, generator=torch.Generator().manual_seed(1)).log_likelihood
        full = elbo_terms(plain, x, generator=torch.Generator().manual_seed(1)).log_likelihood
        torch.testing.assert_close(half, 0.5 * full)
        assert model.log_likelihood_at(x, torch.randn(2, 4, 3)) is None


def test_fused_and_foreach_adam_take_the_same_steps():
    models = [default_mlp(), default_mlp()]
    opts = [make_optimizer(models[0], 1e-3),
            torch.optim.Adam(models[1].parameters(), lr=1e-3, foreach=True)]
    assert opts[0].defaults.get("fused") or opts[0].defaults.get("foreach")
    x = batch()
    for step in range(3):
        for m, opt in zip(models, opts):
            torch.manual_seed(step)
            loss = elbo_terms(m, x).loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("binary", [False, True])
def test_bernoulli_log_px_shortcut_equals_the_model(binary):
    model = default_mlp()
    x = batch(8, binary=binary)
    z = 2 * torch.randn(5, 8, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast = model.log_likelihood_at(x, z)
        plain = model.log_likelihood(x, model.decode(z))
    assert fast is not None and fast.shape == plain.shape == (5, 8)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("cfg", [dict(likelihood="gaussian_fixed"), dict(body="conv")])
def test_bernoulli_shortcut_declines_other_models(cfg):
    model = VAE(ModelConfig(input_shape=SHAPE, **{"latent_dim": 4, "hidden": 16, **cfg}))
    with torch.no_grad():
        assert model.log_likelihood_at(batch(2), torch.randn(3, 2, 4)) is None


def test_iwae_fast_path_equals_the_generic_path():
    model = default_mlp().eval()
    x = batch(16, binary=True)
    with torch.no_grad():  # no grad: the shortcut is taken
        fast = iwae_bound(model, x, 200, generator=torch.Generator().manual_seed(3))
    with torch.enable_grad():  # grad on: the generic decode + log_likelihood path
        plain = iwae_bound(model, x, 200, generator=torch.Generator().manual_seed(3)).detach()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)


def test_chunked_iwae_equals_unchunked_with_the_same_generator():
    model = default_mlp().eval()
    x = batch(16)  # 16 x 20 normals per sample: chunk draws line up with one big draw
    with torch.no_grad():
        whole = iwae_bound(model, x, 120, chunk_size=None, generator=torch.Generator().manual_seed(4))
        for chunk in (5, 7, 64):  # 7 and 64 leave a ragged last chunk
            parts = iwae_bound(model, x, 120, chunk_size=chunk, generator=torch.Generator().manual_seed(4))
            torch.testing.assert_close(parts, whole, rtol=1e-6, atol=1e-4)


def test_evaluate_iwae_batches_equal_one_batch():
    model = default_mlp()
    x = batch(16)
    one = evaluate_iwae(model, x, 50, batch_size=16, seed=9)
    with torch.no_grad():
        ref = iwae_bound(model.eval(), x, 50, generator=torch.Generator().manual_seed(9)).double().mean().item()
    assert one == pytest.approx(ref, abs=1e-4)
