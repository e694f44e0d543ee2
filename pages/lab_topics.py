"""Lab: topic models. ProdLDA's topics beside LDA's on the same data, the Dirichlet beside the
logistic normal ProdLDA puts in its place, and whether each method finds topics planted in a
corpus drawn from LDA's own generative process (the study notes' eq. 13).

The math is in vae_core.labs (simplex, planted, topics); helpers in pages/_ui/topics_lab.py, figures
in topic_figures.py, words in topics_text.py. This page lays them out.
"""
import streamlit as st

from pages import _ui
from pages._ui import topic_figures as figs
from pages._ui import topics_lab as lab
from pages._ui import topics_text as text

_ui.selected_run()  # only for its routing: a deep link on a fresh server goes through app.py's navigation
st.title("Topic models")
st.caption("The study notes end with LDA's generative process (eq. 13) and *“Inference of LDA: refer to the wiki”*. "
           "ProdLDA (Srivastava & Sutton 2017) does that inference with a VAE; classical LDA with online variational "
           "Bayes (Hoffman, Blei & Bach 2010). This lab puts the two side by side.")


# --- ProdLDA vs LDA on real text -----------------------------------------------------------
def compare_view() -> None:
    runs = lab.topic_runs()
    if not (runs["prodlda"] and runs["lda"]):
        st.info(text.no_topic_runs(bool(runs["prodlda"]), bool(runs["lda"])))
        st.code(text.COMMANDS, language="bash")
        return
    by_name = {r.name: r for r in runs["prodlda"] + runs["lda"]}
    c1, c2 = st.columns(2)
    a = c1.selectbox("ProdLDA run", [r.name for r in runs["prodlda"]], key="topics-prodlda-run")
    dataset = lab.dataset_of(by_name[a])
    same = [r.name for r in runs["lda"] if lab.dataset_of(r) == dataset]
    if not same:
        st.info(text.no_lda_on(dataset))
        return
    b = c2.selectbox(f"LDA run on {dataset}", same, key="topics-lda-run")
    rep_a, rep_b = lab.report(a), lab.report(b)
    if rep_a is None or rep_b is None:
        return
    with _ui.guard("Could not align the two models' topics"):
        table, bars = figs.aligned_topics(rep_a.top_words, rep_a.npmi_per_topic, rep_a.topic_word,
                                          rep_b.top_words, rep_b.npmi_per_topic, rep_b.topic_word)
        named = [("ProdLDA", a, rep_a), ("LDA", b, rep_b)]
        st.dataframe(text.metric_rows(named), hide_index=True, width="stretch")
        st.caption(text.bounds_caption(named))
        st.markdown(text.aligned_text(table, rep_a.npmi, rep_b.npmi))
        st.dataframe(table, column_config=lab.aligned_columns("ProdLDA", "LDA"), hide_index=True, width="stretch")
        st.plotly_chart(bars, width="stretch", key="topics-npmi-bars")


# --- the Dirichlet and its Laplace approximation --------------------------------------------
def simplex_view() -> None:
    st.markdown(text.LAPLACE_INTRO)
    st.latex(text.LAPLACE_LATEX)
    alpha = st.select_slider("α, the Dirichlet's concentration (the same for the three topics)", options=lab.ALPHAS,
                             value=0.3, key="topics-alpha",
                             help="Below 1 the Dirichlet prefers documents about few topics; above 1, even mixtures.")
    d = lab.simplex(alpha)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Total variation", f"{d.tv:.2f}", help="½ ∫ |Dirichlet − logistic normal|: the share of probability "
              f"placed differently, 0 to 1 (± {d.tv_se:.3f}, from {d.samples:,} Dirichlet draws)")
    c2.metric("KL(Dirichlet ‖ LN)", f"{d.kl:.2f} nats", help=f"± {d.kl_se:.2f}, from {d.samples:,} Dirichlet draws")
    c3.metric("P(corner), Dirichlet", f"{100 * d.corner_dirichlet:.1f}%",
              help="The probability that one topic has more than 90% of a document")
    c4.metric("P(corner), logistic normal", f"{100 * d.corner_logistic_normal:.1f}%")
    st.markdown(text.LAPLACE_PICTURE)
    left, right = st.columns([3, 2])
    left.plotly_chart(figs.simplex_pair(d), width="stretch", key="topics-simplex")
    right.markdown(text.simplex_text(d))
    right.caption(text.means_text(d))


# --- planted topics ---------------------------------------------------------------------------
def planted_view() -> None:
    st.markdown(text.PLANTED_INTRO)
    c1, c2, c3, c4, c5 = st.columns(5)
    lo, hi, k = lab.PLANTED_TOPICS
    settings = {
        "topics": c1.slider("Topics K", lo, hi, k, key="planted-k"),
        "vocab_size": c2.select_slider("Vocabulary V", *(lab.PLANTED_VOCAB), key="planted-v"),
        "n_docs": c3.select_slider("Documents", *(lab.PLANTED_DOCS), key="planted-docs"),
        "alpha": c4.select_slider("α of the corpus", *(lab.PLANTED_ALPHA), key="planted-alpha",
                                  help="Small: each document is about one or two topics. 1: documents mix them evenly."),
        "steps": c5.select_slider("ProdLDA steps", *(lab.PLANTED_STEPS), key="planted-steps"),
    }
    start = st.button("Draw a corpus and fit both", type="primary",
                      help="Trains ProdLDA and LDA here, on one core: a few seconds with the defaults.")
    with _ui.guard("Could not run the planted-topics experiment"):
        r = lab.planted(settings, start)
        if r is not None:
            for method in ("ProdLDA", "LDA"):
                st.markdown(text.recovery_sentence(r, method))
            st.plotly_chart(figs.recovery_heatmaps(r), width="stretch", key="planted-cosines")
            st.caption("Rows: the planted topics. Columns: each method's topics, in the order the matching paired "
                       "them, with the pair's cosine; a bright diagonal is a full recovery.")
            st.plotly_chart(figs.recovered_distributions(r), width="stretch", key="planted-distributions")
            st.markdown(text.recovery_note(r))


compare_tab, simplex_tab, planted_tab = st.tabs(
    ["ProdLDA vs LDA", "Dirichlet vs its Laplace approximation", "Recovering planted topics (eq. 13)"])
with compare_tab:
    compare_view()
with simplex_tab:
    simplex_view()
with planted_tab:
    planted_view()
