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
    name_box = [t for t in at.text_input if "Run name" in t.label][0]
    name_box.input("../escape")
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


# --- the dataset picker ----------------------------------------------------------------------------
def test_dataset_list_holds_real_datasets_and_one_choice_for_your_own_files(empty_runs):
    at = page_app("pages/train.py").run()
    box = next(s for s in at.selectbox if s.label == "Dataset")
    assert {"mnist", "digits"} <= set(box.options)
    assert "20newsgroups" not in box.options  # text corpora are for topic models, not this image form
    assert not [o for o in box.options if "<" in o or o.startswith(("idx:", "folder:"))]  # no spec templates
    assert box.options[-1] == "Your own files…"
    box.set_value("Your own files…").run()
    kinds = next(r for r in at.radio if r.label == "What the files are")
    assert any("IDX" in o for o in kinds.options) and any("images" in o.lower() for o in kinds.options)
    assert not any("text" in o.lower() for o in kinds.options)
    assert [b for b in at.button if "Start training" in b.label][0].disabled  # no path yet
    path = next(t for t in at.text_input if t.label == "Path on this machine")
    path.input(str(empty_runs / "no-such-folder")).run()
    assert not at.exception
    assert any("no-such-folder" in e.value for e in at.error), [e.value for e in at.error]  # the loader's sentence
    assert [b for b in at.button if "Start training" in b.label][0].disabled


def test_the_dataset_strip_is_a_peek_of_the_cache_and_nothing_is_loaded(empty_runs, tmp_path, monkeypatch):
    import pages._ui.runs as ui_runs
    from vae_core.data import clear_memo, load_dataset, registry

    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path / "fresh-cache"))
    clear_memo()

    def no_load(*a, **k):
        raise AssertionError("the Train page must not load a dataset to show it")

    monkeypatch.setattr(registry, "load_dataset", no_load)
    monkeypatch.setattr(ui_runs, "load_dataset", no_load)
    at = page_app("pages/train.py")
    at.run()
    next(s for s in at.selectbox if s.label == "Dataset").set_value("digits").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("not in the dataset cache yet" in c.value and "progress bar" in c.value for c in at.caption)
    assert not at.get("image")
    monkeypatch.undo()  # the test itself now puts digits in the cache, as a run's start would
    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(empty_runs))
    clear_memo()
    ds = load_dataset("digits")
    monkeypatch.setattr(registry, "load_dataset", no_load)
    monkeypatch.setattr(ui_runs, "load_dataset", no_load)
    at.run()
    assert any("not in the dataset cache yet" in c.value for c in at.caption)  # the peek is kept a minute
    ui_runs.dataset_peek.clear()  # as the minute passing, or a run started from this page, would
    at.run()
    assert not at.exception, at.exception
    strip = at.get("image")[0].proto.imgs
    assert len(strip) == 1  # one grid of 16 examples
    assert any(f"{len(ds.x_train):,} training and {len(ds.x_test):,} test images of 8×8" in c.value for c in at.caption)
    clear_memo()


# --- the loss curve's name -------------------------------------------------------------------------
def test_loss_curve_is_named_after_the_runs_objective(app_runs, tmp_path, monkeypatch):
    import json
    import shutil

    import streamlit as st

    from vae_core.runs.manager import new_run_config
    from vae_core.runs.trainer import train

    at = page_app("pages/train.py", run="tiny").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["name"] == "loss (−ELBO)"

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "tiny", root / "tiny")
    cfg = new_run_config("digits", model={"latent_dim": 2, "hidden": 32},
                         train={"epochs": 1, "objective": "iwae", "samples": 3, "log_every_steps": 5, "num_threads": 1})
    assert train(cfg, root / "iw").state == "finished"
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()  # the run manager, made for the first folder
    at = page_app("pages/train.py", run="iw").run()
    assert not at.exception
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["name"] == "loss (−IWAE bound, k = 3)"
    assert any("IWAE k=3" in c.value for c in at.caption)


# --- upload a run --------------------------------------------------------------------------------
def _add_run(at, files, name=""):
    at.file_uploader(key="up-files").set_value(files).run()
    at.text_input(key="up-name").input(name).run()
    return next(b for b in at.button if b.label == "Add run")


def test_the_downloaded_zip_uploads_as_a_run(app_runs, tmp_path, monkeypatch):
    from vae_core.runs.manager import RunManager

    data = RunManager(app_runs).export_zip("tiny")  # what "Download (.zip)" gives
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(tmp_path))
    at = page_app("pages/train.py").run()
    button = _add_run(at, ("tiny.zip", data, "application/zip"))
    assert not button.disabled  # a zip needs no name: it keeps its own
    button.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["run"] == "tiny" and (tmp_path / "tiny" / "weights.safetensors").exists()
    _add_run(at, ("tiny.zip", data, "application/zip"), "again").click().run()
    assert at.session_state["run"] == "again"
    _add_run(at, ("broken.zip", b"not a zip", "application/zip")).click().run()
    assert not at.exception and at.error  # a sentence, and nothing added
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["again", "tiny"]


def test_config_and_weights_upload_as_a_run(app_runs, tmp_path, monkeypatch):
    files = [("config.json", (app_runs / "tiny" / "config.json").read_bytes(), "application/json"),
             ("weights.safetensors", (app_runs / "tiny" / "weights.safetensors").read_bytes(), "application/octet-stream")]
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(tmp_path))
    at = page_app("pages/train.py").run()
    assert _add_run(at, files).disabled  # two loose files need a name
    _add_run(at, files, "mine").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["run"] == "mine"
    assert _add_run(at, files[:1], "half").disabled
    assert any("Upload either one .zip" in c.value for c in at.caption)
