"""Topic models as runs: ProdLDA and LDA trained by the worker into run directories, read back,
resumed, stopped and evaluated like any other run; LDA's module against scikit-learn itself."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from tests.conftest import (
    ROOT,
    TEXT_THEMES,
    tiny_topic_config,
    wait_for,
    write_text_corpus,
)
from vae_core.data import DatasetError
from vae_core.engine.config import (
    ConfigError,
    LdaConfig,
    RunConfig,
    TopicModelConfig,
    TrainConfig,
)
from vae_core.engine.lda import LdaModel
from vae_core.engine.prodlda import ProdLDA
from vae_core.engine.topic_model import TopicModel
from vae_core.labs.topics import synthetic_lda_corpus
from vae_core.runs import rundir as rd
from vae_core.runs.run_data import VOCAB, load_run_data
from vae_core.runs.trainer import train


# --- LDA's module is scikit-learn's online VB, stored in buffers --------------------------------------
@pytest.fixture(scope="module")
def lda_corpus():
    return synthetic_lda_corpus(n_docs=300, vocab_size=40, topics=4, alpha=0.5, eta=0.1, doc_length=50, seed=1)


def test_lda_updates_are_scikit_learns_partial_fit(lda_corpus):
    from sklearn.decomposition import LatentDirichletAllocation

    x = lda_corpus.counts.astype(np.float64)  # the module computes in float64 whatever it is given
    model = LdaModel(LdaConfig(vocab_size=40, topics=4))
    model.start(x.shape[0], seed=3)
    reference = LatentDirichletAllocation(n_components=4, learning_method="online", total_samples=x.shape[0],
                                          random_state=3, batch_size=50)
    for start in range(0, 300, 50):
        model.update(x[start:start + 50])
        reference.partial_fit(x[start:start + 50])
    np.testing.assert_allclose(model.components.numpy(), reference.components_, rtol=1e-10)
    assert int(model.updates) == 6
    theta = model.topic_proportions(torch.from_numpy(x[:5].toarray()))
    np.testing.assert_allclose(theta.numpy(), reference.transform(x[:5]), rtol=1e-5, atol=1e-6)
    assert model.perplexity(x) == pytest.approx(reference.perplexity(x), rel=1e-9)


def test_lda_state_round_trips_and_its_bounds_add_up(lda_corpus):
    x = lda_corpus.counts
    model = LdaModel(LdaConfig(vocab_size=40, topics=4))
    model.start(x.shape[0])
    for start in range(0, 300, 100):
        model.update(x[start:start + 100])
    again = LdaModel(LdaConfig(vocab_size=40, topics=4))
    again.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    # the next update continues the same step-size schedule from the stored count; only the E-step's
    # random starting points differ (the generator's state is not stored), which moves lambda by ~1e-4
    before = model.components.clone()
    model.update(x[:100])
    again.update(x[:100])
    np.testing.assert_allclose(again.components.numpy(), model.components.numpy(), rtol=1e-2)
    assert (model.components - before).abs().max() > 100 * (again.components - model.components).abs().max()
    # the per-document bounds and q(beta)'s term make up the corpus bound
    per_doc = model.document_bounds(x[:20])
    sk = model.sklearn()
    topic_term = sk._approx_bound(x[:0], np.zeros((0, 4)), sub_sampling=False)
    assert per_doc.sum() + topic_term == pytest.approx(model.corpus_bound(x[:20]), rel=1e-9)
    mean_bound, perplexity = model.evaluate(x)
    assert mean_bound == pytest.approx(model.document_bounds(x).mean(), rel=1e-9)
    assert perplexity == pytest.approx(model.perplexity(x), rel=1e-9)
    # topics and draws from the prior are distributions
    assert torch.allclose(model.topic_word_probs().sum(1), torch.ones(4))
    assert torch.allclose(model.sample_theta(7, seed=0).sum(1), torch.ones(7))
    assert isinstance(model, TopicModel)


def test_prodlda_is_a_topic_model_too():
    model = ProdLDA(TopicModelConfig(vocab_size=30, topics=3, hidden=8)).eval()
    assert isinstance(model, TopicModel)
    theta = model.sample_theta(5, seed=1)
    assert torch.allclose(theta.sum(1), torch.ones(5)) and torch.equal(theta, model.sample_theta(5, seed=1))
    probs = model.word_probs(theta)
    assert probs.shape == (5, 30) and torch.allclose(probs.sum(1), torch.ones(5))
    # the decoder's own output agrees with word_probs for theta = softmax(z)
    z = torch.randn(2, 3)
    assert torch.allclose(model.decode(z).exp(), model.word_probs(torch.softmax(z, -1)), atol=1e-6)


def test_topic_configs_round_trip_and_lda_refuses_several_processes():
    for family, model in (("prodlda", TopicModelConfig(vocab_size=50, topics=5, alpha=(0.5,) * 5)),
                          ("lda", LdaConfig(vocab_size=50, topics=5, alpha=0.1))):
        cfg = RunConfig(model=model, train=TrainConfig(dataset="20newsgroups"), family=family).validate()
        back = RunConfig.from_json(cfg.to_json())
        assert back.family == family and back.model == cfg.model and back.is_text
    with pytest.raises(ConfigError, match="LDA trains in one process"):
        RunConfig(model=LdaConfig(), train=TrainConfig(dataset="20newsgroups", nproc=2), family="lda").validate()


# --- runs -----------------------------------------------------------------------------------------
def theme_of(words):
    """The theme all of ``words`` belong to, or None."""
    for name, vocab in TEXT_THEMES.items():
        if set(words) <= set(vocab.split()):
            return name
    return None


@pytest.mark.parametrize("name,family,kind", [("topics", "prodlda", ProdLDA), ("lda", "lda", LdaModel)])
def test_a_topic_run_is_a_run_like_any_other(text_runs, name, family, kind):
    run = text_runs / name
    assert (run / VOCAB).exists() and (run / rd.WEIGHTS).exists()
    snap = rd.load_snapshot(run)
    assert isinstance(snap.model, kind) and snap.config.family == family
    epochs = [r for r in rd.read_metrics(run) if r["kind"] == "epoch"]
    assert epochs and all(np.isfinite(r["test_perplexity"]) and r["test_perplexity"] > 1 for r in epochs)
    assert rd.read_status(run).state == "finished"
    # the run's topics are the planted themes: each topic's top 5 words come from one theme, each theme once
    data = load_run_data(snap.config, run)
    words = data.vocab
    tops = [[words[i] for i in row] for row in torch.argsort(snap.model.topic_word_probs(), 1, descending=True)[:, :5]]
    themes = {theme_of(t) for t in tops} - {None}
    assert themes == set(TEXT_THEMES), tops


def test_eval_json_reports_the_topic_metrics(text_runs):
    for name in ("topics", "lda"):
        out = subprocess.run([sys.executable, "-m", "vae_core", "eval", str(text_runs / name), "--json"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert -1 <= result["npmi"] <= 1 and len(result["npmi_per_topic"]) == 4
        assert 0 < result["diversity"] <= 1
        assert result["perplexity"] > 1 and "bound" in result["perplexity_bound"]
        assert len(result["topics"]) == 4 and all(len(t) == 10 for t in result["topics"])
        # the trainer's last epoch perplexity (1 sample) and eval's (20 samples) estimate the same bound
        last = [r for r in rd.read_metrics(text_runs / name) if r["kind"] == "epoch"][-1]
        assert result["perplexity"] == pytest.approx(last["test_perplexity"], rel=0.05)


def test_an_lda_run_resumes_where_it_stopped_and_stops_on_request(tmp_path):
    spec = write_text_corpus(tmp_path / "corpus.jsonl")
    run = tmp_path / "lda"
    status = train(tiny_topic_config(spec, "lda", max_steps=7), run)
    assert status.state == "finished" and status.step == 7
    assert int(rd.load_snapshot(run).model.updates) == 7
    config = rd.read_config(run)
    config.train.max_steps = None
    status = train(config, run, resume=True)
    assert status.state == "finished" and status.step == status.total_steps > 7
    assert int(rd.load_snapshot(run).model.updates) == status.step

    long = tmp_path / "long"
    config = tiny_topic_config(spec, "lda", epochs=100_000)
    worker = threading.Thread(target=train, args=(config, long))
    worker.start()
    wait_for(lambda: rd.read_status(long).step > 3, timeout=60)
    rd.request(long, "stop")
    worker.join(timeout=60)
    status = rd.read_status(long)
    assert status.state == "stopped" and 3 < status.step < status.total_steps
    assert rd.load_snapshot(long).step == status.step


def test_a_changed_corpus_is_refused_and_the_vocabulary_still_reads(text_runs, tmp_path):
    import shutil

    spec = write_text_corpus(tmp_path / "corpus.jsonl")
    run = tmp_path / "run"
    shutil.copytree(text_runs / "lda", run)
    config = rd.read_config(run)
    config.train.dataset = spec
    rd.write_config(run, config)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("nasa", "esa"))  # one word renamed: another vocabulary
    with pytest.raises(DatasetError, match="another vocabulary"):
        load_run_data(config, run)
    from vae_core.runs.run_data import run_vocabulary

    assert len(run_vocabulary(run)) == config.model.vocab_size


def test_cli_refuses_bad_topic_settings_in_one_line(tmp_path):
    spec = write_text_corpus(tmp_path / "corpus.jsonl", n_docs=30)
    cases = [
        (["--dataset", "digits", "--model", "lda"], "models text"),
        (["--dataset", spec, "--topics", "500"], "topics were asked for"),
        (["--dataset", spec, "--model", "lda", "--dropout", "0.5"], "lda has no setting dropout"),
        (["--dataset", "20newsgroups", "--model", "vae"], "is text"),
    ]
    for flags, message in cases:
        out = subprocess.run([sys.executable, "-m", "vae_core", "train", *flags, "--run-dir", str(tmp_path / "r")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (flags, out.stderr)


def test_a_topic_run_moves_as_a_zip_with_its_vocabulary(text_runs, tmp_path):
    from vae_core.runs.manager import RunManager

    m = RunManager(tmp_path / "runs")
    data = RunManager(text_runs).export_zip("topics")
    name = m.import_zip(data, name="moved")
    moved = m.path(name)
    assert (moved / VOCAB).read_text() == (text_runs / "topics" / VOCAB).read_text()
    snap = rd.load_snapshot(moved)
    assert torch.equal(snap.model.topic_word_probs(), rd.load_snapshot(text_runs / "topics").model.topic_word_probs())
    # without its vocabulary a topic run cannot be explored: refused, and nothing is written
    config = (text_runs / "topics" / rd.CONFIG).read_bytes()
    weights = (text_runs / "topics" / rd.WEIGHTS).read_bytes()
    with pytest.raises(rd.RunError, match="vocab.json must come with it"):
        m.import_run("bare", config, weights)
    assert not m.path("bare").exists()
