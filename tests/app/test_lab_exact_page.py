"""The marginal-likelihood lab's "exact posterior" tab under AppTest: on the 2-D MNIST and 1-D
digits runs it draws p(z|x) beside q(z|x) and its three numbers satisfy the identity; the
worst-fit gallery runs on a few images; an image from Encode can be chosen; on the 3-D run it
says why not and starts a 2-D run. Also the importance-sampling tab's exact line on a 2-D run."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from tests.conftest import page_app
from vae_core.runs import rundir as rd

PAGE = "pages/lab_marginal_likelihood.py"
EXACT_TAB = "The exact posterior"


def exact_tab(run: str):
    at = page_app(PAGE, run=run, timeout=120)
    at.session_state["ml-tab"] = EXACT_TAB
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at) -> dict[str, dict]:
    """The page's plotly figures by their key."""
    return {c.proto.id.split("$$ID-", 1)[1].split("-", 1)[1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def nats(at, label: str) -> float:
    m = next(m for m in at.metric if m.label == label)
    v = re.fullmatch(r"(-?\d+\.\d+) nats", m.value)
    assert v, (label, m.value)
    return float(v.group(1))


def check_identity(at) -> tuple[float, float, float]:
    lp, elbo, kl = nats(at, "log p(x)"), nats(at, "ELBO"), nats(at, "KL(q ‖ p(z|x))")
    assert elbo <= lp and kl >= 0
    assert abs(elbo + kl - lp) < 0.02, (elbo, kl, lp)
    line = next(m.value for m in at.markdown if m.value.startswith("ELBO + KL ="))
    assert "log p(x) (quadrature, " in line or "≈ log p(x) = " in line
    assert re.search(r"\d+ points per axis", line)
    return lp, elbo, kl


def captions(at) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


# --- a 2-D latent ---------------------------------------------------------------------------------
def test_exact_tab_on_the_2d_run_draws_the_posterior_and_the_identity_holds(app_runs):
    at = exact_tab("tiny2d")
    figs = charts(at)
    assert set(figs) == {"ex-scatter", "ex-posterior", "ex-reparam"}, set(figs)
    names = [t.get("name") for t in figs["ex-posterior"]["data"]]
    assert figs["ex-posterior"]["data"][0]["type"] == "heatmap" and "q(z|x) 1σ" in names and "q(z|x) 2σ" in names
    # the scatter carries each point's test index for a click
    assert all(isinstance(t["customdata"][0][0], int) for t in figs["ex-scatter"]["data"] if t.get("customdata"))
    assert [t["type"] for t in figs["ex-reparam"]["data"]] == ["heatmap", "heatmap"]
    lp0, _, kl0 = check_identity(at)
    assert "test image #0" in captions(at)[0]
    text = " ".join(m.value for m in at.markdown)
    assert f"**{kl0:.3f} nats**" in text and "**Shape.**" in text
    assert any("q(z) ∏dz = p(ε) ∏dε" in c.value for c in at.caption)

    # another test image: new numbers, the identity still holds
    next(n for n in at.number_input if n.label == "Test image").set_value(3).run()
    assert not at.exception, at.exception
    assert "test image #3" in captions(at)[0]
    lp3, _, _ = check_identity(at)
    assert lp3 != lp0

    # the worst fits among the first 20 test images
    next(n for n in at.number_input if n.label == "Test images to search").set_value(20).run()
    next(b for b in at.button if b.label == "Find the worst fits").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Over 20 test images (evenly spread over all" in m.value for m in at.markdown)
    gallery = [k for k in charts(at) if k.startswith("ex-worst-")]
    assert len(gallery) == 6
    shown = [c for c in captions(at) if re.fullmatch(r"#\d+( \(digit \d\))?", c)]
    assert len(shown) == 6
    assert len({c.split()[-1] for c in shown}) > 1  # spread over the test set, which is sorted by class: several digits
    kls = [float(re.search(r"KL ([\d.]+) nats", charts(at)[k]["layout"]["title"]["text"]).group(1)) for k in sorted(gallery)]
    assert kls == sorted(kls, reverse=True)  # worst first

    # "Look closer" makes the worst one the image above
    worst = int(shown[0][1:].split()[0])
    next(b for b in at.button if b.label == "Look closer").click().run()
    assert not at.exception, at.exception
    assert f"test image #{worst}" in captions(at)[0]
    assert nats(at, "KL(q ‖ p(z|x))") == pytest.approx(kls[0], abs=0.01)


def test_both_tabs_share_the_test_image(app_runs):
    at = page_app(PAGE, run="tiny2d", timeout=120).run()
    next(n for n in at.number_input if n.label == "Test image").set_value(7).run()
    at.session_state["ml-tab"] = EXACT_TAB
    at.run()
    assert next(n for n in at.number_input if n.label == "Test image").value == 7
    assert "test image #7" in captions(at)[0]
    next(n for n in at.number_input if n.label == "Test image").set_value(9).run()
    at.session_state["ml-tab"] = "Importance sampling"
    at.run()
    assert not at.exception, at.exception
    assert next(n for n in at.number_input if n.label == "Test image").value == 9
    assert "test image 9" in captions(at)


def test_the_importance_sampling_tab_draws_the_exact_line_on_a_2d_run(app_runs):
    at = page_app(PAGE, run="tiny2d", timeout=120).run()
    next(b for b in at.button if "Estimate" in b.label).click().run()
    assert not at.exception, at.exception
    fig = charts(at)["ml-estimates"]
    assert "exact log p(x)" in [a.get("text") for a in fig["layout"]["annotations"]]
    what = next(m.value for m in at.markdown if "What you see" in m.value)
    assert "**The exact value.**" in what and "converge towards it" in what


# --- a 1-D latent ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("app_runs")
def test_exact_tab_on_the_1d_run_draws_curves():
    at = exact_tab("tiny1d")
    figs = charts(at)
    assert set(figs) == {"ex-scatter", "ex-posterior", "ex-reparam"}
    names = [t.get("name") for t in figs["ex-posterior"]["data"]]
    assert {"p(z|x) (exact)", "q(z|x)", "prior N(0, 1)"} <= set(names)
    assert not any(t["type"] == "heatmap" for t in figs["ex-posterior"]["data"])
    assert [t["type"] for t in figs["ex-reparam"]["data"]] == ["bar", "bar"]
    check_identity(at)
    next(n for n in at.number_input if n.label == "Test images to search").set_value(20).run()
    next(b for b in at.button if b.label == "Find the worst fits").click().run()
    assert not at.exception, at.exception
    assert len([k for k in charts(at) if k.startswith("ex-worst-")]) == 6


# --- the user's image from Encode -------------------------------------------------------------------
@pytest.mark.usefixtures("app_runs")
def test_the_image_from_encode_can_be_chosen():
    import torch

    from pages._ui import state
    from vae_core.data import load_dataset
    from vae_core.data.upload import ImportedImage

    data = load_dataset("mnist")
    image = torch.flip(data.x_test[5], dims=[-1])  # a mirrored digit: not a test image
    at = page_app(PAGE, run="tiny2d", timeout=120)
    at.session_state["ml-tab"] = EXACT_TAB
    at.session_state["encoded_upload"] = state.EncodedUpload("tiny2d", [0.0, 0.0], [1.0, 1.0], "your image")
    at.session_state["_encode_memo_upload"] = state.Memo(
        ("abc123", data.image_shape, data.preprocess),
        ImportedImage(image, np.zeros((28, 28), np.uint8), False, ()))
    at.run()
    assert not at.exception, at.exception
    source = next(r for r in at.radio if r.label == "Image")
    source.set_value("your image (from Encode)").run()
    assert not at.exception, at.exception
    assert captions(at)[0] == "your image"
    assert not any(n.label == "Test image" for n in at.number_input)
    assert any("The exact posterior of **your image**" in c.value for c in at.caption)
    check_identity(at)
    scatter = charts(at)["ex-scatter"]
    assert any(t.get("name") == "your image" for t in scatter["data"])  # the star

    # another run's hand-off is not offered
    at.session_state["encoded_upload"] = state.EncodedUpload("tiny", [0.0, 0.0, 0.0], [1.0] * 3, "your image")
    at.run()
    assert not any(r.label == "Image" for r in at.radio)
    assert "test image #0" in captions(at)[0]


# --- more than two latent dims ------------------------------------------------------------------------
@pytest.fixture
def tiny_alone(app_runs, tmp_path, monkeypatch):
    """A runs folder holding a copy of the 3-D run only (a started run must not join the shared
    folder), and a RunManager that starts no worker process."""
    import streamlit as st

    from vae_core.runs.manager import RunManager

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "tiny", root / "tiny")
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    monkeypatch.setattr(RunManager, "_spawn", lambda self, name, resume: None)
    st.cache_resource.clear()
    return root


def test_a_3d_run_says_why_and_starts_a_2d_model(tiny_alone):
    at = exact_tab("tiny")
    assert not at.get("plotly_chart") and not at.metric
    why = next(i.value for i in at.info if "1-D or 2-D" in i.value)
    assert "(this one has 3)" in why
    button = next(b for b in at.button if b.label.startswith("Train a 2-D model"))
    assert button.label == "Train a 2-D model (digits, about a minute)"
    button.click().run()
    assert not at.exception, at.exception
    new = at.session_state["run"]
    assert new != "tiny" and (tiny_alone / new).is_dir()
    cfg = rd.read_config(tiny_alone / new)
    assert cfg.model.latent_dim == 2 and cfg.train.dataset == "digits"
    assert any(new in t.value for t in at.toast)  # "Started <name>."
