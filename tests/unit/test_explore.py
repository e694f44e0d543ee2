"""Explorer functions (vae_core.explore): shapes, ranges, reproducibility and the geometry of each view."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vae_core import explore as ex
from vae_core.engine.config import ModelConfig
from vae_core.engine.evaluate import posterior_stats
from vae_core.engine.vae import VAE


def make_model(shape=(1, 8, 8), body="mlp", latent_dim=2, likelihood="bernoulli", seed=0) -> VAE:
    torch.manual_seed(seed)
    cfg = ModelConfig(input_shape=shape, body=body, latent_dim=latent_dim, hidden=16, conv_channels=4, likelihood=likelihood)
    return VAE(cfg).eval()


def make_data(shape=(1, 8, 8), n=20, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


MODELS = [
    pytest.param(((1, 8, 8), "mlp", 2), id="mlp-2d"),
    pytest.param(((1, 8, 8), "mlp", 3), id="mlp-3d"),
    pytest.param(((1, 28, 28), "conv", 2), id="conv-28"),
    pytest.param(((3, 32, 32), "conv", 3), id="conv-rgb"),
]


@pytest.fixture(params=MODELS)
def setup(request):
    shape, body, d = request.param
    return make_model(shape, body, d), make_data(shape, n=10), shape, d


def in_unit(a: np.ndarray) -> bool:
    return a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0


# --- encode / decode / reconstruct ---------------------------------------------------------
def test_encode_decode_shapes(setup):
    model, x, shape, d = setup
    codes = ex.encode(model, x, batch_size=7)  # batching across uneven chunks
    assert codes.mu.shape == codes.sigma.shape == (len(x), d)
    assert (codes.sigma > 0).all()
    full = ex.encode(model, x)
    np.testing.assert_allclose(codes.mu, full.mu, atol=1e-5)
    imgs = ex.decode(model, codes.mu)
    assert imgs.shape == (len(x), *shape) and in_unit(imgs)
    assert ex.decode(model, torch.as_tensor(codes.mu[0])).shape == (1, *shape)  # one code, as a tensor


def test_encode_accepts_numpy_and_single_image():
    model, x = make_model(), make_data()
    a = ex.encode(model, x.numpy()).mu
    b = ex.encode(model, x[0]).mu
    assert b.shape == (1, 2)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_reconstruct(setup):
    model, x, shape, _ = setup
    r = ex.reconstruct(model, x, sample=True, seed=3)
    assert r.mean.shape == r.sampled.shape == (len(x), *shape)
    assert in_unit(r.mean) and in_unit(r.sampled)
    assert r.per_example_loss.shape == r.log_likelihood.shape == r.kl.shape == (len(x),)
    np.testing.assert_allclose(r.per_example_loss, -(r.log_likelihood - r.kl), rtol=1e-6)
    assert (r.kl >= 0).all()
    assert ex.reconstruct(model, x).sampled is None
    again = ex.reconstruct(model, x, sample=True, seed=3)
    np.testing.assert_array_equal(r.per_example_loss, again.per_example_loss)
    np.testing.assert_array_equal(r.sampled, again.sampled)


def test_reconstruct_matches_elbo_terms_and_gaussian_decoder():
    from vae_core.engine.objectives import elbo_terms

    model, x = make_model(likelihood="gaussian_fixed"), make_data()
    r = ex.reconstruct(model, x, seed=5)
    with torch.no_grad():
        t = elbo_terms(model, x, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(r.log_likelihood, t.log_likelihood.numpy(), rtol=1e-5)
    np.testing.assert_allclose(r.kl, t.kl.numpy(), rtol=1e-5)
    assert in_unit(ex.reconstruct(model, x, sample=True).sampled)


def test_best_and_worst():
    model, x = make_model(), make_data(n=30)
    best, worst = ex.best_and_worst(model, x, n=5)
    loss = ex.reconstruct(model, x).per_example_loss
    assert len(best) == len(worst) == 5
    assert loss[best[0]] == loss.min() and loss[worst[0]] == loss.max()
    assert (np.diff(loss[best]) >= 0).all() and (np.diff(loss[worst]) <= 0).all()
    assert len(ex.best_and_worst(model, x[:3], n=8)[0]) == 3


# --- prior samples ----------------------------------------------------------------------------
def test_sample_prior(setup):
    model, _, shape, d = setup
    z, imgs = ex.sample_prior(model, 6, seed=1)
    assert z.shape == (6, d) and imgs.shape == (6, *shape) and in_unit(imgs)
    z2, imgs2 = ex.sample_prior(model, 6, seed=1)
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_array_equal(imgs, imgs2)
    z3, _ = ex.sample_prior(model, 6, seed=2)
    assert not np.allclose(z, z3)


def test_sample_prior_temperature():
    model = make_model()
    z, imgs = ex.sample_prior(model, 5, seed=0, temperature=0.0)
    assert (z == 0).all()
    assert np.allclose(imgs, imgs[0])
    z_half, _ = ex.sample_prior(model, 5, seed=0, temperature=0.5)
    z_one, _ = ex.sample_prior(model, 5, seed=0)
    np.testing.assert_allclose(z_half, 0.5 * z_one, rtol=1e-6)


# --- traversals -------------------------------------------------------------------------------
def test_traversal_codes_vary_only_their_dim():
    base = np.array([0.5, -1.0, 2.0], np.float32)
    values = np.linspace(-3, 3, 7)
    codes = ex.traversal_codes(base, [2, 0], values)
    assert codes.shape == (2, 7, 3)
    for r, d in enumerate([2, 0]):
        np.testing.assert_allclose(codes[r, :, d], values)
        others = [k for k in range(3) if k != d]
        np.testing.assert_array_equal(codes[r][:, others], np.broadcast_to(base[others], (7, 2)))
    rel = ex.traversal_codes(base, [1], values, relative=True)
    np.testing.assert_allclose(rel[0, :, 1], values + base[1])
    with pytest.raises(ValueError):
        ex.traversal_codes(base, [3], values)


def test_traversal_grid_and_traverse_one(setup):
    model, _, shape, d = setup
    base = np.linspace(-1, 1, d).astype(np.float32)
    values = np.linspace(-2, 2, 5)
    grid = ex.traversal_grid(model, base, [0, d - 1], values)
    assert grid.shape == (2, 5, *shape) and in_unit(grid)
    one = ex.traverse_one(model, base, d - 1, values[3])
    assert one.shape == shape
    np.testing.assert_allclose(one, grid[1, 3], atol=1e-5)
    rel = ex.traverse_one(model, base, 0, 0.0, relative=True)
    np.testing.assert_allclose(rel, ex.decode(model, base[None])[0], atol=1e-5)
    # the base code is not modified in place
    assert np.array_equal(base, np.linspace(-1, 1, d).astype(np.float32))


# --- interpolation ----------------------------------------------------------------------------
def test_interpolate_linear():
    z0, z1 = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.0, 5.0])
    path = ex.interpolate(z0, z1, 5, "linear")
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[0], z0)
    np.testing.assert_allclose(path[-1], z1)
    np.testing.assert_allclose(path[2], (z0 + z1) / 2)


def test_interpolate_spherical():
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=8), rng.normal(size=8)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)  # equal norms
    path = ex.interpolate(z0, z1, 9, "spherical")
    np.testing.assert_allclose(path[0], z0, atol=1e-5)
    np.testing.assert_allclose(path[-1], z1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(z0), rtol=1e-5)
    # the linear midpoint of two equal-norm codes is shorter; slerp's is not
    assert np.linalg.norm(ex.interpolate(z0, z1, 9, "linear")[4]) < np.linalg.norm(path[4])
    # unequal norms: the standard formula still hits both endpoints
    far = ex.interpolate(z0, 3 * z1, 9, "spherical")
    np.testing.assert_allclose(far[[0, -1]], np.stack([z0, 3 * z1]), atol=1e-5)


def test_interpolate_spherical_falls_back_when_parallel():
    z0 = np.array([1.0, 2.0])
    np.testing.assert_allclose(ex.interpolate(z0, 2 * z0, 3, "spherical"), ex.interpolate(z0, 2 * z0, 3, "linear"))
    np.testing.assert_allclose(ex.interpolate(np.zeros(2), z0, 3, "spherical")[1], z0 / 2)
    assert np.isfinite(ex.interpolate(z0, -z0, 5, "spherical")).all()
    with pytest.raises(ValueError):
        ex.interpolate(z0, z0, 3, "cubic")


def test_interpolation_strip(setup):
    model, x, shape, _ = setup
    strip = ex.interpolation_strip(model, x[0], x[1], steps=6, method="spherical")
    assert strip.shape == (6, *shape) and in_unit(strip)
    recon = ex.reconstruct(model, x[:2]).mean
    np.testing.assert_allclose(strip[0], recon[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], recon[1], atol=1e-5)


# --- manifold --------------------------------------------------------------------------------
def test_manifold_values_symmetric_monotone():
    v = ex.manifold_values(15)
    assert v.shape == (15,)
    assert (np.diff(v) > 0).all()
    np.testing.assert_allclose(v, -v[::-1], atol=1e-6)
    assert abs(v[7]) < 1e-6 and np.isfinite(v).all()


def test_manifold_codes_layout():
    base = np.array([0.0, 0.0, 1.5], np.float32)
    codes, v = ex.manifold_codes(3, n=5, dims=(0, 1), base_z=base)
    assert codes.shape == (5, 5, 3)
    np.testing.assert_allclose(codes[0, :, 0], v)  # x grows to the right
    np.testing.assert_allclose(codes[:, 0, 1], v[::-1])  # row 0 is the top: highest y
    assert (codes[..., 2] == 1.5).all()
    zero, _ = ex.manifold_codes(2, n=3)
    assert zero.shape == (3, 3, 2)
    with pytest.raises(ValueError):
        ex.manifold_codes(1, n=3)
    with pytest.raises(ValueError):
        ex.manifold_codes(3, dims=(1, 1))


def test_manifold_grid(setup):
    model, _, shape, d = setup
    grid, v = ex.manifold_grid(model, n=4, dims=(0, d - 1))
    assert grid.shape == (4, 4, *shape) and v.shape == (4,) and in_unit(grid)
    z = np.zeros(d, np.float32)
    z[0], z[d - 1] = v[0], v[-1]  # top-left cell: lowest x, highest y
    np.testing.assert_allclose(grid[0, 0], ex.decode(model, z[None])[0], atol=1e-5)


# --- display grids ---------------------------------------------------------------------------
def test_tile_grey_and_rgb_dims():
    grey = np.random.default_rng(0).random((2, 3, 1, 8, 8), dtype=np.float32)
    t = ex.tile(grey, pad=2, scale=3)
    assert t.dtype == np.uint8 and t.shape == (2 * (8 * 3 + 2) + 2, 3 * (8 * 3 + 2) + 2)
    assert t[0, 0] == 255  # pad_value 1.0 frames the grid
    np.testing.assert_array_equal(t[2 : 2 + 24 : 3, 2 : 2 + 24 : 3], np.round(grey[0, 0, 0] * 255).astype(np.uint8))

    rgb = np.zeros((5, 3, 4, 6), np.float32)
    t = ex.tile(rgb, ncols=2, pad=1, pad_value=0.0, scale=2)  # 3 rows, last one half empty
    assert t.shape == (3 * (4 * 2 + 1) + 1, 2 * (6 * 2 + 1) + 1, 3)
    assert t.max() == 0
    t = ex.tile(np.zeros((5, 1, 4, 4), np.float32))  # default ncols = ceil(sqrt(5)) = 3
    assert t.shape == (2 * 5 + 1, 3 * 5 + 1)
    with pytest.raises(ValueError):
        ex.tile(np.zeros((4, 4)))


def test_tile_model_outputs(setup):
    model, _, shape, _ = setup
    grid, _ = ex.manifold_grid(model, n=3)
    t = ex.tile(grid, pad=1, scale=2)
    c, h, w = shape
    expected = (3 * (h * 2 + 1) + 1, 3 * (w * 2 + 1) + 1)
    assert t.shape == (expected if c == 1 else (*expected, 3))


def test_upscale():
    img = np.array([[[0.0, 1.0], [0.5, 0.25]]], np.float32)  # (1, 2, 2)
    u = ex.upscale(img, 3)
    assert u.shape == (6, 6) and u.dtype == np.uint8
    assert u[0, 0] == 0 and u[2, 3] == 255 and u[5, 0] == 128
    assert ex.upscale(np.ones((3, 2, 5), np.float32), 2).shape == (4, 10, 3)
    assert ex.upscale(np.full((1, 2, 2), 2.0, np.float32)).max() == 255  # clipped


# --- projections -----------------------------------------------------------------------------
def test_project_identity_for_2d():
    mu = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    for method in ("auto", "identity"):
        p = ex.project_2d(mu, method)
        assert p.method == "identity" and p.explained_variance is None
        np.testing.assert_array_equal(p.xy, mu)
    with pytest.raises(ValueError):
        ex.project_2d(np.zeros((5, 3)), "identity")


def test_project_1d_strip():
    mu = np.arange(6, dtype=np.float32)[:, None]
    p = ex.project_2d(mu, "pca")
    assert p.method == "strip" and p.note
    np.testing.assert_array_equal(p.xy[:, 0], mu[:, 0])
    assert (p.xy[:, 1] == 0).all()


def test_project_dims():
    mu = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    p = ex.project_2d(mu, "dims", dims=(3, 1))
    np.testing.assert_array_equal(p.xy, mu[:, [3, 1]])
    assert p.dims == (3, 1)


def test_pca_line_and_new_points():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=5)
    mu = rng.normal(size=(50, 1)) * direction + 0.5  # on a line in 5-D
    p = ex.project_2d(mu, "pca")
    assert p.method == "pca" and p.xy.shape == (50, 2)
    assert p.explained_variance[0] == pytest.approx(1.0, abs=1e-6)
    axes = ex.pca_fit(mu)
    np.testing.assert_allclose(axes.transform(mu), p.xy, atol=1e-5)
    assert axes.transform(mu[0]).shape == (1, 2)
    # a tiny data set still gives (M, 2)
    assert ex.pca_fit(mu[:1]).transform(mu[:3]).shape == (3, 2)


def test_tsne_seeded_and_placement():
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.normal(size=(25, 4)), rng.normal(size=(25, 4)) + 8]).astype(np.float32)
    calls = []
    a = ex.project_2d(mu, "tsne", seed=3, progress=lambda d, t: calls.append((d, t)))
    b = ex.project_2d(mu, "tsne", seed=3)
    assert a.method == "tsne" and a.xy.shape == (50, 2)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert calls[0] == (0, 1) and calls[-1] == (1, 1)
    # a training code lands on its own position; a code near cluster 2 lands among cluster 2
    placed = ex.place_new_points_tsne(mu, a.xy, np.stack([mu[4], mu[30] + 0.01]), k=5)
    assert placed.shape == (2, 2)
    np.testing.assert_allclose(placed[0], a.xy[4], atol=1e-5)
    c2 = a.xy[25:]
    assert c2.min(0)[0] <= placed[1, 0] <= c2.max(0)[0] and c2.min(0)[1] <= placed[1, 1] <= c2.max(0)[1]
    assert ex.project_2d(mu[:3], "tsne").method == "pca"  # too few points: falls back, says so


# --- statistics and neighbours -----------------------------------------------------------------
def test_latent_summary_matches_posterior_stats():
    model, x = make_model(latent_dim=3), make_data(n=40)
    s = ex.latent_summary(model, x)
    ref = posterior_stats(model, x)
    np.testing.assert_allclose(s.kl_per_dim, ref["kl_per_dim"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.mean_variance, ref["mean_variance"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(s.active, ref["active"].numpy())
    assert s.active.dtype == bool and s.n_active == int(ref["active"].sum())
    assert sorted(s.order.tolist()) == [0, 1, 2]
    assert (np.diff(s.kl_per_dim[s.order]) <= 0).all()


def test_nearest_neighbours():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(100, 3)).astype(np.float32)
    idx, dist = ex.nearest_neighbours(mu, mu[17], k=8)
    assert idx.shape == dist.shape == (8,)
    assert idx[0] == 17 and dist[0] == 0.0
    assert (np.diff(dist) >= 0).all()
    brute = np.sort(np.linalg.norm(mu - mu[17], axis=1))[:8]
    np.testing.assert_allclose(dist, brute, rtol=1e-6)
    idx, _ = ex.nearest_neighbours(mu[:3], mu[0], k=8)
    assert len(idx) == 3


def test_sigma_ellipses():
    codes = ex.Codes(mu=np.array([[1.0, -2.0], [0.0, 0.0]]), sigma=np.array([[0.5, 0.25], [1.0, 1.0]]))
    out = ex.sigma_ellipses(codes, [0, 1], n_std=2.0, points=40)
    assert len(out) == 2
    xs, ys = out[0]
    assert xs.shape == ys.shape == (40,)
    np.testing.assert_allclose(((xs - 1.0) / 1.0) ** 2 + ((ys + 2.0) / 0.5) ** 2, 1.0)  # half-axes 2*sigma
    np.testing.assert_allclose([xs[0], ys[0]], [xs[-1], ys[-1]])  # closed
    assert len(ex.sigma_ellipses(codes, 1)) == 1


# --- whole sets a batch at a time (issue 11) ----------------------------------------------------
def _image_set(n=2500, shape=(1, 8, 8), seed=2, memmap_dir=None):
    """An ImageSet of n random uint8 images; memory-mapped from a .npy file when memmap_dir is given."""
    from vae_core.data.imageset import ImageSet

    u8 = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    if memmap_dir is not None:
        path = memmap_dir / "x.npy"
        np.save(path, u8)
        u8 = np.load(path, mmap_mode="r")
    return ImageSet(u8)


class _RowRecorder:
    """Wraps ImageSet.to_float: the rows of every float batch read from an ImageSet."""

    def __init__(self, monkeypatch):
        from vae_core.data.imageset import ImageSet

        self.rows: list[int] = []
        original = ImageSet.to_float

        def to_float(this, u8, device=None):
            out = original(this, u8, device)
            self.rows.append(1 if out.dim() == 3 else len(out))
            return out

        monkeypatch.setattr(ImageSet, "to_float", to_float)


def test_score_examples_equals_reconstruct_without_images(monkeypatch):
    model, x = make_model(latent_dim=3), _image_set(n=2500)
    rec = ex.reconstruct(model, x, seed=4)
    seen = []
    rows = _RowRecorder(monkeypatch)
    s = ex.score_examples(model, x, seed=4, progress=lambda done, total: seen.append((done, total)))
    assert len(s) == len(x)
    np.testing.assert_array_equal(s.per_example_loss, rec.per_example_loss)
    np.testing.assert_array_equal(s.log_likelihood, rec.log_likelihood)
    np.testing.assert_array_equal(s.kl, rec.kl)
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    assert max(rows.rows) == ex.BATCH  # a batch at a time
    # A float tensor and a single image score the same way.
    t = x[:30]
    np.testing.assert_array_equal(ex.score_examples(model, t, seed=1).per_example_loss,
                                  ex.reconstruct(model, t, seed=1).per_example_loss)
    assert len(ex.score_examples(model, t[0])) == 1


def test_worst_and_best_reads_only_the_chosen_rows(monkeypatch):
    model, x = make_model(latent_dim=3), _image_set(n=2500)
    full = ex.reconstruct(model, x, seed=0)  # the old way: every reconstruction kept
    rows = _RowRecorder(monkeypatch)
    ids, rec = ex.worst_and_best(model, x, n=8, seed=0)
    best, worst = ex.rank_by_loss(full.per_example_loss, 8)
    np.testing.assert_array_equal(ids, np.concatenate([worst, best]))
    np.testing.assert_array_equal(rec.per_example_loss, full.per_example_loss[ids])
    np.testing.assert_array_equal(rec.kl, full.kl[ids])
    np.testing.assert_allclose(rec.mean, full.mean[ids], atol=1e-6)  # decoder means at mu: no randomness
    assert rec.sampled is None and rec.mean.shape == (16, 1, 8, 8)
    assert max(rows.rows) <= ex.BATCH and rows.rows[-1] == 16  # scoring batches, then the 16 chosen rows
    # best_and_worst (kept) gives the same ranking without keeping images
    b, w = ex.best_and_worst(model, x, n=8)
    np.testing.assert_array_equal(b, best)
    np.testing.assert_array_equal(w, worst)
    # fewer examples than asked for, and a tensor input
    ids, rec = ex.worst_and_best(model, x[:3], n=8)
    assert sorted(ids[:3].tolist()) == [0, 1, 2] and len(rec.mean) == 6


def test_posterior_means_over_a_memory_mapped_set(monkeypatch, tmp_path):
    model, x = make_model(latent_dim=3), _image_set(n=2300, memmap_dir=tmp_path)
    assert x.memory_mapped
    rows = _RowRecorder(monkeypatch)
    seen = []
    mu = ex.posterior_means(model, x, batch_size=512, progress=lambda d, t: seen.append((d, t)))
    assert mu.shape == (2300, 3) and mu.dtype == np.float32
    assert max(rows.rows) == 512 and seen[-1] == (2300, 2300) and len(seen) == 5
    np.testing.assert_allclose(mu, ex.encode(model, x).mu, atol=1e-6)
    assert ex.posterior_means(model, x.subset(np.arange(0)), progress=lambda d, t: None).shape == (0, 3)


def _brute_force(mu, z, k):
    """All distances at once, sorted by (distance, index): the answer the chunked search must give."""
    dist = np.sqrt(((np.asarray(mu, np.float64) - np.asarray(z, np.float64)) ** 2).sum(1))
    order = np.lexsort((np.arange(len(dist)), dist))[:k]
    return order, dist[order]


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, None])
def test_nearest_neighbours_equals_brute_force(chunk_rows):
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(500, 4)).astype(np.float32)
    for q, k in ((mu[17], 8), (rng.normal(size=4), 5), (mu[3], 1), (mu[0], 500), (mu[0], 900)):
        idx, dist = ex.nearest_neighbours(mu, q, k, chunk_rows=chunk_rows)
        ref_i, ref_d = _brute_force(mu, q, k)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_array_equal(dist, ref_d)
        assert idx.dtype == np.int64


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 16, None])
def test_nearest_neighbours_ties_go_to_the_lower_index(chunk_rows):
    # Many codes at exactly the same distances, across chunk boundaries: the lowest indices win.
    base = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [2.0, 0.0]], np.float32)
    mu = np.concatenate([base[[5, 1, 2, 0, 3, 4, 0, 1, 5, 2]] for _ in range(4)])  # (40, 2)
    for k in (1, 3, 6, 9, 17, 40):
        idx, dist = ex.nearest_neighbours(mu, [0.0, 0.0], k, chunk_rows=chunk_rows)
        ref_i, ref_d = _brute_force(mu, [0.0, 0.0], k)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_array_equal(dist, ref_d)
    # a collapsed encoder: every code the same, so every distance ties
    same = np.ones((1000, 3), np.float32)
    idx, dist = ex.nearest_neighbours(same, np.zeros(3), 8, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(idx, np.arange(8))
    assert (dist == np.sqrt(3.0)).all()


def test_nearest_neighbours_matches_brute_force_at_the_edges():
    rng = np.random.default_rng(4)
    mu = rng.normal(size=(300, 3)).astype(np.float32)
    for a, b in zip(ex.nearest_neighbours(mu, mu[9], 6), _brute_force(mu, mu[9], 6)):
        np.testing.assert_array_equal(a, b)
    assert ex.nearest_neighbours(mu, mu[0], 0)[0].shape == (0,)
    assert ex.nearest_neighbours(mu[:0], mu[0], 5)[0].shape == (0,)
    idx, _ = ex.nearest_neighbours(torch.as_tensor(mu), mu[1], 2)  # a tensor of codes
    assert idx[0] == 1
    with_nan = mu.copy()
    with_nan[:290] = np.nan  # NaN distances sort last, as in the brute force
    np.testing.assert_array_equal(ex.nearest_neighbours(with_nan, mu[295], 12, chunk_rows=7)[0],
                                  _brute_force(with_nan, mu[295], 12)[0])
    with pytest.raises(ValueError, match="dims"):
        ex.nearest_neighbours(mu, np.zeros(4), 3)


def test_nearest_neighbours_memory_stays_a_few_mb_whatever_n():
    import tracemalloc

    mu = np.random.default_rng(5).normal(size=(400_000, 16)).astype(np.float32)  # 25.6 MB of codes
    tracemalloc.start()
    try:
        idx, dist = ex.nearest_neighbours(mu, mu[123_456], 8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert idx[0] == 123_456 and dist[0] == 0.0
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"  # all distances at once in float64 took ~100 MB


# --- the explorer pages on large sets (issue 12) -------------------------------------------------
def test_encoded_test_set_without_a_summary_reads_a_memory_mapped_set_a_batch_at_a_time(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from vae_core.runs.summary import summarise

    model, x = make_model(latent_dim=3), _image_set(n=2300, memmap_dir=tmp_path)
    snap = SimpleNamespace(run_dir=tmp_path / "no-run", step=7, model=model)  # no summary.safetensors there
    rows = _RowRecorder(monkeypatch)
    seen = []
    ets = ex.encoded_test_set(snap, x, progress=lambda d, t: seen.append((d, t)), batch_size=500)
    assert not ets.published
    assert ets.codes.mu.shape == (2300, 3) and ets.codes.sigma.shape == (2300, 3)
    assert max(rows.rows) == 500 and sum(rows.rows) == 2300  # never the whole set as floats
    assert seen == [(500, 2300), (1000, 2300), (1500, 2300), (2000, 2300), (2300, 2300)]
    ref = summarise(model, x[:], 7)  # the old way, on 2,300 tiny images
    np.testing.assert_allclose(ets.codes.mu, ref.mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ets.codes.sigma, np.exp(0.5 * ref.logvar), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ets.summary.kl_per_dim, ref.kl_per_dim, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.abs(ets.pca.components), np.abs(ref.pca_components), atol=1e-5)


def test_tsne_is_fitted_on_a_spread_sample_of_many_codes(monkeypatch):
    from vae_core.explore import projection

    fitted = []
    real = projection._tsne

    def recording(mu, seed):
        fitted.append(len(mu))
        return real(mu, seed)

    monkeypatch.setattr(projection, "_tsne", recording)
    monkeypatch.setattr(projection, "TSNE_MAX_POINTS", 60)
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 8]).astype(np.float32)
    p = ex.project_2d(mu, "tsne", seed=0)
    assert fitted == [60]  # the other 140 codes are placed, not fitted
    assert p.method == "tsne" and p.xy.shape == (200, 2) and np.isfinite(p.xy).all()
    assert "60" in p.note and "140" in p.note
    # placed codes land among their own cluster's fitted points
    fit = projection.spread_indices(200, 60)
    c1, c2 = p.xy[fit[fit < 100]], p.xy[fit[fit >= 100]]
    for i in (1, 150):
        own = c1 if i < 100 else c2
        assert own.min(0)[0] - 1e-3 <= p.xy[i, 0] <= own.max(0)[0] + 1e-3
    fitted.clear()
    small = ex.project_2d(mu[:50], "tsne", seed=0)
    assert fitted == [50] and small.note == ""


def test_spread_indices_are_even_sorted_and_capped():
    from vae_core.explore.projection import spread_indices

    ids = spread_indices(200_000, 5000)
    assert len(ids) == 5000 and ids[0] == 0 and ids[-1] == 199_999 and (np.diff(ids) > 0).all()
    assert np.diff(ids).max() - np.diff(ids).min() <= 1
    assert list(spread_indices(3, 10)) == [0, 1, 2] and len(spread_indices(0, 10)) == 0


def test_the_run_form_offers_all_gpus_only_with_more_than_one():
    from pages._ui.run_panel import device_choices

    for n in (0, 1):
        assert list(device_choices(n)) == ["auto", "cpu", "cuda", "mps"]
        assert all(v == {"device": k} for k, v in device_choices(n).items())
    four = device_choices(4)
    assert list(four)[-1] == "all 4 GPUs" and four["all 4 GPUs"] == {"device": "cuda", "nproc": 4}
    assert four["cuda"] == {"device": "cuda"}  # one GPU stays one process
    from vae_core.engine.config import TrainConfig

    assert TrainConfig(**four["all 4 GPUs"]).nproc == 4
