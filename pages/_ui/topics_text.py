"""The Topics lab's explanations: pure functions from the lab's numbers to markdown (no ``st.``
calls), so the numbers a paragraph quotes and the wording it picks can be unit-tested."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vae_core.labs.planted import METHODS, PRODLDA_ALPHA, PlantedRecovery
from vae_core.labs.simplex import CORNER_SHARE, K, SimplexDensities

SAME_TOPIC_COSINE = 0.5  # two aligned topics above this share most of their heavy words


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.01 or p == 0 else f"{100 * p:.1f}%"


# --- topic runs ------------------------------------------------------------------------------
COMMANDS = ("python -m vae_core train --dataset 20newsgroups --model prodlda --topics 20\n"
            "python -m vae_core train --dataset 20newsgroups --model lda --topics 20")


def no_topic_runs(have_prodlda: bool, have_lda: bool) -> str:
    """What is missing for the side-by-side view, and how to make it."""
    missing = [name for name, have in (("ProdLDA", have_prodlda), ("LDA", have_lda)) if not have]
    what = " and ".join(missing) + (" run" if len(missing) == 1 else " runs")
    return (f"**No {what} yet.** This view puts a ProdLDA run's topics beside an LDA run's on the same dataset. "
            "Train one of each (a few minutes on a CPU), e.g. in a terminal:")


def no_lda_on(dataset: str) -> str:
    return (f"No LDA run on **{dataset}** yet: train one with "
            f"`python -m vae_core train --dataset {dataset} --model lda --topics 20`.")


def metric_rows(named_reports) -> list[dict]:
    """One row per (model name, run name, TopicReport): K, mean NPMI, diversity and perplexity."""
    return [{"model": model, "run": run, "topics": int(np.shape(r.topic_word)[0]), "NPMI": round(float(r.npmi), 3),
             "diversity": round(float(r.diversity), 3), "perplexity": round(float(r.perplexity), 1)}
            for model, run, r in named_reports]


def bounds_caption(named_reports) -> str:
    """Which bound each perplexity comes from (the two are different bounds: compare with care)."""
    return "Perplexity on the test documents. " + " ".join(
        f"{model}: {r.perplexity_bound.rstrip('.')}." for model, _, r in named_reports)


def aligned_text(table: pd.DataFrame, npmi_a: float, npmi_b: float, name_a: str = "ProdLDA",
                 name_b: str = "LDA") -> str:
    """Which model's topics are more coherent here, and how many topics both found."""
    cos = table["match (cosine)"].dropna()
    same = int((cos > SAME_TOPIC_COSINE).sum())
    if not (math.isfinite(npmi_a) and math.isfinite(npmi_b)):
        verdict = "One of the two mean NPMIs is undefined, so there is no comparison to make."
    elif abs(npmi_a - npmi_b) < 0.005:
        verdict = f"The two are about equally coherent here (mean NPMI {npmi_a:.3f} and {npmi_b:.3f})."
    else:
        hi, lo = (name_a, name_b) if npmi_a > npmi_b else (name_b, name_a)
        verdict = (f"**{hi}**'s topics are more coherent here: mean NPMI **{max(npmi_a, npmi_b):.3f}** against "
                   f"{lo}'s {min(npmi_a, npmi_b):.3f}.")
    rest = "; the rest are topics only one of them has" if same < len(cos) else ""
    return (f"{verdict} Srivastava & Sutton (2017) report ProdLDA clearly above LDA on 20 Newsgroups. "
            f"**{same} of {len(cos)}** aligned pairs have a cosine above {SAME_TOPIC_COSINE:g}: both models found "
            f"those topics{rest}. NPMI is measured on the test documents (pairs of top-10 words, by document "
            "co-occurrence): 1 means the words always occur together, 0 independently.")


# --- the Dirichlet and its Laplace approximation ---------------------------------------------------
LAPLACE_INTRO = (
    "ProdLDA's encoder must sample θ with the reparameterisation trick, which a Dirichlet does not allow. "
    "So the prior on θ = softmax(z) is the **Laplace approximation** of Dirichlet(α) in the softmax basis, "
    "a Gaussian N(μ, diag σ²) on z (Srivastava & Sutton 2017, after MacKay 1998):")
LAPLACE_LATEX = (r"\mu_k = \log\alpha_k - \frac{1}{K}\sum_i \log\alpha_i, \qquad "
                 r"\sigma_k^2 = \frac{1}{\alpha_k}\Big(1-\frac{2}{K}\Big) + \frac{1}{K^2}\sum_i \frac{1}{\alpha_i}")
LAPLACE_PICTURE = (
    "On the right is the density this Gaussian induces on the simplex (a logistic normal), on the left the "
    "Dirichlet it stands for, both for K = 3 topics and in log density on one colour scale. Each corner is a "
    "document about a single topic, the centre an even mix.")


