"""Issue 12: the conv body on a 64x64 colour folder learns a code at the defaults.

Before the recipe, the conv body trained at the MLP's peak learning rate (5e-3): its encoder's
ReLUs died in the first few dozen steps and every image got the same code (KL ~0.01 nats, no
active unit). This trains a small folder of bench/make_faces.py's faces at the defaults (only a
step cap added) and checks the codes differ from image to image.
"""
import importlib.util

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

N_IMAGES = 400  # 360 to train (324 after the validation share), 40 to test: 5 steps an epoch
STEPS = 100


def faces_folder(path, n=N_IMAGES):
    spec = importlib.util.spec_from_file_location("make_faces", ROOT / "bench" / "make_faces.py")
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    path.mkdir()
    for i in range(n):
        mf.face(np.random.default_rng([0, i]), 64).save(path / f"{i:04d}.png")
    return path


def train_faces(folder, run_dir, **train_options):
    """The conv body on the folder at the defaults (plus a step cap and the given options):
    (config, test KL in nats, active units, posterior_collapse's verdict)."""
    from vae_core.data import load_dataset
    from vae_core.engine.evaluate import evaluate_elbo, posterior_stats
    from vae_core.runs import rundir as rd
    from vae_core.runs.diagnose import posterior_collapse
    from vae_core.runs.manager import new_run_config
    from vae_core.runs.trainer import train

    spec = f"folder:{folder}"
    cfg = new_run_config(spec, image_size=64, channels=3, model={"body": "conv"},
                         train={"max_steps": STEPS, "log_every_steps": 10, "snapshot_every_s": 60, **train_options})
    status = train(cfg, run_dir)
    assert status.state == "finished" and status.step == STEPS, status.error
    model = rd.load_snapshot(run_dir).model  # the latest weights, at step STEPS
    x_test = load_dataset(spec, image_size=64, channels=3).x_test
    kl = evaluate_elbo(model, x_test)["kl"]
    active = int(posterior_stats(model, x_test)["active"].sum())
    return cfg, kl, active, posterior_collapse(rd.read_metrics(run_dir), finished=True)


def test_conv_on_a_colour_folder_learns_a_code_at_the_defaults(tmp_path):
    from vae_core.engine.recipe import CONV_LR

    cfg, kl, active, collapse = train_faces(faces_folder(tmp_path / "faces"), tmp_path / "run")
    assert cfg.model.input_shape == (3, 64, 64) and cfg.train.lr == CONV_LR
    assert kl > 2.0, f"test KL {kl:.3f} nats: every image gets nearly the same code"
    assert active >= 2, f"{active} active units"
    assert collapse is None, collapse
