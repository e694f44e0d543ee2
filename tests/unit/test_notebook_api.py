"""The notebook API in Jupyter: images that show themselves (``notebook.Images``), a run's
HTML card, the latent-space figure, and the README's "From a notebook" example run as written."""
import ast
import dataclasses
import io
import pickle

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

import vae_core as ve
from tests.conftest import ROOT, tiny_config
from vae_core import explore
from vae_core.notebook import Images, display_scale
from vae_core.runs import rundir as rd

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny real run: digits 8x8, z = 3, three quick epochs (a second or two on the CPU)."""
    from vae_core.runs.trainer import train

    cfg = tiny_config("digits")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, latent_dim=3))
    d = tmp_path_factory.mktemp("nb-runs") / "digits-z3"
    status = train(cfg, d)
    assert status.state == "finished", status.error
    return d


@pytest.fixture(scope="module")
def run(run_dir):
    return ve.open_run(run_dir)


def decode_png(data: bytes) -> Image.Image:
    assert isinstance(data, bytes) and data.startswith(PNG_MAGIC)
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --- (1) the README example ----------------------------------------------------------------------
def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From a notebook"):]
    section = section[: section.index("\n## ", 1)]  # this section only
    code = section[section.index("```python") + len("```python"):]
    return code[: code.index("```")]


def test_the_readme_notebook_example_runs_and_shows_inline(run_dir):
    code = readme_example()
    assert code.count('"runs/my-run"') == 1  # the example opens the run by path; the test points it here
    code = code.replace('"runs/my-run"', repr(str(run_dir)))
    tree = ast.parse(code)
    # A notebook cell shows its last expression: keep its value, as Jupyter would.
    assert isinstance(tree.body[-1], ast.Expr), "the example should end in something that shows inline"
    tree.body[-1] = ast.Assign(targets=[ast.Name("_shown", ast.Store())], value=tree.body[-1].value)
    ns: dict = {}
    exec(compile(ast.fix_missing_locations(tree), "README.md", "exec"), ns)

    n_test = len(ns["data"].x_test)
    assert ns["codes"].mu.shape == ns["codes"].sigma.shape == (8, 3)
    for name, shape in (("images", (8, 1, 8, 8)), ("samples", (16, 1, 8, 8)), ("frames", (7, 1, 8, 8))):
        value = ns[name]
        assert isinstance(value, Images) and value.shape == shape, name
        assert decode_png(value._repr_png_()).size[0] > 8, name  # shows as a picture, upscaled
    fig = ns["_shown"]
    assert isinstance(fig, go.Figure)
    assert sum(len(t.x) for t in fig.data) == n_test  # every test image of the small digits set
    assert fig.layout.xaxis.title.text.startswith("PC1")  # z = 3: the PCA view


# --- (2) _repr_png_ -----------------------------------------------------------------------------
def test_repr_png_is_a_tiled_grid_of_the_expected_size():
    # 5 grey 8x8 images: 3 columns x 2 rows, each upscaled x6 to 48 px, 1 px of padding around cells
    assert display_scale(8, 8) == 6 and display_scale(28, 28) == 2 and display_scale(64, 64) == 1
    x = np.zeros((5, 1, 8, 8), np.float32)
    x[4] = 1.0
    img = decode_png(Images(x)._repr_png_())
    assert img.mode == "L" and img.size == (3 * 49 + 1, 2 * 49 + 1)
    px = np.asarray(img)
    assert px[1, 1] == 0 and px[48, 48] == 0  # inside the first (black) image
    assert px[0, 0] == 255 and px[49, 10] == 255  # the white padding between cells
    assert px[50, 50] == 255  # the fifth image (white), second row, second column
    np.testing.assert_array_equal(px, explore.tile(x, scale=6))  # exactly explore.tile's picture

    rgb = np.random.default_rng(0).uniform(size=(2, 3, 28, 28)).astype(np.float32)
    img = decode_png(Images(rgb)._repr_png_())
    assert img.mode == "RGB" and img.size == (2 * 57 + 1, 1 * 57 + 1)

    grid = Images(np.full((2, 7, 1, 8, 8), 0.5, np.float32))  # a traversal of 2 dims keeps its rows
    assert decode_png(grid._repr_png_()).size == (7 * 49 + 1, 2 * 49 + 1)
    one = Images(x)[0]  # one (C, H, W) image shows alone
    assert decode_png(one._repr_png_()).size == (50, 50)
    assert Images(np.zeros((0, 1, 8, 8)))._repr_png_() is None  # nothing to show: the text repr


def test_what_the_run_returns_shows_as_pictures(run):
    x = run.dataset().x_test[:5]
    codes = run.encode(x)
    assert isinstance(codes, explore.Codes) and codes.mu.shape == codes.sigma.shape == (5, 3)
    assert type(codes.mu) is np.ndarray and (codes.sigma > 0).all()
    table = codes._repr_html_()
    assert "<table" in table and "z2" in table and f"{codes.mu[0, 0]:+.2f}" in table
    images = run.decode(codes.mu)
    assert isinstance(images, Images)
    assert decode_png(images._repr_png_()).size == (3 * 49 + 1, 2 * 49 + 1)
    rec = run.reconstruct(x)
    assert isinstance(rec.mean, Images) and rec.sampled is None
    np.testing.assert_allclose(rec.mean, images, atol=1e-6)
    z, samples = run.sample(4, seed=1)
    assert type(z) is np.ndarray and isinstance(samples, Images) and samples.shape == (4, 1, 8, 8)
    frames = run.traverse(dim=[0, 2], values=[-1, 0, 1])
    assert isinstance(frames, Images) and frames.shape == (2, 3, 1, 8, 8)
    assert decode_png(frames._repr_png_()).size == (3 * 49 + 1, 2 * 49 + 1)
    # an Images goes back into the model like any array
    np.testing.assert_allclose(run.encode(images).mu, run.encode(np.asarray(images)).mu, atol=1e-6)


# --- (3) the run's card ---------------------------------------------------------------------------
def test_run_card_names_the_run_and_shows_samples(run, run_dir):
    card = run._repr_html_()
    assert run_dir.name in card and "image_vae" in card and "digits" in card
    assert "<th style='text-align:left;padding-right:1em'>latent dim</th><td style='text-align:left'>3</td>" in card
    assert f"step {run.step:,}" in card and f"epoch {run.epoch}" in card and "finished" in card
    last = [r for r in rd.read_metrics(run_dir) if r.get("kind") == "epoch"][-1]
    assert f"{last['test_elbo']:.2f} nats" in card
    assert card.count("<img src='data:image/png;base64,") == 1
    import base64
    import re

    data = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", card).group(1))
    assert decode_png(data).size == (8 * 49 + 1, 49 + 1)  # 8 prior samples in one row


def test_run_card_of_a_run_with_no_weights_yet(tmp_path):
    d = tmp_path / "starting"
    d.mkdir()
    rd.write_config(d, tiny_config("digits"))  # what a worker writes first; weights come seconds later
    run = ve.open_run(d)
    assert not run.has_weights and run.latent_dim == 2 and run.step == 0 and run.snapshot_kind is None
    card = run._repr_html_()
    assert "no weights yet" in card and "<img" not in card
    assert "<td style='text-align:left'>2</td>" in card
    assert "latent_dim=2" in repr(run)
    with pytest.raises(rd.RunError, match="no weight snapshot yet"):
        run.decode(np.zeros(2))
    with pytest.raises(rd.RunError, match="no weight snapshot yet"):
        run.latent_space()


def test_run_card_never_raises(run, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("decoder on fire")

    monkeypatch.setattr(type(run), "sample", broken)
    card = run._repr_html_()
    assert "could not draw samples" in card and "decoder on fire" in card and "<img" not in card
    monkeypatch.setattr(type(run), "_card", broken)
    assert "could not describe it" in run._repr_html_()


# --- (4) Images is the array ----------------------------------------------------------------------
def test_images_behave_like_the_array():
    a = np.random.default_rng(1).uniform(size=(6, 1, 8, 8)).astype(np.float32)
    im = Images(a)
    assert im.shape == (6, 1, 8, 8) and im.dtype == np.float32 and len(im) == 6
    assert type(np.asarray(im)) is np.ndarray and np.shares_memory(np.asarray(im), a)
    np.testing.assert_array_equal(np.asarray(im), a)

    s = im.sum()
    assert not isinstance(s, np.ndarray) and np.isclose(s, a.sum())  # a scalar, as for the array
    per_image = im.mean(axis=(1, 2, 3))
    assert type(per_image) is np.ndarray and per_image.shape == (6,)
    np.testing.assert_allclose(per_image, a.mean(axis=(1, 2, 3)))
    assert isinstance(im.mean(0), Images) and im.mean(0).shape == (1, 8, 8)  # the mean image is an image

    neg = 1 - im
    assert isinstance(neg, Images)
    np.testing.assert_allclose(np.asarray(neg), 1 - a)
    assert isinstance(np.clip(im * 2, 0, 1), Images)
    assert bool((im == a).all()) and type(im == a) is Images  # (6, 1, 8, 8): still image-shaped

    assert isinstance(im[1:3], Images) and im[1:3].shape == (2, 1, 8, 8)
    assert isinstance(im[0], Images) and im[0].shape == (1, 8, 8)
    assert isinstance(im[[0, 5]], Images)
    np.testing.assert_array_equal(im[::2], a[::2])
    row = im[0, 0, 3]  # a row of pixels is not an image
    assert type(row) is np.ndarray and row.shape == (8,)
    assert type(im[:, 0]) is np.ndarray  # (6, 8, 8): channels dropped, no longer images
    assert isinstance(im[0, 0, 0, 0], np.floating)
    assert type(im.reshape(6, -1)) is np.ndarray

    torch.testing.assert_close(torch.as_tensor(im), torch.from_numpy(a))
    back = pickle.loads(pickle.dumps(im))
    assert isinstance(back, Images)
    np.testing.assert_array_equal(back, a)


# --- the latent-space figure and opening a run by name ---------------------------------------------
def test_latent_space_plots_the_test_codes(run):
    data = run.dataset()
    mu = run.encode(data.x_test[:]).mu
    fig = run.latent_space(method="dims", dims=(2, 0))
    assert isinstance(fig, go.Figure) and fig.layout.xaxis.title.text == "z2" and fig.layout.yaxis.title.text == "z0"
    ids = np.concatenate([np.asarray(t.customdata) for t in fig.data])
    xy = np.concatenate([np.stack([t.x, t.y], 1) for t in fig.data])
    assert sorted(ids) == list(range(len(mu)))
    np.testing.assert_allclose(xy, mu[ids][:, [2, 0]], atol=1e-4)
    names = {t.name for t in fig.data}
    assert names == {data.class_names[k] for k in np.unique(data.y_test.numpy())}  # one trace per class

    small = run.latent_space(max_points=50)
    assert sum(len(t.x) for t in small.data) == 50 and "50 test images of" in small.layout.title.text


def test_open_run_by_runs_folder_path(run_dir, tmp_path, monkeypatch):
    # "runs/<name>" from the folder holding runs/
    here = tmp_path / "project"
    (here / "runs").mkdir(parents=True)
    (here / "runs" / "faces").symlink_to(run_dir, target_is_directory=True)
    monkeypatch.chdir(here)
    assert ve.open_run("runs/faces").latent_dim == 3
    # ... and from anywhere, when LATENT_EXPLORER_RUNS is the runs folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(here / "runs"))
    assert ve.open_run("runs/faces").name == "faces" and ve.open_run("faces").latent_dim == 3
    with pytest.raises(rd.RunError, match="not a run directory"):
        ve.open_run("runs/no-such-run")
