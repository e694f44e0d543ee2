"""The notebook API (`import vae_core as ve; ve.open_run(...)`) on a real trained run."""
import subprocess
import sys

import numpy as np
import pytest

import vae_core as ve
from tests.conftest import ROOT
from vae_core.data import load_dataset


def test_open_a_run_and_use_its_model(trained_runs):
    run = ve.open_run(trained_runs / "tiny")
    assert run.latent_dim == 3 and run.step > 0 and run.config.family == "image_vae"
    assert "tiny" in repr(run) and "latent_dim=3" in repr(run)
    x = load_dataset("digits").x_test[:5]
    codes = run.encode(x)
    assert codes.mu.shape == codes.sigma.shape == (5, 3)
    images = run.decode(codes.mu)
    assert images.shape == (5, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_allclose(run.reconstruct(x).mean, images, atol=1e-6)  # decode(mu) is the reconstruction
    z, samples = run.sample(4, seed=1)
    assert z.shape == (4, 3) and samples.shape == (4, 1, 8, 8)
    np.testing.assert_array_equal(run.sample(4, seed=1)[0], z)  # seeded
    strip = run.traverse(dim=2, values=[-2, 0, 2])
    assert strip.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(strip[1], run.decode(np.zeros(3))[0], atol=1e-6)  # the middle frame is z = 0
    assert run.traverse(dim=[0, 1]).shape == (2, 7, 1, 8, 8)
    assert run.grid_image(strip, ncols=3).dtype == np.uint8
    with pytest.raises(ValueError, match="latent dims 0..2"):
        run.traverse(dim=3)


def test_open_run_by_name_under_the_runs_folder(trained_runs, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(trained_runs))
    assert ve.open_run("tiny2d").latent_dim == 2


def test_importing_the_package_is_light():
    code = "import sys, vae_core; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # the API loads torch on first use only


def test_the_readme_notebook_example_runs(trained_runs, tmp_path, monkeypatch):
    """The README's "From a notebook" code, run as written on a real trained run."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From a notebook"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[: code.index("```")]
    assert 've.open_run("runs/my-run")' in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "my-run").symlink_to(trained_runs / "tiny", target_is_directory=True)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["images"].shape == (8, 1, 8, 8) and namespace["frames"].shape == (7, 1, 8, 8)
    assert namespace["samples"].shape == (16, 1, 8, 8)
