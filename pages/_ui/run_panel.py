"""The Train page's larger pieces: the panel for the selected run, refreshed while it trains (its
settings and state, pause / resume / stop, the progress, the loss curves and a strip of
reconstructions, or for a topic model its current topics), and the new image run's form (the
topic-model form is ``text_views.new_topic_run``)."""
from __future__ import annotations

import importlib.util
from typing import get_args

import numpy as np
import streamlit as st
import torch

from vae_core import explore
from vae_core.data import list_datasets
from vae_core.engine.config import LRSchedule, TrainConfig
from vae_core.engine.recipe import auto_summary
from vae_core.runs import rundir as rd
from vae_core.runs.diagnose import posterior_collapse

from . import figures as figs
from . import text_figures, text_views
from .guard import guard
from .health import health
from .images import grid, spread
from .runs import dataset_peek, flash, manager, rerun_when_run_ends, run_config, run_dataset, select_run, snapshot

OWN_FILES = "Your own files…"
TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def live_panel(run: str) -> None:
    m = manager()
    status = m.status(run)
    rerun_when_run_ends(run, status.active)
    cfg = _config_or_none(run)
    imported = cfg is not None and cfg.family == "external"
    text = cfg is not None and cfg.is_text
    head, buttons = st.columns([3, 2], vertical_alignment="center")
    desc = ""
    if cfg:
        objective = f"IWAE k={cfg.train.samples}" if cfg.train.objective == "iwae" else f"β={cfg.train.beta:g}"
        desc = f"{cfg.train.dataset} · {cfg.model.label()} · " + ("" if imported or text else f"{objective} · ")
    head.subheader(run)
    head.caption(f"{desc}**{status.label}**" + (f" on {status.device}" if status.device else "")
                 + (f" · {status.message}" if status.message else ""))
    c1, c2, _ = buttons.columns(3)
    if status.state == "running" and not status.stale:
        c1.button("Pause", key="pause", on_click=m.pause, args=(run,), width="stretch")
    elif status.state == "paused" and not status.stale or not status.active and status.state != "finished":
        c1.button("Resume", key="resume", on_click=lambda: flash(m.resume(run).message), width="stretch", type="primary")
    if status.active:
        c2.button("Stop", key="stop", on_click=m.stop, args=(run,), width="stretch")
    if imported:
        st.info(f"Trained elsewhere and imported from `{cfg.model.factory}`: Latent Explorer explores this model "
                "but does not train it, so it has no training controls or curves. To go on training it, train it with "
                "its own code and import the new weights (README, 'Explore your own VAE').")
    if status.error:
        st.error(f"The run failed: {status.error}")
    if status.extra.get("snapshot_error"):
        st.warning(status.extra["snapshot_error"])

    metrics = rd.read_metrics(m.path(run))
    steps, epochs = [r for r in metrics if r.get("kind") == "step"], [r for r in metrics if r.get("kind") == "epoch"]
    if status.total_steps:
        eta = f" · about {_duration(status.eta_s)} left" if status.active and status.eta_s else ""
        rate = f" · {status.samples_per_s:,.0f} samples/s" if status.samples_per_s else ""
        lr = f" · learning rate {steps[-1]['lr']:.1e}" if steps and "lr" in steps[-1] else ""
        lr = lr or (f" · step size ρ {steps[-1]['rho']:.1e}" if steps and "rho" in steps[-1] else "")  # online LDA
        st.progress(status.progress, text=f"step {status.step:,} of {status.total_steps:,} · epoch {status.epoch}{lr}{rate}{eta}")
    if steps and text:
        st.plotly_chart(text_figures.topic_training_curves(steps, epochs, cfg.family), width="stretch", key="curves")
        st.caption(TEXT_CURVES[cfg.family])
    elif steps:
        loss = figs.loss_label(cfg.train.objective, cfg.train.beta, cfg.train.samples) if cfg else "loss"
        st.plotly_chart(figs.training_curves(steps, epochs, loss), width="stretch", key="curves")
    elif status.active:
        st.info("Starting the worker and loading the data… the first curve point appears within seconds.")
    if text:  # the posterior-collapse check and the reconstruction strip are for images
        text_views.live_topics(run)
        return
    if collapse := posterior_collapse(metrics, finished=status.state == "finished", beta=cfg.train.beta if cfg else 1.0,
                                      lr=cfg.train.lr if cfg else None):
        st.warning(collapse)
    if (snap := snapshot(run)) is None or (data := run_dataset(snap)) is None:
        return
    if (h := health(snap, len(data.x_test), x_test=data.x_test)).problem and (h.fatal or not collapse):
        st.warning(h.problem)  # a warning here: the run's state and curves above still hold (the collapse one says it)
    if h.fatal:
        return
    with guard("Could not reconstruct test images with this snapshot"):
        x = data.x_test[spread(len(data.x_test), 10)]
        rec = explore.reconstruct(snap.model, x)
        st.markdown(f"**Reconstructions** at step {snap.step:,}: test images (top) and the decoder's mean (bottom)")
        st.image(grid(np.stack([x.numpy(), rec.mean]), target_px=56))


