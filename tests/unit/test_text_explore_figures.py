"""The text Sample / Traverse / Encode builders (pages/_ui/text_explore_figures.py) on hand-made
numbers and a small vocabulary: no Streamlit script and no trained model."""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from pages._ui import text_explore_figures as tx
from pages._ui.text_figures import topic_colour
from vae_core.data import DatasetError
from vae_core.data.text import Vocabulary

BASE = np.array([0.5, 0.3, 0.2, 0.0])


# --- the prior ---------------------------------------------------------------------------------
def test_prior_text_names_each_family_and_its_alpha():
    prod = tx.prior_text("prodlda", (1.0,) * 20)
    assert "logistic normal" in prod and "Laplace approximation of Dirichlet(α = 1)" in prod and "K = 20" in prod
    assert "spreads documents over many topics" in prod
    lda = tx.prior_text("lda", (0.05,) * 20)
    assert "Dirichlet(α = 0.05)" in lda and "logistic" not in lda and "a few topics" in lda
    assert tx.alpha_text([0.1, 0.2, 0.3]) == "(0.1, 0.2, 0.3)"
    assert tx.alpha_text([0.5] * 8) == "0.5"


def test_prior_mean_is_alpha_over_its_sum():
    np.testing.assert_allclose(tx.prior_mean([1, 1, 2]), [0.25, 0.25, 0.5])
    np.testing.assert_allclose(tx.prior_mean([0.1] * 5), [0.2] * 5)


# --- traversal paths -----------------------------------------------------------------------------
def _ratios(theta: np.ndarray, k: int) -> np.ndarray:
    others = np.delete(theta, k, axis=-1)
    return others / others.sum(axis=-1, keepdims=True)


