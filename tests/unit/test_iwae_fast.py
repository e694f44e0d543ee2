"""The IWAE fast path (blocked Bernoulli shortcut on single-threaded workers) computes what the
plain path computes: log p(x|z) = log_likelihood(x, decode(z)), and the same bound."""
import threading

import pytest
import torch

from vae_core.engine import workers
from vae_core.engine.config import ModelConfig
from vae_core.engine.evaluate import evaluate_iwae, evaluate_iwae_result
from vae_core.engine.objectives import iwae_bound
from vae_core.engine.vae import VAE

pytestmark = pytest.mark.unit


def mlp(shape=(1, 28, 28), hidden=400, latent=20, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return VAE(ModelConfig(input_shape=shape, body="mlp", hidden=hidden, latent_dim=latent,
                           likelihood="bernoulli")).to(dtype).eval()


def images(n, shape=(1, 28, 28), seed=1, binary=False, dtype=torch.float32):
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x.round() if binary else x


def plain_log_px(model, x, z):
    return model.log_likelihood(x, model.decode(z))


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 5, 7), (1, 4, 5)])
@pytest.mark.parametrize("s,b", [(3, 5), (1, 1), (40, 30), (2500, 2)])
def test_shortcut_equals_decode_then_log_likelihood(shape, s, b):
    # (40, 30): 1,200 rows, more than one block of images; (2500, 2): one image's samples span
    # several blocks; odd pixel counts leave a column over at each halving
    model = mlp(shape, hidden=48, latent=4)
    x = images(b, shape)
    z = 2 * torch.randn(s, b, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast = model.log_likelihood_at(x, z)
        plain = plain_log_px(model, x, z)
    assert fast is not None and fast.shape == plain.shape == (s, b)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)


def test_shortcut_with_saturated_logits_and_in_float64():
    model = mlp(hidden=64, latent=3)
    with torch.no_grad():
        model.dec[2].weight.mul_(200)  # logits in the hundreds: softplus(l) = l, sigmoid(|l|) = 1
    x = images(6, binary=True)
    z = torch.randn(9, 6, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast, plain = model.log_likelihood_at(x, z), plain_log_px(model, x, z)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-2)
    m64 = mlp(hidden=64, latent=3, dtype=torch.float64)
    x64 = images(6, dtype=torch.float64)
    z64 = torch.randn(9, 6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        fast, plain = m64.log_likelihood_at(x64, z64), plain_log_px(m64, x64, z64)
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-9)


def test_iwae_fast_path_equals_the_plain_path_on_a_fixed_batch_and_seed(monkeypatch):
    model = mlp()
    x = images(12)
    with torch.no_grad():
        fast = iwae_bound(model, x, 300, chunk_size=70, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(VAE, "log_likelihood_at", lambda self, x, z: None)  # the plain path
    with torch.no_grad():
        plain = iwae_bound(model, x, 300, chunk_size=70, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)


def test_evaluate_iwae_block_parallel_equals_one_thread_and_the_plain_path(monkeypatch):
    model = mlp(hidden=200, latent=10)
    x = images(30)
    keep = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = evaluate_iwae(model, x, 64, batch_size=16, seed=3)  # block-parallel on 2 workers
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = evaluate_iwae(model, x, 64, batch_size=16, seed=3)  # inline
    finally:
        torch.set_num_threads(keep)
    monkeypatch.setattr(VAE, "log_likelihood_at", lambda self, x, z: None)
    plain = evaluate_iwae(model, x, 64, batch_size=16, seed=3)
    assert two == pytest.approx(one, abs=1e-4)
    assert two == pytest.approx(plain, abs=1e-3)


def test_map_blocks_keeps_order_runs_single_threaded_and_restores_the_thread_count():
    keep = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = workers.map_blocks(lambda i: (i, torch.get_num_threads(), threading.current_thread().name,
                                             torch.is_grad_enabled()), range(8))
        assert [s[0] for s in seen] == list(range(8))
        assert all(s[1] == 1 and s[2].startswith("vae-block") and not s[3] for s in seen)
        assert torch.get_num_threads() == 2
        with workers.block_parallel() as n:
            assert n == 2 and torch.get_num_threads() == 1
            assert all(s[1] == 1 for s in workers.map_blocks(
                lambda i: (i, torch.get_num_threads()), range(4)))
        assert torch.get_num_threads() == 2

        def boom(i):
            if i == 2:
                raise ValueError("block 2")
            return i

        with pytest.raises(ValueError, match="block 2"):
            workers.map_blocks(boom, range(5))
        torch.set_num_threads(1)
        assert workers.map_blocks(lambda i: threading.current_thread() is threading.main_thread(), range(3)) == \
            [threading.current_thread() is threading.main_thread()] * 3  # one thread: inline
    finally:
        torch.set_num_threads(keep)


def test_partial_bound_at_the_deadline_is_the_bound_over_the_images_done():
    model = mlp(hidden=64, latent=4)
    x = images(50)
    ticks = iter(range(10_000))
    clock = lambda: float(next(ticks))  # one second per look at the clock
    # start = 0; batch 1 (20 images): its chunk check at 1 s; batch 2: 2 s spent + 2 s predicted > 3 s
    res = evaluate_iwae_result(model, x, 40, batch_size=20, seed=4, max_seconds=3, clock=clock)
    assert (res.images, res.total, res.stopped, res.partial) == (20, 50, "max_seconds", True)
    assert res.bound == pytest.approx(evaluate_iwae(model, x[:20], 40, batch_size=20, seed=4), abs=1e-6)
    full = evaluate_iwae_result(model, x, 40, batch_size=20, seed=4)
    assert (full.images, full.stopped, full.partial) == (50, None, False)
    assert full.bound == pytest.approx(evaluate_iwae(model, x, 40, batch_size=20, seed=4), abs=1e-9)
