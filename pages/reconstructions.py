"""Reconstructions: test images beside what the VAE makes of them, each scored by its loss; for
a topic model, a test document's words beside its reconstruction's (``_ui.text_views``).

Session state (``_ui.state``): RECON_SEED, the seed of the random pick (Re-pick adds 1);
RECON_SHOWN, the global test indices in the top grid; RECON_RANKED, the worst/best ranking.
"""
import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import state, text_runs, text_views
from vae_core import explore

N_BEST_WORST = 8

st.title("Reconstructions")
if (text := text_runs.text_page_context("Reconstructions")) is not None:
    text_views.reconstructions(text)
    st.stop()
name, snap, data = _ui.page_context("Reconstructions")

st.caption(
    "Each test image x is encoded to a distribution q(z|x) over codes and decoded back. "
    "The **reconstruction loss** −log p(x|z) is how many nats the decoder needs to describe the image "
    "given its code; the **KL** term KL(q(z|x) ‖ p(z)) is how many nats the code itself costs, i.e. how far "
    "the encoder's distribution strays from the N(0, I) prior. Their sum is the negative ELBO, "
    "the per-image loss under each column: lower is better."
)


def _label(i: int) -> str:
    """Human name of test example i's class ("7", "Trouser"), or "" when the data has no labels."""
    y, names = int(data.y_test[i]), data.class_names
    return names[y] if names and 0 <= y < len(names) else ""


# --- controls: which test images to show -------------------------------------------------
classes = list(data.class_names or [])
labelled = [c for k, c in enumerate(classes) if bool((data.y_test == k).any())]
c_mode, c_class, c_n, c_btn = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
mode = c_mode.radio("Pick test images", ["random", "by class"], horizontal=True, key="recon_mode",
                    disabled=not labelled, help="By class needs a labelled dataset.")
chosen = c_class.selectbox("Class", labelled, key="recon_class") if mode == "by class" and labelled else None
n_show = c_n.select_slider("How many", [5, 8, 10, 12, 16], value=10, key="recon_n")
c_btn.button("Re-pick", on_click=state.bump, args=(state.RECON_SEED,), width="stretch",
             help="Another random pick (the seed goes up by one).")
seed = state.RECON_SEED.get() or 0

# A seeded draw (not math: just which examples to look at), so the pick is reproducible.
pool = np.flatnonzero(data.y_test.numpy() == classes.index(chosen)) if chosen else np.arange(len(data.x_test))
indices = np.sort(np.random.default_rng(seed).choice(pool, size=min(n_show, len(pool)), replace=False))
state.RECON_SHOWN.set(state.ShownImages(name, [int(i) for i in indices]))


def image_rows(rows: list[tuple[str, np.ndarray]], ids: np.ndarray, rec: explore.Reconstruction) -> None:
    """One labelled row of pictures per (label, images (N, C, H, W)); the loss goes under each column.

    Each row is its own st.columns with the label cell vertically centred, so labels stay
    aligned with their pictures at any image size.
    """
    widths = [1.3] + [1] * len(ids)
    head = st.columns(widths)
    head[0].caption("test image")
    for col, i in zip(head[1:], ids):
        col.caption(f"#{i}" + (f" · {_label(i)}" if _label(i) else ""))
    for label, images in rows:
        cols = st.columns(widths, vertical_alignment="center")
        cols[0].markdown(label)
        for col, img in zip(cols[1:], images):
            col.image(_ui.picture(img, target_px=84), output_format="PNG")  # PNG: JPEG would smear the crisp pixels
    foot = st.columns(widths)
    foot[0].caption("loss (nats)")
    for k, col in enumerate(foot[1:]):
        col.caption(f"**{rec.per_example_loss[k]:.1f}**",
                    help=f"−log p(x|z) ≈ {-rec.log_likelihood[k]:.1f} + KL {rec.kl[k]:.1f} nats")


@_ui.per_snapshot(max_entries=16, progress="Scoring every test image")
def worst_then_best(snap, *, x, progress) -> tuple[np.ndarray, explore.Reconstruction]:
    """The worst then the best reconstructed test images: (indices, their reconstructions).
    One seeded scoring pass over the test set, a batch at a time and keeping only the losses
    (ranks and numbers agree); only the chosen images are then read and decoded."""
    return explore.worst_and_best(snap.model, x, n=N_BEST_WORST, progress=progress)


def _subset(rec: explore.Reconstruction, ids) -> explore.Reconstruction:
    return explore.Reconstruction(rec.mean[ids], None, rec.per_example_loss[ids], rec.log_likelihood[ids], rec.kl[ids])


# --- the live part: refreshes with every new snapshot while the run trains ----------------
def live(run: str, ids: np.ndarray, seed: int) -> None:
    s = _ui.live_snapshot(run, data)
    if s is None:
        return
    what = f"{len(ids)} random test images" if not chosen else f"{len(ids)} test images of class **{chosen}**"
    st.subheader("Inputs and reconstructions")
    st.caption(f"{what} (pick seed {seed}). *Mean*: the decoder's mean image at z = μ. "
               "*Sampled*: a full draw, z ~ q(z|x) then x ~ p(x|z), so it shows the decoder's noise too.")
    with _ui.guard("Could not reconstruct with this snapshot") as g:
        rec = explore.reconstruct(s.model, data.x_test[ids], sample=True, seed=seed)
    if g.failed:
        return
    image_rows([("**input**", data.x_test[ids].numpy()), ("**mean**", rec.mean), ("**sampled**", rec.sampled)], ids, rec)

    # Drawn after the pick: scoring the whole test set can take a few seconds on a busy CPU.
    # While a run trains, snapshots arrive every few seconds and rescoring each one would
    # compete with the trainer for the CPU, so the ranking is redone when the epoch changes.
    st.subheader("Worst and best of the test set")
    training = _ui.refresh_every(run) is not None
    with _ui.guard("Could not score the test set with this snapshot") as g:
        ranked = _ui.pinned(state.RECON_RANKED, run, s, lambda: worst_then_best(s, x=data.x_test),
                            keep=lambda kept: training and kept.epoch == s.epoch)
    if g.failed:
        return
    bw, rec_bw = ranked.value
    k = len(bw) // 2
    when = f"scored on the snapshot at step {ranked.step:,}" + (", and again when the epoch changes" if training else "")
    st.caption(f"The {k} test images with the highest loss (worst first), then the {k} with the lowest "
               f"(best first), out of all {len(data.x_test):,}; {when}. "
               "With a Gaussian decoder the density can exceed 1, so a loss can be negative.")
    for title, sl in (("Worst", slice(0, k)), ("Best", slice(k, None))):
        sub = _subset(rec_bw, sl)
        st.markdown(f"**{title}**")
        image_rows([("input", data.x_test[bw[sl]].numpy()), ("mean", sub.mean)], bw[sl], sub)


st.fragment(live, run_every=_ui.refresh_every(name))(name, indices, seed)
