"""The marginal-likelihood lab's "exact posterior" tab (issue 14): for a model with a 1-D or 2-D
latent space, p(z|x) by quadrature (``vae_core.labs.exact``) beside the encoder's q(z|x), the
identity log p(x) = ELBO + KL(q ‖ p(z|x)) in numbers, the test images where q fits worst, and
the reparameterisation drawn as a change of variables. For a larger latent space it says why
not and offers to train a 2-D model.

Layout only: the figures are in ``exact_figures``, the words in ``lab_text``.

Session state: the test image is the page's own picker (``IMAGE_KEY``, shared with the
importance-sampling tab, so both tabs look at the same image); a click on this tab's scatter
sets it. ``SOURCE_KEY`` chooses between that test image and the user's image from Encode (offered
when ``state.ENCODED_UPLOAD`` belongs to this run and Encode's last import of it is in this session).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas  # noqa: F401  (see below)
import streamlit as st
import torch

from vae_core.labs import exact as ex

from . import exact_figures as xf
from . import figures as figs
from . import lab_text as text
from . import state
from .cache import per_snapshot, result_on_request
from .guard import guard
from .images import picture, spread
from .runs import DEFAULT_RUN, encoded_test_set, flash, manager, run_config, select_run

# pandas: plotly checks its inputs against ``sys.modules["pandas"]`` without importing it, and the
# server's warm-up thread (warmup.py, via scikit-learn) may be halfway through importing it when this
# tab draws its first figure right after start-up ("partially initialized module 'pandas' has no
# attribute 'Series'"). Importing it here waits for that import to finish.
IMAGE_KEY = "ml-index"  # the lab's test-image picker, shared by both tabs
SOURCE_KEY = "ex-source"
GALLERY_N_KEY = "ex-gallery-n"
SCATTER_KEY = "ex-scatter"
KEPT_KEYS = (SOURCE_KEY, GALLERY_N_KEY)  # value widgets of this tab the page keeps while the other tab shows
SOURCES = ("a test image", "your image (from Encode)")
MAX_SCATTER = 500  # test codes on the small scatter
N_WORST = 6
GALLERY_DEFAULT = 100
# The 2-D model this tab offers: the default run's body and schedule (about a minute on MNIST), z = 2.
TWO_D = {"model": {**DEFAULT_RUN["model"], "latent_dim": 2}, "train": dict(DEFAULT_RUN["train"])}


@dataclass(frozen=True)
class Chosen:
    """The image whose posterior is shown: its label, the image (1, C, H, W), and its cache key."""

    label: str
    x: torch.Tensor
    kind: str  # "test" or "upload"
    ident: int | str  # the test index, or the upload's content hash
    index: int | None  # the test index, for the scatter's ring


@dataclass(frozen=True)
class WorstFits:
    """The gallery's result: the per-image numbers over n test images evenly spread over the test
    set (``ids``, their test indices: a test set is often sorted by class, so its first n images may
    all be one digit), and the exact posteriors of those with the largest KL(q ‖ p(z|x)), worst first."""

    ids: np.ndarray
    test_set: ex.ExactTestSet
    shown: list[tuple[int, ex.ExactPosterior]]


@per_snapshot(max_entries=16, spinner="Computing p(z|x) on a grid…")
def exact_posterior(snap, kind: str, ident, *, x) -> ex.ExactPosterior:
    """One image's exact posterior under this snapshot (``kind``, ``ident`` name the image)."""
    return ex.exact_posterior(snap.model, x)


# --- choosing the image ------------------------------------------------------------------------------
def _set_test_image(index: int) -> None:
    st.session_state[IMAGE_KEY] = int(index)
    st.session_state[SOURCE_KEY] = SOURCES[0]


def _random_test_image(n: int) -> None:
    _set_test_image(int(np.random.default_rng().integers(n)))


def _on_scatter_pick() -> None:
    """A click on the scatter: its test index (customdata[0]) becomes the lab's test image."""
    for p in ((st.session_state.get(SCATTER_KEY) or {}).get("selection") or {}).get("points", []):
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)) and cd and isinstance(cd[0], (int, float)):
            return _set_test_image(int(cd[0]))


def upload_image(run: str, snap, data) -> tuple[state.EncodedUpload, str, torch.Tensor] | None:
    """The user's image from Encode when it was encoded for this run: (hand-off, content hash,
    image (C, H, W)). Encode keeps the image in its last import per input (upload, drawing); when
    both fit this dataset, the one whose code is the hand-off's is it."""
    up = state.ENCODED_UPLOAD.for_run(run)
    if up is None:
        return None
    found = []
    for source in ("upload", "draw"):
        memo = state.encode_memo(source).get()
        if memo is None or len(memo.key) != 3:
            continue
        digest, shape, preprocess = memo.key
        if tuple(shape) != tuple(data.image_shape) or preprocess != data.preprocess:
            continue
        found.append((digest, memo.value.tensor))
    if len(found) > 1:
        with torch.no_grad():
            z = np.asarray(up.z, np.float32)
            found.sort(key=lambda f: float(np.abs(snap.model.encode(f[1][None].to(torch.float32)).mu[0].cpu().numpy() - z).sum()))
    return (up, found[0][0], found[0][1]) if found else None


