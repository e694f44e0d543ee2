import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAYERS = ("unit", "integration", "app", "browser")  # the folders under tests/, one marker each


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer, from the folder it lives in (``pytest -m unit`` etc.)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Dataset caches, runs and the import key go to temporary folders (subprocesses inherit the variables)."""
    cache = os.environ.get("LATENT_EXPLORER_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    # The key that signs imported models' factories: the tests' own, never the user's.
    values = {"LATENT_EXPLORER_CACHE": cache,
              "LATENT_EXPLORER_KEY_FILE": str(tmp_path_factory.mktemp("key") / "import.key")}
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(d))
    return d


def wait_for(pred, timeout=30.0, every=0.05):
    """Poll ``pred`` until it returns something truthy, and return that; fail after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def tiny_config(dataset="digits", **train):
    """A run config that trains in about a second on the CPU. No early stopping unless asked for:
    the tests that want a run to go on for minutes give it thousands of epochs."""
    from vae_core.runs.manager import new_run_config

    t = {"epochs": 3, "batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1,
         "patience": 0}
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


@contextlib.contextmanager
def app_reading(root, monkeypatch):
    """The app reads its runs from ``root``, with Streamlit's process-wide caches cleared before and after."""
    import streamlit as st

    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def app_runs(trained_runs, monkeypatch):
    """Point the app at the trained runs and clear Streamlit's process-wide caches."""
    with app_reading(trained_runs, monkeypatch):
        yield trained_runs


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


# --- a real β sweep, trained once per session ------------------------------------------------
SWEEP_FAST = {"batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1,
              "patience": 0}


def sweep_base_config(**train):
    """The base of the test sweeps: digits, z = 4, three quick epochs."""
    from vae_core.runs.manager import new_run_config

    return new_run_config("digits", model={"latent_dim": 4, "hidden": 64}, train={**SWEEP_FAST, "epochs": 3, **train})


@pytest.fixture(scope="session")
def digit_sweep(tmp_path_factory):
    """β = 0.25 and β = 4 on digits, started through the manager: one worker process, runs in turn.
    Returns (manager, run names, the sweep record, whether the second run was seen queued)."""
    from vae_core.labs import beta as lb
    from vae_core.runs.manager import RunManager

    root = tmp_path_factory.mktemp("sweep-runs")
    m = RunManager(root)
    names = lb.start_sweep(m, lb.sweep_configs(sweep_base_config(), betas=[0.25, 4]), "dig", "beta")
    sweep = lb.list_sweeps(root)[0]
    seen_queued = lb.sweep_states(m, sweep)[1].state == "queued"
    deadline = time.time() + 90
    while time.time() < deadline and lb.sweep_active(lb.sweep_states(m, sweep)):
        time.sleep(0.2)
    return m, names, sweep, seen_queued


# --- text: a tiny corpus with four planted themes, and topic runs trained on it --------------------
TEXT_THEMES = {
    "space": "planet orbit rocket launch nasa moon star galaxy shuttle satellite comet telescope astronaut lunar solar",
    "sport": "game team player score season coach league hockey baseball pitch goal match winner ball fans",
    "computer": "disk drive memory software windows printer driver keyboard monitor modem graphics chip server "
                "file program",
    "religion": "god church faith bible jesus prayer belief christian heaven soul priest gospel scripture moral sin",
}


def write_text_corpus(path: Path, n_docs: int = 400, words_per_doc: int = 40, seed: int = 0) -> str:
    """A .jsonl corpus drawn from LDA's generative process (the study notes' eq. 13) over four
    themes of 15 words each, every document labelled with its main theme. Returns its spec."""
    import json

    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(TEXT_THEMES)
    themes = [TEXT_THEMES[n].split() for n in names]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_docs):
            theta = rng.dirichlet([0.3] * len(themes))
            topics = rng.choice(len(themes), size=words_per_doc, p=theta)
            words = [themes[t][rng.integers(len(themes[t]))] for t in topics]
            f.write(json.dumps({"text": " ".join(words), "label": names[int(np.argmax(theta))]}) + "\n")
    return f"text:{path}"


TEXT_FAST = {"batch_size": 32, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1, "patience": 0}


def tiny_topic_config(spec: str, family: str = "prodlda", **train):
    """A topic model of the tiny corpus that trains in a few seconds (K = 4, one per planted theme)."""
    from vae_core.runs.manager import new_run_config

    # ProdLDA finds all four themes with these on seeds 0 to 3 (with hidden 32, dropout 0.2 and 30
    # epochs it missed one on some seeds)
    model = {"topics": 4, "hidden": 64, "dropout": 0.0} if family == "prodlda" else {"topics": 4}
    epochs = {"prodlda": 60, "lda": 5}[family]
    return new_run_config(spec, family=family, model=model,
                          train={**TEXT_FAST, "epochs": epochs, **({"lr": 1e-2} if family == "prodlda" else {}), **train})


@pytest.fixture(scope="session")
def text_runs(tmp_path_factory):
    """A runs folder with "topics" (ProdLDA, K = 4) and "lda" (online LDA, K = 4) on the tiny
    corpus, trained once per session; the corpus spec is in ``(root / "corpus.spec")``."""
    from vae_core.runs.trainer import train

    root = tmp_path_factory.mktemp("text-runs")
    spec = write_text_corpus(root.parent / f"{root.name}-corpus.jsonl")
    (root.parent / f"{root.name}-corpus.spec").write_text(spec)
    for name, family in (("topics", "prodlda"), ("lda", "lda")):
        status = train(tiny_topic_config(spec, family), root / name)
        assert status.state == "finished", status.error
    return root


@pytest.fixture
def text_app_runs(text_runs, monkeypatch):
    """Point the app at the topic runs and clear Streamlit's process-wide caches."""
    with app_reading(text_runs, monkeypatch):
        yield text_runs
