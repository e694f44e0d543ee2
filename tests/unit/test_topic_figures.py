"""The Topics lab's figure builders and texts (pages/_ui/topic_figures.py, topics_text.py) on
hand-made results and small real ones: no Streamlit script runs here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from pages._ui import topic_figures as figs
from pages._ui import topics_text as text
from vae_core.labs import simplex as sx
from vae_core.labs.planted import METHODS, PlantedRecovery
from vae_core.labs.topics import topic_similarity


@pytest.fixture(scope="module")
def sparse_alpha():
    return sx.densities(0.3, n=20, samples=4000)


@pytest.fixture(scope="module")
def dense_alpha():
    return sx.densities(3.0, n=20, samples=4000)


# --- the simplex ------------------------------------------------------------------------------
def test_simplex_pair_draws_both_densities_on_one_clipped_scale(sparse_alpha):
    d = sparse_alpha
    fig = figs.simplex_pair(d)
    assert [type(t) for t in fig.data] == [go.Scatterternary] * 2
    lo, hi = figs.simplex_color_range(d)
    assert hi - lo == figs.LOG_DENSITY_RANGE
    assert fig.layout.coloraxis.cmin == lo and fig.layout.coloraxis.cmax == hi
    for trace, log_density in zip(fig.data, (d.log_dirichlet, d.log_logistic_normal)):
        assert trace.marker.coloraxis == "coloraxis"  # one shared colour scale
        colors = np.asarray(trace.marker.color)
        assert colors.min() >= lo and colors.max() <= hi
        np.testing.assert_allclose(colors, np.clip(log_density, lo, hi))
        np.testing.assert_allclose(trace.customdata, np.exp(log_density))  # hover: the unclipped density
        # Corners as simplex.CORNERS: topic 1 is the b axis (bottom left), topic 2 c, topic 3 a (top).
        np.testing.assert_allclose(np.c_[trace.b, trace.c, trace.a], d.grid.bary)
    # At alpha < 1 the Dirichlet's density near the corners is what sets the top, and is clipped there.
    assert np.asarray(fig.data[0].marker.color).max() == hi and d.log_dirichlet.max() > hi
    for key in ("ternary", "ternary2"):
        t = fig.layout[key]
        assert (t.baxis.title.text, t.caxis.title.text, t.aaxis.title.text) == ("topic 1", "topic 2", "topic 3")
    assert fig.layout.annotations[0].text == "Dirichlet(α = 0.3)"


def test_simplex_texts_say_where_the_approximation_holds(sparse_alpha, dense_alpha):
    low = text.simplex_text(sparse_alpha)
    assert "Below α = 1 they part ways" in low
    assert f"**{sparse_alpha.tv:.2f}**" in low and f"**{sparse_alpha.kl:.2f}** nats" in low
    assert f"**{100 * sparse_alpha.corner_dirichlet:.0f}%** under the Dirichlet" in low
    high = text.simplex_text(dense_alpha)
    assert "From α = 1 up they agree in shape" in high and "Below" not in high
    ratio = dense_alpha.spread_logistic_normal / dense_alpha.spread_dirichlet
    assert f"({ratio:.2f}×)" in high and "1 − 1/K = 0.67" in high
    assert "Dirichlet(1, 1, 1) is flat" in text.simplex_text(sx.densities(1.0, n=10, samples=100))
    assert "mean at the centre" in text.means_text(dense_alpha)
    skewed = sx.densities((0.5, 2.0, 4.0), n=10, samples=2000)
    gap = np.abs(skewed.mean_dirichlet - skewed.mean_logistic_normal).max()
    assert f"up to {gap:.3f} apart" in text.means_text(skewed) and gap > 0.01


# --- two models' topics ------------------------------------------------------------------------
def two_models(k_a=4, k_b=4, v=30, seed=0):
    """B's topics are A's, shuffled and slightly noisy, plus extra ones if k_b > k_a."""
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.full(v, 0.1), size=k_a)
    order = rng.permutation(k_a)
    b = 0.9 * a[order] + 0.1 * rng.dirichlet(np.full(v, 1.0), size=k_a)
    if k_b > k_a:
        b = np.vstack([b, rng.dirichlet(np.full(v, 0.1), size=k_b - k_a)])
    def words(m, name):
        return [[f"{name}{k}w{j}" for j in range(10)] for k in range(len(m))]

    return a, b, order, words(a, "a"), words(b, "b")


def test_aligned_topics_pairs_each_topic_with_its_shuffled_copy():
    a, b, order, wa, wb = two_models()
    npmi_a, npmi_b = np.array([0.1, 0.2, 0.3, 0.4]), np.array([-0.1, 0.05, 0.15, 0.25])
    table, fig = figs.aligned_topics(wa, npmi_a, a, wb, npmi_b, b)
    assert list(table.columns) == ["ProdLDA topic", "ProdLDA words", "ProdLDA NPMI", "match (cosine)",
                                   "LDA words", "LDA NPMI", "LDA topic"]
    partner = {int(order[j]): j for j in range(4)}  # B's topic j is A's topic order[j]
    for _, row in table.iterrows():
        ka, kb = row["ProdLDA topic"] - 1, row["LDA topic"] - 1  # numbered from 1
        assert partner[ka] == kb
        assert row["ProdLDA words"] == " ".join(wa[ka]) and row["LDA words"] == " ".join(wb[kb])
        assert row["ProdLDA NPMI"] == npmi_a[ka] and row["LDA NPMI"] == npmi_b[kb]
        assert row["match (cosine)"] == pytest.approx(topic_similarity(a, b)[ka, kb])
    assert table["match (cosine)"].is_monotonic_decreasing  # best match first
    assert [t.name for t in fig.data] == ["ProdLDA", "LDA"]
    np.testing.assert_allclose(fig.data[0].y, table["ProdLDA NPMI"])
    assert len(fig.data[1].x) == 4 and fig.data[0].x[0].startswith("1. ")


@pytest.mark.parametrize("k_a, k_b", [(3, 5), (5, 3)])
def test_aligned_topics_with_different_numbers_of_topics(k_a, k_b):
    if k_a < k_b:
        a, b, _, wa, wb = two_models(k_a, k_b)
    else:  # A has the extra topics
        b, a, _, wb, wa = two_models(k_b, k_a)
    table, fig = figs.aligned_topics(wa, np.zeros(k_a), a, wb, np.zeros(k_b), b, name_a="X", name_b="Y")
    assert len(table) == max(k_a, k_b) and len(fig.data[0].x) == max(k_a, k_b)
    matched = table["match (cosine)"].notna()
    assert matched.sum() == min(k_a, k_b) and not matched.iloc[min(k_a, k_b):].any()  # unmatched ones last
    lonely = table[~matched]
    side = "X" if k_a > k_b else "Y"
    other = "Y" if side == "X" else "X"
    assert lonely[f"{other} topic"].isna().all() and (lonely[f"{other} words"] == "").all()
    assert lonely[f"{side} topic"].notna().all()
    assert sorted(table[f"{side} topic"].dropna()) == list(range(1, max(k_a, k_b) + 1))  # every topic once


def test_aligned_topics_refuses_what_cannot_be_compared():
    a, b, _, wa, wb = two_models()
    with pytest.raises(ValueError, match="different vocabularies .30 and 20 words"):
        figs.aligned_topics(wa, np.zeros(4), a, wb, np.zeros(4), b[:, :20])
    with pytest.raises(ValueError, match="different names"):
        figs.aligned_topics(wa, np.zeros(4), a, wb, np.zeros(4), b, name_a="LDA", name_b="LDA")


def test_aligned_text_names_the_more_coherent_model():
    table = pd.DataFrame({"match (cosine)": [0.9, 0.7, 0.2, np.nan]})
    says = text.aligned_text(table, 0.12, 0.05)
    assert "**ProdLDA**'s topics are more coherent here: mean NPMI **0.120** against LDA's 0.050" in says
    assert "**2 of 3** aligned pairs" in says and "the rest are topics only one of them has" in says
    assert "the rest" not in text.aligned_text(table.iloc[:2], 0.12, 0.05)  # every pair matched
    assert "**LDA**'s topics are more coherent" in text.aligned_text(table, 0.01, 0.2)
    assert "about equally coherent" in text.aligned_text(table, 0.1, 0.102)
    assert "No LDA run yet" in text.no_topic_runs(True, False)
    assert "No ProdLDA and LDA runs yet" in text.no_topic_runs(False, False)
    assert "--model prodlda" in text.COMMANDS and "--model lda" in text.COMMANDS


# --- planted topics ---------------------------------------------------------------------------
def recovery(cos_prodlda=(0.99, 0.95, 0.5), cos_lda=(0.97, 0.96, 0.93)) -> PlantedRecovery:
    rng = np.random.default_rng(0)
    true = rng.dirichlet(np.full(12, 0.1), size=3)
    sims, cosine, est = {}, {}, {}
    for m, cos in zip(METHODS, (cos_prodlda, cos_lda)):
        s = np.full((3, 3), 0.1)
        np.fill_diagonal(s, cos)
        sims[m], cosine[m] = s, np.array(cos)
        est[m] = rng.dirichlet(np.ones(12), size=3)
    return PlantedRecovery(true_topics=true, estimates=est, cosine=cosine, similarity=sims,
                           seconds={"ProdLDA": 1.23, "LDA": 2.0}, threshold=0.9, topics=3, vocab_size=12, n_docs=500,
                           alpha=0.1, eta=0.1, doc_length=50.0, seed=0, steps=100)


def test_recovery_heatmaps_show_each_methods_cosines_and_count():
    r = recovery()
    fig = figs.recovery_heatmaps(r)
    assert [type(t) for t in fig.data] == [go.Heatmap] * 2
    for trace, m in zip(fig.data, METHODS):
        np.testing.assert_allclose(np.asarray(trace.z), r.similarity[m])
        assert list(trace.y) == ["planted 1", "planted 2", "planted 3"]
        assert trace.x[2] == f"{m} 3<br>({r.cosine[m][2]:.2f})"
        assert trace.text[0][0] == f"{r.similarity[m][0, 0]:.2f}"
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["ProdLDA: 2 of 3 above 0.9", "LDA: 3 of 3 above 0.9"]


def test_recovered_distributions_sort_words_into_planted_blocks():
    r = recovery()
    fig = figs.recovered_distributions(r)
    assert [t.name for t in fig.data] == [None] * 3 and len(fig.data) == 3
    planted = np.asarray(fig.data[0].z)
    owners = planted.argmax(0)
    assert (np.diff(owners) >= 0).all()  # words grouped by the topic that owns them
    order = [int(x.split()[1]) for x in fig.data[0].x]
    np.testing.assert_allclose(np.asarray(fig.data[1].z), r.estimates["ProdLDA"][:, order])  # same word order
    assert sorted(order) == list(range(12))
    assert fig.layout.coloraxis.cmax == pytest.approx(max(r.true_topics.max(), *(e.max() for e in r.estimates.values())))


def test_recovery_texts():
    r = recovery()
    assert text.recovery_sentence(r, "ProdLDA") == ("**ProdLDA** recovers **2 of 3** planted topics above cosine 0.9 "
                                                     "(mean 0.81, worst 0.50; trained in 1.2 s).")
    assert text.recovery_note(r).startswith("ProdLDA missed some.")
    full = recovery(cos_prodlda=(0.99, 0.95, 0.92))
    assert text.recovery_note(full).startswith("Both find every planted topic.")


# --- top words -------------------------------------------------------------------------------

