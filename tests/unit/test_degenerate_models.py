"""Degenerate models keep the engine up: a dead encoder (every code the same), a 1-D latent,
and a decoder whose outputs overflow. Every explorer and lab function returns a result of the
right shape, or a ValueError with a sentence, and never crashes the process."""
import numpy as np
import pytest
import torch

from vae_core import explore
from vae_core.engine.config import ModelConfig
from vae_core.engine.evaluate import principal_axes
from vae_core.engine.vae import VAE
from vae_core.labs import disentangle as dis
from vae_core.labs import gradients as lg
from vae_core.labs import marginal as lm

SHAPE = (1, 8, 8)


def zero_model(latent_dim=3, body="mlp") -> VAE:
    """All weights zero: the encoder maps every image to mu = 0, log sigma^2 = 0."""
    model = VAE(ModelConfig(input_shape=SHAPE, latent_dim=latent_dim, hidden=16, body=body, conv_channels=4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model.eval()


def overflowing_model() -> VAE:
    """Finite weights whose decoder logits overflow to +inf in float32."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden=16)).eval()
    with torch.no_grad():
        model.dec[2].weight.fill_(3e38)
        model.dec[2].bias.fill_(3e38)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(0))


def test_tsne_on_identical_codes_shows_pca_and_says_why():
    # scikit-learn's t-SNE segfaults on these (a crash no `except` can catch); if the guard were
    # missing, this test would take the whole pytest process down with it.
    p = explore.project_2d(np.zeros((500, 16), np.float32), "tsne")
    assert p.method == "pca" and "same point" in p.note
    assert np.isfinite(p.xy).all() and p.explained_variance == (0.0, 0.0)


def test_non_finite_codes_are_refused_with_a_sentence():
    mu = np.zeros((10, 4), np.float32)
    mu[3, 1] = np.nan
    for method in ("pca", "tsne", "dims"):
        with pytest.raises(ValueError, match="non-finite"):
            explore.project_2d(mu, method)


def test_principal_axes_of_identical_codes_explain_nothing():
    mean, comps, ratio = principal_axes(np.ones((30, 5)))
    assert np.allclose(mean, 1.0) and comps.shape == (2, 5) and np.all(ratio == 0)


@pytest.mark.parametrize("latent_dim, body", [(1, "mlp"), (2, "mlp"), (3, "mlp"), (3, "conv")])
def test_every_explorer_view_works_on_a_dead_encoder(images, latent_dim, body):
    model = zero_model(latent_dim, body)
    codes = explore.encode(model, images)
    assert np.all(codes.mu == 0) and np.allclose(codes.sigma, 1.0)
    n = len(images)
    assert explore.decode(model, codes.mu).shape == (n, *SHAPE)
    rec = explore.reconstruct(model, images, sample=True)
    assert rec.mean.shape == rec.sampled.shape == (n, *SHAPE) and np.isfinite(rec.per_example_loss).all()
    for method in ("auto", "pca", "tsne", "dims"):
        p = explore.project_2d(codes.mu, method, dims=(0, min(1, latent_dim - 1)))
        assert p.xy.shape == (n, 2) and np.isfinite(p.xy).all()
    summary = explore.latent_summary(model, images)
    assert summary.n_active == 0 and np.allclose(summary.kl_per_dim, 0.0)
    idx, dist = explore.nearest_neighbours(codes.mu, codes.mu[0], 5)
    assert len(idx) == 5 and np.all(dist == 0)
    assert explore.interpolation_strip(model, images[0], images[1], 4, "spherical").shape == (4, *SHAPE)
    assert explore.sample_prior(model, 4, seed=0)[1].shape == (4, *SHAPE)
    if latent_dim >= 2:
        assert explore.manifold_grid(model, n=5)[0].shape == (5, 5, *SHAPE)
    else:
        with pytest.raises(ValueError, match="at least 2 latent dims"):
            explore.manifold_grid(model, n=5)


@pytest.mark.parametrize("latent_dim", [1, 3])
def test_every_lab_runs_on_a_dead_encoder(images, latent_dim):
    model = zero_model(latent_dim)
    study = lg.gradient_study(model, images[:4], ls=(1, 4), repeats=2, reference_samples=16, elbo_repeats=5)
    assert len(study.total_variance["reparam"]) == 2
    m = lm.marginal_study(model, images[:1], k_max=100, repeats=3)
    # A decoder that ignores z makes p(x|z) = p(x): every proposal's estimate is exact at once.
    assert m.final("prior")[0] == pytest.approx(m.final("posterior")[0], abs=1e-4)
    assert np.isfinite(lm.test_set_nll(model, images[:5], k=20).nll)
    many = torch.rand(3000, *SHAPE, generator=torch.Generator().manual_seed(1))
    factors = np.random.default_rng(0).integers(0, 3, size=(len(many), 2))
    report = dis.factor_report(model, many, factors, ("a", "b"), n=len(many), steps=3)
    # Codes that ignore the image carry no information about any factor: MIG is the histogram
    # estimator's small-sample bias alone, about bins * values / (2 N H) ~ 0.01 here.
    assert 0.0 <= report.mig.score < 0.03
    assert report.traversals.shape == (2, 3, *SHAPE)


def test_an_overflowing_decoder_gives_finite_pictures_and_says_its_loss_is_not_finite(images):
    model = overflowing_model()
    rec = explore.reconstruct(model, images[:5])
    assert np.isfinite(rec.mean).all() and rec.mean.min() >= 0 and rec.mean.max() <= 1
    assert not np.isfinite(rec.per_example_loss).all()  # the pages must say so, not plot NaN silently
