"""The Topics lab page under AppTest: no topic runs yet, a real ProdLDA run beside a real LDA run
(the session's tiny text runs), stand-ins for the cases those cannot show, the alpha slider moving
the simplex's numbers, and the planted-topics button on a tiny corpus."""
from types import SimpleNamespace

import numpy as np
import pytest

from pages._ui import topics_lab as lab
from tests.conftest import page_app

PAGE = "pages/lab_topics.py"


def assert_quiet(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_page_with_no_topic_runs_says_how_to_make_them(empty_runs):
    at = page_app(PAGE).run()
    assert_quiet(at)
    assert [t.label for t in at.tabs] == ["ProdLDA vs LDA", "Dirichlet vs its Laplace approximation",
                                          "Recovering planted topics (eq. 13)"]
    assert any("No ProdLDA and LDA runs yet" in i.value for i in at.info)
    assert any("--model prodlda --topics 20" in c.value and "--model lda" in c.value for c in at.code)
    assert any("Press **Draw a corpus and fit both**" in i.value for i in at.info)  # tab 3: nothing run yet
    assert len(at.get("plotly_chart")) == 1  # the simplex pair


def test_alpha_slider_changes_the_numbers(empty_runs):
    at = page_app(PAGE).run()
    assert at.select_slider(key="topics-alpha").value == 0.3
    tv_low, corner_low = float(metric(at, "Total variation")), metric(at, "P(corner), Dirichlet")
    assert any("Below α = 1 they part ways" in m.value for m in at.markdown)
    at.select_slider(key="topics-alpha").set_value(3.0).run()
    assert_quiet(at)
    tv_high = float(metric(at, "Total variation"))
    assert tv_high < tv_low  # the approximation is closer above alpha = 1
    assert metric(at, "P(corner), Dirichlet") != corner_low
    assert any("From α = 1 up they agree in shape" in m.value for m in at.markdown)
    assert not any("Below α = 1" in m.value for m in at.markdown)


def test_planted_button_fits_both_models_on_a_tiny_corpus(empty_runs):
    at = page_app(PAGE, timeout=90).run()
    at.slider(key="planted-k").set_value(3)
    at.select_slider(key="planted-v").set_value(20)
    at.select_slider(key="planted-docs").set_value(200)
    at.select_slider(key="planted-steps").set_value(50)
    next(b for b in at.button if b.label == "Draw a corpus and fit both").click().run()
    assert_quiet(at)
    said = [m.value for m in at.markdown]
    for method in ("ProdLDA", "LDA"):
        assert any(s.startswith(f"**{method}** recovers **") and " of 3** planted topics above cosine 0.9" in s
                   for s in said), said
    assert len(at.get("plotly_chart")) == 3  # the simplex pair, the cosine heatmaps, the distributions
    assert any("200 documents" in s for s in said)


# --- real topic runs --------------------------------------------------------------------------
def test_a_prodlda_run_beside_an_lda_run(text_app_runs):
    at = page_app(PAGE, timeout=90).run()
    assert_quiet(at)
    assert at.selectbox(key="topics-prodlda-run").value == "topics"
    assert at.selectbox(key="topics-lda-run").value == "lda"
    metrics, table = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics["model"]) == ["ProdLDA", "LDA"] and list(metrics["topics"]) == [4, 4]
    assert ((metrics["NPMI"] >= -1) & (metrics["NPMI"] <= 1)).all()
    assert len(table) == 4 and table["match (cosine)"].between(0, 1).all()
    # Every topic of each model appears once, with its ten top words.
    for name in ("ProdLDA", "LDA"):
        assert sorted(table[f"{name} topic"]) == [1, 2, 3, 4]
        assert all(len(words.split()) == 10 for words in table[f"{name} words"])
    assert any("Perplexity on the test documents. ProdLDA:" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # the NPMI bars, and the simplex pair in the next tab


# --- two topic runs, stood in for -------------------------------------------------------------
def fake_run(name: str, family: str, dataset: str = "20newsgroups"):
    return SimpleNamespace(name=name, config=SimpleNamespace(family=family, train=SimpleNamespace(dataset=dataset)))


def fake_report(seed: int, k: int = 4, v: int = 30, npmi: float = 0.1):
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.full(v, 0.1), size=k)
    return SimpleNamespace(topic_word=topic_word, top_words=[[f"w{seed}_{t}_{j}" for j in range(10)] for t in range(k)],
                           npmi_per_topic=np.full(k, npmi), npmi=npmi, diversity=0.8, perplexity=1234.5,
                           perplexity_bound="ELBO")


@pytest.fixture
def two_topic_runs(empty_runs, monkeypatch):
    runs = {"prodlda": [fake_run("prod", "prodlda"), fake_run("prod-mine", "prodlda", "text:mine")],
            "lda": [fake_run("lda", "lda")]}
    reports = {"prod": fake_report(0, npmi=0.12), "lda": fake_report(0, npmi=0.05), "prod-mine": fake_report(1)}
    monkeypatch.setattr(lab, "topic_runs", lambda: runs)
    monkeypatch.setattr(lab, "report", lambda name: reports[name])


@pytest.mark.usefixtures("two_topic_runs")
def test_two_topic_runs_are_aligned_side_by_side():
    at = page_app(PAGE).run()
    assert_quiet(at)
    assert at.selectbox(key="topics-prodlda-run").value == "prod"
    assert at.selectbox(key="topics-lda-run").options == ["lda"]
    metrics, table = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics["model"]) == ["ProdLDA", "LDA"] and list(metrics["NPMI"]) == [0.12, 0.05]
    assert len(table) == 4 and np.allclose(table["match (cosine)"], 1.0)  # the same topics: perfect matches
    assert any("**ProdLDA**'s topics are more coherent here" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2  # the NPMI bars, and the simplex pair in the next tab


@pytest.mark.usefixtures("two_topic_runs")
def test_a_prodlda_run_with_no_lda_run_on_its_dataset():
    at = page_app(PAGE).run()
    at.selectbox(key="topics-prodlda-run").set_value("prod-mine").run()
    assert_quiet(at)
    assert any("No LDA run on **text:mine** yet" in i.value for i in at.info)
    assert not at.dataframe
