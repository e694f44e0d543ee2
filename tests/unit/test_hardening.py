"""Bad input and faults: a clear message, nothing lost, nothing corrupted."""
import errno
import io
import os
import pickle  # only to build a hostile file; the project itself never unpickles
import re
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import ROOT, tiny_config
from vae_core.engine.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from vae_core.engine.vae import VAE
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager
from vae_core.runs.trainer import train


# --- hostile form values -----------------------------------------------------------------
@pytest.mark.parametrize("field,value,words", [
    ("latent_dim", 0, "latent_dim must be between"),
    ("latent_dim", 10_000, "latent_dim must be between"),
    ("latent_dim", 2.5, "whole number"),
    ("hidden", -3, "hidden must be between"),
    ("likelihood", "poisson", "likelihood must be one of"),
    ("input_shape", (2, 28, 28), "1 or 3 channels"),
])
def test_bad_model_values_are_refused_with_a_message(field, value, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**{field: value}).validate()


@pytest.mark.parametrize("field,value,words", [
    ("lr", 0, "learning rate must be between"),
    ("lr", 1e9, "learning rate must be between"),
    ("lr", float("nan"), "learning rate must be between"),
    ("batch_size", 0, "batch_size must be between"),
    ("epochs", 0, "epochs must be between"),
    ("beta", -1, "beta must be between"),
    ("device", "tpu", "device must be"),
    ("dataset", "", "dataset must be"),
])
def test_bad_train_values_are_refused_with_a_message(field, value, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**{field: value}).validate()


def test_config_json_rejects_unknown_keys_and_versions():
    d = RunConfig().to_dict()
    d["model"]["evil"] = 1
    with pytest.raises(ConfigError, match="unknown model setting"):
        RunConfig.from_dict(d)
    d = RunConfig().to_dict()
    d["format_version"] = 99
    with pytest.raises(ConfigError, match="format version"):
        RunConfig.from_dict(d)
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{nope")


def test_batch_larger_than_the_dataset_trains_on_the_whole_set(tmp_path):
    st = train(tiny_config(epochs=2, batch_size=60_000), tmp_path / "run")
    assert st.state == "finished", st.error
    assert st.extra["steps_per_epoch"] == 1 and st.step == 2


# --- hostile checkpoints ---------------------------------------------------------------------
@pytest.fixture
def config_bytes():
    return RunConfig(model=ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16),
                     train=TrainConfig(dataset="digits")).validate().to_json().encode()


def weights_bytes(model_cfg: ModelConfig, tmp_path: Path) -> bytes:
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in VAE(model_cfg).state_dict().items()}, str(path))
    return path.read_bytes()


def test_importing_a_valid_run_works(runs_dir, config_bytes, tmp_path):
    m = RunManager(runs_dir)
    w = weights_bytes(ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16), tmp_path)
    m.import_run("imported", config_bytes, w)
    assert rd.load_snapshot(runs_dir / "imported").config.model.latent_dim == 2


@pytest.mark.parametrize("case", ["wrong_shapes", "other_architecture", "pickle", "random", "empty"])
def test_hostile_weights_are_refused_and_nothing_is_written(case, runs_dir, config_bytes, tmp_path):
    if case == "wrong_shapes":
        w = weights_bytes(ModelConfig(input_shape=(1, 8, 8), latent_dim=5, hidden=16), tmp_path)
    elif case == "other_architecture":
        w = weights_bytes(ModelConfig(input_shape=(1, 8, 8), body="conv", latent_dim=2, hidden=16), tmp_path)
    elif case == "pickle":
        class Boom:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))
        buf = io.BytesIO()
        pickle.dump({"state_dict": Boom()}, buf)
        w = buf.getvalue()
    elif case == "random":
        w = os.urandom(4096)
    else:
        w = b""
    m = RunManager(runs_dir)
    with pytest.raises(rd.RunError) as e:
        m.import_run("bad", config_bytes, w)
    assert "weights" in str(e.value).lower() or "safetensors" in str(e.value).lower()
    assert not (runs_dir / "bad").exists()
    assert not any(p.name.startswith(".import") for p in runs_dir.iterdir())
    assert not (tmp_path / "pwned").exists()