def simplex_text(d: SimplexDensities) -> str:
    """Where the logistic normal follows the Dirichlet at this alpha and where it does not, in numbers."""
    a_min = min(d.alpha)
    far = (f"Total variation between them **{d.tv:.2f}** (the share of probability placed differently), "
           f"KL(Dirichlet ‖ logistic normal) **{d.kl:.2f}** nats.")
    corners = (f"P(one topic has more than {CORNER_SHARE:.0%} of a document): **{_pct(d.corner_dirichlet)}** under "
               f"the Dirichlet, **{_pct(d.corner_logistic_normal)}** under the logistic normal.")
    if a_min < 1:
        grid = ""
        if d.mass_dirichlet < 0.98:
            grid = (f" Only {_pct(d.mass_dirichlet)} of the Dirichlet's mass is even inside the picture's cells; "
                    "the rest lies closer to the edges than the first row of dots.")
        return (f"**Below α = 1 they part ways.** The Dirichlet's density ∏ θ_k^(α−1) grows without bound towards the "
                "edges and corners: most documents are about one or two topics. The logistic normal cannot do that: "
                "its density is a Gaussian in log(θ_j/θ_K) divided by ∏ θ_k, and it falls to 0 at every edge, so it "
                f"can only put a bump near each corner, not the corner itself. {corners} {far}{grid} This is the "
                "regime topic models use (α < 1 means sparse topic mixtures), and the one ProdLDA approximates worst.")
    shape = ("Dirichlet(1, 1, 1) is flat, every mixture equally likely, and the logistic normal puts a broad bump on it"
             if len(set(d.alpha)) == 1 and d.alpha[0] == 1 else
             "Both have a single mode inside the triangle and vanish at the edges")
    ratio = d.spread_logistic_normal / d.spread_dirichlet
    return (f"**From α = 1 up they agree in shape.** {shape}. {far} What remains is a narrower logistic normal: "
            f"Var[log(θ₁/θ₃)] is {d.spread_dirichlet:.3g} under the Dirichlet and {d.spread_logistic_normal:.3g} "
            f"under the approximation ({ratio:.2f}×). ProdLDA keeps only the diagonal of the Laplace covariance and "
            f"drops its negative off-diagonal entries, which costs a factor 1 − 1/K = {1 - 1 / K:.2f} in variance "
            "however large α is: a visible gap at K = 3, 0.98 at K = 50.")


def means_text(d: SimplexDensities) -> str:
    """The means of theta under both: equal by symmetry, or how far apart."""
    if len(set(d.alpha)) == 1:
        return (f"Both have their mean at the centre (1/3, 1/3, 1/3): the logistic normal's, by {d.samples:,} draws, "
                f"is ({', '.join(f'{m:.3f}' for m in d.mean_logistic_normal)}).")
    def fmt(m) -> str:
        return "(" + ", ".join(f"{v:.3f}" for v in m) + ")"

    gap = float(np.abs(d.mean_dirichlet - d.mean_logistic_normal).max())
    return (f"Mean of θ: Dirichlet {fmt(d.mean_dirichlet)} (α / Σα), logistic normal {fmt(d.mean_logistic_normal)} "
            f"({d.samples:,} draws), up to {gap:.3f} apart: the Laplace approximation centres z on log α, not on "
            "the Dirichlet's own E[log θ] = ψ(α) − ψ(Σα).")


# --- planted topics ----------------------------------------------------------------------------------
PLANTED_INTRO = (
    "The study notes' eq. 13 is LDA's generative process: each topic β_k ~ Dirichlet(η) over the words; each "
    "document draws its topic proportions θ_d ~ Dirichlet(α), then for each word a topic z ~ Mult(θ_d) and the "
    "word w ~ Mult(β_z). Here a corpus is drawn from it with topics we know, then fitted by ProdLDA (in this "
    "page's process, a few hundred Adam steps) and by classical LDA (online variational Bayes, scikit-learn). "
    "Each method's topics are matched to the planted ones by the Hungarian algorithm on the cosine of the "
    "topic-word distributions.")


def recovery_sentence(r: PlantedRecovery, method: str) -> str:
    """'ProdLDA recovers k of K planted topics above cosine 0.9 (...)'."""
    cos = r.cosine[method]
    return (f"**{method}** recovers **{r.recovered(method)} of {r.topics}** planted topics above cosine "
            f"{r.threshold:g} (mean {cos.mean():.2f}, worst {cos.min():.2f}; trained in {r.seconds[method]:.1f} s).")


def recovery_note(r: PlantedRecovery) -> str:
    """What the outcome says, and what to try."""
    missed = [m for m in METHODS if r.recovered(m) < r.topics]
    setup = (f"{r.n_docs:,} documents of about {r.doc_length:g} words over {r.vocab_size} words, α = {r.alpha:g}, "
             f"η = {r.eta:g}, seed {r.seed}. LDA is given the true α and η; ProdLDA keeps its own prior "
             f"(α = {PRODLDA_ALPHA:g}) and trains {r.steps} steps.")
    if not missed:
        return (f"Both find every planted topic. {setup} Make it harder: fewer documents, a larger α (documents "
                "that mix many topics) or a larger vocabulary.")
    who = " and ".join(missed)
    return (f"{who} missed some. {setup} A topic counts as recovered above cosine {r.threshold:g}, far above any two "
            "planted topics' similarity. More documents, more training steps or a smaller α (documents about fewer "
            "topics) make the planted topics easier to find.")
