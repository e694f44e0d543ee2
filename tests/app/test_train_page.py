"""AppTest of the entry point and the Train page."""
from tests.conftest import ROOT, page_app


def test_app_routes_to_train_with_no_runs(empty_runs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
    assert any("Train a default model" in b.label for b in at.button)


def test_train_page_shows_a_finished_run(app_runs):
    at = page_app("pages/train.py", run="tiny").run()
    assert not at.exception
    assert any("tiny" in h.value for h in at.subheader)
    assert any("finished" in c.value for c in at.caption)
    progress = at.get("progress")[0].proto.text
    assert "step" in progress and "learning rate" in progress  # the schedule's last rate, from the metrics
    assert at.dataframe  # the runs table
    names = at.dataframe[0].value["run"].tolist()
    assert set(names) >= {"tiny", "tiny2d", "tiny1d"}


def test_bad_run_name_shows_an_error_and_starts_nothing(empty_runs):
    at = page_app("pages/train.py").run()
    at.text_input(key=None) if False else None
    name_box = [t for t in at.text_input if "Run name" in t.label][0]
    name_box.input("../escape")
    at.button[-1]  # noqa: B018 - the form's submit button exists
    submit = [b for b in at.button if "Start training" in b.label][0]
    submit.click().run()
    assert not at.exception
    assert any("not allowed" in e.value for e in at.error)
    assert not any(p.is_dir() and not p.name.startswith(".") for p in empty_runs.iterdir())


def test_sidebar_says_the_selected_runs_state_and_progress(app_runs):
    from streamlit.testing.v1 import AppTest

    from vae_core.runs import rundir as rd

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state["run"] = "tiny"
    at.run()
    assert not at.exception
    st_ = rd.read_status(app_runs / "tiny")
    captions = [c.value for c in at.sidebar.caption]
    assert f"**finished** · step {st_.step:,} of {st_.total_steps:,} · epoch {st_.epoch}" in captions