def test_a_config_that_is_not_a_config_is_refused(runs_dir, tmp_path):
    m = RunManager(runs_dir)
    w = weights_bytes(ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16), tmp_path)
    for bad in (b"\xff\xfe", b"[1, 2]", b'{"format_version": 1, "model": {"latent_dim": 0}}'):
        with pytest.raises(rd.RunError, match="config"):
            m.import_run("bad", bad, w)
    assert not (runs_dir / "bad").exists()


def test_no_pickle_or_unsafe_torch_load_in_the_project():
    offenders = []
    for path in list((ROOT / "vae_core").rglob("*.py")) + list((ROOT / "pages").rglob("*.py")) + [ROOT / "app.py"]:
        text = path.read_text()
        if re.search(r"^\s*import pickle|pickle\.load|allow_pickle=True", text, re.M):
            offenders.append(str(path.relative_to(ROOT)))
        # One torch.load is allowed: import-model reading a user's own state dict, weights only.
        for call in re.finditer(r"torch\.load\((.*)", text):  # the call's line
            if path != ROOT / "vae_core/runs/importer.py" or "weights_only=True" not in call.group(1):
                offenders.append(f"{path.relative_to(ROOT)}: {call.group(0)}")
    assert offenders == []


def test_the_web_app_never_reaches_the_importer():
    """import-model runs a user's factory: only the CLI may call it, never a page."""
    for path in list((ROOT / "pages").rglob("*.py")) + [ROOT / "app.py"]:
        text = path.read_text()
        assert "importer" not in text and "load_factory" not in text and "build_inner" not in text, path


# --- faults while saving --------------------------------------------------------------------
def test_disk_full_while_saving_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = rd.save_file

    def flaky_save(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] > 2:  # the first snapshot (weights + optimiser) succeeds, then the disk is full
            with open(filename, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(rd, "save_file", flaky_save)
    st = train(tiny_config(epochs=3), tmp_path / "run")
    assert st.state == "finished"
    assert "No space left" in st.extra.get("snapshot_error", "")
    snap = rd.load_snapshot(tmp_path / "run")  # still the first, complete snapshot
    assert snap.step > 0
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no partial files left behind


def test_readers_never_see_a_half_written_snapshot(tmp_path):
    cfg = tiny_config()
    run = tmp_path / "run"
    run.mkdir()
    rd.write_config(run, cfg)
    model = VAE(cfg.model)
    rd.save_snapshot(run, model, step=0, epoch=0)
    stop = threading.Event()
    errors = []

    def writer():
        step = 0
        while not stop.is_set():
            step += 1
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01)
            rd.save_snapshot(run, model, step=step, epoch=0)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(200):
            try:
                rd.load_snapshot(run)
            except rd.RunError as e:
                errors.append(str(e))
    finally:
        stop.set()
        t.join()
    assert errors == []


def test_status_and_metrics_tolerate_torn_or_garbage_files(tmp_path):
    (tmp_path / rd.STATUS).write_text('{"state": "runn')
    assert rd.read_status(tmp_path).state == "new"
    (tmp_path / rd.METRICS).write_text('{"kind": "step", "step": 1}\n{"kind": "st')
    assert rd.read_metrics(tmp_path) == [{"kind": "step", "step": 1}]


def test_streamlit_config_has_safe_defaults():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert 0 < cfg["server"]["maxUploadSize"] <= 200
    assert cfg["browser"]["gatherUsageStats"] is False


def test_stop_while_a_snapshot_is_being_written(tmp_path, monkeypatch):
    """A Stop that arrives mid-save: the save completes, the run ends 'stopped', the weights load."""
    real_save = rd.save_file
    saving, release = threading.Event(), threading.Event()

    def slow_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        if not saving.is_set():  # hold the first snapshot half way through its atomic replace
            saving.set()
            release.wait(10)

    monkeypatch.setattr(rd, "save_file", slow_save)
    result = {}
    t = threading.Thread(target=lambda: result.update(st=train(tiny_config(epochs=10_000), tmp_path / "run")))
    t.start()
    assert saving.wait(60)
    rd.request(tmp_path / "run", "stop")  # the user presses Stop during the write
    release.set()
    t.join(60)
    assert result["st"].state == "stopped"
    snap = rd.load_snapshot(tmp_path / "run")
    assert snap.step == result["st"].step  # the final snapshot is the stopping step, complete
    assert not list((tmp_path / "run").glob(".*.tmp"))
