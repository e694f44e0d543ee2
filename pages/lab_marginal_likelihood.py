"""Lab: importance-sampling estimates of log p(x) with the prior or the encoder as proposal, and,
for a 1-D or 2-D latent space, the exact posterior by quadrature (a second tab).

The math is in vae_core.labs.marginal and vae_core.labs.exact; the figures and texts in
pages/_ui/lab_figures.py, exact_figures.py and lab_text.py; the exact-posterior tab is laid out by
pages/_ui/exact_panel.py. This page picks an image and settings, runs the estimators and lays them out.
Only the open tab runs (the exact posterior costs seconds of quadrature); the widgets of the other
keep their values meanwhile (``KEPT``).
"""
import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import exact_panel
from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from vae_core.labs import marginal as lm

st.title("Marginal likelihood")
st.caption("The study notes ask why *sampling z from Q gives an estimator which converges much faster than "
           "sampling z from N(0, 1)*. Here both estimate log p(x) for one of your test images.")
_ui.show_flash()
TABS = ("Importance sampling", "The exact posterior")
# Value widgets that must keep their values while their tab is closed (a widget not drawn in a run loses its state).
KEPT = ("ml-index", "ml-kmax", "ml-repeats", "ml-zoom", "ml-nll-n", "ml-nll-k", *exact_panel.KEPT_KEYS)


def _random_image(n: int) -> None:
    st.session_state["ml-index"] = int(np.random.default_rng().integers(n))


# --- one image -------------------------------------------------------------------------------
def image_lab(snap, data) -> None:
    n = len(data.x_test)
    # The widget's own key: a run with fewer test images must not start past its end.
    st.session_state["ml-index"] = min(st.session_state.get("ml-index", 0), n - 1)
    pic, settings = st.columns([1, 4])
    with settings:
        c1, c2, c3, c4 = st.columns([2, 1, 2, 2], vertical_alignment="bottom")
        idx = c1.number_input("Test image", min_value=0, max_value=n - 1, step=1, key="ml-index")
        c2.button("Random", help="Pick a random test image", on_click=_random_image, args=(n,))
        st.session_state.setdefault("ml-kmax", 5000)
        st.session_state.setdefault("ml-repeats", 10)
        k_max = c3.select_slider("Largest K (draws)", [500, 1000, 2000, 5000, 10000, 20000], key="ml-kmax")
        repeats = c4.select_slider("Repeats", [2, 5, 10, 20], key="ml-repeats",
                                   help="Independent runs of each estimator; the band is their spread.")
        b1, b2 = st.columns([1, 2], vertical_alignment="center")
        start = b1.button("Estimate log p(x)", type="primary", help="About a few seconds for the defaults on a CPU.")
        zoom = b2.checkbox("Zoom on the encoder's curve", key="ml-zoom", help="The prior's curve starts far below; zoom to see L_K rise from the ELBO.")
    x = data.x_test[idx : idx + 1]
    pic.image(_ui.picture(x[0].numpy(), target_px=112), caption=f"test image {idx}")
    with _ui.guard("Could not estimate log p(x)"):
        r = _ui.result_on_request(
            "marginal", (snap.path, snap.step, snap.mtime, int(idx), k_max, repeats), start,
            lambda progress: lm.marginal_study(snap.model, x, k_max=k_max, repeats=repeats, progress=progress),
            "Press **Estimate log p(x)** to run both importance samplers on this image.")
        if r is not None:
            show_image_result(r, zoom)


def show_image_result(r: lm.MarginalStudy, zoom: bool) -> None:
    left, right = st.columns([3, 2])
    left.plotly_chart(figs.marginal_estimates(r, zoom), width="stretch", key="ml-estimates")
    right.markdown(text.marginal_summary(r))
    right.markdown(text.marginal_why(r))
    right.markdown(text.marginal_ess_text(r))
    right.caption(f"Computed in {r.seconds:.1f} s. The estimate with z ~ q(z|x) is the importance-weighted "
                  "bound of Burda et al. (2016); its mean rises from the ELBO (K = 1) towards log p(x).")
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs.marginal_ess(r), width="stretch", key="ml-ess")
    c2.plotly_chart(figs.marginal_weights(r), width="stretch", key="ml-weights")
    st.caption("Right: the prior's log weights spread over many nats, so exp(log w) is dominated by the "
               "largest few; the encoder's are bunched together, so each draw adds information.")


# --- the test set ------------------------------------------------------------------------------
def test_set_lab(snap, data) -> None:
    st.divider()
    st.subheader("Test-set IWAE NLL")
    n_all = len(data.x_test)
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    st.session_state["ml-nll-n"] = min(st.session_state.get("ml-nll-n", min(500, n_all)), n_all)
    st.session_state.setdefault("ml-nll-k", 1000)
    n = int(c1.number_input("Test images", min_value=1, max_value=n_all, step=50, key="ml-nll-n"))
    k = c2.select_slider("k (draws per image)", [100, 1000, 5000], key="ml-nll-k")
    start = c3.button("Compute the test-set NLL", type="primary",
                      help="k decoder passes per image: 500 images × 1,000 draws take tens of seconds on a CPU.")
    with _ui.guard("Could not compute the test-set NLL") as g:
        res = _ui.result_on_request(
            "marginal", (snap.path, snap.step, snap.mtime, n, k), start,
            # a view of the first n test images (uint8), read a batch at a time: never n float images at once
            lambda progress: lm.test_set_nll(snap.model, data.x_test.subset(slice(0, n)), k=k,
                                             progress=lambda done, total: progress(done / total, f"{done:,} of {total:,} images")))
    if g.failed or res is None:
        st.caption("The usual number to report for a VAE: −log p(x) estimated with the importance-weighted bound, "
                   "averaged over test images (lower is better).")
        return
    m1, m2, m3 = st.columns(3)
    m1.metric(f"IWAE NLL (k = {res.k:,})", f"{res.nll:.2f} nats")
    m2.metric("−ELBO", f"{-res.elbo:.2f} nats")
    m3.metric("gap (ELBO under-states log p(x) by at least)", f"{res.gap:.2f} nats")
    st.caption(f"Mean over the first {res.n_images:,} test images, computed in {res.seconds:.1f} s. Both are bounds: "
               "the true NLL is at most the IWAE NLL, which is at most −ELBO.")


snap = _ui.require_snapshot("The marginal-likelihood lab")
if snap is not None:
    _ui.snapshot_caption(_ui.selected_run(), snap)
    if (data := _ui.run_dataset(snap)) is not None:
        for key in KEPT:
            if key in st.session_state:
                st.session_state[key] = st.session_state[key]
        sampling, exact = st.tabs(TABS, key="ml-tab", on_change="rerun")
        if sampling.open is not False:
            with sampling:
                image_lab(snap, data)
                test_set_lab(snap, data)
        if exact.open:
            with exact:
                exact_panel.section(_ui.selected_run(), snap, data)
