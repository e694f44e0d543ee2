"""The training worker as its own process: pause, resume, stop, a kill, two starts at once."""
import os
import signal
import threading
import time

from tests.conftest import tiny_config, wait_for
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager


def test_pause_resume_stop_in_a_subprocess(runs_dir):
    m = RunManager(runs_dir)
    res = m.start(tiny_config(epochs=10_000))
    assert res.created
    name = res.name
    wait_for(lambda: m.status(name).state == "running" and m.status(name).step > 0)
    m.pause(name)
    wait_for(lambda: m.status(name).state == "paused")
    s1 = m.status(name).step
    time.sleep(0.5)
    assert m.status(name).step == s1
    assert m.resume(name).message.startswith("Resumed")
    wait_for(lambda: m.status(name).state == "running" and m.status(name).step > s1)
    t0 = time.time()
    m.stop(name)
    wait_for(lambda: m.status(name).state == "stopped", timeout=5)
    assert time.time() - t0 < 1.0
    assert rd.load_snapshot(runs_dir / name).step > 0  # the stop published the weights


def test_two_simultaneous_starts_give_one_run(runs_dir):
    cfg = tiny_config(epochs=10_000)
    managers = [RunManager(runs_dir), RunManager(runs_dir)]  # as two server processes would have
    results = [None, None]
    barrier = threading.Barrier(2)

    def go(i):
        barrier.wait()
        results[i] = managers[i].start(cfg)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(r.created for r in results) == [False, True]
        assert results[0].name == results[1].name
        assert len([p for p in runs_dir.iterdir() if p.is_dir()]) == 1
    finally:
        managers[0].stop(results[0].name, wait=5)


def test_killed_worker_shows_stale_and_resumes_from_its_snapshot(runs_dir, monkeypatch):
    monkeypatch.setattr(rd, "STALE_AFTER_S", 2.0)
    m = RunManager(runs_dir)
    name = m.start(tiny_config(epochs=10_000)).name
    wait_for(lambda: rd.snapshot_meta(runs_dir / name) is not None and rd.snapshot_meta(runs_dir / name).step > 0)
    pid = m.status(name).pid
    os.kill(pid, signal.SIGKILL)
    m._procs.clear()  # behave like a restarted server that never knew the child
    wait_for(lambda: m.status(name).stale, timeout=10)
    assert not m.status(name).active
    saved_step = rd.snapshot_meta(runs_dir / name).step
    res = m.resume(name)
    assert res.created
    wait_for(lambda: m.status(name).state == "running" and m.status(name).step > saved_step)
    starts = [r for r in rd.read_metrics(runs_dir / name) if r["kind"] == "start"]
    assert starts[-1]["step"] == saved_step
    m.stop(name, wait=5)


def test_stop_pressed_while_the_worker_is_starting_is_honoured(runs_dir):
    m = RunManager(runs_dir)
    name = m.start(tiny_config(epochs=10_000)).name
    assert m.status(name).state == "starting"  # the worker is still importing torch
    m.stop(name)
    st = wait_for(lambda: (s := m.status(name)).state in ("stopped", "finished", "failed") and s, timeout=60)
    assert st.state == "stopped", st
    assert st.step < 10_000 * 25  # it did not train to the end
    proc = m._procs.get(name)
    if proc is not None:
        proc.wait(10)
