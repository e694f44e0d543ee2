"""TensorBoard logging (``TrainConfig.tensorboard``): tiny real runs read back with TensorBoard's
own event reader and projector proto, the optional package's absence, and the cost caps."""
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, tiny_config
from vae_core.data import load_dataset
from vae_core.runs import rundir as rd
from vae_core.runs import tensorboard_log as tbl
from vae_core.runs.summary import read_summary
from vae_core.runs.trainer import train

TRAIN_TAGS = {"train/loss", "train/elbo", "train/log_likelihood", "train/kl", "lr"}
EPOCH_TAGS = {"test/elbo": "test_elbo", "test/log_likelihood": "test_log_likelihood", "test/kl": "test_kl",
              "validation/elbo": "val_elbo"}


def scalars(run_dir):
    """{tag: [(step, value), ...]} as TensorBoard shows them (purged events left out)."""
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(run_dir / tbl.LOG_DIR), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def projector_config(run_dir):
    projector = pytest.importorskip("tensorboard.plugins.projector")
    from google.protobuf import text_format

    config = projector.ProjectorConfig()
    text_format.Parse((run_dir / tbl.LOG_DIR / projector.metadata.PROJECTOR_FILENAME).read_text(), config)
    return config


def records(run_dir, kind):
    return [m for m in rd.read_metrics(run_dir) if m["kind"] == kind]


