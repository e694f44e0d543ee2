"""The β / decoder lab and the disentanglement lab pages under AppTest."""


from tests.conftest import page_app
from vae_core.runs.manager import RunManager, new_run_config


# --- pages --------------------------------------------------------------------------------
def test_beta_page_empty_state(app_runs):
    at = page_app("pages/lab_beta.py", run="tiny").run()
    assert not at.exception
    assert any("No β sweep yet" in i.value for i in at.info)
    assert any("No decoder sweep yet" in i.value for i in at.info)
    assert any(b.label == "Start β sweep" for b in at.button)


def test_beta_page_start_button_launches_one_sweep(app_runs, monkeypatch):
    calls = []

    def fake_start_sweep(self, configs, prefix, labels=None, meta=None, exclusive=True):
        calls.append((configs, labels, meta))
        return [f"{prefix}-{lab}" for lab in labels]

    monkeypatch.setattr(RunManager, "start_sweep", fake_start_sweep)
    at = page_app("pages/lab_beta.py", run="tiny").run()
    at.multiselect[0].set_value([0.25, 4.0])
    at.number_input(key="beta-ep").set_value(2)
    [b for b in at.button if b.label == "Start β sweep"][0].click().run()
    assert not at.exception
    assert len(calls) == 1
    configs, labels, meta = calls[0]
    assert labels == ["beta0.25", "beta4"] and meta["kind"] == "beta"
    assert [c.train.dataset for c in configs] == ["digits", "digits"]  # the selected run's dataset
    assert [c.train.epochs for c in configs] == [2, 2]


def test_beta_page_draws_a_finished_sweep(digit_sweep, monkeypatch):
    import streamlit as st

    m, names, _, _ = digit_sweep
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(m.root))
    st.cache_resource.clear()
    at = page_app("pages/lab_beta.py", run=names[0]).run()
    assert not at.exception
    assert at.get("plotly_chart")  # the rate-distortion plot
    table = at.dataframe[0].value
    assert list(table["β"]) == [0.25, 4.0] and list(table["state"]) == ["finished", "finished"]
    assert table["rate (nats)"][0] > table["rate (nats)"][1]
    st.cache_resource.clear()


def test_disentanglement_page_explains_other_datasets(app_runs):
    at = page_app("pages/lab_disentanglement.py", run="tiny").run()
    assert not at.exception
    assert any("not trained on `shapes`" in i.value for i in at.info)
    assert any("Train a shapes model" in b.label for b in at.button)


def test_disentanglement_page_empty_state(empty_runs):
    at = page_app("pages/lab_disentanglement.py").run()
    assert not at.exception
    assert any("No model yet" in i.value for i in at.info)
    assert any("Train a shapes model" in b.label for b in at.button)


def test_disentanglement_page_measures_a_shapes_run(tmp_path, monkeypatch):
    import streamlit as st

    from vae_core.runs.trainer import train

    root = tmp_path / "runs"
    cfg = new_run_config("shapes", model={"latent_dim": 4, "hidden": 64},
                         train={"epochs": 1, "max_steps": 30, "num_threads": 1, "beta": 4.0})
    assert train(cfg, root / "shapes-tiny").state == "finished"
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()
    at = page_app("pages/lab_disentanglement.py", run="shapes-tiny", timeout=60).run()
    assert not at.exception
    labels = [mt.label for mt in at.metric]
    assert labels == ["MIG", "DCI disentanglement", "DCI completeness", "DCI informativeness"]
    assert 0.0 <= float(at.metric[0].value) <= 1.0
    assert len(at.get("plotly_chart")) == 2  # MI heatmap and the DCI importance matrix
    st.cache_resource.clear()
