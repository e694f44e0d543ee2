"""The β / decoder lab and the disentanglement lab pages under AppTest."""
import pytest

from tests.app.conftest import zeroed_copy
from tests.conftest import page_app
from vae_core.labs import beta as lb
from vae_core.runs.manager import new_run_config


@pytest.fixture(scope="module")
def shapes_runs(tmp_path_factory):
    """Shapes runs trained once for this module: "shapes-tiny" (z = 4, β = 4), "shapes-1d" (z = 1),
    and "shapes-zero", shapes-tiny with every weight 0 (every image gets the same code)."""
    from vae_core.runs.trainer import train

    root = tmp_path_factory.mktemp("shapes-runs")
    for name, z in (("shapes-tiny", 4), ("shapes-1d", 1)):
        cfg = new_run_config("shapes", model={"latent_dim": z, "hidden": 64},
                             train={"epochs": 1, "max_steps": 30, "num_threads": 1, "beta": 4.0})
        assert train(cfg, root / name).state == "finished"
    zeroed_copy(root / "shapes-tiny", root / "shapes-zero")
    return root


@pytest.fixture
def shapes_app(shapes_runs, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(shapes_runs))
    st.cache_resource.clear()
    yield shapes_runs
    st.cache_resource.clear()


def one_sweep(monkeypatch, kind: str, values: dict[str, float]) -> None:
    """Make the β lab list one sweep of ``kind`` over existing runs (run name -> its β or σ)."""
    sweep = lb.Sweep(f"degenerate-{kind}", kind, tuple(values), tuple(f"{kind}{v:g}" for v in values.values()),
                     tuple(values.values()), 0.0, None)
    monkeypatch.setattr(lb, "list_sweeps", lambda root, k=None: [sweep] if k in (None, kind) else [])


# --- pages --------------------------------------------------------------------------------
def test_beta_page_empty_state(app_runs):
    at = page_app("pages/lab_beta.py", run="tiny").run()
    assert not at.exception
    assert any("No β sweep yet" in i.value for i in at.info)
    assert any("No decoder sweep yet" in i.value for i in at.info)
    assert any(b.label == "Start β sweep" for b in at.button)


def test_beta_page_start_button_launches_one_sweep(app_runs, monkeypatch):
    calls = []

    def fake_start_sweep(manager, points, prefix, kind):
        labels = [p.label for p in points]
        calls.append(([p.config for p in points], labels, {"kind": kind, "values": [p.value for p in points]}))
        return [f"{prefix}-{lab}" for lab in labels]

    monkeypatch.setattr(lb, "start_sweep", fake_start_sweep)  # where the page starts a sweep
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


@pytest.mark.usefixtures("shapes_app")
def test_disentanglement_page_measures_a_shapes_run():
    at = page_app("pages/lab_disentanglement.py", run="shapes-tiny", timeout=60).run()
    assert not at.exception
    labels = [mt.label for mt in at.metric]
    assert labels == ["MIG", "DCI disentanglement", "DCI completeness", "DCI informativeness"]
    assert 0.0 <= float(at.metric[0].value) <= 1.0
    assert len(at.get("plotly_chart")) == 2  # MI heatmap and the DCI importance matrix


# --- degenerate models ------------------------------------------------------------------------
def assert_quiet(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.usefixtures("broken_runs")
def test_beta_page_on_a_zero_weights_run_and_a_one_dimensional_run(monkeypatch):
    one_sweep(monkeypatch, "beta", {"zero": 1.0, "tiny1d": 4.0})
    at = page_app("pages/lab_beta.py", run="zero", timeout=60).run()
    assert_quiet(at)
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert list(table["β"]) == [1.0, 4.0] and table["rate (nats)"][0] == 0.0
    assert any("**beta1** has a rate of 0.00 nats" in i.value for i in at.info)


@pytest.mark.usefixtures("broken_runs")
def test_beta_page_with_a_single_run_says_one_point_is_not_a_curve(monkeypatch):
    one_sweep(monkeypatch, "beta", {"zero": 1.0})
    at = page_app("pages/lab_beta.py", run="zero", timeout=60).run()
    assert_quiet(at)
    assert len(at.get("plotly_chart")) == 1
    assert any("the plot has one point" in i.value for i in at.info)


@pytest.mark.usefixtures("broken_runs")
def test_decoder_tab_on_a_zero_weights_run(monkeypatch):
    one_sweep(monkeypatch, "sigma", {"zero": 0.1, "tiny1d": 0.4})
    at = page_app("pages/lab_beta.py", run="zero", timeout=60).run()
    assert_quiet(at)
    assert any("No β sweep yet" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1  # rate vs squared error
    assert len(at.dataframe[0].value) == 2
    assert any("has a rate of 0.00 nats" in i.value for i in at.info)


@pytest.mark.usefixtures("broken_runs")
def test_disentanglement_page_on_a_zero_weights_digits_run():
    at = page_app("pages/lab_disentanglement.py", run="zero").run()
    assert_quiet(at)
    assert any("not trained on `shapes`" in i.value for i in at.info)


@pytest.mark.usefixtures("shapes_app")
@pytest.mark.parametrize("run, says", [
    ("shapes-zero", "Every image gets the same code"),
    ("shapes-1d", "one latent dimension"),
])
def test_disentanglement_page_on_degenerate_shapes_runs(run, says):
    at = page_app("pages/lab_disentanglement.py", run=run, timeout=60).run()
    assert_quiet(at)
    assert any(says in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.metric[0].label == "MIG"
    assert len(at.get("plotly_chart")) == 2
