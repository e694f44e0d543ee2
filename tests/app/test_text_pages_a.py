"""AppTest of the Train, Reconstructions and Latent space pages on topic-model runs (issue 15):
the topic-model form, a topic run's curves and live topics, a test document beside its
reconstruction with its perplexity, and the documents by their topic proportions.

The runs come from conftest's session fixture ``text_runs``: "topics" (ProdLDA, K = 4) and "lda"
(online LDA, K = 4) on a tiny corpus of four planted themes (80 test documents).
"""
import json

import numpy as np
import pytest

from tests.conftest import page_app, write_text_corpus
from vae_core.runs import rundir as rd

RUNS = ["topics", "lda"]


def assert_quiet(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def run_data(runs, run: str):
    """The run's snapshot (the one the pages show) and its corpus, loaded as the app loads them."""
    from vae_core.runs.run_data import load_run_data

    snap = rd.load_snapshot(runs / run, which="best")
    return snap, load_run_data(snap.config, runs / run)


@pytest.fixture
def no_worker(monkeypatch):
    """Start writes the run's files but spawns no training process."""
    from vae_core.runs.manager import RunManager

    monkeypatch.setattr(RunManager, "_spawn", lambda self, name, resume: None)


# --- Train ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", RUNS)
def test_train_page_shows_a_topic_runs_curves_and_topics(text_app_runs, run):
    from vae_core.labs.topics import top_words

    at = page_app("pages/train.py", run=run).run()
    assert_quiet(at)
    assert any(run == h.value for h in at.subheader)
    family = "LDA" if run == "lda" else "ProdLDA"
    assert any(f"{family} · K=4 topics" in c.value and "finished" in c.value for c in at.caption)
    progress = at.get("progress")[0].proto.text
    assert ("step size ρ" if run == "lda" else "learning rate") in progress

    curves = figures(at)[0]
    names = [t["name"] for t in curves["data"]]
    assert names[0] == ("−bound (mini-batch)" if run == "lda" else "loss (−ELBO)")
    assert ("KL(q‖p)" in names) == (run == "topics")  # LDA has no loss / KL split
    epochs = [r for r in rd.read_metrics(text_app_runs / run) if r.get("kind") == "epoch"]
    perplexity = next(t for t in curves["data"] if t["name"] == "test perplexity")
    assert perplexity["y"] == pytest.approx([r["test_perplexity"] for r in epochs])

    # The current topics: each topic's 10 most probable words, as the snapshot gives them.
    table = next(d.value for d in at.dataframe if "top words" in d.value.columns)
    snap, data = run_data(text_app_runs, run)
    want = [" ".join(data.vocab[i] for i in row) for row in top_words(snap.model.topic_word_probs(), 10)]
    assert table["top words"].tolist() == want and table["topic"].tolist()[0] == "topic 1"
    assert any("Topics** at step" in m.value for m in at.markdown)

    runs = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert set(runs["run"]) == {"topics", "lda"}
    assert {m.split(" ·")[0] for m in runs["model"]} == {"ProdLDA", "LDA"}


def test_text_choice_shows_the_topic_form_and_hides_the_image_fields(empty_runs):
    at = page_app("pages/train.py").run()
    at.radio(key="train_modality").set_value("Text, with a topic model").run()
    assert_quiet(at)
    box = at.selectbox(key="train_text_dataset")
    assert box.options[0] == "20newsgroups" and box.options[-1] == "Your own text…"
    labels = {n.label for n in at.number_input}
    assert {"Topics K", "Dirichlet α", "Vocabulary size", "Hidden units", "Dropout", "Learning rate", "Epochs"} <= labels
    assert not {"Latent dimensions", "KL weight β", "Batch size"} & labels  # image-only fields are gone
    assert not any(r.label == "Model" for r in at.radio)
    at.radio(key="train_text_family").set_value("LDA").run()
    labels = {n.label for n in at.number_input}
    assert {"Topics K", "Dirichlet α", "Vocabulary size", "Epochs"} <= labels
    assert not {"Hidden units", "Dropout", "Learning rate"} & labels  # ProdLDA's only
    assert at.number_input(key="train_lda_alpha").value is None  # empty: 1/K
    assert at.number_input(key="train_lda_epochs").value == 10  # LDA's own default, not ProdLDA's 100


@pytest.mark.parametrize("family", ["ProdLDA", "LDA"])
def test_the_form_starts_a_topic_run_on_your_own_text(empty_runs, no_worker, tmp_path, family):
    corpus = tmp_path / "mine.jsonl"
    spec = write_text_corpus(corpus, n_docs=120)
    at = page_app("pages/train.py").run()
    at.radio(key="train_modality").set_value("Text, with a topic model").run()
    at.selectbox(key="train_text_dataset").set_value("Your own text…").run()
    assert next(b for b in at.button if b.label == "Start training").disabled  # no path yet
    at.text_input(key="train_text_path").input(str(corpus)).run()
    at.radio(key="train_text_family").set_value(family).run()
    key = f"train_{family.lower()}"
    at.number_input(key=f"{key}_k").set_value(3)
    at.number_input(key=f"{key}_epochs").set_value(2)
    at.number_input(key=f"{key}_vocab").set_value(40)
    if family == "ProdLDA":
        at.number_input(key=f"{key}_alpha").set_value(0.5)
        at.number_input(key=f"{key}_hidden").set_value(16)
        at.number_input(key=f"{key}_lr").set_value(5e-3)
    at.text_input(key=f"{key}_name").input("mine")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert_quiet(at)

    assert at.session_state["run"] == "mine"
    cfg = rd.read_config(empty_runs / "mine")
    assert cfg.family == family.lower() and cfg.train.dataset == spec
    assert (cfg.model.topics, cfg.train.epochs) == (3, 2) and cfg.model.vocab_size <= 40
    if family == "ProdLDA":
        assert (cfg.model.alpha, cfg.model.hidden, cfg.train.lr) == (0.5, 16, pytest.approx(5e-3))
    else:
        assert cfg.model.alpha is None  # left empty: 1/K
    runs = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert runs["run"].tolist() == ["mine"] and runs["model"][0].startswith(f"{family} · K=3 topics")


def test_a_missing_corpus_is_one_sentence_and_starts_nothing(empty_runs, no_worker, tmp_path):
    at = page_app("pages/train.py").run()
    at.radio(key="train_modality").set_value("Text, with a topic model").run()
    at.selectbox(key="train_text_dataset").set_value("Your own text…").run()
    at.text_input(key="train_text_path").input(str(tmp_path / "nothing-here.jsonl")).run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "nothing-here.jsonl" in at.error[0].value
    assert not [p for p in empty_runs.iterdir() if not p.name.startswith(".")]


# --- Reconstructions ------------------------------------------------------------------------------
def _doc_number(at) -> int:
    head = next(h.value for h in at.subheader if h.value.startswith("Test document #"))
    return int(head.split("#")[1].split(" ")[0])


@pytest.mark.parametrize("run", RUNS)
def test_reconstructions_show_a_documents_words_beside_its_reconstruction(text_app_runs, run):
    from pages._ui.text_views import document_perplexity

    at = page_app("pages/reconstructions.py", run=run).run()
    assert_quiet(at)
    snap, data = run_data(text_app_runs, run)
    assert _doc_number(at) == 0 and f"Run **{run}**" in "\n".join(c.value for c in at.caption)
    doc, rec, mixture = figures(at)
    counts = data.x_test[0].numpy()
    top = np.argsort(-counts, kind="stable")[:12]
    assert doc["data"][0]["y"][::-1] == [data.vocab[i] for i in top]  # the document's most frequent words
    theta = snap.model.topic_proportions(data.x_test[0:1])
    probs = snap.model.word_probs(theta)[0].numpy()
    assert rec["data"][0]["y"][-1] == data.vocab[int(np.argmax(probs))]  # the reconstruction's most probable, on top
    assert len(mixture["data"][0]["y"]) >= 1
    metric = {m.label: m.value for m in at.metric}
    assert metric["Words counted"] == f"{int(counts.sum()):,}"
    assert float(metric["Perplexity"].replace(",", "")) == pytest.approx(
        float(document_perplexity(snap.model, data.x_test[0:1])[0]), abs=0.06)
    bound = "LDA's variational bound" if run == "lda" else "the ELBO with 20 samples of z, less the multinomial"
    assert any(bound in c.value for c in at.caption)  # which bound the perplexity comes from
    assert at.expander[0].label == "The post's text" and at.text[0].value == data.docs_test[0]


def test_choose_the_document_by_number_at_random_and_from_the_list(text_app_runs):
    from pages._ui.images import spread

    at = page_app("pages/reconstructions.py", run="topics").run()
    _, data = run_data(text_app_runs, "topics")
    at.number_input(key="recon_doc").set_value(5).run()
    assert_quiet(at)
    assert _doc_number(at) == 5 and at.text[0].value == data.docs_test[5]
    next(b for b in at.button if b.label == "Random document").click().run()
    assert _doc_number(at) == int(np.random.default_rng(1).integers(len(data.x_test)))  # seeded: seed 1
    pick = int(spread(len(data.x_test), 300)[7])
    at.selectbox(key="recon_doc_pick").set_value(pick).run()
    assert_quiet(at)
    assert _doc_number(at) == pick and at.number_input(key="recon_doc").value == pick


# --- Latent space ---------------------------------------------------------------------------------
def _scatter_ids(fig: dict) -> list[int]:
    return sorted(c[0] for t in fig["data"] if t.get("customdata") for c in t["customdata"])


@pytest.mark.parametrize("run", RUNS)
def test_latent_space_places_every_test_document_and_a_click_reads_the_post(text_app_runs, run):
    at = page_app("pages/latent_space.py", run=run).run()
    assert_quiet(at)
    _, data = run_data(text_app_runs, run)
    (scatter,) = figures(at)
    assert _scatter_ids(scatter) == list(range(len(data.x_test)))  # 80 documents: all of them
    assert {t["name"] for t in scatter["data"]} == set(data.class_names)  # coloured by class
    assert any("Click a dot" in i.value for i in at.info)
    assert any("**PCA** of the 4 topic proportions" in c.value for c in at.caption)

    at.session_state["selected_point"] = {"run": run, "index": 5}  # what a click leaves
    at.run()
    assert_quiet(at)
    assert any(m.value.startswith("**Test post #5**") for m in at.markdown)
    assert at.text[0].value == data.docs_test[5]  # the post itself
    scatter, mixture = figures(at)
    assert any(t["name"] == "selected" for t in scatter["data"])
    assert mixture["data"][0]["y"]  # its topic mixture


def test_latent_space_by_dominant_topic_and_with_tsne(text_app_runs):
    at = page_app("pages/latent_space.py", run="lda").run()
    at.radio(key="ls_text_colour").set_value("dominant topic").run()
    assert_quiet(at)
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert names and all(n.startswith("topic ") for n in names)
    at.radio(key="ls_text_method").set_value("t-SNE").run()
    assert_quiet(at)
    assert any("**t-SNE** of √θ" in c.value for c in at.caption)
    assert len(_scatter_ids(figures(at)[0])) == 80


def test_a_selected_point_of_another_run_is_ignored(text_app_runs):
    at = page_app("pages/latent_space.py", run="topics")
    at.session_state["selected_point"] = {"run": "lda", "index": 5}
    at.run()
    assert_quiet(at)
    assert any("Click a dot" in i.value for i in at.info) and not at.text


# --- the per-document perplexity against the run's own ---------------------------------------------
@pytest.mark.parametrize("run", RUNS)
def test_document_perplexities_add_up_to_the_runs_bound(text_runs, run):
    """Per-word bounds weighted by length give back the corpus figure: ProdLDA's test perplexity
    (up to the ELBO's sampling noise), LDA's bound without q(beta)'s corpus-wide term."""
    from pages._ui.text_views import document_perplexity
    from vae_core.runs.run_data import load_run_data

    snap = rd.load_snapshot(text_runs / run, which="latest")  # what the last epoch was scored with
    x = load_run_data(snap.config, text_runs / run).x_test[:]
    n = x.sum(1).double().numpy()
    log_p = np.log(document_perplexity(snap.model, x))
    corpus = float(np.exp((n * log_p).sum() / n.sum()))
    if run == "lda":
        mean_bound, _ = snap.model.evaluate(x)
        assert corpus == pytest.approx(np.exp(-mean_bound * len(n) / n.sum()), rel=1e-6)
    else:
        last = [r for r in rd.read_metrics(text_runs / run) if r.get("kind") == "epoch"][-1]
        assert corpus == pytest.approx(last["test_perplexity"], rel=0.03)
