"""The text pages in Chromium, on a server over a copy of the session's topic runs ("topics":
ProdLDA, "lda": LDA): dragging a topic slider redraws the word bars while the mouse is still down
and the server agrees on release; Sample and Encode render without an exception."""
from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from tests.browser.server import StreamlitServer


@pytest.fixture(scope="module")
def text_server(text_runs, tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser-text") / "runs"
    shutil.copytree(text_runs, runs)
    s = StreamlitServer(runs, runs.parent / "server.log")
    yield s
    s.close()


def shown_words(page) -> list[str]:
    """The words the bars show now, read from the page (not from the widget's own record)."""
    return page.locator(".lt-root .lt-bars .lt-word").all_inner_texts()


@pytest.mark.parametrize("run", ["topics", "lda"])
def test_dragging_a_topic_slider_changes_the_words_before_release(page, text_server, run):
    page.goto(f"{text_server.url}/traverse?run={run}")
    wait_app_idle(page)
    slider = page.locator(".lt-root input[type=range]").first
    expect(slider).to_be_visible(timeout=30_000)
    page.wait_for_function("() => window.__ltLast !== undefined", timeout=30_000)
    topic = page.locator(".lt-root .lt-name").first.inner_text()  # "topic 3 · nasa orbit moon"
    n = int(topic.split()[1])
    start, last = int(slider.input_value()), int(slider.get_attribute("max"))
    words0 = shown_words(page)
    assert len(words0) >= 10
    # Press on the thumb (its position for the value), drag to the far end of the track.
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    frac = start / last
    x0 = box["x"] + box["width"] * min(0.97, max(0.03, frac))
    x1 = box["x"] + box["width"] * (0.01 if frac > 0.5 else 0.99)
    page.mouse.move(x0, y)
    page.mouse.down()
    frames0 = page.evaluate("window.__ltFrames")
    seen = []
    for i in range(24):
        page.mouse.move(x0 + (x1 - x0) * (i + 1) / 24, y)
        seen.append(shown_words(page))
    frames = page.evaluate("window.__ltFrames") - frames0
    end = int(slider.input_value())
    last_shown = page.evaluate("window.__ltLast")
    # Still holding the mouse: the bars were redrawn as the slider passed its positions, and changed.
    assert abs(end - start) >= 8, (start, end)
    assert frames >= 6, frames
    assert any(w != words0 for w in seen), seen
    assert last_shown["topic"] == n - 1 and last_shown["step"] == end
    assert shown_words(page) == last_shown["words"]
    page.mouse.up()
    # On release the server reads the same position: its caption names the topic that moved.
    expect(page.get_by_text(re.compile(rf"Moved from base: topic {n}: θ \d+% → \d+%"))).to_be_visible(timeout=15_000)
    assert_no_exception(page)


def test_sample_and_encode_render(page, text_server):
    page.goto(f"{text_server.url}/sample?run=lda")
    wait_app_idle(page)
    expect(page.get_by_text("The prior is Dirichlet(α = 0.25)")).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid='stPlotlyChart']")).to_have_count(7, timeout=30_000)  # the mixtures, 6 draws
    assert_no_exception(page)

    page.goto(f"{text_server.url}/encode?run=lda")
    wait_app_idle(page)
    box = page.locator(".st-key-encode_text textarea")
    expect(box).to_be_visible(timeout=30_000)
    box.fill("nasa orbit rocket launch")
    box.press("Control+Enter")
    expect(page.get_by_text("Nearest posts")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"^space · H "))).not_to_have_count(0)
    assert_no_exception(page)
