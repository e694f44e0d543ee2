"""The training step's fast paths (issue 12) compute what the plain paths compute: the fused
Bernoulli log-likelihood equals the elementwise formula summed, in value and gradient; the model's
loss and gradients equal those of the written-out formula on a fixed batch and seed; LeanAdam takes
the same steps as torch's fused Adam, across a save and load of its state too."""
import pytest
import torch

from vae_core.engine.config import ModelConfig, TrainConfig
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.objectives import (
    bernoulli_log_likelihood,
    bernoulli_log_likelihood_sum,
    elbo_terms,
    training_loss,
)
from vae_core.engine.optim import LeanAdam, make_optimizer
from vae_core.engine.vae import VAE

SHAPE = (1, 28, 28)


def _logits(*shape, scale=8.0, seed=2, dtype=torch.float32):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _x(*shape, binary, seed=1, dtype=torch.float32):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x.round() if binary else x


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("shape", [(16, 784), (3, 16, 784), (4, 75), (2, 5, 1)])  # 75, 1: groups of 1
def test_fused_bernoulli_sum_equals_the_elementwise_formula(binary, shape):
    x = _x(*shape[-2:], binary=binary)  # (B, P), broadcast against (L, B, P) logits
    l_fast = _logits(*shape).requires_grad_()
    l_plain = l_fast.detach().clone().requires_grad_()
    fast = bernoulli_log_likelihood_sum(x, l_fast)
    plain = bernoulli_log_likelihood(x, l_plain).sum(-1)
    assert fast.shape == plain.shape == shape[:-1]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)
    w = torch.rand(fast.shape, generator=torch.Generator().manual_seed(3))  # a non-uniform upstream gradient
    (g_fast,) = torch.autograd.grad((fast * w).sum(), l_fast)
    (g_plain,) = torch.autograd.grad((plain * w).sum(), l_plain)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-5, atol=1e-6)


def test_fused_bernoulli_sum_is_close_to_float64_even_for_extreme_logits():
    x = _x(8, 784, binary=True)
    l = torch.cat([_logits(8, 392, scale=40.0), torch.zeros(8, 392)], -1)  # saturated and flat
    exact = bernoulli_log_likelihood(x.double(), l.double()).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood_sum(x, l).double(), exact, rtol=1e-5, atol=1e-3)
    assert torch.isfinite(bernoulli_log_likelihood_sum(x, l)).all()


def test_x_that_needs_a_gradient_takes_the_plain_formula():
    x = _x(4, 784, binary=False).requires_grad_()
    l = _logits(4, 784)
    (gx,) = torch.autograd.grad(bernoulli_log_likelihood_sum(x, l).sum(), x)
    torch.testing.assert_close(gx, l)  # d/dx (x l - softplus(l)) = l


def _plain_vae_class():
    class PlainLikelihood(VAE):
        """The VAE with log p(x|z) written out elementwise: the plain path."""

        def log_likelihood(self, x, decoded):
            return bernoulli_log_likelihood(x, decoded).flatten(start_dim=-3).sum(-1)

    return PlainLikelihood


@pytest.mark.parametrize("body", ["mlp", "conv"])
@pytest.mark.parametrize("samples, kl", [(1, "analytic"), (3, "monte_carlo")])
def test_training_loss_and_gradients_equal_the_plain_path_on_a_fixed_batch_and_seed(body, samples, kl):
    cfg = ModelConfig(input_shape=SHAPE, body=body, hidden=64, latent_dim=8, conv_channels=4)
    torch.manual_seed(0)
    fast = VAE(cfg)
    plain = _plain_vae_class()(cfg)
    plain.load_state_dict(fast.state_dict())
    x = _x(32, *SHAPE, binary=False)
    tc = TrainConfig(samples=samples, kl_estimator=kl)
    out = []
    for model in (fast, plain):
        torch.manual_seed(7)  # the same reparameterisation noise
        loss, terms = training_loss(model, x, tc)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        out.append((loss, terms, grads))
    (l1, t1, g1), (l2, t2, g2) = out
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(t1.log_likelihood, t2.log_likelihood, rtol=1e-5, atol=1e-3)
    for (name, _), a, b in zip(fast.named_parameters(), g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_the_linear_gaussian_model_goes_through_the_same_objectives_unchanged():
    model = LinearGaussian(x_dim=6, z_dim=2)
    x = model.sample(16)
    torch.manual_seed(3)
    terms = elbo_terms(model, x)
    torch.manual_seed(3)
    post = model.encode(x)
    z = post.mu + post.sigma * torch.randn(1, *post.mu.shape, dtype=post.mu.dtype)
    ll = model.log_likelihood(x, model.decode(z)).mean(0)
    torch.testing.assert_close(terms.log_likelihood, ll)
    loss, _ = training_loss(model, x, TrainConfig())
    loss.backward()
    assert all(p.grad is not None for p in (model.W, model.b, model.A))


def _train(opt_factory, steps=6, save_at=None):
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=SHAPE, hidden=32, latent_dim=4))
    opt = opt_factory(model)
    x = _x(16, *SHAPE, binary=True)
    for step in range(steps):
        if save_at == step:  # a resume: a fresh optimiser loads the saved state
            sd = opt.state_dict()
            opt = opt_factory(model)
            opt.load_state_dict(sd)
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (1 + step) / steps  # the trainer sets the rate every step
        torch.manual_seed(100 + step)
        loss = elbo_terms(model, x).loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("extra", [{}, dict(weight_decay=0.1, amsgrad=True)])
@pytest.mark.parametrize("save_at", [None, 3])
def test_lean_adam_takes_the_same_steps_as_torch_fused_adam(extra, save_at):
    lean, opt = _train(lambda m: LeanAdam(m.parameters(), lr=1e-3, fused=True, **extra), save_at=save_at)
    ref, ref_opt = _train(lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, fused=True, **extra), save_at=save_at)
    for (name, a), b in zip(lean.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), name
    for p, q in zip(lean.parameters(), ref.parameters()):
        for key, value in ref_opt.state[q].items():
            assert torch.equal(opt.state[p][key], value), key


def test_lean_adam_falls_back_to_adam_where_its_shortcut_does_not_apply():
    model = VAE(ModelConfig(input_shape=SHAPE, hidden=16, latent_dim=2))
    opt = LeanAdam(model.parameters(), lr=1e-3, fused=True)
    assert opt._lean_groups() is None or not any(p for _, p, _ in opt._lean_groups())  # no state yet
    elbo_terms(model, _x(4, *SHAPE, binary=True)).loss().backward()
    opt.step()  # the first step creates the state through Adam.step
    assert opt._lean_groups() is not None
    opt.param_groups[0]["lr"] = torch.tensor(1e-3)
    assert opt._lean_groups() is None
    opt.step()  # a tensor learning rate: Adam.step
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_the_trainer_gets_lean_adam_on_the_cpu():
    model = VAE(ModelConfig(input_shape=SHAPE, hidden=16, latent_dim=2))
    assert isinstance(make_optimizer(model, 1e-3), LeanAdam)
