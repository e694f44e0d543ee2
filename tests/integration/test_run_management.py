"""Run management beside a live worker process: a training run is neither renamed nor
deleted, and its download uploads back as a run that loads."""
import pytest

from tests.conftest import tiny_config, wait_for
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager


def test_a_training_run_is_not_renamed_or_deleted_but_downloads(runs_dir):
    m = RunManager(runs_dir)
    name = m.start(tiny_config(epochs=10_000)).name
    try:
        wait_for(lambda: m.status(name).state == "running" and rd.snapshot_meta(runs_dir / name), timeout=60)
        with pytest.raises(rd.RunError, match="training; stop it before renaming"):
            m.rename(name, "other")
        with pytest.raises(rd.RunError, match="training; stop it before deleting"):
            m.delete(name)
        assert m.status(name).active and not (runs_dir / "other").exists()
        data = m.export_zip(name)  # mid-training: the snapshot is replaced atomically, so it is whole
    finally:
        st = m.stop(name, wait=10)
    assert st.state == "stopped", st
    copy = m.import_zip(data, "copy")
    assert rd.load_snapshot(runs_dir / copy).step > 0
    assert rd.read_status(runs_dir / copy).message == "imported"
    m.rename(name, "other")  # once stopped, both work
    m.delete("other")
    assert [r.name for r in m.list_runs()] == ["copy"]
