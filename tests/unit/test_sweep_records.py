"""Reading sweeps from their files, in-process: records, per-run states, refusals before any
worker starts. Sweeps that really train are in tests/integration/test_sweeps.py."""
import json
import time

import pytest

from tests.conftest import sweep_base_config
from vae_core.labs import beta as lb
from vae_core.runs import rundir as rd
from vae_core.runs import sweeps
from vae_core.runs.manager import RunManager


def write_record(root, sweep_id, **fields):
    folder = root / sweeps.SWEEPS_DIR
    folder.mkdir(exist_ok=True)
    (folder / f"{sweep_id}.json").write_text(json.dumps({"id": sweep_id, **fields}))


def test_list_sweeps_reads_records_newest_first_and_skips_garbage(tmp_path):
    write_record(tmp_path, "old", runs=["old-beta1"], kind="beta", values=[1], created=1.0)
    write_record(tmp_path, "new", runs=["new-a", "new-b"], kind="sigma", created=2.0, pid=123)
    (tmp_path / sweeps.SWEEPS_DIR / "torn.json").write_text('{"id": "torn", "runs": [')
    write_record(tmp_path, "no-runs", created=3.0)
    found = sweeps.list_sweeps(tmp_path)
    assert [s.id for s in found] == ["new", "old"]
    new = found[0]
    assert new.labels == new.runs == ("new-a", "new-b") and new.values == (None, None) and new.pid == 123
    assert [s.id for s in sweeps.list_sweeps(tmp_path, "beta")] == ["old"]
    assert sweeps.sweep_of(tmp_path, "new-b") == "new" and sweeps.sweep_of(tmp_path, "other") is None
    assert sweeps.list_sweeps(tmp_path / "nowhere") == []


def test_states_say_what_became_of_each_run(runs_dir):
    m = RunManager(runs_dir)
    now = time.time()
    names = ["s-a", "s-b", "s-c", "s-gone"]
    for name in names[:3]:
        (runs_dir / name).mkdir()
        rd.write_config(runs_dir / name, sweep_base_config())
    rd.write_status(runs_dir / "s-a", state="failed", error="NaN loss", heartbeat=now, step=3, epoch=0)
    rd.write_status(runs_dir / "s-b", state="running", heartbeat=now, step=5, epoch=0, total_steps=10)
    rd.write_status(runs_dir / "s-c", state="stopped", message=sweeps.QUEUED, heartbeat=now, step=0, epoch=0)
    write_record(runs_dir, "s", runs=names, created=now, pid=None)
    states = sweeps.sweep_states(m, sweeps.list_sweeps(runs_dir)[0])
    assert [(s.state, s.note) for s in states] == [
        ("failed", "NaN loss"), ("running", ""), ("not trained", "the sweep worker is gone"), ("deleted", "")]
    assert states[1].active and states[1].progress == 0.5 and not states[3].exists
    assert sweeps.sweep_active(states)
    assert not sweeps.sweep_active([states[0], states[2], states[3]])


def test_a_sweep_is_refused_before_anything_is_written(runs_dir):
    m = RunManager(runs_dir)
    cfg = sweep_base_config()
    with pytest.raises(ValueError, match="at least one"):
        sweeps.start(m, [], "p")
    with pytest.raises(ValueError, match="distinct label"):
        sweeps.start(m, [cfg, cfg], "p")  # both would be "beta1"
    (runs_dir / "busy").mkdir()
    rd.write_config(runs_dir / "busy", cfg)
    rd.write_status(runs_dir / "busy", state="running", heartbeat=time.time(), step=1, epoch=0)
    with pytest.raises(rd.RunError, match="busy is training"):
        sweeps.start(m, [cfg], "p")
    assert sorted(p.name for p in runs_dir.iterdir() if p.name != ".manager.lock") == ["busy"]


def test_the_beta_lab_hands_its_page_the_sweep_lifecycle():
    for name in ("Sweep", "SweepRunState", "list_sweeps", "sweep_of", "sweep_states", "stop_sweep", "sweep_active"):
        assert getattr(lb, name) is getattr(sweeps, name), name
