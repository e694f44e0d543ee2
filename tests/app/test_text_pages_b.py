"""AppTest of Sample, Traverse and Encode on the session's topic runs ("topics": ProdLDA, "lda": LDA,
K = 4, on the tiny corpus of four themes: space, sport, computer, religion): draws from the prior,
a topic slider that changes the word bars, the live widget's precomputed frames, pasted and
uploaded text (good, empty, without a vocabulary word, binary, not UTF-8), the hand-off from
Encode to Traverse, and a run whose corpus has gone (the vocabulary alone is enough)."""
from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest

from pages._ui import text_explore as te
from tests.conftest import TEXT_THEMES, page_app

RUNS = ["topics", "lda"]
SPACE = set(TEXT_THEMES["space"].split())


def assert_quiet(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "title")
                     for e in getattr(at, kind))


def charts(at) -> dict[str, dict]:
    """The page's plotly figures by widget key."""
    return {c.proto.id.split("-", 2)[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def values(v) -> np.ndarray:
    """A trace's numbers: plotly's JSON writes numpy arrays as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def bars(at, key: str) -> tuple[list[str], list[float]]:
    """A word-bar chart's words and values, the most probable first."""
    trace = charts(at)[key]["data"][0]
    return list(trace["y"])[::-1], values(trace["x"])[::-1].tolist()


@pytest.fixture(scope="module")
def models(text_runs):
    """Each run's snapshot and vocabulary, and its space topic: the one whose top 8 words hold the
    most of the space theme's words."""
    from vae_core.runs import rundir as rd
    from vae_core.runs.run_data import run_vocabulary

    out = {}
    for run in RUNS:
        snap, vocab = rd.load_snapshot(text_runs / run), run_vocabulary(text_runs / run)
        top = snap.model.topic_word_probs().argsort(dim=1, descending=True)[:, :8]
        overlap = [len(SPACE & {vocab.words[i] for i in row}) for row in top.tolist()]
        assert max(overlap) >= 5, overlap  # the fixture's runs did find the space theme
        out[run] = (snap, vocab, int(np.argmax(overlap)))
    return out


# --- Sample ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", RUNS)
def test_sample_draws_theta_from_the_prior_and_shows_their_words(text_app_runs, models, run):
    snap, _, _ = models[run]
    at = page_app("pages/sample.py", run=run).run()
    assert_quiet(at)
    if run == "topics":
        assert "logistic normal" in texts(at) and "Laplace approximation of Dirichlet(α = 1) over K = 4" in texts(at)
    else:
        assert "**The prior is Dirichlet(α = 0.25)** over K = 4 topics" in texts(at)
    shown = at.session_state[te.SAMPLE_SHOWN.key]
    thetas = np.array(shown.thetas)
    assert thetas.shape == (6, 4) and shown.seed == 0
    np.testing.assert_allclose(thetas.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(thetas, snap.model.sample_theta(6, seed=0).numpy(), atol=1e-6)  # the prior's own draws
    got = charts(at)
    assert set(got) == {"text_sample_mix"} | {f"text_sample_words_{i}" for i in range(6)}
    assert [len(values(t["x"])) for t in got["text_sample_mix"]["data"]] == [6] * 4  # one trace per topic, one row per draw
    assert bars(at, "text_sample_words_0")[0] == shown.words[0] and len(shown.words[0]) == te.DRAW_WORDS

    at.button(key="text_sample_new").click().run()  # new draws: the next seed
    assert_quiet(at)
    again = at.session_state[te.SAMPLE_SHOWN.key]
    assert again.seed == 1 and not np.allclose(np.array(again.thetas), thetas)
    at.select_slider(key="text_sample_n").set_value(2).run()
    assert_quiet(at)
    assert np.array(at.session_state[te.SAMPLE_SHOWN.key].thetas).shape == (2, 4)
    assert len(charts(at)) == 3
    at.number_input(key="sample_seed").set_value(0).run()  # the same seed: the same draws
    np.testing.assert_allclose(np.array(at.session_state[te.SAMPLE_SHOWN.key].thetas),
                               snap.model.sample_theta(2, seed=0).numpy(), atol=1e-6)


# --- Traverse --------------------------------------------------------------------------------------
def server_traverse(run: str):
    """Traverse with live drag off: a topic picker and a Streamlit slider, drawn on the server."""
    at = page_app("pages/traverse.py", run=run)
    at.session_state["text_traverse_live"] = False
    return at


@pytest.mark.parametrize("run", RUNS)
def test_moving_a_topic_slider_changes_the_word_bars(text_app_runs, models, run):
    _, _, space = models[run]
    at = server_traverse(run).run()
    assert_quiet(at)
    at.selectbox(key="text_traverse_topic").set_value(space).run()
    slider = at.select_slider(key=f"text_traverse_pos_{space}")
    start = slider.value
    words0, probs0 = bars(at, "text_traverse_bars")
    shown0 = at.session_state[te.TRAVERSE_SHOWN.key]
    assert shown0.topic == space and shown0.position == start and words0 == shown0.words
    slider.set_value(len(slider.options) - 1).run()  # the space topic to its top
    assert_quiet(at)
    words1, probs1 = bars(at, "text_traverse_bars")
    shown1 = at.session_state[te.TRAVERSE_SHOWN.key]
    assert (words1, probs1) != (words0, probs0)
    assert shown1.theta[space] > 0.9 and abs(sum(shown1.theta) - 1) < 1e-5
    assert len(SPACE & set(words1[:10])) >= 8, words1  # its words take over the document
    assert f"Moved from base: topic {space + 1}: θ " in texts(at)
    mix = charts(at)["text_traverse_mix"]["data"][0]
    assert mix["y"][-1].startswith(f"topic {space + 1} ·")  # the mixture's largest bar, drawn on top
    at.select_slider(key=f"text_traverse_pos_{space}").set_value(0).run()  # and to the bottom
    words2, _ = bars(at, "text_traverse_bars")
    assert at.session_state[te.TRAVERSE_SHOWN.key].theta[space] < 0.05
    assert len(SPACE & set(words2[:5])) == 0, words2


@pytest.mark.parametrize("run", RUNS)
def test_live_drag_is_the_default_and_the_widget_holds_every_frame(text_app_runs, models, run):
    snap, _, space = models[run]
    at = page_app("pages/traverse.py", run=run).run()
    assert_quiet(at)
    assert at.toggle(key="text_traverse_live").value is True
    assert not at.select_slider  # the browser widget replaces Streamlit's slider
    payload = json.loads(at.get("bidi_component")[0].proto.json)
    assert sorted(t["topic"] for t in payload["topics"]) == [0, 1, 2, 3]
    base = np.array(payload["base"])
    assert [t["topic"] for t in payload["topics"]] == list(np.argsort(-base, kind="stable"))  # main topics first
    shown = at.session_state[te.TRAVERSE_SHOWN.key]
    for t in payload["topics"]:
        assert len(t["frames"]) == len(t["labels"]) == len(t["shares"]) == te.tx.STEPS
        start = [payload["words"][i] for i, _ in t["frames"][t["start"]]]
        assert start == shown.words  # every slider starts at the base: the words the server shows
    top = next(t for t in payload["topics"] if t["topic"] == space)
    end = [payload["words"][i] for i, _ in top["frames"][-1]]
    assert end != shown.words and len(SPACE & set(end[:10])) >= 8
    assert top["shares"][-1] > 0.9 and top["shares"][0] < 0.05
    # The frames are the model's own word distributions along the path.
    path = te.tx.topic_path(np.array(shown.theta), space, "z" if run == "topics" else "share",
                            sigma=float((0.5 * snap.model.prior.logvar[space]).exp()) if run == "topics" else 1.0)
    probs = snap.model.word_probs(__import__("torch").from_numpy(path.thetas[-1:])).numpy()[0]
    np.testing.assert_allclose([p for _, p in top["frames"][-1]], np.sort(probs)[::-1][:te.tx.TOP_WORDS], atol=1e-5)
    at.toggle(key="text_traverse_live").set_value(False).run()
    assert_quiet(at)
    assert at.select_slider


def test_reset_and_a_new_base_put_the_slider_back_at_the_base(text_app_runs):
    at = server_traverse("lda").run()
    key = "text_traverse_pos_0"
    start = at.select_slider(key=key).value
    at.select_slider(key=key).set_value(20 if start < 20 else 0).run()
    assert at.session_state[te.TRAVERSE_SHOWN.key].position != start
    at.button(key="text_traverse_reset").click().run()
    assert_quiet(at)
    assert at.select_slider(key=key).value == start == at.session_state[te.TRAVERSE_SHOWN.key].position
    at.select_slider(key=key).set_value(20 if start < 20 else 0).run()
    at.button(key="text_traverse_another").click().run()  # another test document: a new base
    assert_quiet(at)
    shown = at.session_state[te.TRAVERSE_SHOWN.key]
    assert at.select_slider(key=key).value == shown.position
    assert "nothing yet: the sliders are at the base" in texts(at)


def test_traverse_from_the_prior_mean(text_app_runs):
    at = server_traverse("lda").run()
    assert at.radio(key="text_traverse_base").options == ["The prior mean", "A random test document"]
    at.radio(key="text_traverse_base").set_value("prior").run()
    assert_quiet(at)
    np.testing.assert_allclose(at.session_state[te.TRAVERSE_SHOWN.key].theta, [0.25] * 4, atol=1e-6)
    assert "Base: the prior mean, θ_k = α_k / Σα (every topic equal)." in texts(at)


# --- Encode --------------------------------------------------------------------------------------------
def paste(at, text: str):
    return at.text_area(key="encode_text").input(text).run()


@pytest.mark.parametrize("run", RUNS)
def test_encode_pasted_text_puts_its_topic_first_and_finds_the_nearest_posts(text_app_runs, models, run):
    _, _, space = models[run]
    at = page_app("pages/encode.py", run=run).run()
    assert_quiet(at)
    assert at.title[0].value == "Encode your text"
    assert any("Paste or type some text above" in i.value for i in at.info)  # nothing yet: says what to do
    paste(at, "nasa orbit rocket launch")
    assert_quiet(at)
    enc = at.session_state[te.ENCODE_SHOWN.key]
    assert enc.run == run and enc.known == 4 and enc.unknown == 0
    assert int(np.argmax(enc.theta)) == space, enc.theta
    mix = charts(at)["encode_text_mix_paste"]["data"][0]
    assert mix["y"][-1].startswith(f"topic {space + 1} ·")  # drawn on top: the largest share
    assert "**The model read 4 words**" in texts(at)
    assert len(enc.nearest) == te.N_NEAREST
    heads = [e.label for e in at.expander]
    assert len(heads) == te.N_NEAREST and all(" · H " in h for h in heads)
    if run == "lda":  # LDA reads the 4 words as space (85%): its nearest posts are the space posts
        assert sum(h.startswith("space · ") for h in heads) >= 6, heads
    assert "Nearest posts" in texts(at)


@pytest.mark.parametrize("run", RUNS)
def test_encode_says_why_a_text_has_no_topic_mixture(text_app_runs, run):
    at = page_app("pages/encode.py", run=run).run()
    paste(at, "The weather is lovely today in Lisbon")
    assert_quiet(at)
    assert any("None of this text's words is in the model's 60-word vocabulary" in w.value and "weather" in w.value
               for w in at.warning)
    assert te.ENCODE_SHOWN.key not in at.session_state and not at.expander
    paste(at, "and the of it")
    assert any("stop words" in w.value for w in at.warning)
    paste(at, "   ")
    assert_quiet(at)
    assert any("Paste or type some text above" in i.value for i in at.info)


def _upload(at, name: str, data: bytes):
    return at.file_uploader(key="encode_text_file").set_value((name, data, "text/plain")).run()


@pytest.mark.parametrize("data,message", [
    ("\ufeffThe shuttle launch put a satellite in orbit. NASA".encode("utf-8"), None),
    (b"orbit \x00\x01\x02 binary", "not a text file: it has a NUL byte"),
    ("Caf\u00e9 orbit na\u00efve".encode("latin-1"), "not valid UTF-8"),
    (b"", "is empty"),
], ids=["utf8-bom", "binary", "latin-1", "empty"])
def test_encode_uploaded_text_file(text_app_runs, models, data, message):
    at = page_app("pages/encode.py", run="lda")
    at.session_state["encode_text_tab"] = "Upload a .txt file"  # the tab a click would open
    at.run()
    _upload(at, "post.txt", data)
    assert not at.exception, at.exception
    if message is None:
        assert not at.error
        enc = at.session_state[te.ENCODE_SHOWN.key]
        assert enc.known == 5 and int(np.argmax(enc.theta)) == models["lda"][2]  # shuttle launch satellite orbit nasa
    else:
        assert [e.value for e in at.error] and message in at.error[0].value and "'post.txt'" in at.error[0].value
        assert te.ENCODE_SHOWN.key not in at.session_state


def test_traverse_from_an_encoded_text(text_app_runs, models):
    at = page_app("pages/encode.py", run="lda").run()
    paste(at, "nasa orbit rocket launch")
    at.button(key="encode_text_traverse_paste").click().run()
    assert not at.exception
    base = at.session_state["traverse_base"]
    assert base.run == "lda" and base.label == "your text"
    np.testing.assert_allclose(base.z, at.session_state[te.ENCODE_SHOWN.key].theta)
    assert any("Traverse page" in i.value for i in at.info)  # a page alone has no navigation to switch to

    tr = server_traverse("lda")
    tr.session_state["traverse_base"] = base
    tr.run()
    assert_quiet(tr)
    assert tr.radio(key="text_traverse_base").value == "chosen"
    np.testing.assert_allclose(tr.session_state[te.TRAVERSE_SHOWN.key].theta, base.z, atol=1e-5)
    assert "Base: your text." in texts(tr)


# --- a run whose corpus is gone -------------------------------------------------------------------------
@pytest.fixture
def corpus_gone(text_runs, tmp_path, monkeypatch):
    """A copy of "lda" whose config names a corpus that no longer exists: only vocab.json is left."""
    import streamlit as st

    runs = tmp_path / "runs"
    shutil.copytree(text_runs / "lda", runs / "lda")
    config = json.loads((runs / "lda" / "config.json").read_text())
    config["train"]["dataset"] = f"text:{tmp_path / 'gone.jsonl'}"
    (runs / "lda" / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(runs))
    st.cache_resource.clear()
    yield runs
    st.cache_resource.clear()


def test_the_pages_work_from_the_vocabulary_when_the_corpus_is_gone(corpus_gone):
    at = page_app("pages/sample.py", run="lda").run()
    assert_quiet(at)
    assert np.array(at.session_state[te.SAMPLE_SHOWN.key].thetas).shape == (6, 4)

    tr = server_traverse("lda").run()
    assert_quiet(tr)
    assert tr.radio(key="text_traverse_base").options == ["The prior mean"]
    assert "No test documents to start from" in texts(tr)
    tr.select_slider(key="text_traverse_pos_0").set_value(20).run()
    assert_quiet(tr)
    assert tr.session_state[te.TRAVERSE_SHOWN.key].theta[0] == pytest.approx(1.0)

    en = page_app("pages/encode.py", run="lda").run()
    paste(en, "nasa orbit rocket launch")
    assert_quiet(en)
    assert en.session_state[te.ENCODE_SHOWN.key].nearest == []
    assert any("The nearest posts need the run's corpus" in i.value for i in en.info)
