"""The validation split, the best snapshot and early stopping, on real runs (scikit-learn digits)."""
import numpy as np
import pytest

from tests.conftest import tiny_config
from vae_core.data import load_dataset, split_digest, validation_split
from vae_core.engine.config import ConfigError
from vae_core.engine.evaluate import evaluate_elbo
from vae_core.runs import rundir as rd
from vae_core.runs.trainer import FAULT_ENV, train


def epochs_of(run_dir):
    return [m for m in rd.read_metrics(run_dir) if m["kind"] == "epoch"]


def test_the_validation_split_is_stratified_seeded_and_covers_each_example_once():
    y = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    train, val = validation_split(y, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(y)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    # Each class keeps its share: round(0.1 * count).
    assert np.array_equal(np.bincount(y[val], minlength=10), np.round(0.1 * np.bincount(y)).astype(int))
    again, other = validation_split(y, 0.1, seed=3)[1], validation_split(y, 0.1, seed=4)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)
    assert split_digest(val) == split_digest(again) != split_digest(other)
    # Unknown labels and a fraction of 0.
    assert len(validation_split(np.full(100, -1), 0.2, 0)[1]) == 20
    assert len(validation_split(y, 0.0, 0)[1]) == 0


def test_validation_is_disjoint_from_train_and_test_and_stable_across_resume(tmp_path):
    data = load_dataset("digits")
    cfg = tiny_config(epochs=40, max_steps=20, patience=0)
    assert train(cfg, tmp_path / "run").state == "finished"
    digest = rd.read_config(tmp_path / "run").train.validation_split_sha256
    train_pos, val_pos = validation_split(data.y_train, cfg.train.validation_fraction, cfg.train.seed)
    assert digest == split_digest(val_pos)
    rows = data.x_train.storage_rows
    val_rows, train_rows, test_rows = rows[val_pos], rows[train_pos], data.x_test.storage_rows
    counts = np.bincount(data.y_train.numpy())
    assert len(val_rows) == np.round(0.1 * counts).sum() > 0  # each class's share, rounded
    assert not set(val_rows) & set(train_rows) and not set(val_rows) & set(test_rows)
    status = rd.read_json(tmp_path / "run" / rd.STATUS)
    assert status["n_train"] == len(train_pos) and status["n_validation"] == len(val_pos)

    resumed = rd.read_config(tmp_path / "run")
    resumed.train.max_steps = 40
    assert train(resumed, tmp_path / "run", resume=True).state == "finished"
    assert rd.read_config(tmp_path / "run").train.validation_split_sha256 == digest

    # A resume that would draw another split (here: another seed's) is refused, not silently trained.
    moved = rd.read_config(tmp_path / "run")
    moved.train.validation_split_sha256 = "0" * 16
    moved.train.max_steps = 60
    st = train(moved, tmp_path / "run", resume=True)
    assert st.state == "failed" and "validation split" in st.error


def test_the_best_snapshot_survives_a_worse_epoch_and_patience_ends_the_run_after_a_cooldown(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "worse@3")  # every weight zeroed just before epoch 3's evaluation
    cfg = tiny_config(epochs=10, patience=2)
    st = train(cfg, tmp_path / "run")
    assert st.state == "finished", st.error
    metrics = rd.read_metrics(tmp_path / "run")
    epochs = epochs_of(tmp_path / "run")
    vals = [e["val_elbo"] for e in epochs]
    assert vals[2] < min(vals[:2]) - 5  # the forced epoch really is worse
    best_epoch = 1 + int(np.argmax(vals))
    assert best_epoch <= 2
    # Two epochs without a better validation ELBO, then 2 x 2 epochs of annealing to 0, then the end.
    assert [e["epoch"] for e in epochs] == list(range(1, best_epoch + 7))
    (cool,) = [m for m in metrics if m["kind"] == "cooldown"]
    spe = st.extra["steps_per_epoch"]
    assert cool["step"] == (best_epoch + 2) * spe and cool["steps"] == 4 * spe and cool["best_epoch"] == best_epoch
    rates = {m["step"]: m["lr"] for m in metrics if m["kind"] == "step"}
    during = [lr for step, lr in rates.items() if step > cool["step"]]
    assert during == sorted(during, reverse=True) and during[-1] < 0.05 * cool["lr"]  # annealed towards 0
    (early,) = [m for m in metrics if m["kind"] == "early_stop"]
    assert early["best_epoch"] == early["plateau_best_epoch"] == best_epoch and early["epoch"] == best_epoch + 6
    assert st.extra["stopped_early_at_epoch"] == best_epoch + 6 and st.extra["best_epoch"] == best_epoch
    assert st.step == (best_epoch + 6) * spe

    best = rd.load_snapshot(tmp_path / "run", which="best")
    latest = rd.load_snapshot(tmp_path / "run", which="latest")
    assert best.kind == "best" and latest.kind == "latest"
    assert best.epoch == best_epoch and latest.epoch == best_epoch + 6
    assert best.validation_elbo == pytest.approx(vals[best_epoch - 1])
    # The weights are the ones claimed: their test ELBO reproduces what was logged at that epoch.
    x_test = load_dataset("digits").x_test
    seed = cfg.train.seed
    assert evaluate_elbo(best.model, x_test, seed=seed)["elbo"] == pytest.approx(epochs[best_epoch - 1]["test_elbo"], abs=1e-4)
    assert evaluate_elbo(latest.model, x_test, seed=seed)["elbo"] == pytest.approx(epochs[-1]["test_elbo"], abs=1e-4)


