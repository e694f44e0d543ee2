"""More than one thing at once, in a real browser: a double-clicked Start, two sessions on one
run, a server restarted under a training run, and a second run asked for while one trains."""
import os
import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from tests.browser.server import StreamlitServer
from tests.conftest import tiny_config
from vae_core.runs.manager import RunManager

# Number of points in the first trace of the loss chart, read from Plotly's own DOM node.
CURVE_POINTS = "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data ? p.data[0].x.length : 0 }"


def button(page, name: str):
    """A button in the page's content. Not the header's status widget, which shows its own "Stop"
    (stop the script) while a script runs."""
    return page.get_by_test_id("stMainBlockContainer").get_by_role("button", name=name, exact=True)


def run_dirs(runs_dir) -> list[str]:
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def state_label(page, state: str):
    """The bold run state in the Train page's caption ("… · **running** on cpu")."""
    return page.locator("[data-testid='stMain'] strong").filter(has_text=re.compile(rf"^{state}$"))


def start_long_run(runs_dir) -> str:
    """A small MNIST run that would train for many minutes (no early stopping): the test stops it."""
    res = RunManager(runs_dir).start(tiny_config("mnist", epochs=200, patience=0))
    assert res.created, res.message
    return res.name


def wait_running(page, timeout: float = 60_000) -> None:
    expect(button(page, "Pause")).to_be_visible(timeout=timeout)
    expect(state_label(page, "running")).to_be_visible()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- 1. --------------------------------------------------------------------------------------------
def test_start_pressed_many_times_at_once_makes_one_run(browser, fresh_server):
    """Session A double-clicks Start while session B clicks its own Start at the same moment.

    One session's reruns are sequential (the second click's rerun already sees the run and no
    longer draws the button), but two sessions' scripts run in parallel threads: only the
    manager's lock keeps this to one run (checked: with the lock's active-run test disabled this
    test finds two run directories)."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        a, b = (c.new_page() for c in contexts)
        for p in (a, b):
            p.goto(fresh_server.url)
            expect(p.get_by_role("button", name=re.compile("^Train a default model"))).to_be_visible(timeout=30_000)
        # B's click is scheduled in the browser; A's double click is sent at the same wall-clock moment.
        at = b.evaluate("Date.now()") + 1500
        b.evaluate("""(at) => {
          const el = [...document.querySelectorAll('button')].find(e => e.innerText.includes('Train a default model'));
          setTimeout(() => el.click(), at - Date.now());
        }""", at)
        time.sleep(max(0.0, at / 1000 - time.time()))
        a.get_by_role("button", name=re.compile("^Train a default model")).dblclick()

        for p in (a, b):  # both sessions show the run training
            wait_running(p)
        time.sleep(2)  # let any late start request land
        runs = run_dirs(fresh_server.runs_dir)
        assert len(runs) == 1, runs
        for p in (a, b):
            expect(p.get_by_role("heading", name=runs[0], exact=True)).to_be_visible()
            assert_no_exception(p)

        # The default run takes about 30 s on two idle cores, so it may already have finished: then
        # both sessions must say so; otherwise one session stops it and both show that.
        end = "stopped" if RunManager(fresh_server.runs_dir).status(runs[0]).active else "finished"
        if end == "stopped":
            button(a, "Stop").click()
        for p in (a, b):
            expect(state_label(p, end)).to_be_visible(timeout=30_000)
            expect(button(p, "Stop")).to_have_count(0)
        assert RunManager(fresh_server.runs_dir).status(runs[0]).state == end
        assert run_dirs(fresh_server.runs_dir) == runs
        for p in (a, b):
            assert_no_exception(p)
    finally:
        for c in contexts:
            c.close()


# --- 2. --------------------------------------------------------------------------------------------
def test_two_sessions_control_the_same_run(browser, fresh_server):
    name = start_long_run(fresh_server.runs_dir)
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        a, b = (c.new_page() for c in contexts)
        for p in (a, b):
            p.goto(f"{fresh_server.url}/?run={name}")
        for p in (a, b):
            wait_running(p)

        # Each change made in one session shows up in the other by itself (auto refresh).
        button(a, "Pause").click()
        expect(state_label(b, "paused")).to_be_visible(timeout=20_000)
        expect(button(b, "Resume")).to_be_visible()
        button(b, "Resume").click()
        expect(state_label(a, "running")).to_be_visible(timeout=20_000)
        expect(button(a, "Pause")).to_be_visible()
        button(a, "Stop").click()
        expect(state_label(b, "stopped")).to_be_visible(timeout=20_000)
        expect(button(b, "Stop")).to_have_count(0)
        expect(state_label(a, "stopped")).to_be_visible(timeout=20_000)

        assert RunManager(fresh_server.runs_dir).status(name).state == "stopped"
        for p in (a, b):
            assert_no_exception(p)
    finally:
        for c in contexts:
            c.close()


# --- 3. --------------------------------------------------------------------------------------------
def test_a_restarted_server_reattaches_to_the_training_run(page, fresh_server, tmp_path):
    # Started from the page's form, so the worker is the server's own child process; long enough
    # (200 epochs, no early stopping) to outlive the restart on a busy machine.
    page.goto(fresh_server.url)
    form = page.get_by_test_id("stForm")
    form.get_by_label("Epochs").fill("200")
    form.get_by_role("spinbutton", name="Early-stopping patience").fill("0")
    start = form.get_by_role("button", name="Start training")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    wait_running(page)
    page.wait_for_function(f"({CURVE_POINTS})() > 0", timeout=60_000)
    (name,) = run_dirs(fresh_server.runs_dir)
    m = RunManager(fresh_server.runs_dir)
    before = m.status(name)

    # The server goes away without stopping anything (close() would stop the worker).
    fresh_server.proc.terminate()
    fresh_server.proc.wait(15)
    assert pid_alive(before.pid), "the worker died with the server"

    server2 = StreamlitServer(fresh_server.runs_dir, tmp_path / "server2.log")
    try:
        page.goto(server2.url)  # no ?run=: the app finds the active run by itself
        wait_running(page)
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        page.wait_for_function(f"({CURVE_POINTS})() > 0", timeout=30_000)
        n = page.evaluate(CURVE_POINTS)
        page.wait_for_function(f"({CURVE_POINTS})() > {n}", timeout=30_000)  # still live
        after = m.status(name)
        assert after.pid == before.pid and after.step > before.step, (before, after)
        assert run_dirs(fresh_server.runs_dir) == [name]
        assert_no_exception(page)
    finally:
        m.stop(name, wait=10)
        server2.close()
    assert not m.status(name).active


# --- 4. --------------------------------------------------------------------------------------------
def test_new_run_form_while_one_trains_attaches_to_it(page, fresh_server):
    first = start_long_run(fresh_server.runs_dir)
    page.goto(f"{fresh_server.url}/?run={first}")
    wait_running(page)

    form = page.get_by_test_id("stForm")
    form.get_by_label("Run name (optional)").fill("second")
    start = form.get_by_role("button", name="Start training")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()

    # The manager attaches instead of starting an interleaved run; the page says so.
    expect(page.get_by_text(f"Run {first} is already training; showing it.")).to_be_visible(timeout=30_000)
    wait_app_idle(page)
    expect(page.get_by_role("heading", name=first)).to_be_visible()
    wait_running(page)
    m = RunManager(fresh_server.runs_dir)
    assert run_dirs(fresh_server.runs_dir) == [first]
    assert [r.name for r in m.list_runs() if r.status.active] == [first]
    assert_no_exception(page)
    m.stop(first, wait=10)