def new_image_run() -> None:
    """The Train page's new-run section for images: the dataset (with a glimpse of it from the
    disk cache), the VAE's settings, and Start."""
    infos = st.cache_data(ttl=60, show_spinner=False)(list_datasets)(modality="image")  # probes files: not on every rerun
    ready = [d.name for d in infos if d.available and not d.needs_path]
    own = {d.description: d.name.split(":")[0]  # "folder:<path>" -> folder; pictures first, the common case
           for d in sorted(infos, key=lambda d: not d.name.startswith("folder:")) if d.available and d.needs_path}
    col_data, col_strip = st.columns([1, 2])
    image_size = channels = None
    choice = col_data.selectbox("Dataset", ready + ([OWN_FILES] if own else []),
                                help="Unavailable datasets, and how to get them, are listed below.")
    spec = choice
    if choice == OWN_FILES:
        kind = own[col_data.radio("What the files are", list(own))]
        path = col_data.text_input("Path on this machine", placeholder="/path/to/your/files").strip()
        spec = f"{kind}:{path}" if path else ""
        if kind == "folder":  # a folder of pictures is resized and converted to what the model takes
            image_size = col_data.select_slider("Image size", [8, 16, 28, 32, 64], value=28)
            channels = 3 if col_data.radio("Colour", ["grayscale", "RGB"], horizontal=True) == "RGB" else 1
    if missing := [d for d in infos if not d.available]:
        with col_data.expander(f"{len(missing)} dataset(s) unavailable here"):
            st.markdown("\n".join(f"- **{d.name}**: {d.detail}" for d in missing))
    if spec:  # a glimpse from the disk cache (16 images read): the dataset itself is loaded when a run starts
        with col_strip, guard("Could not read the dataset") as g:
            if (peek := dataset_peek(spec, image_size, channels)) is not None:
                st.image(grid(peek.images, ncols=16, target_px=40))
                c, h, w = peek.image_shape
                st.caption(f"**{spec}**: {peek.n_train:,} training and {peek.n_test:,} test images of {h}×{w} × {c} "
                           "channel(s)" + (f" · {len(peek.class_names)} classes" if peek.class_names else ""))
            else:
                st.caption(f"**{spec}** is not in the dataset cache yet: it is decoded into the cache when a run "
                           "starts (a progress bar shows it), and its examples show here after that.")
        spec = "" if g.failed else spec

    with st.form("new-run"):
        c1, c2, c3, c4 = st.columns(4)
        body = c1.radio("Model", ["mlp", "conv"], horizontal=True, help="MLP: one hidden layer each way. Conv: strided convolutions.")
        latent = c2.number_input("Latent dimensions", min_value=1, max_value=512, value=16,
                                 help="2 lets you see the latent space directly; more reconstructs better.")
        likelihood = c3.selectbox("Decoder likelihood p(x|z)", ["bernoulli", "gaussian_fixed", "gaussian_learned"])
        sigma = c4.number_input("Gaussian σ (fixed, or initial)", min_value=0.001, max_value=10.0, value=0.1, format="%.3f")
        defaults, schedules = TrainConfig(), list(get_args(LRSchedule))
        c1, c2, c3, c4, c5, c6 = st.columns(6)
        beta = c1.number_input("KL weight β", min_value=0.0, max_value=1000.0, value=defaults.beta, step=0.25)
        lr = c2.number_input("Learning rate", min_value=1e-6, max_value=1.0, value=None, format="%.0e",
                             placeholder="auto", help="The peak rate; the cosine schedule warms up to it, then decays it "
                             f"to 0. Empty is auto, chosen from the data and the model: {auto_summary('lr')}.")
        schedule = c3.selectbox("Schedule", schedules, index=schedules.index(defaults.lr_schedule), help="cosine: warm-up, then "
                                "decay to 0 by the last epoch (better models in the same time); constant: the same rate throughout.")
        batch = c4.number_input("Batch size", min_value=1, max_value=65536, value=defaults.batch_size)
        epochs = c5.number_input("Epochs", min_value=1, max_value=100000, value=defaults.epochs)
        devices = device_choices(torch.cuda.device_count())
        device = c6.selectbox("Device", list(devices), help="auto: CUDA, then MPS, then CPU. All N GPUs: one training "
                              "process per GPU (data-parallel), on this machine.")
        c1, c2, c3, c4 = st.columns([1, 1, 1, 3])
        patience = c1.number_input("Early-stopping patience", min_value=0, max_value=100000, value=defaults.patience,
                                   help="After this many epochs in a row without a better validation ELBO, the "
                                   "learning rate is annealed to 0 over twice as many epochs and the run stops; "
                                   "0 turns early stopping off.")
        validation = c2.number_input("Validation share", min_value=0.0, max_value=0.5, value=defaults.validation_fraction,
                                     step=0.05, format="%.2f", help="Share of the training set held out: its ELBO picks "
                                     "the best snapshot and drives early stopping (0 to 0.5; 0 trains on all of it, "
                                     "without either).")
        tensorboard = c3.checkbox("TensorBoard logs", value=False, disabled=not TENSORBOARD,
                                  help="Also write TensorBoard event files into the run folder: the loss terms, test ELBO "
                                  "and learning rate as scalars, and each epoch's test-set codes for the Embedding "
                                  "Projector; then run `tensorboard --logdir runs`." if TENSORBOARD else
                                  "Needs the optional tensorboard package: pip install latent-explorer[tensorboard].")
        run_name = c4.text_input("Run name (optional)", max_chars=64, placeholder="letters, digits, '.', '_' or '-'")
        submitted = st.form_submit_button("Start training", type="primary", disabled=not spec)

    if submitted:
        with guard("Could not start the run"):
            res = manager().start(run_config(
                spec, image_size=image_size, channels=channels,
                model={"body": body, "latent_dim": int(latent), "likelihood": likelihood, "decoder_sigma": float(sigma)},
                train={"beta": float(beta), **({"lr": float(lr)} if lr is not None else {}), "lr_schedule": schedule,
                       "batch_size": int(batch), "epochs": int(epochs), "patience": int(patience),
                       "validation_fraction": float(validation), "tensorboard": bool(tensorboard), **devices[device]}), name=run_name.strip() or None)
            select_run(res.name)
            flash(res.message)
            st.rerun()


