"""The marginal-likelihood lab page under AppTest."""
from __future__ import annotations

import pytest

from tests.conftest import page_app


# --- the page ---------------------------------------------------------------------------
def test_page_runs_and_draws_charts(app_runs):
    at = page_app("pages/lab_marginal_likelihood.py", run="tiny", timeout=60).run()
    assert not at.exception
    [b for b in at.button if "Estimate" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 3
    assert any("Effective sample size" in m.value for m in at.markdown)
    # The explanation follows the numbers: on this 3-D digits model the prior keeps up, and the
    # page must not claim it is "still -0.0 nats under" (it once did).
    what = next(m.value for m in at.markdown if "What you see" in m.value)
    assert "has caught up" in what and "still" not in what
    # The test-set NLL on a few images.
    at.number_input[1].set_value(20).run()
    [b for b in at.button if "test-set" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert any("IWAE NLL" in m.label for m in at.metric)


def test_page_on_mnist_run_with_a_random_image(app_runs):
    at = page_app("pages/lab_marginal_likelihood.py", run="tiny2d", timeout=60).run()
    [b for b in at.button if b.label == "Random"][0].click().run()
    at.checkbox[0].check().run()  # zoom on the encoder's curve
    [b for b in at.button if "Estimate" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 3


def test_page_empty_state(empty_runs):
    at = page_app("pages/lab_marginal_likelihood.py").run()
    assert not at.exception
    assert any("No model yet" in i.value for i in at.info)


# --- degenerate models ------------------------------------------------------------------------
def run_both(run: str):
    """Both parts of the lab on ``run``: one image's estimates and the NLL of 20 test images."""
    at = page_app("pages/lab_marginal_likelihood.py", run=run, timeout=60).run()
    [b for b in at.button if "Estimate" in b.label][0].click().run()
    assert not at.exception, at.exception
    at.number_input[1].set_value(20).run()
    [b for b in at.button if "test-set" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 3
    return at


@pytest.mark.usefixtures("broken_runs")
def test_page_on_a_zero_weights_run_says_every_draw_weighs_the_same():
    at = run_both("zero")
    what = next(m.value for m in at.markdown if "What you see" in m.value)
    assert "Both estimates are flat" in what and "decoder gives the same output whatever z is" in what
    gap = next(m for m in at.metric if m.label.startswith("gap"))
    assert gap.value == "0.00 nats"  # the ELBO is already exact


@pytest.mark.usefixtures("broken_runs")
def test_page_on_a_one_dimensional_run():
    at = run_both("tiny1d")
    assert any("What you see" in m.value for m in at.markdown)
    assert any("IWAE NLL" in m.label for m in at.metric)
