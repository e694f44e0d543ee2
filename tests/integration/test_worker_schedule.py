"""The learning-rate schedule across a real stop and resume, and the thread policy of an app-started worker."""
import math
import os

import pytest

from tests.conftest import tiny_config, wait_for
from vae_core.engine.optim import learning_rate
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager


def test_a_stopped_and_resumed_run_continues_the_same_curve(runs_dir):
    m = RunManager(runs_dir)
    cfg = tiny_config(epochs=60, log_every_steps=1)
    name = m.start(cfg).name
    wait_for(lambda: m.status(name).step > 100)
    m.stop(name)
    wait_for(lambda: m.status(name).state == "stopped", timeout=10)
    stopped_at = m.status(name).step
    m.resume(name)
    wait_for(lambda: m.status(name).state == "finished", timeout=120)
    status = m.status(name)
    steps = [r for r in rd.read_metrics(runs_dir / name) if r["kind"] == "step"]
    assert stopped_at < status.total_steps and steps[-1]["step"] == status.total_steps
    assert any(r["step"] <= stopped_at for r in steps) and any(r["step"] > stopped_at + 1 for r in steps)
    for r in steps:
        assert r["lr"] == pytest.approx(learning_rate(cfg.train, r["step"] - 1, status.total_steps))


def test_a_worker_started_by_the_app_leaves_it_a_core(runs_dir):
    m = RunManager(runs_dir)
    name = m.start(tiny_config(epochs=10_000, num_threads=None)).name
    try:
        wait_for(lambda: m.status(name).state == "running")
        assert m.status(name).extra["threads"] == max(1, (os.cpu_count() or 1) - 1)
    finally:
        m.stop(name)
        wait_for(lambda: not m.status(name).active, timeout=10)
    assert math.isfinite(m.status(name).step)