DEVICES = ("auto", "cpu", "cuda", "mps")
# What a topic run's curves are: the two families' bounds differ (ProdLDA's counts the bag of
# words, LDA's the word sequence), so only the perplexities compare across them.
TEXT_CURVES = {
    "prodlda": "ProdLDA minimises −ELBO per document, with the multinomial coefficient (the bound on the bag of "
               "words). Test perplexity: exp(−(ELBO less that coefficient) / words) over the test documents, an "
               "upper bound; comparable with LDA's.",
    "lda": "Online LDA logs each mini-batch's variational bound (no loss or KL split: it is fitted by variational "
           "Bayes, not by gradients). Test bound: scikit-learn's, per document, on the word sequence. Test "
           "perplexity: scikit-learn's, from that bound, an upper bound; comparable with ProdLDA's.",
}


def device_choices(gpu_count: int) -> dict[str, dict]:
    """The run form's device options, each with the ``train`` settings it means: one device, or
    with more than one GPU, "all N GPUs" (device cuda, one training process per GPU)."""
    choices = {d: {"device": d} for d in DEVICES}
    if gpu_count > 1:
        choices[f"all {gpu_count} GPUs"] = {"device": "cuda", "nproc": int(gpu_count)}
    return choices


def _config_or_none(run: str):
    try:
        return rd.read_config(manager().path(run))
    except rd.RunError:  # a run whose config is unreadable still shows its state and curves
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
