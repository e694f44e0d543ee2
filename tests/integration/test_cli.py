"""The command line as a user runs it: real subprocesses, real data, real run directories."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from vae_core.runs import rundir as rd
from vae_core.runs.trainer import SHARE_CPU_ENV


def cli(*args):
    env = {k: v for k, v in os.environ.items() if k != SHARE_CPU_ENV}  # as from a terminal, not the app
    return subprocess.run([sys.executable, "-m", "vae_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def test_train_then_eval(tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--dataset", "digits", "--epochs", "3", "--latent-dim", "2", "--hidden", "64",
            "--lr-schedule", "constant", "--lr", "0.002", "--run-dir", run)
    assert r.returncode == 0, r.stderr
    assert "finished" in r.stdout
    cfg = rd.read_config(run)
    assert (cfg.train.lr_schedule, cfg.train.lr, cfg.model.latent_dim) == ("constant", 0.002, 2)
    status = rd.read_status(run)
    assert status.extra["threads"] == (os.cpu_count() or 1)  # a terminal run takes every core

    r = cli("eval", run, "--k", "50", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["step"] == status.step and res["n_test"] > 0
    assert res["test_elbo"] < 0 < res["test_kl"]
    assert res["test_iwae_k50"] >= res["test_elbo"] - 0.5  # the IWAE bound is the tighter one (up to MC noise)

    r = cli("eval", run, "--k", "0")
    assert r.returncode == 0 and "test ELBO" in r.stdout and "active units" in r.stdout


def test_defaults_are_the_cosine_schedule(tmp_path):
    r = cli("train", "--dataset", "digits", "--max-steps", "3", "--latent-dim", "2", "--hidden", "32",
            "--run-dir", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    tc = rd.read_config(tmp_path / "run").train
    assert (tc.lr_schedule, tc.lr, tc.batch_size, tc.warmup_steps) == ("cosine", 5e-3, 64, 100)
    assert (tc.data_placement, rd.read_status(tmp_path / "run").extra["data_placement"]) == ("auto", "device")


def test_data_placement_stream_is_honoured(tmp_path):
    r = cli("train", "--dataset", "digits", "--max-steps", "3", "--latent-dim", "2", "--hidden", "32",
            "--data-placement", "stream", "--run-dir", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert rd.read_config(tmp_path / "run").train.data_placement == "stream"
    assert rd.read_status(tmp_path / "run").extra["data_placement"] == "stream"  # the small set streamed anyway


def test_bad_values_get_one_clear_line_and_no_run(tmp_path):
    for flags, words in ((["--lr", "0"], "learning rate"), (["--lr-schedule", "linear"], "invalid choice"),
                         (["--warmup-steps", "-1"], "warmup_steps"), (["--dataset", "nope"], "nope")):
        r = cli("train", *flags, "--run-dir", tmp_path / "run")
        assert r.returncode == 2, (flags, r.stdout, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr, (flags, r.stderr)
        assert not (tmp_path / "run" / rd.CONFIG).exists()


def test_datasets_lists_each_with_its_availability():
    r = cli("datasets")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert any(line.startswith("yes") and " mnist " in line for line in lines)
    assert any(" fashion-mnist " in line for line in lines)
