"""The learning-rate schedule and the worker's thread policy, as the trainer applies them in-process."""
import os

import pytest
import torch

from tests.conftest import tiny_config
from vae_core.engine.config import ConfigError, TrainConfig
from vae_core.engine.optim import learning_rate
from vae_core.runs import rundir as rd
from vae_core.runs.trainer import SHARE_CPU_ENV, train, worker_threads


def test_cosine_warms_up_linearly_then_decays_to_zero():
    tc = TrainConfig(lr=0.01, warmup_steps=100)
    total = 5_000
    lrs = [learning_rate(tc, s, total) for s in range(total)]
    assert lrs[0] == pytest.approx(0.01 / 100)
    assert lrs[49] == pytest.approx(0.01 * 50 / 100)
    assert max(lrs) == pytest.approx(0.01) and lrs.index(max(lrs)) in (99, 100)
    assert all(a <= b for a, b in zip(lrs[:100], lrs[1:101]))  # rising through the warm-up
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))  # then never rising
    mid = 100 + (total - 100) // 2
    assert lrs[mid] == pytest.approx(0.005, rel=1e-3)  # half way through the decay: half the peak
    assert lrs[-1] < 1e-8


def test_a_short_run_spends_at_most_a_tenth_warming_up():
    tc = TrainConfig(lr=0.01, warmup_steps=100)
    lrs = [learning_rate(tc, s, 50) for s in range(50)]
    assert lrs[4] == pytest.approx(0.01)  # warm-up capped at 5 of 50 steps
    assert lrs[-1] < 0.001


def test_constant_schedule_is_constant():
    tc = TrainConfig(lr=0.002, lr_schedule="constant")
    assert {learning_rate(tc, s, 1000) for s in (0, 1, 500, 999)} == {0.002}


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear").validate()


def test_the_trainer_follows_the_schedule(tmp_path):
    before = torch.get_num_threads()
    try:
        cfg = tiny_config(epochs=4, log_every_steps=1)
        status = train(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(before)
    steps = [r for r in rd.read_metrics(tmp_path / "run") if r["kind"] == "step"]
    assert status.state == "finished" and len(steps) == status.total_steps
    for r in steps:
        assert r["lr"] == pytest.approx(learning_rate(cfg.train, r["step"] - 1, status.total_steps))
    assert steps[-1]["lr"] < 0.01 * cfg.train.lr  # decayed to (almost) nothing by the last step


def test_thread_policy(monkeypatch):
    cores = os.cpu_count() or 1
    monkeypatch.delenv(SHARE_CPU_ENV, raising=False)
    assert worker_threads(TrainConfig()) == cores  # a terminal run takes every core
    monkeypatch.setenv(SHARE_CPU_ENV, "1")
    assert worker_threads(TrainConfig()) == max(1, cores - 1)  # beside the app, leave it one
    assert worker_threads(TrainConfig(num_threads=3)) == 3  # an explicit choice wins


def test_a_config_from_before_the_schedule_keeps_its_constant_rate():
    from vae_core.engine.config import FORMAT_VERSION, RunConfig

    d = RunConfig().to_dict()
    # A format-1 file as written before the schedule existed: no family, no schedule fields.
    del d["train"]["lr_schedule"], d["train"]["warmup_steps"], d["family"]
    d["format_version"] = 1
    old = RunConfig.from_dict(d)
    assert old.train.lr_schedule == "constant"
    assert old.family == "image_vae" and old.format_version == FORMAT_VERSION  # read as today's format
    assert RunConfig.from_dict(RunConfig().to_dict()).train.lr_schedule == "cosine"  # new configs round-trip
