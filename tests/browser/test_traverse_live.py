"""Live drag traversal in Chromium: the image changes while the mouse is still down, and on
release the server agrees with the browser."""
import re

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle


def test_dragging_updates_the_image_before_release_and_syncs_on_release(page, server):
    page.goto(f"{server.url}/traverse?run=tiny2d")
    wait_app_idle(page)
    slider = page.locator(".le-root input[type=range]").first
    expect(slider).to_be_visible(timeout=30_000)
    page.wait_for_function("() => window.__leLast !== undefined", timeout=30_000)
    start = page.evaluate("window.__leLast.z")
    dim = int(page.locator(".le-root .le-name").first.inner_text().split()[0][1:])  # "z1 · KL …"
    # Drag away from where the base code sits, towards the far end of the slider.
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    # Press on the thumb (its position for the value, kept inside the track), drag to the far end.
    x0 = box["x"] + box["width"] * min(0.95, max(0.05, 0.5 + 0.45 * start[dim] / 3))
    x1 = box["x"] + box["width"] * (0.03 if start[dim] > 0 else 0.97)
    page.mouse.move(x0, y)
    page.mouse.down()
    frames0 = page.evaluate("window.__leFrames")
    means = []
    for i in range(30):
        page.mouse.move(x0 + (x1 - x0) * (i + 1) / 30, y)
        means.append(page.evaluate("window.__leLast.mean"))
    frames = page.evaluate("window.__leFrames") - frames0
    end = page.evaluate("window.__leLast.z")
    # Still holding the mouse: the image has been redrawn for the moves, and it changed.
    assert frames >= 25, frames
    assert max(means) - min(means) > 1.0, means  # grey levels 0..255
    assert abs(end[dim] - start[dim]) > 1.5, (start, end)
    page.mouse.up()
    # After release the server decodes the same code: its caption shows the same move.
    moved = f"z{dim} {end[dim] - start[dim]:+.2f}"
    expect(page.get_by_text(re.compile(rf"Moved from base: .*{re.escape(moved)}"))).to_be_visible(timeout=15_000)
    assert_no_exception(page)
