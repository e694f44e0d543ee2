"""A new user's first minute, in a real browser: start a run, watch it update by itself,
visit every page while it trains; reload onto a training run, re-attach and stop it."""
import time

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from vae_core.runs.manager import RunManager, new_run_config

PAGES = ["reconstructions", "latent_space", "sample", "traverse", "encode"]

# Number of points in the first trace of the loss chart, read from Plotly's own DOM node.
CURVE_POINTS = "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data ? p.data[0].x.length : 0 }"


def test_start_a_run_and_watch_it_update_by_itself(page, fresh_server):
    page.goto(fresh_server.url)
    expect(page.get_by_text("No runs yet").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Train a default model").first.click()

    # The curve appears and grows with no interaction at all.
    page.wait_for_function(f"({CURVE_POINTS})() > 0", timeout=60_000)
    first = page.evaluate(CURVE_POINTS)
    page.wait_for_function(f"({CURVE_POINTS})() > {first}", timeout=30_000)
    expect(page.get_by_text("and the decoder's mean (bottom)")).to_be_visible(timeout=30_000)
    assert_no_exception(page)

    # Every page has sensible content while the run trains.
    for name in PAGES:
        page.goto(f"{fresh_server.url}/{name}")
        wait_app_idle(page)
        expect(page.get_by_text("snapshot at step").first).to_be_visible(timeout=30_000)
        assert_no_exception(page)


def test_a_reload_reattaches_to_a_training_run_and_stop_stops_it(page, fresh_server):
    # A run long enough that it cannot finish while the test waits: the default run above
    # lasts about a minute, and racing it made this step flaky on a fast CI machine.
    m = RunManager(fresh_server.runs_dir)
    run = m.start(new_run_config("digits", train={"epochs": 5_000, "patience": 0})).name
    page.goto(f"{fresh_server.url}/?run={run}")
    stop = page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible(timeout=30_000)
    page.wait_for_function(f"({CURVE_POINTS})() > 0", timeout=60_000)
    n = page.evaluate(CURVE_POINTS)
    page.wait_for_function(f"({CURVE_POINTS})() > {n}", timeout=30_000)

    # The sidebar's status line follows the run by itself too (not only at full reruns).
    line = page.get_by_test_id("stSidebar").get_by_text("running · step")
    expect(line).to_be_visible(timeout=30_000)
    before = line.inner_text()
    page.wait_for_function(
        "(t) => { const e = [...document.querySelectorAll('[data-testid=stSidebar] [data-testid=stCaptionContainer]')]"
        ".find(e => e.innerText.includes('running · step')); return e && e.innerText !== t }", arg=before, timeout=30_000)

    stop.click()
    expect(page.get_by_text("stopped").first).to_be_visible(timeout=15_000)
    assert m.status(run).state == "stopped"
    expect(page.get_by_test_id("stSidebar").get_by_text("stopped · step")).to_be_visible(timeout=15_000)
    stopped_at = page.evaluate(CURVE_POINTS)
    time.sleep(3)
    assert page.evaluate(CURVE_POINTS) == stopped_at
    assert_no_exception(page)


def test_a_deep_link_on_a_fresh_server_gets_the_whole_app(page, fresh_server):
    # The first visit after the server starts goes straight to a page: it must still run
    # through app.py (navigation, run picker), not as a lone script from pages/.
    page.goto(f"{fresh_server.url}/sample")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Latent space")).to_be_visible(timeout=30_000)
    expect(sidebar.get_by_text("No runs yet")).to_be_visible(timeout=30_000)  # app.py's run picker area
    assert "ui" not in [t.strip().lower() for t in sidebar.inner_text().splitlines()]
    assert_no_exception(page)
