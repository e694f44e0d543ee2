"""Sweeps as they really run: one background worker trains the runs in turn; Stop stops them.

The digit sweep is started through the β lab (as its page does); the others through
``runs.sweeps`` directly, with plain configs and the default labels."""
import time

import pytest

from tests.conftest import sweep_base_config, wait_for
from vae_core.data import load_dataset
from vae_core.labs import beta as lb
from vae_core.runs import rundir as rd
from vae_core.runs import sweeps
from vae_core.runs.manager import RunManager


def test_sweep_trains_its_runs_one_after_another_in_one_process(digit_sweep):
    m, names, sweep, seen_queued = digit_sweep
    assert names == ["dig-beta0.25", "dig-beta4"]
    assert sweep.id == "dig" and sweep.runs == tuple(names) and sweep.kind == "beta" and sweep.values == (0.25, 4.0)
    assert seen_queued  # the second run waited its turn
    statuses = [m.status(n) for n in names]
    assert [s.state for s in statuses] == ["finished", "finished"], [s.error for s in statuses]
    assert statuses[0].pid == statuses[1].pid  # the same worker trained both
    assert [s.state for s in sweeps.sweep_states(m, sweep)] == ["finished", "finished"]
    assert sweeps.sweep_of(m.root, "dig-beta4") == "dig"
    wait_for(lambda: not sweeps.worker_alive(sweep.pid), timeout=30)  # the worker ends with its last run


def test_smaller_beta_buys_a_higher_rate(digit_sweep):
    m, names, _, _ = digit_sweep
    x = load_dataset("digits").x_test
    small, large = (lb.rate_distortion(rd.load_snapshot(m.path(n)), x) for n in names)
    assert small.rate > large.rate + 1.0
    assert small.distortion < large.distortion
    # The numbers are the trainer's own test terms: -ELBO = rate + distortion, as logged.
    logged = [r for r in rd.read_metrics(m.path(names[0])) if r["kind"] == "epoch"][-1]
    assert small.elbo == pytest.approx(logged["test_elbo"], abs=1e-4)


def test_stopping_a_sweep_stops_its_run_and_leaves_the_rest_untrained(tmp_path):
    m = RunManager(tmp_path / "runs")
    names = sweeps.start(m, [sweep_base_config(epochs=500, beta=b) for b in (1, 2)], "long")
    assert names == ["long-beta1", "long-beta2"]
    sweep = sweeps.list_sweeps(m.root)[0]
    wait_for(lambda: m.status(names[0]).step > 0, timeout=60)
    sweeps.stop_sweep(m, sweep)
    wait_for(lambda: not sweeps.sweep_active(sweeps.sweep_states(m, sweep))
             and m.status(names[1]).message != sweeps.QUEUED, timeout=30)
    first, second = m.status(names[0]), m.status(names[1])
    assert first.state == "stopped" and 0 < first.step < first.total_steps
    assert second.state == "stopped" and second.message == sweeps.NOT_TRAINED
    assert [s.state for s in sweeps.sweep_states(m, sweep)] == ["stopped", "stopped"]


def test_stopping_a_sweep_before_it_trains_trains_nothing(tmp_path):
    m = RunManager(tmp_path / "runs")
    (m.root / "early-beta2").mkdir()  # a name the sweep would take: it moves to the next free id
    names = sweeps.start(m, [sweep_base_config(epochs=500, beta=b) for b in (1, 2)], "early")
    assert names == ["early-2-beta1", "early-2-beta2"]
    sweep = sweeps.list_sweeps(m.root)[0]
    assert sweep.id == "early-2"
    sweeps.stop_sweep(m, sweep)  # the worker is still starting up
    wait_for(lambda: not sweeps.sweep_active(sweeps.sweep_states(m, sweep)) and not sweeps.worker_alive(sweep.pid),
             timeout=60, every=0.2)
    states = [m.status(n) for n in names]
    assert [s.state for s in states] == ["stopped", "stopped"], [s.error for s in states]
    assert all(s.message == sweeps.NOT_TRAINED for s in states)
    assert not sweeps.worker_alive(sweep.pid)


def test_sweep_worker_skips_runs_taken_over_or_stopped(tmp_path):
    """In-process, through the CLI: a queued run with a stop request is not trained; the sweep goes on."""
    from vae_core.cli import main

    dirs = []
    for i, beta in enumerate((1.0, 2.0, 4.0)):
        d = tmp_path / f"r{i}"
        d.mkdir()
        rd.write_config(d, sweep_base_config(epochs=1, beta=beta))
        rd.write_status(d, state="starting" if i == 0 else "stopped", message=None if i == 0 else sweeps.QUEUED,
                        heartbeat=time.time(), step=0, epoch=0)
        dirs.append(d)
    rd.request(dirs[1], "stop")
    rd.write_status(dirs[2], state="finished", step=7, epoch=1, heartbeat=time.time())  # trained elsewhere
    assert main(["sweep", "--run-dirs", *map(str, dirs)]) == 0
    assert rd.read_status(dirs[0]).state == "finished"
    st1 = rd.read_status(dirs[1])
    assert st1.state == "stopped" and "not trained" in st1.message
    assert rd.read_status(dirs[2]).step == 7  # left alone
