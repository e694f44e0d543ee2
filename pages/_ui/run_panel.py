"""The Train page's panel for the selected run, refreshed while it trains: its settings and
state, pause / resume / stop, the progress, the loss curves and a strip of reconstructions."""
from __future__ import annotations

import numpy as np
import streamlit as st

from vae_core import explore
from vae_core.runs import rundir as rd
from vae_core.runs.diagnose import posterior_collapse

from . import figures as figs
from .guard import guard
from .health import health
from .images import grid, spread
from .runs import flash, manager, rerun_when_run_ends, run_dataset, snapshot


def live_panel(run: str) -> None:
    m = manager()
    status = m.status(run)
    rerun_when_run_ends(run, status.active)
    cfg = _config_or_none(run)
    imported = cfg is not None and cfg.family == "external"
    head, buttons = st.columns([3, 2], vertical_alignment="center")
    desc = ""
    if cfg:
        objective = f"IWAE k={cfg.train.samples}" if cfg.train.objective == "iwae" else f"β={cfg.train.beta:g}"
        desc = f"{cfg.train.dataset} · {cfg.model.label()} · " + ("" if imported else f"{objective} · ")
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
        st.progress(status.progress, text=f"step {status.step:,} of {status.total_steps:,} · epoch {status.epoch}{lr}{rate}{eta}")
    if steps:
        loss = figs.loss_label(cfg.train.objective, cfg.train.beta, cfg.train.samples) if cfg else "loss"
        st.plotly_chart(figs.training_curves(steps, epochs, loss), width="stretch", key="curves")
    elif status.active:
        st.info("Starting the worker and loading the data… the first curve point appears within seconds.")
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


DEVICES = ("auto", "cpu", "cuda", "mps")


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