def choose_image(run: str, snap, data, ets) -> Chosen:
    """The picker, the chosen picture and the scatter of test codes (a click picks a point)."""
    n = len(data.x_test)
    st.session_state[IMAGE_KEY] = min(st.session_state.get(IMAGE_KEY, 0), n - 1)
    class_names = list(data.class_names or [])
    upload = upload_image(run, snap, data)
    left, right = st.columns([2, 3])
    with left:
        source = SOURCES[0]
        if upload is not None:
            source = st.radio("Image", SOURCES, key=SOURCE_KEY, horizontal=True,
                              help="A test image, or the image you uploaded or drew on the Encode page.")
        if source == SOURCES[0]:
            c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
            idx = int(c1.number_input("Test image", min_value=0, max_value=n - 1, step=1, key=IMAGE_KEY,
                                      help="The same test image as on the importance-sampling tab."))
            c2.button("Random", key="ex-random", help="Pick a random test image", on_click=_random_test_image, args=(n,))
            c = figs.class_text(int(data.y_test[idx]), class_names)
            chosen = Chosen(f"test image #{idx}" + (f" ({c})" if c else ""), data.x_test[idx: idx + 1], "test", idx, idx)
        else:
            up, digest, image = upload
            chosen = Chosen(up.label, image[None], "upload", digest, None)
        pic = picture(chosen.x[0].numpy(), 112)
        st.image(pic, caption=chosen.label, width=pic.shape[1], output_format="PNG")
        st.caption("Or click a dot on the scatter: each is one test image's code μ.")
    with right:
        ids = spread(n, MAX_SCATTER)
        labels = data.y_test[ids].numpy()
        mu = ets.codes.mu
        d = mu.shape[1]
        xy = np.column_stack([mu[ids, 0], figs.strip_y(labels)]) if d == 1 else mu[ids]
        selected = None
        if chosen.index is not None:
            hit = np.flatnonzero(ids == chosen.index)
            selected = xy[hit[0]] if len(hit) else (
                (mu[chosen.index, 0], max(int(data.y_test[chosen.index]), 0)) if d == 1 else mu[chosen.index])
        star = None
        if upload is not None:
            z = upload[0].z
            star = ((z[0], figs.STRIP_ROW) if d == 1 else (z[0], z[1])), upload[0].label
        fig = figs.latent_scatter(xy, labels, ids, class_names, selected=selected, star=star, strip=d == 1,
                                  axes=("μ (z)", "class") if d == 1 and class_names else ("z0", "z1") if d == 2 else None,
                                  revision=f"exact-{run}")  # free axes: the codes spread out, easier to click
        fig.update_layout(height=330, legend=dict(title=None, font=dict(size=10)))
        st.plotly_chart(fig, width="stretch", key=SCATTER_KEY, on_select=_on_scatter_pick, selection_mode="points")
        st.caption(f"{len(ids):,} test codes" + (f" (evenly spread over all {n:,})" if len(ids) < n else "")
                   + ("; the star is your image" if star else "") + ". The ring marks the test image shown.")
    return chosen


# --- the sections ------------------------------------------------------------------------------------
def show_numbers(ep: ex.ExactPosterior) -> None:
    m1, m2, m3 = st.columns(3)
    m1.metric("log p(x)", f"{ep.log_px:.3f} nats", help="∫ p(x|z) p(z) dz by quadrature on a grid of z, refined "
              "until doubling the points per axis changes it by less than 0.01 nats.")
    m2.metric("ELBO", f"{ep.elbo:.3f} nats", help="E_q[log p(x|z)] − KL(q ‖ p(z)) with the analytic KL; the expectation "
              "is computed, not estimated from one random draw as in training.")
    m3.metric("KL(q ‖ p(z|x))", f"{ep.kl_q_posterior:.3f} nats", help="E_q[log q(z|x) − log p(z|x)] on the grid: "
              "how far the encoder's Gaussian is from the true posterior.")
    st.markdown(text.exact_identity(ep))


def show_posterior(ep: ex.ExactPosterior, chosen: Chosen) -> None:
    left, right = st.columns([3, 2])
    left.plotly_chart(xf.posterior_figure(ep), width="stretch", key="ex-posterior")
    if len(ep.axes) == 2:
        what = ("Green: p(z|x), darker is more likely. Blue: q(z|x)'s 1σ (solid) and 2σ (dashed) ellipses, axis-aligned "
                "because q is diagonal. Red dots: the prior N(0, I)'s 1, 2 and 3σ circles.")
    else:
        what = "Green: p(z|x). Blue: q(z|x). Red dots: the prior N(0, 1)."
    left.caption(f"The exact posterior of **{chosen.label}**. {what} Computed in {ep.seconds:.2g} s.")
    shape = xf.posterior_shape(ep)
    right.markdown(text.exact_gap_text(ep))
    right.markdown(text.exact_shape_text(ep, shape))


