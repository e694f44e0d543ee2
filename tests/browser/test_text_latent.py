"""A topic model end to end in a real browser: train a tiny ProdLDA run from the Train page's text
form, watch its curves and topics appear, then click a document on the Latent space scatter and
read the post."""
import re

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from tests.browser.test_interactions import SCATTER_POINTS
from tests.conftest import wait_for, write_text_corpus
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager

LONG = 90_000  # ms: the worker's start, counting the corpus and training, on a busy machine
# Points in the first trace of the curves (the training objective), from Plotly's own DOM node.
CURVE_POINTS = "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data ? p.data[0].x.length : 0 }"


def test_train_a_tiny_topic_model_then_click_a_document_and_read_it(page, fresh_server, tmp_path):
    corpus = tmp_path / "themes.jsonl"
    write_text_corpus(corpus)  # 400 short documents on four planted themes

    # --- the Train page's text form ---------------------------------------------------------------
    page.goto(fresh_server.url)
    wait_app_idle(page)
    page.get_by_text("Text, with a topic model").click()
    wait_app_idle(page)
    combo = page.get_by_role("combobox", name="Dataset")
    combo.click()
    page.get_by_role("option", name="Your own text…").click()
    wait_app_idle(page)
    path = page.get_by_label("Path on this machine")
    path.fill(str(corpus))
    path.press("Enter")
    wait_app_idle(page)
    form = page.get_by_test_id("stForm")
    field = lambda label: form.get_by_role("spinbutton", name=label, exact=True)  # noqa: E731 (not the "?" help)
    expect(field("Hidden units")).to_be_visible()  # ProdLDA's fields, the default model
    expect(field("Latent dimensions")).to_have_count(0)  # the image form's are gone
    field("Topics K").fill("4")
    field("Hidden units").fill("32")
    field("Epochs").fill("20")
    form.get_by_label("Run name (optional)").fill("themes")
    start = form.get_by_role("button", name="Start training")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()

    # The run's panel: its curves (with the test perplexity) and its topics, as it trains.
    expect(page.get_by_role("heading", name="themes")).to_be_visible(timeout=LONG)
    page.wait_for_function(f"({CURVE_POINTS})() > 0", timeout=LONG)
    m = RunManager(fresh_server.runs_dir)
    wait_for(lambda: m.status("themes").state == "finished", timeout=LONG / 1000)
    cfg = rd.read_config(fresh_server.runs_dir / "themes")
    assert (cfg.family, cfg.model.topics, cfg.train.dataset) == ("prodlda", 4, f"text:{corpus}")
    shown = rd.snapshot_meta(fresh_server.runs_dir / "themes", "best").step  # the snapshot the pages show
    # The panel refreshes by itself, then once more when the run ends: it ends on that snapshot's topics.
    expect(page.get_by_text(re.compile(rf"Topics at step {shown:,} "))).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Test perplexity per epoch")).to_be_visible()
    assert_no_exception(page)

    # --- Latent space: click a document, read its post ------------------------------------------------
    page.goto(f"{fresh_server.url}/latent_space?run=themes")
    wait_app_idle(page, LONG)
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Click a dot in the scatter to read its post").first).to_be_visible(timeout=LONG)
    page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                           " return p && p._fullLayout && p._fullData && p._fullData.length > 1 }", timeout=30_000)
    pts = [p for p in plot.evaluate(SCATTER_POINTS) if p["inside"]]
    assert len(pts) > 40, len(pts)  # 80 test documents, a few at the edges
    target = max(pts, key=lambda p: p["gap"])  # the most isolated: the click cannot land on a neighbour
    assert target["gap"] > 4, target
    page.mouse.move(target["x"], target["y"])
    page.mouse.click(target["x"], target["y"])

    from vae_core.runs.run_data import load_run_data

    post = load_run_data(cfg, fresh_server.runs_dir / "themes").docs_test[target["index"]]
    expect(page.get_by_text(re.compile(rf"^Test post #{target['index']} ·"))).to_be_visible(timeout=30_000)
    text = page.get_by_test_id("stText").first
    expect(text).to_be_visible(timeout=30_000)
    assert text.inner_text().split() == post.split()  # the post itself, word for word
    expect(page.get_by_text("Its topic mixture θ")).to_be_visible()
    assert_no_exception(page)
