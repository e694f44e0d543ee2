"""Data-parallel training (DDP under torchrun, gloo on the CPU): the same losses as one process,
a dead rank fails the run and it resumes, two "nodes" rendezvous, a stop from the app stops every
rank, and ``train --nproc`` launches torchrun.

Each torchrun start costs ~15-25 s here (every process imports torch on 2 cores), so runs are
tiny: the 8x8 digits, a small MLP, a few dozen steps.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, tiny_config, wait_for
from vae_core.runs import distributed as dd
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager

# 2-process vs 1-process losses (nats per example, ~30-60 here): the same global batches and the
# same noise rows, so only the order of float additions differs (the gradient all-reduce, the
# per-shard means). Observed differences are ~1e-6 relative.
LOSS_RTOL = 1e-4

pytestmark = pytest.mark.slow


@pytest.fixture
def dist_env(monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv(dd.TIMEOUT_ENV, "30")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.delenv("LATENT_EXPLORER_FAULT", raising=False)
    return os.environ


def _run(cmd, env=None, timeout=150, **kw):
    return subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout, **kw)


def _cli(*args):
    return [sys.executable, "-m", "vae_core", "train", *args]


def _step_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in rd.read_metrics(run_dir) if r.get("kind") == "step"}


def _prepare(run_dir: Path, **train) -> None:
    run_dir.mkdir(parents=True)
    rd.write_config(run_dir, tiny_config(**train))


def test_two_processes_reproduce_one_process_and_nproc_launches_torchrun(tmp_path, dist_env):
    from vae_core.cli import _add_train_flags, _config_from_flags
    from vae_core.runs.trainer import train

    args = ["--dataset", "digits", "--body", "mlp", "--hidden", "32", "--latent-dim", "4", "--batch-size", "32",
            "--max-steps", "30", "--num-threads", "1", "--seed", "3"]
    threads = torch.get_num_threads()
    try:  # the one-process reference, in this process, from the same flags
        p = argparse.ArgumentParser()
        _add_train_flags(p)
        config, data = _config_from_flags(p.parse_args(args))
        one = train(config, tmp_path / "one", data=data)
    finally:
        torch.set_num_threads(threads)
    assert one.state == "finished"

    t0 = time.time()
    res = _run(_cli("--run-dir", str(tmp_path / "two"), *args, "--nproc", "2"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "torch.distributed.run" in res.stderr and "--nproc-per-node 2" in res.stderr
    st = rd.read_status(tmp_path / "two")
    assert st.state == "finished" and st.step == 30
    assert st.extra["world_size"] == 2 and st.extra["backend"] == "gloo"
    assert rd.read_config(tmp_path / "two").train.nproc == 2

    a, b = _step_losses(tmp_path / "one"), _step_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [25, 30]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=LOSS_RTOL), step
    wa = rd.load_snapshot(tmp_path / "one").model.state_dict()
    wb = rd.load_snapshot(tmp_path / "two").model.state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-3, atol=1e-4)
    print(f"2-process run took {time.time() - t0:.1f} s")


def test_a_dead_rank_fails_the_run_keeps_its_snapshot_and_it_resumes(tmp_path, dist_env):
    run_dir = tmp_path / "run"
    _prepare(run_dir, nproc=2, epochs=1000, max_steps=30, snapshot_every_s=0.0, batch_size=32)
    env = {**dist_env, "LATENT_EXPLORER_FAULT": "die@12:rank1"}  # rank 1 SIGKILLs itself before step 12
    res = _run(_cli("--run-dir", str(run_dir)), env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    st = rd.read_status(run_dir)
    assert st.state == "failed", st
    assert "training process" in st.error
    snap = rd.load_snapshot(run_dir)  # intact, from before the death
    assert snap.step == 10
    assert all(torch.isfinite(t).all() for t in snap.model.state_dict().values())

    res = _run(_cli("--run-dir", str(run_dir), "--resume"), env=dist_env)
    assert res.returncode == 0, res.stdout + res.stderr
    st = rd.read_status(run_dir)
    assert st.state == "finished" and st.step == 30 and st.extra["world_size"] == 2
    starts = [r for r in rd.read_metrics(run_dir) if r.get("kind") == "start"]
    assert starts[-1]["resumed"] and starts[-1]["step"] == 10


def test_an_early_stop_decided_by_rank0_reaches_every_rank_and_keeps_the_best(tmp_path, dist_env):
    run_dir = tmp_path / "run"
    _prepare(run_dir, nproc=2, epochs=6, patience=1, batch_size=64)
    env = {**dist_env, "LATENT_EXPLORER_FAULT": "worse@2"}  # every rank zeroes its weights before epoch 2's evaluation
    res = _run(_cli("--run-dir", str(run_dir)), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    st = rd.read_status(run_dir)
    assert st.state == "finished" and st.extra["world_size"] == 2, st
    # Epoch 2 is worse: two epochs of annealing (patience 1) begin on every rank at the same step.
    assert st.extra["stopped_early_at_epoch"] == 4 and st.extra["best_epoch"] == 1
    assert [r["epoch"] for r in rd.read_metrics(run_dir) if r.get("kind") == "epoch"] == [1, 2, 3, 4]
    assert [r["step"] for r in rd.read_metrics(run_dir) if r.get("kind") == "cooldown"] == [2 * st.extra["steps_per_epoch"]]
    best, latest = rd.load_snapshot(run_dir, which="best"), rd.load_snapshot(run_dir, which="latest")
    assert (best.kind, best.epoch, latest.epoch) == ("best", 1, 4)


def test_two_nodes_rendezvous_over_c10d_and_only_global_rank0_writes(tmp_path, dist_env):
    run_dir = tmp_path / "run"
    _prepare(run_dir, epochs=1000, max_steps=20, batch_size=32)
    port = dd.free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", "ddp-two-nodes", "--max-restarts", "0", "--monitor-interval", "0.2",
               "-m", "vae_core", "train", "--run-dir", str(run_dir)]
        procs.append(subprocess.Popen(cmd, cwd=str(ROOT), env=dist_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=150)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    st = rd.read_status(run_dir)
    assert st.state == "finished" and st.step == 20 and st.extra["world_size"] == 2
    assert sum(1 for r in rd.read_metrics(run_dir) if r.get("kind") == "start") == 1  # one writer
    leftovers = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_a_stop_from_the_app_stops_every_rank(runs_dir, dist_env):
    m = RunManager(runs_dir)
    name = m.start(tiny_config(nproc=2, epochs=100_000, batch_size=32)).name
    path = runs_dir / name
    wait_for(lambda: m.status(name).state == "running" and m.status(name).step >= 20, timeout=120)
    st = m.status(name)
    assert st.extra["world_size"] == 2 and st.extra["backend"] == "gloo"
    rank0 = st.pid
    launcher = m._procs[name]
    st = m.stop(name, wait=60)
    assert st.state == "stopped", st
    assert launcher.wait(timeout=60) == 0
    assert rd.load_snapshot(path).step == st.step  # the final snapshot is the stopping step
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)
    log = (path / "worker.log").read_text()
    assert "torch.distributed.run" in log