def show_reparam(ep: ex.ExactPosterior) -> None:
    st.subheader("The reparameterisation as a change of variables")
    st.plotly_chart(xf.reparam_figure(ep.q_mu, ep.q_sigma), width="stretch", key="ex-reparam")
    st.caption(text.reparam_text(ep.q_mu, ep.q_sigma))


def _compute_worst(snap, data, n: int):
    def compute(progress) -> WorstFits:
        ids = spread(len(data.x_test), n)
        k = min(N_WORST, len(ids))
        total = len(ids) + k
        ts = ex.exact_test_set(snap.model, data.x_test.subset(ids),  # a view: read a batch at a time
                               progress=lambda done, of: progress(done / total, f"p(z|x) on a grid · {done:,} of {of:,} test images"))
        shown = []
        for j, pos in enumerate(ts.worst_fit(k)):
            i = int(ids[pos])
            progress((len(ids) + j) / total, f"the posterior of test image #{i} ({j + 1} of {k} worst fits)")
            shown.append((i, ex.exact_posterior(snap.model, data.x_test[i: i + 1])))
        return WorstFits(ids, ts, shown)
    return compute


def gallery(snap, data) -> None:
    st.divider()
    st.subheader("Where q fits worst")
    n_all = len(data.x_test)
    st.session_state[GALLERY_N_KEY] = min(st.session_state.get(GALLERY_N_KEY, min(GALLERY_DEFAULT, n_all)), n_all)
    c1, c2, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
    n = int(c1.number_input("Test images to search", min_value=1, max_value=n_all, step=50, key=GALLERY_N_KEY,
                            help="N test images evenly spread over the test set (which may be sorted by class); "
                                 "each gets its own grid."))
    start = c2.button("Find the worst fits", type="primary",
                      help="Quadrature for every image: about a second per 10 images of MNIST on two CPU cores.")
    with guard("Could not compute the exact posteriors of the test set") as g:
        res = result_on_request("exact-gallery", (snap.path, snap.step, snap.mtime, n), start,
                                _compute_worst(snap, data, n),
                                f"Press **Find the worst fits** to compute log p(x), the ELBO and KL(q ‖ p(z|x)) for "
                                f"{n:,} test images and show those where q(z|x) is furthest from the true posterior.")
    if g.failed or res is None:
        return
    ts = res.test_set
    st.markdown(text.exact_gallery_text(ts.kl_q_posterior, ts.elbo, ts.log_px, res.ids[ts.worst_fit(N_WORST)],
                                        ts.converged, ts.points_per_axis, n_all))
    cols = st.columns(N_WORST)
    class_names = list(data.class_names or [])
    for j, (col, (i, ep)) in enumerate(zip(cols, res.shown)):
        c = figs.class_text(int(data.y_test[i]), class_names)
        pic = picture(data.x_test[i].numpy(), 84)
        col.image(pic, caption=f"#{i}" + (f" ({c})" if c else ""), width=pic.shape[1], output_format="PNG")
        col.plotly_chart(xf.posterior_figure(ep, small=True, title=f"KL {ep.kl_q_posterior:.2f} nats"),
                         width="stretch", key=f"ex-worst-{j}")
        col.button("Look closer", key=f"ex-show-{i}", on_click=_set_test_image, args=(i,),
                   help="Show this image's posterior, numbers and change of variables above.")
    st.caption(f"Computed in {ts.seconds:.1f} s. Each small picture is that image's p(z|x) (green) with q(z|x)'s "
               "1σ and 2σ outlines (blue), on its own axes.")


# --- a model with more than two latent dimensions -----------------------------------------------
def offer_2d_run(snap, why: str) -> None:
    st.info(f"**The exact posterior needs a 1-D or 2-D latent space.** {why[0].upper()}{why[1:]}.")
    tc = snap.config.train
    name = tc.dataset.split(":")[0]
    if st.button(f"Train a 2-D model ({name}, about a minute)", type="primary", key="ex-train-2d",
                 help=f"An MLP with z = 2 on {tc.dataset}, trained in the background; this lab shows it once it has "
                      "a snapshot."):
        with guard("Could not start the run"):
            res = manager().start(run_config(tc.dataset, image_size=tc.image_size, channels=tc.channels, **TWO_D))
            select_run(res.name)
            flash(res.message)
            st.rerun()


def section(run: str, snap, data) -> None:
    """The whole tab, on the selected run's snapshot and its dataset."""
    try:
        ex.check_dim(snap.model)
    except ex.NeedsLowDimension as e:
        offer_2d_run(snap, str(e))
        return
    st.caption(text.EXACT_INTRO)
    with guard("Could not encode the test set with this snapshot") as g:
        ets = encoded_test_set(snap, x_test=data.x_test)
    if g.failed:
        return
    chosen = choose_image(run, snap, data, ets)
    with guard("Could not compute the exact posterior") as g:
        ep = exact_posterior(snap, chosen.kind, chosen.ident, x=chosen.x)
    if not g.failed:
        show_numbers(ep)
        show_posterior(ep, chosen)
        show_reparam(ep)
    gallery(snap, data)
