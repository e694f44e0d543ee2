"""Lab: β and the decoder's likelihood. Starts background sweeps (one worker trains the runs in
turn) and draws what ``vae_core.labs.beta`` measures on the snapshots the sidebar names (best by default)."""
import streamlit as st

from pages import _ui
from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from pages._ui.sweep_panel import budget, launch, live, pick_sweep
from vae_core.labs import beta as lb

st.title("β and the decoder")
st.caption("The notes: *“There's a trade off between how accurate our network can be and how close its latent "
           "variable can match the unit gaussian”* and *“P(X|z) = N(f(z), σ²I), but where is σ?”* "
           "Both are answered here by training a few small models that differ in one setting, in the background.")


def strip(images):
    """A row of small images as one picture."""
    return _ui.grid(images, ncols=len(images), target_px=56)


# --- β ----------------------------------------------------------------------------------
def beta_view(sweep: lb.Sweep, got: list[figs.SweepPoint]) -> None:
    got = sorted(got, key=lambda sp: sp[0].value or 0.0)
    left, right = st.columns([3, 2])
    fig = figs.rate_distortion(got, f"Rate–distortion on the test set ({sweep.id})")
    left.plotly_chart(fig, width="stretch", key=f"rd-{sweep.id}")
    right.markdown(text.BETA_WHAT_YOU_SEE)
    for note in text.sweep_notes(got, "β"):
        st.info(note)
    st.dataframe(text.beta_rows(got), hide_index=True, width="stretch")
    st.markdown(text.BETA_IMAGES)
    for s, p in got:
        a, b, c = st.columns([1, 4, 4], vertical_alignment="center")
        a.markdown(f"**β = {s.value:g}**  \nrate {p.rd.rate:.1f}")
        b.image(strip(p.samples))
        c.image(strip(p.traversal), caption=f"z{p.top_dim} ({p.top_kl:.1f} nats)")


# --- σ ----------------------------------------------------------------------------------
def sigma_view(sweep: lb.Sweep, got: list[figs.SweepPoint]) -> None:
    got = figs.decoder_order(got)
    left, right = st.columns([3, 2])
    left.plotly_chart(figs.decoder_rate_error(got), width="stretch", key=f"sig-{sweep.id}")
    right.markdown("**Where is σ?** In the Gaussian decoder's log-likelihood, per image of D pixels:")
    right.latex(text.GAUSSIAN_LOG_LIKELIHOOD)
    right.markdown(text.SIGMA_WHERE)
    for note in text.sweep_notes(got, "σ"):
        st.info(note)
    st.dataframe(text.decoder_rows(got), hide_index=True, width="stretch")
    for note in text.learned_sigma_notes(got):
        st.caption(note)
    st.markdown(text.DECODER_IMAGES)
    for s, p in got:
        a, *cols = st.columns([1, 3, 3, 3], vertical_alignment="center")
        a.markdown(f"**{figs.decoder_tag(s, p)}**")
        for col, images in zip(cols, (p.recon, p.samples, p.noisy_samples)):
            col.image(strip(images))


# --- the page -----------------------------------------------------------------------------
beta_tab, sigma_tab = st.tabs(["β: rate vs distortion", "σ: the Gaussian decoder"])
with beta_tab:
    sweep = pick_sweep("beta")
    with st.expander("Start a β sweep", expanded=sweep is None):
        betas = st.multiselect("β values", lb.BETA_CHOICES, default=list(lb.DEFAULT_BETAS))
        ds, epochs, z = budget("beta")
        st.caption("One background worker trains the runs one after another (on a small machine that is faster "
                   "than in parallel, and leaves a core to this page). Runs are named after the sweep and β.")
        if st.button("Start β sweep", type="primary", disabled=not betas):
            launch("beta", ds, epochs, z, betas=betas)
    if sweep is None:
        st.info("No β sweep yet: start one above. With the defaults each run takes under a minute on a CPU.")
    else:
        live("beta", sweep, beta_view)

with sigma_tab:
    sweep = pick_sweep("sigma")
    with st.expander("Start a decoder sweep", expanded=sweep is None):
        lo, hi = st.select_slider("Fixed σ values from … to …", options=lb.SIGMA_LADDER,
                                  value=(min(lb.DEFAULT_SIGMAS), max(lb.DEFAULT_SIGMAS)))
        sigmas = [s for s in lb.SIGMA_LADDER if lo <= s <= hi]
        c1, c2 = st.columns(2)
        learned = c1.checkbox("Add a learned-σ run", value=True)
        bern = c2.checkbox("Add a Bernoulli run", value=True)
        ds, epochs, z = budget("sigma")
        st.caption(text.decoder_sweep_caption(sigmas, learned, bern))
        if st.button("Start decoder sweep", type="primary"):
            launch("sigma", ds, epochs, z, sigmas=sigmas, learned_sigma=learned, bernoulli=bern)
    if sweep is None:
        st.info("No decoder sweep yet: start one above to see how σ sets the blur.")
    else:
        live("sigma", sweep, sigma_view)
