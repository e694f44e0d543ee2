"""Browser layer: the real `streamlit run app.py` on a free loopback port, driven by
Debian's Chromium through pytest-playwright (never `playwright install`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer


def pytest_collection_modifyitems(config, items):
    if not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM}: run tests/install-system-deps.sh")
        for item in items:
            if "browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def server(trained_runs, tmp_path_factory):
    """A server over a copy of the session's trained runs (tiny, tiny2d, tiny1d)."""
    runs = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(trained_runs, runs)
    s = StreamlitServer(runs, runs.parent / "server.log")
    yield s
    s.close()


@pytest.fixture
def fresh_server(tmp_path):
    """A server with an empty runs folder, for tests that start training."""
    runs = tmp_path / "runs"
    runs.mkdir()
    s = StreamlitServer(runs, tmp_path / "server.log")
    yield s
    s.close()


def wait_app_idle(page, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.match(/Running|Stop/)",
        timeout=timeout)


def assert_no_exception(page) -> None:
    exc = page.locator("[data-testid='stException']")
    assert exc.count() == 0, exc.first.inner_text()[:2000]
