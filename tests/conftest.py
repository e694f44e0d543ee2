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
    from vae_core.runs.manager import new_run_config

    t = {"epochs": 3, "batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1}
    t.update(train)
    return new_run_config(dataset, model={"latent_dim": 2, "hidden": 64}, train=t)


# --- app fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """A runs folder with small real runs, trained once per session in a few seconds:
    "tiny" (digits 8x8, MLP, z=3), "tiny2d" (MNIST 28x28, MLP, z=2), "tiny1d" (digits, z=1)."""
    from vae_core.runs.manager import new_run_config
    from vae_core.runs.trainer import train

    root = tmp_path_factory.mktemp("runs")
    fast = {"batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "num_threads": 1}
    specs = {
        "tiny": ("digits", {"latent_dim": 3, "hidden": 64}, {"epochs": 3}),
        "tiny2d": ("mnist", {"latent_dim": 2, "hidden": 64}, {"epochs": 1, "max_steps": 40}),
        "tiny1d": ("digits", {"latent_dim": 1, "hidden": 32}, {"epochs": 1}),
    }
    for name, (ds, model, tr) in specs.items():
        status = train(new_run_config(ds, model=model, train={**fast, **tr}), root / name)
        assert status.state == "finished", status.error
    return root


@pytest.fixture
def app_runs(trained_runs, monkeypatch):
    """Point the app at the trained runs and clear Streamlit's process-wide caches."""
    import streamlit as st

    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(trained_runs))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield trained_runs
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def empty_runs(tmp_path, monkeypatch):
    import streamlit as st

    d = tmp_path / "empty-runs"
    d.mkdir()
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(d))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield d
    st.cache_resource.clear()


def page_app(page: str, run: str | None = None, timeout: float = 30):
    """An AppTest of one page file, with the selected run set as the sidebar would."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page), default_timeout=timeout)
    if run:
        at.session_state["run"] = run
    return at