def test_z_path_moves_z_k_from_the_base_and_keeps_the_other_ratios():
    base = np.array([0.5, 0.3, 0.15, 0.05])
    p = tx.topic_path(base, 1, "z", sigma=0.8)
    assert p.thetas.shape == (tx.STEPS, 4) and len(p.labels) == tx.STEPS
    assert p.start == tx.STEPS // 2
    np.testing.assert_allclose(p.thetas[p.start], base, atol=1e-6)  # the middle is the base itself
    np.testing.assert_allclose(p.thetas.sum(1), 1, atol=1e-6)
    # z_k spans base ± 6 prior sigma in equal steps; theta = softmax(z) with the others unchanged
    np.testing.assert_allclose(p.values[-1] - p.values[p.start], 0.8 * tx.Z_SPAN, rtol=1e-5)
    np.testing.assert_allclose(np.diff(p.values), 0.8 * tx.Z_SPAN / (tx.STEPS // 2), rtol=1e-4)
    z = np.log(base)
    z_end = z.copy()
    z_end[1] = p.values[-1]
    np.testing.assert_allclose(p.thetas[-1], np.exp(z_end) / np.exp(z_end).sum(), rtol=1e-5)
    assert np.all(np.diff(p.shares) > 0)  # theta_k grows with z_k
    assert p.shares[0] < 0.05 and p.shares[-1] > 0.9
    np.testing.assert_allclose(_ratios(p.thetas, 1), np.broadcast_to(_ratios(base, 1), (tx.STEPS, 3)), rtol=1e-5)
    assert p.labels[p.start] == "z +0.0σ · θ 30%" and p.labels[-1].startswith("z +6.0σ")


@pytest.mark.parametrize("b", [0.0, 3.7e-6, 0.3, 0.5, 0.999, 1.0])
def test_share_path_goes_from_0_to_1_through_the_base(b):
    base = np.array([b, (1 - b) * 0.75, (1 - b) * 0.25])
    p = tx.topic_path(base, 0, "share")
    assert len(p.values) == tx.STEPS and p.values[0] == 0 and p.values[-1] == pytest.approx(1)
    assert np.all(np.diff(p.values) > 0)  # no repeated position
    assert p.values[p.start] == pytest.approx(b, abs=1e-6)
    np.testing.assert_allclose(p.thetas[p.start], base, atol=1e-6)
    np.testing.assert_allclose(p.shares, p.values, atol=1e-6)
    np.testing.assert_allclose(p.thetas.sum(1), 1, atol=1e-6)
    if b < 1:  # the other topics keep their base ratio (3 : 1) wherever they have mass
        keep = p.shares < 1 - 1e-6
        np.testing.assert_allclose(p.thetas[keep, 1] / p.thetas[keep, 2], 3.0, rtol=1e-4)


def test_share_path_from_a_base_all_on_one_topic_spreads_the_rest_evenly():
    p = tx.topic_path(np.array([1.0, 0.0, 0.0]), 0, "share")
    np.testing.assert_allclose(p.thetas[0], [0, 0.5, 0.5], atol=1e-6)


def test_share_path_steps_evenly_on_each_side_of_the_base():
    p = tx.topic_path(np.array([0.3, 0.7]), 0, "share")
    below, above = np.diff(p.values[: p.start + 1]), np.diff(p.values[p.start:])
    np.testing.assert_allclose(below, below[0], rtol=1e-5)
    np.testing.assert_allclose(above, above[0], rtol=1e-5)
    assert abs(below[0] - above[0]) < 0.02  # about 1/(S-1) either side


def test_topic_path_refuses_what_is_not_a_mixture():
    with pytest.raises(ValueError, match="simplex"):
        tx.topic_path(np.array([0.5, np.nan]), 0, "z")
    with pytest.raises(ValueError, match="simplex"):
        tx.topic_path(np.array([-0.2, 1.2]), 0, "share")
    with pytest.raises(ValueError, match="out of range"):
        tx.topic_path(BASE, 4, "share")


def test_moved_text_says_what_moved():
    p = tx.topic_path(np.array([0.25, 0.75]), 0, "share")
    assert tx.moved_text(p, p.start).startswith("nothing yet")
    assert tx.moved_text(p, len(p.values) - 1) == "topic 1: θ 25% → 100%"
    z = tx.topic_path(np.array([0.25, 0.75]), 1, "z")
    assert tx.moved_text(z, z.start + 1).startswith("topic 2: θ 75% → ") and "(z +0.6σ)" in tx.moved_text(z, z.start + 1)


# --- frames and the live payload ---------------------------------------------------------------------
WORDS = ["orbit", "nasa", "game", "team", "god", "faith"]
TOPIC_WORD = np.array([[0.5, 0.4, 0.03, 0.03, 0.02, 0.02],   # space
                       [0.02, 0.03, 0.5, 0.4, 0.03, 0.02],   # sport
                       [0.02, 0.02, 0.03, 0.03, 0.5, 0.4]])  # religion


def test_frames_are_each_positions_top_words_most_probable_first():
    probs = np.array([[0.1, 0.5, 0.2, 0.2], [0.4, 0.1, 0.1, 0.4]])
    idx, p = tx.frames(probs, n=3)
    assert idx.tolist() == [[1, 2, 3], [0, 3, 1]]  # ties keep the vocabulary's order
    np.testing.assert_allclose(p, [[0.5, 0.2, 0.2], [0.4, 0.4, 0.1]])


def test_traverse_payload_holds_each_frame_and_only_the_words_it_shows():
    base = np.array([0.2, 0.5, 0.3])
    paths = [tx.topic_path(base, k, "share", steps=5) for k in (1, 0)]  # shown order: topic 2, then topic 1
    tops = [tx.frames(p.thetas @ TOPIC_WORD, n=2) for p in paths]
    topic_words = [["orbit", "nasa"], ["game", "team"], ["god", "faith"]]
    owners = tx.word_owners(TOPIC_WORD)
    assert owners.tolist() == [0, 0, 1, 1, 2, 2]
    payload = tx.traverse_payload(paths, tops, WORDS, topic_words, owners, base, "tok")
    json.dumps(payload)  # what the component gets must be JSON
    assert payload["token"] == "tok" and payload["base"] == [0.2, 0.5, 0.3]
    first = payload["topics"][0]
    assert first["topic"] == 1 and first["label"] == "topic 2 · game team" and first["colour"] == topic_colour(1)
    assert len(first["frames"]) == len(first["labels"]) == len(first["shares"]) == 5
    assert first["shares"][first["start"]] == pytest.approx(0.5, abs=1e-5)
    # Moving topic 2 (sport) to 1 puts its words on top; at 0 they are gone from the top two.
    top = lambda frame: [payload["words"][i] for i, _ in frame]
    assert top(first["frames"][-1]) == ["game", "team"]
    assert "game" not in top(first["frames"][0])
    assert first["scale"] == pytest.approx(max(p for frame in first["frames"] for _, p in frame))
    # only the words some frame shows travel, each with its topic's colour index
    assert set(payload["words"]) < set(WORDS) or set(payload["words"]) == set(WORDS)
    assert all(payload["owners"][i] == owners[WORDS.index(w)] for i, w in enumerate(payload["words"]))
    assert payload["colours"] == [topic_colour(k) for k in range(3)]


# --- figures ---------------------------------------------------------------------------------------------
def test_owned_word_bars_colour_each_word_by_its_topic_on_a_fixed_axis():
    fig = tx.owned_word_bars(["orbit", "game"], [0.3, 0.1], [0, 1], [["orbit"], ["game"]], title="t", x_max=0.5)
    bar = fig.data[0]
    assert isinstance(bar, go.Bar) and list(bar.y) == ["game", "orbit"]  # the most probable on top
    np.testing.assert_allclose(bar.x, [10, 30])
    assert list(bar.marker.color) == [topic_colour(1), topic_colour(0)]  # colours follow their words
    assert list(bar.customdata) == ["topic 2 · game", "topic 1 · orbit"]
    assert fig.layout.xaxis.range[1] == pytest.approx(60)  # x_max · 1.2: the same axis at every position


def test_mixtures_figure_stacks_one_row_per_draw_and_one_trace_per_topic():
    thetas = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    fig = tx.mixtures_figure(thetas, [["orbit"], ["game"], ["god"]])
    assert fig.layout.barmode == "stack" and len(fig.data) == 3
    assert list(fig.data[0].y) == ["draw 2", "draw 1"]  # draw 1 on top
    np.testing.assert_allclose(fig.data[2].x, [80, 10])
    assert fig.data[2].name == "topic 3 · god" and fig.data[2].marker.color == topic_colour(2)
    assert fig.layout.showlegend and fig.data[0].text is None


def test_mixtures_figure_numbers_wide_segments_instead_of_a_legend_for_many_topics():
    thetas = np.full((2, 12), 0.02)
    thetas[0, 4], thetas[1, 11] = 0.78, 0.78
    fig = tx.mixtures_figure(thetas, [[f"w{k}"] for k in range(12)])
    assert fig.layout.showlegend is False
    assert list(fig.data[4].text) == ["", "5"] and list(fig.data[11].text) == ["12", ""]  # rows: draw 2, draw 1
    assert list(fig.data[0].text) == ["", ""]  # 2%: too narrow for a label


def test_percent_keeps_two_significant_digits_under_ten_percent():
    assert [tx.percent(p) for p in (0.35, 0.042, 0.0014, 1.0)] == ["35%", "4.2%", "0.14%", "100%"]


# --- your text -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vocab():
    return Vocabulary(tuple(WORDS))


def test_text_words_counts_the_vocabulary_and_lists_the_rest(vocab):
    tw = tx.text_words(vocab, "NASA put the orbit of NASA's probe in a telescope, and the team cheered")
    assert tw.counts.shape == (1, 6) and tw.counts.dtype == np.float32
    assert tw.known == [("nasa", 2), ("orbit", 1), ("team", 1)]
    assert dict(tw.unknown) == {"probe": 1, "telescope": 1, "cheered": 1}  # "put", "the", "of", "a": stop words
    assert tw.n_known == 4 and tw.n_unknown == 3
    text = tx.words_text(tw, len(vocab))
    assert "read 4 words" in text and "nasa ×2" in text and "3 words are not in the vocabulary" in text


def test_a_text_with_no_vocabulary_word_is_said_so(vocab):
    tw = tx.text_words(vocab, "The weather is lovely today")
    assert not tw.known and tw.counts.sum() == 0
    assert "None of this text's words is in the model's 6-word vocabulary" in tx.no_known_words(tw, 6)
    assert "weather" in tx.no_known_words(tw, 6)
    only_stop = tx.text_words(vocab, "and of the to 42")
    assert not only_stop.known and not only_stop.unknown
    assert "stop words" in tx.no_known_words(only_stop, 6)
    assert tx.words_text(only_stop, 6) == ""


def test_word_topics_pick_the_topic_most_likely_to_have_written_each_word():
    theta = np.array([0.6, 0.2, 0.2])
    assert tx.word_topics(theta, TOPIC_WORD, [0, 2, 4]).tolist() == [0, 1, 2]
    # A small share with a large p(w|k) can lose to a large share with a modest one.
    assert tx.word_topics(np.array([0.98, 0.01, 0.01]), TOPIC_WORD, [2]).tolist() == [0]


@pytest.mark.parametrize("payload,match", [
    (b"", "is empty"),
    (b"hello \x00 world", "not a text file: it has a NUL byte"),
    ("caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8"),
    (b"x" * 2000, "the limit is 0.001 MB"),
])
def test_read_text_file_refuses_what_is_not_text(payload, match):
    with pytest.raises(DatasetError, match=match):
        tx.read_text_file(payload, "post.txt", limit=1000)


def test_read_text_file_reads_utf8_with_or_without_a_bom():
    assert tx.read_text_file("orbit café".encode(), "a.txt") == "orbit café"
    assert tx.read_text_file(b"\xef\xbb\xbforbit", "a.txt") == "orbit"


# --- nearest documents -----------------------------------------------------------------------------------
def test_hellinger_against_its_formula_and_bounds():
    p = np.array([0.7, 0.2, 0.1])
    qs = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0], [0.1, 0.2, 0.7]])
    d = tx.hellinger(p, qs)
    expected = [np.sqrt(1 - np.sum(np.sqrt(p * q))) for q in qs]
    np.testing.assert_allclose(d, expected, atol=1e-7)  # the formula's 1 - sum loses digits near 0
    assert d[0] == 0
    assert tx.hellinger(np.array([1.0, 0, 0]), np.array([[0, 1.0, 0]]))[0] == pytest.approx(1.0)  # disjoint


