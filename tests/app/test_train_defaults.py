"""AppTest of the Train page's "auto" defaults (issue 12): the learning rate left empty takes the
recipe, the early-stopping fields reach the config, and a collapsed run is called out."""
import json
import shutil

import pytest

from tests.conftest import page_app
from vae_core.engine.recipe import CONV_LR
from vae_core.runs import rundir as rd


@pytest.fixture
def no_worker(monkeypatch):
    """Start writes the run's files but spawns no training process."""
    from vae_core.runs.manager import RunManager

    monkeypatch.setattr(RunManager, "_spawn", lambda self, name, resume: None)


def _number(at, label):
    return next(n for n in at.number_input if n.label == label)


def _start(at, **fields):
    next(s for s in at.selectbox if s.label == "Dataset").set_value("digits").run()
    for label, value in fields.items():
        if label == "Model":
            next(r for r in at.radio if r.label == "Model").set_value(value)
        else:
            _number(at, label).set_value(value)
    next(b for b in at.button if "Start training" in b.label).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _config(runs, name):
    return rd.read_config(runs / name)


def test_the_learning_rate_is_auto_unless_typed(empty_runs, no_worker):
    at = page_app("pages/train.py").run()
    lr = _number(at, "Learning rate")
    assert lr.value is None  # empty: the recipe decides
    assert "1e-3 for conv" in lr.help and "5e-3 for the MLP" in lr.help
    from vae_core.engine.config import TrainConfig

    assert _number(at, "Early-stopping patience").value == TrainConfig.patience  # the config's defaults
    assert _number(at, "Validation share").value == pytest.approx(TrainConfig.validation_fraction)

    _start(at, Model="conv", **{"Early-stopping patience": 4, "Validation share": 0.2})
    cfg = _config(empty_runs, at.session_state["run"])
    assert cfg.model.body == "conv" and cfg.train.lr == CONV_LR
    assert (cfg.train.patience, cfg.train.validation_fraction) == (4, pytest.approx(0.2))

    rd.write_status(empty_runs / at.session_state["run"], state="stopped")  # else Start attaches to it
    at = page_app("pages/train.py").run()
    _start(at, Model="mlp", **{"Learning rate": 2e-3, "Early-stopping patience": 0})
    cfg = _config(empty_runs, at.session_state["run"])
    assert cfg.model.body == "mlp" and cfg.train.lr == pytest.approx(2e-3) and cfg.train.patience == 0
    assert cfg.train.tensorboard is False  # off unless asked for


def test_the_tensorboard_box_reaches_the_config(empty_runs, no_worker):
    pytest.importorskip("tensorboard")  # the box is disabled, saying how to install it, without the extra
    at = page_app("pages/train.py").run()
    next(s for s in at.selectbox if s.label == "Dataset").set_value("digits").run()
    box = next(c for c in at.checkbox if c.label == "TensorBoard logs")
    assert not box.disabled and "tensorboard --logdir runs" in box.help
    box.check()
    next(b for b in at.button if "Start training" in b.label).click().run()
    assert not at.exception and not at.error
    assert _config(empty_runs, at.session_state["run"]).train.tensorboard is True


def test_a_collapsed_run_gets_a_warning_with_what_to_try(app_runs, tmp_path, monkeypatch):
    import streamlit as st

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "tiny", root / "flat")
    records = [r for r in rd.read_metrics(root / "flat") if r.get("kind") != "epoch"]
    records += [{"kind": "epoch", "step": 10 * e, "epoch": e, "test_elbo": -30.0, "test_log_likelihood": -30.0,
                 "test_kl": 0.01} for e in (1, 2, 3)]
    (root / "flat" / rd.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()
    at = page_app("pages/train.py", run="flat").run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Posterior collapse" in w and "learning rate" in w for w in warnings), warnings

    at = page_app("pages/train.py", run="tiny")  # a healthy run: no such warning
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(app_runs))
    st.cache_resource.clear()
    at.run()
    assert not any("Posterior collapse" in w.value for w in at.warning)
