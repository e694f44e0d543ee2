"""AppTest of the Traverse and Encode pages: empty state, every trained tiny run, slider -> image,
grid and interpolation strips, the traverse_base hand-off, real uploads through the
file_uploader widget (good PNG/JPEG, random bytes, an empty file), and degenerate models.

Test images are generated here with PIL; no binary files live in the repository.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests.conftest import page_app

RUNS = ["tiny", "tiny2d", "tiny1d"]


LATENT = {"tiny": 3, "tiny2d": 2, "tiny1d": 1}


# --- generated test images ---------------------------------------------------------------------
def _stroke_mask(size: int = 240) -> Image.Image:
    """A digit-like '7': a top bar and a slanted stem, white on black."""
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    s = size / 240
    d.line([(70 * s, 60 * s), (170 * s, 60 * s), (120 * s, 190 * s)], fill=255, width=int(20 * s), joint="curve")
    return im


def white_on_black_png() -> bytes:
    buf = io.BytesIO()
    _stroke_mask().save(buf, "PNG")
    return buf.getvalue()


def dark_on_paper_jpeg() -> bytes:
    """Dark pen on off-white paper with a lighting gradient and noise, as a phone photo would be."""
    ink = np.asarray(_stroke_mask(480).filter(ImageFilter.GaussianBlur(1.5)), np.float32)[..., None] / 255
    h, w = ink.shape[:2]
    xx = np.linspace(0, 1, w)[None, :, None]
    paper = (0.92 - 0.25 * xx) * np.array([1.0, 0.97, 0.9])  # warm paper, darker to the right
    pen = np.array([0.12, 0.12, 0.2])
    rgb = paper * (1 - ink) + pen * ink + np.random.default_rng(0).normal(0, 0.02, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


# --- helpers -----------------------------------------------------------------------------------
def _texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning", "subheader", "title")
             for e in getattr(at, kind)]
    parts += [str(r.options) for r in at.radio]
    return "\n".join(str(p) for p in parts)


def server_sliders(run: str):
    """Traverse with live drag switched off: Streamlit sliders decoded on the server."""
    at = page_app("pages/traverse.py", run=run)
    at.session_state["traverse_live"] = False
    return at


def _slider_keys(at) -> list[str]:
    return [s.key for s in at.slider if s.key and s.key.startswith("traverse_z")]


# --- Traverse ----------------------------------------------------------------------------------
@pytest.mark.parametrize("run", RUNS)
def test_traverse_slider_changes_the_image(app_runs, run):
    at = server_sliders(run).run()
    assert not at.exception, at.exception
    assert not at.error
    keys = _slider_keys(at)
    assert 1 <= len(keys) <= LATENT[run]
    before = np.array(at.session_state["traverse_image"])
    key = keys[0]  # the highest-KL dim
    new = 2.5 if at.slider(key=key).value < 1.0 else -2.5
    at.slider(key=key).set_value(new).run()
    assert not at.exception
    after = np.array(at.session_state["traverse_image"])
    assert after.shape == before.shape
    assert np.abs(after - before).max() > 1e-4  # the decoder saw the new code

    # "Reset to base" puts the slider back where it started.
    at.button(key="traverse_reset").click().run()
    assert not at.exception
    assert at.slider(key=key).value != new


@pytest.mark.parametrize("run", RUNS)
def test_traverse_grid_and_interpolation(app_runs, run):
    at = page_app("pages/traverse.py", run=run).run()
    assert not at.exception
    text = _texts(at)
    assert "Traversal grid" in text
    assert "**Linear**" in text and "**Spherical**" in text
    assert at.number_input(key="traverse_grid_k").value == min(8, LATENT[run])
    # Fewer columns and a new pair of images still render.
    at.radio(key="traverse_grid_cols").set_value(7)
    at.button(key="traverse_pair").click().run()
    assert not at.exception
    assert not at.error


def test_traverse_origin_and_another_random_image(app_runs):
    at = server_sliders("tiny").run()
    first = np.array(at.session_state["traverse_image"])
    at.button(key="traverse_another").click().run()
    assert not at.exception
    at.radio(key="traverse_base_kind").set_value("origin").run()
    assert not at.exception
    assert all(at.slider(key=k).value == 0.0 for k in _slider_keys(at))
    assert np.abs(np.array(at.session_state["traverse_image"]) - first).max() > 0


def test_traverse_uses_traverse_base_of_the_same_run(app_runs):
    at = server_sliders("tiny")
    image = np.full((1, 8, 8), 0.5, np.float32).tolist()
    at.session_state["traverse_base"] = {"run": "tiny", "z": [1.0, -1.23, 0.4], "label": "clicked point #17",
                                         "image": image}
    at.run()
    assert not at.exception
    assert at.radio(key="traverse_base_kind").value == "chosen"
    assert "clicked point #17" in _texts(at)
    values = {k: at.slider(key=k).value for k in _slider_keys(at)}
    assert values.get("traverse_z1", -1.25) == pytest.approx(-1.25)  # on the slider's 0.05 grid


@pytest.mark.parametrize("run", RUNS)
def test_live_drag_is_the_default_and_the_server_decodes_the_same_code(app_runs, run):
    from vae_core import explore
    from vae_core.runs import rundir as rd

    at = page_app("pages/traverse.py", run=run).run()
    assert not at.exception, at.exception
    assert at.toggle(key="traverse_live").value is True
    assert _slider_keys(at) == []  # the browser widget replaces Streamlit's sliders
    # No release yet: the code is the base code, and the server's image is its decode.
    snap = rd.load_snapshot(app_runs / run)
    z = np.array([at.session_state[f"traverse_z{d}"] for d in range(LATENT[run])], np.float32)
    np.testing.assert_allclose(np.array(at.session_state["traverse_image"]), explore.decode(snap.model, z[None])[0],
                               atol=1e-6)
    # Switching live drag off keeps the code and shows server sliders.
    at.toggle(key="traverse_live").set_value(False).run()
    assert not at.exception
    assert len(_slider_keys(at)) >= 1


def test_traverse_ignores_traverse_base_of_another_run(app_runs):
    at = page_app("pages/traverse.py", run="tiny2d")
    at.session_state["traverse_base"] = {"run": "tiny", "z": [1.0, 2.0, 3.0], "label": "clicked point #17"}
    at.run()
    assert not at.exception
    assert "clicked point #17" not in _texts(at)
    assert "chosen" not in at.radio(key="traverse_base_kind").options


# --- Encode ------------------------------------------------------------------------------------
def _upload(at, name: str, data: bytes, mime: str):
    return at.file_uploader(key="encode_file").set_value((name, data, mime)).run()


@pytest.mark.parametrize("run", RUNS)
def test_encode_white_on_black_png(app_runs, run):
    at = page_app("pages/encode.py", run=run).run()
    assert not at.exception
    assert "encoded_upload" not in at.session_state
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    text = _texts(at)
    assert "As the model sees it" in text and "Reconstruction" in text and "Nearest training images" in text
    enc = at.session_state["encoded_upload"]
    assert enc.run == run and enc.label == "your image"
    assert len(enc.z) == len(enc.sigma) == LATENT[run]
    assert all(s > 0 for s in enc.sigma)


def test_encode_dark_on_paper_jpeg_is_inverted(app_runs):
    at = page_app("pages/encode.py", run="tiny2d").run()
    _upload(at, "photo.jpg", dark_on_paper_jpeg(), "image/jpeg")
    assert not at.exception
    assert not at.error
    assert "inverted: light background" in _texts(at)
    assert len(at.session_state["encoded_upload"].z) == 2


@pytest.mark.parametrize("name,data", [("noise.png", np.random.default_rng(0).bytes(4000)), ("empty.png", b"")],
                         ids=["random-bytes", "zero-bytes"])
def test_encode_bad_file_shows_an_error(app_runs, name, data):
    at = page_app("pages/encode.py", run="tiny").run()
    _upload(at, name, data, "image/png")
    assert not at.exception
    assert at.error and any("image" in e.value or "empty" in e.value for e in at.error)
    assert "encoded_upload" not in at.session_state
    # The page keeps working: a good file afterwards is encoded.
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    assert not at.exception and not at.error
    assert at.session_state["encoded_upload"].run == "tiny"


def test_encode_traverse_button_hands_the_code_to_traverse(app_runs):
    at = page_app("pages/encode.py", run="tiny").run()
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    at.button(key="encode_traverse_upload").click().run()
    assert not at.exception
    base = at.session_state["traverse_base"]
    assert base.run == "tiny" and base.label == "your image"
    assert base.z == at.session_state["encoded_upload"].z
    assert np.array(base.image).shape == (1, 8, 8)
    # On its own (no st.navigation) switch_page has no target; the page says what to do instead.
    assert any("Traverse page" in i.value for i in at.info)

    # The Traverse page then starts from that code.
    tr = page_app("pages/traverse.py", run="tiny")
    tr.session_state["traverse_base"] = base
    tr.run()
    assert not tr.exception
    assert tr.radio(key="traverse_base_kind").value == "chosen"
    assert "your image" in _texts(tr)


def test_encode_without_the_drawing_component_still_uploads(app_runs, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", None)  # makes the import fail
    at = page_app("pages/encode.py", run="tiny").run()
    assert not at.exception
    assert any("drawing pad is not available" in w.value for w in at.warning)
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    assert not at.exception and not at.error
    assert at.session_state["encoded_upload"].run == "tiny"


# --- degenerate models -------------------------------------------------------------------------
@pytest.mark.usefixtures("broken_runs")
def test_traverse_on_a_zero_weights_run_says_why_nothing_moves():
    at = server_sliders("zero")
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any("Every test image gets the same code" in w.value for w in at.warning)
    assert any("Every latent dim is collapsed" in i.value for i in at.info)
    before = np.array(at.session_state["traverse_image"])
    at.slider(key=_slider_keys(at)[0]).set_value(2.5).run()
    assert not at.exception and not at.error
    np.testing.assert_array_equal(np.array(at.session_state["traverse_image"]), before)  # the decoder ignores z
    at.toggle(key="traverse_live").set_value(True).run()  # the browser-side decoder gets zero weights too
    assert not at.exception and not at.error
    assert "Traversal grid" in _texts(at) and "**Spherical**" in _texts(at)


@pytest.mark.usefixtures("broken_runs")
def test_encode_on_a_zero_weights_run():
    at = page_app("pages/encode.py", run="zero").run()
    _upload(at, "seven.png", white_on_black_png(), "image/png")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Every test image gets the same code" in w.value for w in at.warning)
    enc = at.session_state["encoded_upload"]
    assert enc.z == [0.0, 0.0, 0.0] and enc.sigma == [1.0, 1.0, 1.0]  # q(z|x) is the prior
    assert "Nearest training images" in _texts(at)


@pytest.mark.usefixtures("broken_runs")
@pytest.mark.parametrize("page", ["pages/traverse.py", "pages/encode.py"])
def test_a_decoder_returning_nan_is_said_in_words(page):
    at = page_app(page, run="diverged").run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "returns NaN or infinite values" in errors[0], errors
    assert not at.get("file_uploader") and not at.slider
