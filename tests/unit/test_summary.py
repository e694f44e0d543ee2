"""Per-snapshot summaries: the worker publishes the test set's codes, per-dim KL and PCA
basis beside each snapshot; readers use them only for the snapshot they belong to."""
import numpy as np
import pytest

from tests.conftest import tiny_config
from vae_core import explore
from vae_core.data import load_dataset
from vae_core.runs import rundir as rd
from vae_core.runs.summary import SUMMARY, read_summary, summarise
from vae_core.runs.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("summary") / "run"
    assert train(tiny_config(epochs=2), run_dir).state == "finished"
    return run_dir


def test_the_worker_publishes_a_summary_for_its_last_snapshot(run):
    snap = rd.load_snapshot(run)
    x_test = load_dataset("digits").x_test
    published = read_summary(run, snap.step)
    assert published is not None and published.mu.shape == (len(x_test), 2)
    here = summarise(snap.model, x_test, snap.step)  # the same numbers, computed in this process
    np.testing.assert_allclose(published.mu, here.mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(published.kl_per_dim, here.kl_per_dim, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.abs(published.pca_components), np.abs(here.pca_components), atol=1e-5)


def test_a_summary_of_another_step_is_not_used(run):
    snap = rd.load_snapshot(run)
    assert read_summary(run, snap.step + 1) is None
    assert read_summary(run.parent / "missing", snap.step) is None


def test_the_explorer_reads_the_published_summary_and_computes_when_there_is_none(run, tmp_path):
    snap = rd.load_snapshot(run)
    x_test = load_dataset("digits").x_test
    view = explore.encoded_test_set(snap, x_test)
    assert view.published
    np.testing.assert_allclose(view.codes.sigma, explore.encode(snap.model, x_test).sigma, rtol=1e-4, atol=1e-5)
    assert list(view.summary.order) == list(explore.latent_summary(snap.model, x_test).order)
    np.testing.assert_allclose(view.pca.transform(view.codes.mu), explore.pca_fit(view.codes.mu).transform(view.codes.mu),
                               atol=1e-4)
    (run / SUMMARY).rename(tmp_path / SUMMARY)  # without the file: computed here, same answer
    try:
        computed = explore.encoded_test_set(snap, x_test)
        assert not computed.published
        np.testing.assert_allclose(computed.codes.mu, view.codes.mu, rtol=1e-5, atol=1e-6)
    finally:
        (tmp_path / SUMMARY).rename(run / SUMMARY)


def test_a_damaged_summary_is_ignored(run, tmp_path):
    snap = rd.load_snapshot(run)
    good = (run / SUMMARY).read_bytes()
    (run / SUMMARY).write_bytes(good[: len(good) // 2])
    try:
        assert read_summary(run, snap.step) is None
        assert not explore.encoded_test_set(snap, load_dataset("digits").x_test).published
    finally:
        (run / SUMMARY).write_bytes(good)


def test_pca_basis_matches_scikit_learn():
    from sklearn.decomposition import PCA

    from vae_core.engine.evaluate import principal_axes

    mu = np.random.default_rng(0).normal(size=(200, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    mean, comps, ratio = principal_axes(mu, k=2)
    ref = PCA(n_components=2, svd_solver="full").fit(mu)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(comps, ref.components_, atol=1e-8)  # same sign convention too
    np.testing.assert_allclose((mu - mean) @ comps.T, ref.transform(mu), atol=1e-8)


def test_a_run_ending_mid_epoch_publishes_a_summary_for_its_last_snapshot(tmp_path):
    # digits: 1,617 training images / 64 = 25 steps an epoch; stopping at step 30 is mid-epoch 2.
    run_dir = tmp_path / "run"
    assert train(tiny_config(epochs=3, max_steps=30), run_dir).state == "finished"
    snap = rd.load_snapshot(run_dir)
    assert snap.step == 30
    summary = read_summary(run_dir, 30)
    assert summary is not None
    np.testing.assert_allclose(summary.mu, summarise(snap.model, load_dataset("digits").x_test, 30).mu,
                               rtol=1e-5, atol=1e-6)


def test_the_epoch_summary_reuses_the_evaluation_codes_exactly():
    from vae_core.engine.config import ModelConfig
    import torch

    from vae_core.engine.evaluate import evaluate_test_set
    from vae_core.engine.objectives import elbo_terms
    from vae_core.engine.vae import VAE
    from vae_core.runs.summary import summary_of_codes

    model = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=3, hidden=16)).eval()
    x = load_dataset("digits").x_test
    ev = evaluate_test_set(model, x, batch_size=100, seed=3)
    # Encoding once for both the ELBO and the codes takes the same draws as elbo_terms alone.
    g = torch.Generator().manual_seed(3)
    terms = [elbo_terms(model, x[i : i + 100], generator=g) for i in range(0, len(x), 100)]
    assert ev.elbo == pytest.approx(float(torch.cat([t.elbo.detach() for t in terms]).double().mean()), abs=1e-6)
    from_codes, encoded = summary_of_codes(ev.mu, ev.logvar, 7), summarise(model, x, 7)
    for name in ("mu", "logvar", "kl_per_dim", "mean_variance", "pca_explained"):
        np.testing.assert_allclose(getattr(from_codes, name), getattr(encoded, name), rtol=1e-5, atol=1e-6)
