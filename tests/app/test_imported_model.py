"""Every page on a model imported with ``import-model``: the worked example in examples/own_vae.

The example's factory gives an untrained model here (its weights come from a minute of training
that the browser test does); what these tests check is that each page reads it through the
protocol, maps its [-1, 1] range, and hides the training controls with a line saying why.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.app.test_traverse_encode_pages import _upload, white_on_black_png
from tests.conftest import app_reading, page_app

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "examples.own_vae.model:load"


@pytest.fixture(scope="session")
def imported_root(tmp_path_factory):
    from vae_core.runs.importer import import_model

    root = tmp_path_factory.mktemp("imported-runs")
    import_model(factory=FACTORY, dataset="mnist", name="own-vae", runs_root=root, likelihood="gaussian",
                 value_range=(-1.0, 1.0), sigma=None, python_path=str(ROOT))
    return root


@pytest.fixture
def imported(imported_root, monkeypatch):
    with app_reading(imported_root, monkeypatch):
        yield "own-vae"


def _clean(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_train_page_hides_training_controls_and_says_why(imported):
    at = _clean(page_app("pages/train.py", run=imported).run())
    assert any("Trained elsewhere and imported from `examples.own_vae.model:load`" in i.value for i in at.info)
    labels = [b.label for b in at.button]
    assert "Resume" not in labels and "Pause" not in labels and "Stop" not in labels
    assert any("imported examples.own_vae.model:load · z=8 · gaussian in [-1, 1]" in c.value for c in at.caption)


def test_pages_name_the_imported_weights_not_a_training_step(imported):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["run"] = imported
    at.run()
    at.switch_page("pages/sample.py").run()
    assert not at.exception
    assert any("Run **own-vae** · the imported weights (trained elsewhere)" in c.value for c in at.caption)
    assert "Shown: the imported weights (trained elsewhere)" in "\n".join(c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("page", ["pages/reconstructions.py", "pages/latent_space.py", "pages/sample.py"])
def test_explorer_pages(imported, page):
    at = _clean(page_app(page, run=imported, timeout=60).run())
    assert at.get("imgs") or at.get("image") or at.get("plotly_chart")


def test_traverse_with_server_sliders(imported):
    at = page_app("pages/traverse.py", run=imported, timeout=60)
    at.session_state["traverse_live"] = False
    at = _clean(at.run())
    before = np.array(at.session_state["traverse_image"])
    keys = [s.key for s in at.slider if s.key and s.key.startswith("traverse_z")]
    assert len(keys) == 8
    at.slider(key=keys[0]).set_value(2.5).run()
    _clean(at)
    assert np.abs(np.array(at.session_state["traverse_image"]) - before).max() > 0


def test_traverse_live_drag_default(imported):
    _clean(page_app("pages/traverse.py", run=imported, timeout=60).run())


def test_encode_an_upload(imported):
    at = _clean(page_app("pages/encode.py", run=imported, timeout=60).run())
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    _clean(at)
    enc = at.session_state["encoded_upload"]
    assert enc.run == imported and len(enc.z) == 8


def test_marginal_likelihood_lab(imported):
    at = _clean(page_app("pages/lab_marginal_likelihood.py", run=imported, timeout=90).run())
    at.select_slider[0].set_value(500)  # a conv decoder on 2 cores: the smallest study the page offers
    at.select_slider[1].set_value(2)
    [b for b in at.button if "Estimate" in b.label][0].click().run()
    _clean(at)
    assert len(at.get("plotly_chart")) == 3


def test_gradient_lab(imported):
    at = _clean(page_app("pages/lab_gradients.py", run=imported, timeout=120).run())
    for slider, value in zip(at.select_slider, (8, 64, 2, 512)):  # the smallest study, for a conv model on 2 cores
        slider.set_value(value)
    [b for b in at.button if "Run" in b.label][0].click().run()
    _clean(at)
    assert len(at.get("plotly_chart")) >= 3


@pytest.mark.parametrize("page", ["pages/lab_beta.py", "pages/lab_disentanglement.py"])
def test_training_labs_do_not_break(imported, page):
    _clean(page_app(page, run=imported, timeout=60).run())
