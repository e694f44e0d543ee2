"""The trainer and run directories, in-process, on real data (scikit-learn digits)."""
import time

import pytest
import torch

from tests.conftest import tiny_config
from vae_core.data import load_dataset
from vae_core.engine.evaluate import evaluate_elbo
from vae_core.engine.vae import VAE
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager
from vae_core.runs.trainer import FAULT_ENV, AlreadyRunning, _lock_run, train


def epoch_lines(run_dir):
    return [m for m in rd.read_metrics(run_dir) if m["kind"] == "epoch"]


def test_short_run_improves_test_elbo(tmp_path):
    cfg = tiny_config(epochs=6)
    data = load_dataset("digits")
    torch.manual_seed(cfg.train.seed)
    untrained = evaluate_elbo(VAE(cfg.model), data.x_test)["elbo"]
    st = train(cfg, tmp_path / "run")
    assert st.state == "finished", st.error
    epochs = epoch_lines(tmp_path / "run")
    assert [e["epoch"] for e in epochs] == list(range(1, 7))
    assert epochs[-1]["test_elbo"] > epochs[0]["test_elbo"] + 1.0
    assert epochs[-1]["test_elbo"] > untrained + 5.0
    steps = [m for m in rd.read_metrics(tmp_path / "run") if m["kind"] == "step"]
    assert steps and all(k in steps[-1] for k in ("loss", "log_likelihood", "kl", "elbo", "samples_per_s", "eta_s"))


def test_run_round_trips_through_its_directory(tmp_path):
    cfg = tiny_config(epochs=2)
    train(cfg, tmp_path / "run")
    snap = rd.load_snapshot(tmp_path / "run")
    assert snap.config == cfg
    again = rd.load_snapshot(tmp_path / "run")
    x = load_dataset("digits").x_test
    with torch.no_grad():
        torch.testing.assert_close(snap.model.encode(x[:]).mu, again.model.encode(x[:]).mu)  # x[:]: the images as floats
    # The worker's logged test ELBO is reproduced exactly from the files alone (same seed).
    logged = epoch_lines(tmp_path / "run")[-1]["test_elbo"]
    assert evaluate_elbo(snap.model, x, seed=cfg.train.seed)["elbo"] == pytest.approx(logged, abs=1e-4)


def test_training_is_reproducible_on_cpu(tmp_path):
    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a, b = rd.load_snapshot(tmp_path / "a"), rd.load_snapshot(tmp_path / "b")
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_nan_loss_fails_the_run_and_keeps_the_last_good_weights(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=5)
    steps_per_epoch = len(load_dataset("digits").x_train) // cfg.train.batch_size
    monkeypatch.setenv(FAULT_ENV, f"nan@{steps_per_epoch + 2}")
    st = train(cfg, tmp_path / "run")
    assert st.state == "failed"
    assert "nan" in st.error.lower() and "last good weights" in st.error
    snap = rd.load_snapshot(tmp_path / "run")  # raises if the weights were NaN
    assert snap.step <= steps_per_epoch + 2
    assert all(torch.isfinite(p).all() for p in snap.model.parameters())


def test_exception_in_worker_is_recorded(tmp_path):
    cfg = tiny_config()
    cfg.model.input_shape = (1, 28, 28)  # does not match digits' 8x8
    st = train(cfg, tmp_path / "run")
    assert st.state == "failed"
    assert "8, 8" in st.error and "traceback" in rd.read_json(tmp_path / "run" / rd.STATUS)


def test_resume_continues_step_count_and_optimiser(tmp_path):
    cfg = tiny_config(epochs=50, max_steps=30)
    train(cfg, tmp_path / "run")
    assert rd.read_status(tmp_path / "run").step == 30
    cfg.train.max_steps = 60
    st = train(cfg, tmp_path / "run", resume=True)
    assert st.state == "finished" and st.step == 60
    starts = [m for m in rd.read_metrics(tmp_path / "run") if m["kind"] == "start"]
    assert starts[-1]["step"] == 30 and starts[-1]["resumed"]
    steps = [m["step"] for m in rd.read_metrics(tmp_path / "run") if m["kind"] == "step"]
    assert steps == sorted(steps) and steps[-1] == 60
    # The saved optimiser state is Adam's at step 60, not a fresh one.
    opt = torch.optim.Adam(rd.load_snapshot(tmp_path / "run").model.parameters())
    assert rd.load_optimizer_state(tmp_path / "run", opt, "cpu") == 60
    assert all(int(s["step"]) == 60 for s in opt.state_dict()["state"].values())


def test_a_second_worker_on_the_same_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    lock = _lock_run(tmp_path / "run")
    try:
        with pytest.raises(AlreadyRunning):
            train(tiny_config(), tmp_path / "run")
    finally:
        lock.close()


def test_status_is_read_as_a_pure_function():
    now = 1000.0
    assert rd.status_from_dict(None, now).state == "new"
    live = rd.status_from_dict({"state": "running", "heartbeat": now - 1, "step": 5}, now)
    assert live.active and not live.stale and live.step == 5
    dead = rd.status_from_dict({"state": "running", "heartbeat": now - rd.STALE_AFTER_S - 1}, now)
    assert dead.stale and not dead.active and "stale" in dead.label
    done = rd.status_from_dict({"state": "finished", "heartbeat": 0}, now)
    assert not done.stale and not done.active
    assert rd.status_from_dict({"state": "bogus"}, now).state == "failed"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a..b", "x" * 65, "spa ce", "ünï"])
def test_run_names_cannot_escape_the_runs_folder(bad, runs_dir):
    with pytest.raises(rd.RunError):
        RunManager(runs_dir).path(bad)


def test_a_request_left_by_an_earlier_worker_is_ignored(tmp_path):
    cfg = tiny_config(epochs=2)
    (tmp_path / "run").mkdir()
    rd.request(tmp_path / "run", "stop")  # from a worker long gone
    time.sleep(0.01)
    st = train(cfg, tmp_path / "run")
    assert st.state == "finished"


def test_short_epochs_do_not_publish_a_snapshot_each(tmp_path, monkeypatch):
    """Digits' epochs take a few milliseconds: the first epoch's end publishes (pages get a
    snapshot early), then no faster than every min(snapshot_every_s, 2 s), and the end of the run."""
    steps = []
    real = rd.save_snapshot
    monkeypatch.setattr(rd, "save_snapshot", lambda run_dir, model, step, *a, **kw: (steps.append(step),
                                                                                     real(run_dir, model, step, *a, **kw)))
    status = train(tiny_config(epochs=6, snapshot_every_s=5.0), tmp_path / "run")
    assert status.state == "finished"
    per_epoch = status.extra["steps_per_epoch"]
    assert steps == [per_epoch, 6 * per_epoch]  # after epoch 1, and the final one
    assert rd.load_snapshot(tmp_path / "run").epoch == 6