def test_nearest_orders_by_distance_and_breaks_ties_by_index():
    thetas = np.array([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.9, 0.1]])
    idx, d = tx.nearest(np.array([0.85, 0.15]), thetas, 3)
    assert idx.tolist() == [1, 3, 2]
    assert d[0] == d[1] < d[2]


def test_snippet_and_excerpt_cut_at_a_word():
    text = "First line of the post\n\nSecond   paragraph with more words " * 50
    s = tx.snippet(text, 30)
    assert s.endswith(" …") and "\n" not in s and len(s) <= 32 and s.startswith("First line of the post")
    e = tx.excerpt(text, 200)
    assert len(e) <= 202 and e.endswith("\n…") and not e[:-2].endswith(("Secon", "paragr"))
    assert tx.snippet("   ") == "(no text)" and tx.excerpt("short") == "short"


def test_labels_escape_markdown_so_a_post_shows_as_written():
    raw = "See *this* [link](http://x.io) or mail tech_support@ithaca.com :smile: #1"
    s = tx.snippet(raw, 200)
    assert "\\*this\\*" in s and "\\[link\\]\\(http\\:" in s and "tech\\_support\\@ithaca\\.com" in s
    assert "\\:smile\\:" in s and "\\#1" in s
    assert tx.md_escape("plain words") == "plain words"


def test_flat_note_only_when_no_topic_stands_out():
    assert "No topic stands out" in tx.flat_note(np.array([0.3, 0.25, 0.25, 0.2]))  # 30% < 2 × 25%
    assert "30%" in tx.flat_note(np.array([0.3, 0.25, 0.25, 0.2]))
    assert tx.flat_note(np.array([0.55, 0.15, 0.15, 0.15])) == ""
