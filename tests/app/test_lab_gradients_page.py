"""The gradient-estimator lab page under AppTest."""
from __future__ import annotations

from tests.conftest import page_app


# --- the page ---------------------------------------------------------------------------
def test_page_runs_and_draws_charts(app_runs):
    at = page_app("pages/lab_gradients.py", run="tiny", timeout=60).run()
    assert not at.exception
    buttons = [b for b in at.button if "Run" in b.label]
    assert buttons
    buttons[0].click().run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # variance vs L, distance, and the toy
    assert any("reparameterisation" in m.value for m in at.markdown)


def test_page_on_mnist_run(app_runs):
    at = page_app("pages/lab_gradients.py", run="tiny2d", timeout=60).run()
    [b for b in at.button if "Run" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) >= 3


def test_page_empty_state(empty_runs):
    at = page_app("pages/lab_gradients.py").run()
    assert not at.exception
    assert any("No model yet" in i.value for i in at.info)


# --- degenerate models ------------------------------------------------------------------------
def run_lab(run: str):
    at = page_app("pages/lab_gradients.py", run=run, timeout=60).run()
    assert not at.exception, at.exception
    [b for b in at.button if "Run" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_page_on_a_zero_weights_run_says_there_is_nothing_to_estimate(broken_runs):
    at = run_lab("zero")
    assert len(at.get("plotly_chart")) == 3  # the plots still draw (zeros vanish from log axes)
    words = " ".join(m.value for m in at.markdown)
    assert "Nothing to estimate here" in words and "variance is **0**" in words
    assert "no length to measure errors against" in words
    assert "neither has any noise" in words
    assert [m.value for m in at.metric] == ["0", "0"]  # SGVB A and B: no noise at all


def test_page_on_a_one_dimensional_run(broken_runs):
    at = run_lab("tiny1d")
    assert len(at.get("plotly_chart")) == 3
    assert any("one score-function gradient has" in m.value for m in at.markdown)
