import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Dataset caches and runs go to temporary folders (subprocesses inherit the variables)."""
    cache = os.environ.get("LATENT_EXPLORER_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("LATENT_EXPLORER_CACHE")
    os.environ["LATENT_EXPLORER_CACHE"] = cache
    yield
    if old is None:
        os.environ.pop("LATENT_EXPLORER_CACHE", None)
    else:
        os.environ["LATENT_EXPLORER_CACHE"] = old


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(d))
    return d


def tiny_config(dataset="digits", **train):
    """A run config that trains in about a second on the CPU."""
    from vae_core.manager import new_run_config

    t = {"epochs": 3, "batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1}
    t.update(train)
    return new_run_config(dataset, model={"latent_dim": 2, "hidden": 64}, train=t)
