"""Bring your own VAE, end to end in Chromium: the worked example in examples/own_vae is trained
with its own plain-PyTorch script, imported with the command its README gives, and explored:
every page, a traversal slider dragged, an image uploaded to encode."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle
from tests.browser.server import StreamlitServer
from tests.browser.test_interactions import (
    ERROR,
    assert_picture,
    expect_encoded,
    pick_run_in_sidebar,
    upload,
    white_digit_png,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own_vae"


def readme_import_command() -> list[str]:
    """The one import-model command in the example's README, as argv."""
    text = (EXAMPLE / "README.md").read_text().replace("\\\n", " ")  # join continued lines
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python -m vae_core import-model")]
    assert len(lines) == 1, f"the example's README should give one import-model command, found {len(lines)}"
    return shlex.split(lines[0])


@pytest.fixture(scope="session")
def own_vae_server(tmp_path_factory):
    """The example trained for two epochs (the README's minute is 16), imported by its README's
    command into an empty runs folder, served by the real app."""
    tmp = tmp_path_factory.mktemp("own-vae")
    weights = tmp / "own_vae.safetensors"
    subprocess.run([sys.executable, str(EXAMPLE / "train.py"), "--epochs", "2", "--out", str(weights)],
                   cwd=ROOT, check=True, timeout=300, capture_output=True)
    argv = readme_import_command()
    argv[argv.index("--weights") + 1] = str(weights)
    runs = tmp / "runs"
    proc = subprocess.run([sys.executable, *argv[1:], "--runs-dir", str(runs)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "protocol checks passed" in proc.stderr
    s = StreamlitServer(runs, tmp / "server.log")
    yield s
    s.close()


PAGES = [  # sidebar link, page heading, something the page shows once it has content
    ("Reconstructions", "Reconstructions", "Run own-vae · the imported weights (trained elsewhere)"),
    ("Latent space", "Latent space", "Click a dot in the scatter"),
    ("Sample", "Sample", "decoder means of z"),
    ("Traverse", "Traverse", "Moved from base"),
    ("Encode", "Encode your image", "Upload"),
    ("Gradient estimators", "Gradient estimators", "Run own-vae · the imported weights (trained elsewhere)"),
    ("Marginal likelihood", "Marginal likelihood", "to run both importance samplers on this image"),
]


def test_the_imported_example_opens_on_every_page(page, own_vae_server):
    page.goto(own_vae_server.url)
    wait_app_idle(page)
    pick_run_in_sidebar(page, "own-vae")
    expect(page.get_by_text(re.compile("Trained elsewhere and imported from")).first).to_be_visible(timeout=30_000)
    for label in ("Pause", "Resume", "Stop"):
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    nav = page.get_by_test_id("stSidebarNav")
    for link, heading, marker in PAGES:
        nav.get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=30_000)
        wait_app_idle(page, 90_000)
        expect(page.get_by_text(marker).first).to_be_visible(timeout=60_000)
        assert_no_exception(page)
        assert page.locator(ERROR).count() == 0, (link, page.locator(ERROR).first.inner_text())
        if link in ("Sample", "Reconstructions"):
            assert_picture(page.locator("[data-testid='stImage'] img").first, f"{link} of the imported model")


def test_dragging_a_traversal_slider_redraws_the_imported_models_image(page, own_vae_server):
    page.goto(f"{own_vae_server.url}/traverse?run=own-vae")
    wait_app_idle(page, 60_000)
    slider = page.locator(".le-root input[type=range]").first
    expect(slider).to_be_visible(timeout=60_000)
    page.wait_for_function("() => window.__leLast !== undefined", timeout=60_000)
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    means = []
    for i in range(20):  # from the middle to the left end, then to the right end
        frac = 0.5 - 0.47 * (i + 1) / 10 if i < 10 else 0.03 + 0.94 * (i - 9) / 10
        page.mouse.move(box["x"] + box["width"] * frac, y)
        means.append(page.evaluate("window.__leLast.mean"))
    page.mouse.up()
    assert max(means) - min(means) > 1.0, means  # grey levels 0..255: the decoded image changed while dragging
    expect(page.get_by_text(re.compile(r"Moved from base: .*z\d+ [+-]\d")).first).to_be_visible(timeout=30_000)
    assert_no_exception(page)


def test_uploading_an_image_encodes_it_with_the_imported_model(page, own_vae_server):
    page.goto(f"{own_vae_server.url}/encode?run=own-vae")
    wait_app_idle(page, 60_000)
    expect(page.get_by_role("heading", name="Encode your image")).to_be_visible(timeout=30_000)
    chooser = page.locator("[data-testid='stFileUploader'] input[type=file]").first
    chooser.wait_for(state="attached", timeout=30_000)
    upload(chooser, "seven.png", "image/png", white_digit_png())
    caption = expect_encoded(page, "PNG, imported model")
    assert "28×28" in caption, caption
