"""The marginal-likelihood lab's exact-posterior tab in Chromium: open it on the 2-D MNIST run,
click a dot on its scatter of test codes, and see that image's exact posterior drawn."""
import re

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from tests.browser.test_interactions import SCATTER_POINTS

LONG = 120_000  # ms: this machine is small and shared

# The first trace of the figure a page drew with st.plotly_chart(..., key=key), as Plotly holds it.
FIRST_TRACE = """(p) => ({type: p._fullData[0].type, name: p._fullData[0].name,
                          n: p._fullData[0].z ? p._fullData[0].z.length : 0})"""


def plot_of(page, key: str):
    plot = page.locator(f".st-key-{key} .js-plotly-plot")
    expect(plot).to_be_visible(timeout=LONG)
    page.wait_for_function(f"() => {{ const p = document.querySelector('.st-key-{key} .js-plotly-plot');"
                           " return p && p._fullLayout && p._fullData && p._fullData.length > 1 }", timeout=LONG)
    return plot


def test_click_a_point_and_see_its_exact_posterior(page, server):
    page.goto(f"{server.url}/lab_marginal_likelihood?run=tiny2d")
    wait_app_idle(page, LONG)
    page.get_by_role("tab", name="The exact posterior").click()
    wait_app_idle(page, LONG)
    scatter = plot_of(page, "ex-scatter")
    expect(page.get_by_text(re.compile(r"^The exact posterior of test image #0\b"))).to_be_visible(timeout=LONG)
    assert plot_of(page, "ex-posterior").evaluate(FIRST_TRACE)["type"] == "heatmap"

    # The most isolated point well inside the axes (not image 0), so the click cannot land on a neighbour.
    pts = [p for p in scatter.evaluate(SCATTER_POINTS) if p["inside"] and p["index"] != 0]
    assert len(pts) > 100, len(pts)
    target = max(pts, key=lambda p: p["gap"])
    assert target["gap"] > 4, target
    page.mouse.move(target["x"], target["y"])
    page.mouse.click(target["x"], target["y"])

    # That image's posterior: the caption names it, the picker and the picture follow, the heatmap is drawn.
    index = target["index"]
    expect(page.get_by_text(re.compile(rf"^The exact posterior of test image #{index}\b"))).to_be_visible(timeout=LONG)
    wait_app_idle(page, LONG)
    expect(page.get_by_label("Test image", exact=True)).to_have_value(str(index))
    pic = page.locator("[data-testid='stImage']").filter(has_text=re.compile(rf"^test image #{index}( \(digit \d\))?$"))
    expect(pic.locator("img")).to_be_visible(timeout=LONG)
    heat = plot_of(page, "ex-posterior").evaluate(FIRST_TRACE)
    assert heat["type"] == "heatmap" and heat["name"] == "p(z|x)" and heat["n"] > 10, heat
    for label in ("log p(x)", "ELBO", "KL(q ‖ p(z|x))"):
        expect(page.get_by_test_id("stMetric").filter(has_text=label).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^ELBO \+ KL = "))).to_be_visible()
    assert_no_exception(page)
