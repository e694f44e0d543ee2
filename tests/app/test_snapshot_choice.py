"""The sidebar's snapshot choice: pages show the best snapshot by default, and the latest on request."""
import shutil

import torch

from tests.app.conftest import rewrite_weights
from tests.conftest import ROOT
from vae_core.runs import rundir as rd


def test_pages_show_the_snapshot_the_sidebar_names(app_runs, tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    # A run whose latest weights are all zero while its best snapshot is the trained one.
    runs = tmp_path / "runs"
    shutil.copytree(app_runs / "tiny", runs / "split")
    rewrite_weights(runs / "split", lambda name, t: torch.zeros_like(t), keep_best=True)
    best = rd.snapshot_meta(runs / "split", "best")
    assert best.kind == "best"
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(runs))
    st.cache_resource.clear()

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["run"] = "split"
    at.run()
    at.switch_page("pages/reconstructions.py").run()
    assert not at.exception
    assert at.sidebar.radio(key="snapshot_kind").value == "best"
    captions = "\n".join(c.value for c in at.caption)
    assert f"snapshot at step {best.step:,} (epoch {best.epoch}) · the best by validation ELBO" in captions
    assert f"Shown: snapshot at step {best.step:,} (epoch {best.epoch}) · the best by validation ELBO" in "\n".join(
        c.value for c in at.sidebar.caption)
    assert not any("same code" in w.value for w in at.warning)  # the trained weights

    at.sidebar.radio(key="snapshot_kind").set_value("latest").run()
    assert not at.exception
    latest = rd.snapshot_meta(runs / "split", "latest")
    captions = "\n".join(c.value for c in at.caption)
    assert f"snapshot at step {latest.step:,} (epoch {latest.epoch}) · the latest" in captions
    assert any("same code" in w.value for w in at.warning)  # the zeroed weights, as claimed