def test_a_run_logs_its_scalars_and_each_summary_for_the_projector(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    # 50 of digits' 180 test images, so the projector shows a spaced-out subset, as on MNIST.
    monkeypatch.setattr(tbl, "PROJECTOR_POINTS", 50)
    asset_writes = []
    real_assets = tbl.TensorBoardLog._write_assets
    monkeypatch.setattr(tbl.TensorBoardLog, "_write_assets",
                        lambda self, *a: (asset_writes.append(1), real_assets(self, *a)))
    run = tmp_path / "run"
    # snapshot_every_s=0: every epoch's end publishes its summary (no throttle), so three embeddings.
    status = train(tiny_config(epochs=3, tensorboard=True, snapshot_every_s=0.0), run)
    assert status.state == "finished", status.error

    got = scalars(run)
    assert TRAIN_TAGS | set(EPOCH_TAGS) <= set(got)
    steps, epochs = records(run, "step"), records(run, "epoch")
    assert len(epochs) == 3
    for tag in TRAIN_TAGS:  # one point per metrics.jsonl log window, at its global step
        assert [s for s, _ in got[tag]] == [r["step"] for r in steps], tag
        assert all(math.isfinite(v) for _, v in got[tag]), tag
    assert [v for _, v in got["lr"]] == pytest.approx([r["lr"] for r in steps], rel=1e-6)
    assert [v for _, v in got["train/elbo"]] == pytest.approx([r["elbo"] for r in steps], rel=1e-5)
    for tag, field in EPOCH_TAGS.items():  # one point per epoch, equal to its metrics record (float32)
        assert [s for s, _ in got[tag]] == [r["step"] for r in epochs], tag
        assert [v for _, v in got[tag]] == pytest.approx([r[field] for r in epochs], rel=1e-6), tag

    config = projector_config(run)
    assert [e.tensor_name for e in config.embeddings] == [f"test set mu, step {r['step']}" for r in epochs]
    assert len(asset_writes) == 1  # the sprite and labels once per run, shared by every embedding
    data = load_dataset("digits")
    ids = tbl.projector_ids(len(data.x_test), (8, 8))
    assert len(ids) == 50 and ids[0] == 0 and ids[-1] == len(data.x_test) - 1
    base = run / tbl.LOG_DIR
    for e in config.embeddings:
        for path in (e.tensor_path, e.metadata_path, e.sprite.image_path):
            assert (base / path).is_file(), path
        assert e.metadata_path == config.embeddings[0].metadata_path
        assert e.sprite.image_path == config.embeddings[0].sprite.image_path
        mu = np.loadtxt(base / e.tensor_path, delimiter="\t", ndmin=2)
        assert mu.shape == tuple(e.tensor_shape) == (50, 2) and np.isfinite(mu).all()
    # The last embedding is the published summary's means at the same step, for the same examples.
    final = read_summary(run, epochs[-1]["step"])
    last = np.loadtxt(base / config.embeddings[-1].tensor_path, delimiter="\t")
    np.testing.assert_allclose(last, final.mu[ids], rtol=1e-5, atol=1e-6)

    labels = (base / config.embeddings[0].metadata_path).read_text().splitlines()
    assert labels == [data.class_names[c] for c in data.y_test[ids].tolist()]  # one per point, in order

    from PIL import Image

    sprite = np.asarray(Image.open(base / config.embeddings[0].sprite.image_path))
    g = math.ceil(math.sqrt(50))
    assert list(config.embeddings[0].sprite.single_image_dim) == [8, 8]
    assert sprite.shape == (g * 8, g * 8)
    # Tiles go row by row: tile k is test image ids[k].
    for k in (0, 1, g, 49):
        tile = sprite[(k // g) * 8 : (k // g + 1) * 8, (k % g) * 8 : (k % g + 1) * 8]
        expected = (data.x_test[ids[k : k + 1]][0, 0] * 255).round().numpy()
        np.testing.assert_allclose(tile, expected, atol=1)
    assert not sprite[6 * 8 : 7 * 8, 2 * 8 :].any() and not sprite[7 * 8 :].any()  # cells after the last image


def test_a_resume_appends_and_hides_what_a_dead_worker_logged_after_the_snapshot(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    cfg = tiny_config(epochs=50, max_steps=30, tensorboard=True)
    assert train(cfg, run).state == "finished"
    # A worker that went on past step 30 and died before its next snapshot: its events and its
    # embedding are not in the weights a resume starts from. Event files are ordered by the
    # second of their names, hence the pauses.
    time.sleep(1.1)
    data = load_dataset("digits")
    dead = tbl.TensorBoardLog(run, first_step=30)
    dead.scalars(1000, {"train/loss": 123.0, "test/elbo": -1.0})
    dead.embedding(1000, np.zeros((len(data.x_test), 2)), ["x"] * len(data.x_test), data.x_test)
    dead.close()
    time.sleep(1.1)
    cfg.train.max_steps = 60
    assert train(cfg, run, resume=True).state == "finished"

    assert len(list((run / tbl.LOG_DIR).glob("events.out.tfevents.*"))) == 3  # appended, nothing replaced
    got = scalars(run)
    assert [s for s, _ in got["train/loss"]] == [r["step"] for r in records(run, "step")]
    assert got["train/loss"][-1][0] == 60 and 1000 not in [s for s, _ in got["test/elbo"]]
    embedded = [int(e.tensor_name.rsplit(" ", 1)[1]) for e in projector_config(run).embeddings]
    assert embedded == sorted(set(embedded)) and embedded[-1] == 60 and 30 in embedded and 1000 not in embedded
    assert not list((run / tbl.LOG_DIR / tbl.PROJECTOR_DIR).glob("*1000.tsv"))  # its file went with it
    labels = (run / tbl.LOG_DIR / tbl.PROJECTOR_DIR / tbl.LABELS).read_text().splitlines()
    assert "x" not in labels and len(labels) == len(data.x_test)  # the first worker's, kept: written once per run


def test_without_the_option_a_run_writes_no_tensorboard_folder(tmp_path):
    assert train(tiny_config(epochs=1), tmp_path / "run").state == "finished"
    assert not (tmp_path / "run" / tbl.LOG_DIR).exists()


def test_without_the_package_the_run_fails_at_start_in_one_sentence(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith(("tensorboard.", "torch.utils.tensorboard"))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "import tensorboard" now fails
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    status = train(tiny_config(epochs=1, tensorboard=True), tmp_path / "run")
    assert status.state == "failed" and status.step == 0
    assert status.error == ("TensorBoard logging needs the optional tensorboard package: "
                            "pip install latent-explorer[tensorboard]")
    assert "traceback" not in rd.read_json(tmp_path / "run" / rd.STATUS)
    assert not records(tmp_path / "run", "step") and not (tmp_path / "run" / tbl.LOG_DIR).exists()


def test_importing_vae_core_never_needs_tensorboard():
    code = ("import sys; sys.modules['tensorboard'] = None\n"
            "import vae_core, vae_core.api, vae_core.cli, vae_core.runs.trainer, vae_core.runs.tensorboard_log\n"
            "print('torch.utils.tensorboard' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_the_projector_shows_at_most_its_cap_evenly_spaced_and_a_sprite_it_can_load():
    ids = tbl.projector_ids(10_000, (28, 28))
    assert len(ids) == tbl.PROJECTOR_POINTS and ids[0] == 0 and ids[-1] == 9_999
    assert np.all(np.diff(ids) >= 1) and np.ptp(np.diff(ids)) <= 1  # evenly spaced
    assert np.array_equal(tbl.projector_ids(300, (28, 28)), np.arange(300))
    big = tbl.projector_ids(10_000, (256, 256))  # 32 a side fit in the projector's 8192 px
    assert len(big) == 32 * 32
    sprite = tbl.sprite_of(torch.rand(len(big), 3, 4, 4))
    assert sprite.shape == (32 * 4, 32 * 4, 3) and sprite.dtype == np.uint8


def test_labels_are_class_names_one_line_each():
    y = torch.tensor([0, 2, -1, 5])
    assert tbl.label_names(y, ("a b\tc", "x", "y\nz")) == ["a b c", "y z", "?", "5"]
    assert tbl.label_names(y, None) == ["0", "2", "?", "5"]
