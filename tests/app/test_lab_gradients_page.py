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
