"""The text pages' figure builders (pages/_ui/text_figures.py) on hand-made numbers: a topic run's
curves with ProdLDA's and LDA's records, a document's top words, and the documents' scatter."""
import math

import numpy as np
import pytest

from pages._ui import text_figures as tf


def _traces(fig, axis: str) -> dict:
    """name -> trace of the traces on x axis ``axis`` ("x", "x2", "x3")."""
    return {t.name: t for t in fig.data if (t.xaxis or "x") == axis}


PROD_STEPS = [{"kind": "step", "step": s, "epoch": s / 10, "loss": 100.0 - s, "log_likelihood": -(90.0 - s),
               "kl": 10.0, "elbo": s - 100.0, "lr": 1e-3} for s in (5, 10, 15)]
PROD_EPOCHS = [{"kind": "epoch", "step": 10 * e, "epoch": e, "test_elbo": -80.0 + e, "val_elbo": -81.0 + e,
                "test_perplexity": 900.0 - 10 * e} for e in (1, 2)]
LDA_STEPS = [{"kind": "step", "step": s, "epoch": s / 10, "elbo": -150.0 + s, "rho": 0.1} for s in (5, 10)]


def test_prodlda_curves_show_loss_terms_bound_and_perplexity():
    fig = tf.topic_training_curves(PROD_STEPS, PROD_EPOCHS, "prodlda")
    assert fig.data[0].name == "loss (−ELBO)"  # the live tests count this trace's points
    left = _traces(fig, "x")
    assert list(left) == ["loss (−ELBO)", "reconstruction (−log p(x|z))", "KL(q‖p)"]
    assert list(left["reconstruction (−log p(x|z))"].y) == [85.0, 80.0, 75.0]  # −log p(x|z), positive
    middle = _traces(fig, "x2")
    assert list(middle["test ELBO"].y) == [-79.0, -78.0] and list(middle["validation ELBO"].x) == [1, 2]
    right = _traces(fig, "x3")
    assert list(right["test perplexity"].y) == [890.0, 880.0]
    assert fig.layout.yaxis3.type == "log" and fig.layout.yaxis2.type != "log"


def test_lda_curves_need_no_loss_or_kl_and_skip_what_is_missing():
    epochs = [{"kind": "epoch", "step": 10, "epoch": 1, "test_elbo": -60.0, "test_perplexity": 500.0},
              {"kind": "epoch", "step": 20, "epoch": 2, "test_elbo": -55.0},  # no perplexity (an older run)
              {"kind": "epoch", "step": 30, "epoch": 3, "test_elbo": math.nan, "test_perplexity": 450.0}]
    fig = tf.topic_training_curves(LDA_STEPS, epochs, "lda")
    left = _traces(fig, "x")
    assert list(left) == ["−bound (mini-batch)"]  # no loss / KL split for LDA
    assert list(left["−bound (mini-batch)"].y) == [145.0, 140.0]  # the negative of the logged bound
    assert list(_traces(fig, "x2")["test bound (LDA)"].x) == [1, 2]  # the NaN epoch left out
    assert "validation ELBO" not in _traces(fig, "x2")
    perplexity = _traces(fig, "x3")["test perplexity"]
    assert list(perplexity.x) == [1, 3] and list(perplexity.y) == [500.0, 450.0]


def test_curves_of_a_run_that_has_logged_nothing_yet_are_empty_not_an_error():
    fig = tf.topic_training_curves([], [], "prodlda")
    assert fig.data[0].name == "loss (−ELBO)" and len(fig.data[0].x) == 0


def test_topics_table_numbers_topics_from_one():
    rows = tf.topics_table([["space", "nasa"], ["god", "church"]])
    assert rows == [{"topic": "topic 1", "top words": "space nasa"}, {"topic": "topic 2", "top words": "god church"}]


def test_top_entries_are_the_largest_first_without_zeros():
    words = ["a", "b", "c", "d", "e"]
    w, v = tf.top_entries(np.array([0.0, 3.0, 1.0, 3.0, 0.5]), words, n=4)
    assert w == ["b", "d", "c", "e"]  # a tie keeps word order
    assert list(v) == [3.0, 3.0, 1.0, 0.5]
    w, _ = tf.top_entries(np.array([0.0, 2.0, 0.0, 0.0, 0.0]), words, n=3)
    assert w == ["b"]  # a short document: only the words it has
    with pytest.raises(ValueError, match="4 values for 5 words"):
        tf.top_entries(np.ones(4), words)


def test_dominant_topic_is_the_largest_share():
    theta = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    assert list(tf.dominant_topics(theta)) == [1, 0]


def test_document_scatter_keeps_each_points_test_index_per_group():
    xy = np.arange(12, dtype=float).reshape(6, 2)
    groups = np.array([1, 0, 1, -1, 0, 1])
    ids = np.array([10, 20, 30, 40, 50, 60])
    fig = tf.document_scatter(xy, groups, ids, ["sport", "space"], colours=["#111111", "#222222"],
                              hover=[f"post {i}" for i in ids], selected=(2.0, 3.0), legend="newsgroup")
    by_name = {t.name: t for t in fig.data}
    assert [t.name for t in fig.data] == ["no label", "sport", "space", "selected"]
    space = by_name["space"]
    assert [c[0] for c in space.customdata] == [10, 30, 60]  # the global index, not the point number
    assert [c[2] for c in space.customdata] == ["post 10", "post 30", "post 60"]
    assert list(space.x) == [0.0, 4.0, 10.0]
    assert space.marker.color == "#222222" and by_name["sport"].marker.color == "#111111"
    assert by_name["no label"].marker.color is None
    assert list(by_name["selected"].x) == [2.0] and by_name["selected"].hoverinfo == "skip"
    assert fig.layout.clickmode == "event+select" and fig.layout.legend.title.text == "newsgroup"
    assert all(t.type == "scatter" for t in fig.data)  # SVG: clickable without WebGL


def test_document_scatter_without_hover_texts_still_draws():
    fig = tf.document_scatter(np.zeros((2, 2)), np.array([0, 0]), np.array([3, 4]), ["topic 1"])
    assert len(fig.data) == 1 and [c[0] for c in fig.data[0].customdata] == [3, 4]
