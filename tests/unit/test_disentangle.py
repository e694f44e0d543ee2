"""Disentanglement metrics (vae_core.labs.disentangle) on codes whose answer is known by
construction, plus the end-to-end report on a tiny real shapes model."""
import numpy as np
import pytest

from vae_core.labs import disentangle as dis

N = 3000


@pytest.fixture(scope="module")
def factors():
    """Five discrete factors like the shapes set's: 3 shapes, 6 scales, 10 rotations, 12 x, 12 y."""
    rng = np.random.default_rng(0)
    cols = [rng.integers(0, 3, N), rng.integers(0, 6, N) / 5 * 0.5 + 0.5, rng.integers(0, 10, N) * 0.6283,
            rng.integers(0, 12, N) / 11, rng.integers(0, 12, N) / 11]
    return np.stack(cols, axis=1).astype(np.float32)  # (N, 5)


def standardised(f):
    return (f - f.mean(0)) / f.std(0)


@pytest.fixture(scope="module")
def codes(factors):
    rng = np.random.default_rng(1)
    s = standardised(factors)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # a random rotation mixes every factor into every dim
    return {
        # one dim per factor (slightly noisy copies) plus three dims of pure noise
        "disentangled": np.concatenate([s + 0.01 * rng.standard_normal(s.shape), rng.standard_normal((N, 3))], 1),
        "noise": rng.standard_normal((N, 8)),
        # every factor copied into two dims: as informative as can be, but redundant
        "redundant": np.concatenate([s, s + 1e-3 * rng.standard_normal(s.shape)], 1),
        "rotated": np.concatenate([s @ q, rng.standard_normal((N, 3))], 1),
    }


def test_mi_matrix_shape_non_negative_and_exact_for_copies(factors, codes):
    mi = dis.mutual_information_matrix(codes["disentangled"], factors, bins=20)
    assert mi.shape == (8, 5)
    assert (mi >= 0).all()
    # A copied factor keeps all its information: I(z_k; v_k) = H(v_k) (20 bins separate <= 12 values).
    np.testing.assert_allclose(np.diag(mi[:5]), dis.factor_entropies(factors), rtol=1e-6)
    # Independent noise shares almost none (only the histogram estimator's small positive bias).
    assert mi[5:].max() < 0.05


def test_entropy_and_mutual_information_closed_forms():
    v = np.repeat(np.arange(4), 25)  # uniform over 4 values
    assert dis.entropy(v) == pytest.approx(np.log(4))
    assert dis.mutual_information(v, v) == pytest.approx(np.log(4))
    assert dis.mutual_information(v, v % 2) == pytest.approx(np.log(2))  # the parity is half the information
    assert dis.mutual_information(v, np.zeros_like(v)) == 0.0


def test_discretize_keeps_constant_columns_in_one_bin():
    c = np.stack([np.linspace(0, 1, 50), np.full(50, 3.0)], 1)
    b = dis.discretize(c, bins=10)
    assert b[:, 0].min() == 0 and b[:, 0].max() == 9
    assert (b[:, 1] == 0).all()


def test_mig_near_one_for_a_disentangled_code(factors, codes):
    r = dis.mig(codes["disentangled"], factors)
    assert r.score > 0.9
    assert list(r.top) == [0, 1, 2, 3, 4]


def test_mig_near_zero_for_noise(factors, codes):
    assert dis.mig(codes["noise"], factors).score < 0.05


def test_mig_near_zero_for_a_redundant_code(factors, codes):
    r = dis.mig(codes["redundant"], factors)
    assert r.score < 0.05  # the top two dims know each factor equally well: no gap
    assert r.normalized_mi.max() > 0.95  # ... although the code is fully informative


def test_mig_low_for_a_rotated_code(factors, codes):
    assert dis.mig(codes["rotated"], factors).score < 0.3


def test_dci_ranks_codes(factors, codes):
    good = dis.dci(codes["disentangled"], factors)
    assert good.disentanglement > 0.9 and good.completeness > 0.9 and good.informativeness > 0.95
    assert good.importance.shape == (8, 5)
    np.testing.assert_allclose(good.importance.sum(0), 1.0, rtol=1e-6)
    rotated = dis.dci(codes["rotated"], factors)
    noise = dis.dci(codes["noise"], factors)
    assert rotated.disentanglement < 0.4
    assert noise.disentanglement < 0.2
    assert noise.informativeness < 0.4  # chance-level accuracy (1/12 to 1/3 per factor)
    assert good.disentanglement > rotated.disentanglement + 0.5


def test_factor_report_on_a_tiny_shapes_model(tmp_path):
    from vae_core.data import load_dataset
    from vae_core.runs import rundir as rd
    from vae_core.runs.manager import new_run_config
    from vae_core.runs.trainer import train

    cfg = new_run_config("shapes", model={"latent_dim": 4, "hidden": 64},
                         train={"epochs": 1, "max_steps": 30, "num_threads": 1, "beta": 4.0})
    assert train(cfg, tmp_path / "s").state == "finished"
    snap = rd.load_snapshot(tmp_path / "s")
    data = load_dataset("shapes")
    r = dis.factor_report(snap.model, data.x_train, data.factors_train.numpy(), data.factor_names, n=2000)
    assert r.factor_names == ("shape", "scale", "rotation", "x", "y")
    assert r.mig.normalized_mi.shape == (4, 5)
    assert 0.0 <= r.mig.score <= 1.0 and 0.0 <= r.dci.disentanglement <= 1.0
    assert r.traversals.shape == (5, 9, 1, 32, 32)
    assert np.isfinite(r.traversals).all()