def test_a_resumed_run_goes_on_with_its_cooldown(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "worse@2")
    cfg = tiny_config(epochs=10, patience=2)
    spe = len(validation_split(load_dataset("digits").y_train, 0.1, 0)[0]) // cfg.train.batch_size
    cfg.train.max_steps = 4 * spe  # stop one epoch into the cooldown (it begins after epoch 3)
    st = train(cfg, tmp_path / "run")
    assert st.state == "finished" and st.step == 4 * spe and "stopped_early_at_epoch" not in st.extra
    (cool,) = [m for m in rd.read_metrics(tmp_path / "run") if m["kind"] == "cooldown"]
    assert cool["step"] == 3 * spe and cool["steps"] == 4 * spe
    monkeypatch.delenv(FAULT_ENV)
    cfg.train.max_steps = None
    st = train(cfg, tmp_path / "run", resume=True)
    assert st.state == "finished" and st.step == 7 * spe  # the cooldown's end, not the 10 planned epochs
    assert st.extra["stopped_early_at_epoch"] == 7
    resumed_rates = [m["lr"] for m in rd.read_metrics(tmp_path / "run") if m["kind"] == "step" and m["step"] > 4 * spe]
    assert resumed_rates and max(resumed_rates) < cool["lr"]  # the annealing went on, not the schedule


def test_without_a_validation_split_there_is_no_best_snapshot_and_best_means_latest(tmp_path):
    cfg = tiny_config(epochs=2, validation_fraction=0.0)
    assert train(cfg, tmp_path / "run").state == "finished"
    assert not (tmp_path / "run" / rd.BEST).exists()
    assert "val_elbo" not in epochs_of(tmp_path / "run")[-1]
    snap = rd.load_snapshot(tmp_path / "run", which="best")
    assert snap.kind == "latest" and snap.epoch == 2
    assert rd.read_status(tmp_path / "run").extra["n_validation"] == 0


@pytest.mark.parametrize("bad", [{"validation_fraction": 0.9}, {"validation_fraction": -0.1}, {"patience": -1},
                                 {"patience": 1.5}])
def test_out_of_range_early_stopping_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        tiny_config(**bad)


def test_eval_uses_the_snapshot_it_names(tmp_path, monkeypatch, capsys):
    import json

    from vae_core.cli import main

    monkeypatch.setenv(FAULT_ENV, "worse@2")
    assert train(tiny_config(epochs=5, patience=1), tmp_path / "run").state == "finished"
    monkeypatch.delenv(FAULT_ENV)
    epochs = epochs_of(tmp_path / "run")
    results = {}
    for which in ("best", "latest"):
        assert main(["eval", str(tmp_path / "run"), "--k", "0", "--json", "--snapshot", which]) == 0
        results[which] = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tmp_path / "run"), "--k", "0", "--json"]) == 0  # the default is the best
    assert json.loads(capsys.readouterr().out) == results["best"]
    best, latest = results["best"], results["latest"]
    assert best["snapshot"] == "best" and best["epoch"] == 1 and best["validation_elbo"] == epochs[0]["val_elbo"]
    assert latest["snapshot"] == "latest" and latest["epoch"] == 4 and "validation_elbo" not in latest
    # Each number is its snapshot's: the test ELBOs logged at epochs 1 and 4 (same evaluation seed).
    assert best["test_elbo"] == pytest.approx(epochs[0]["test_elbo"], abs=1e-4)
    assert latest["test_elbo"] == pytest.approx(epochs[3]["test_elbo"], abs=1e-4)
