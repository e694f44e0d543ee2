"""Train: choose data and model, start/pause/resume/stop, watch live curves; manage runs."""
from typing import get_args

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages import _ui
from vae_core import explore
from vae_core.runs import rundir as rd
from vae_core.engine.config import ConfigError, LRSchedule, TrainConfig
from vae_core.data import DatasetError, list_datasets
from vae_core.runs.manager import new_run_config

m = _ui.manager()
name = _ui.selected_run()

st.title("Latent Explorer")
st.caption("Train a variational autoencoder and look inside it while it learns. "
           "Every other page works on the selected run's latest weights, even mid-training.")


# --- the selected run, live --------------------------------------------------------------
def live_panel(run: str) -> None:
    status = m.status(run)
    _ui.rerun_when_run_ends(run, status.active)

    head, buttons = st.columns([3, 2], vertical_alignment="center")
    cfg = _config_or_none(run)
    desc = f"{cfg.train.dataset} · {cfg.model.body} · z={cfg.model.latent_dim} · {cfg.model.likelihood} · β={cfg.train.beta:g}" if cfg else ""
    head.subheader(f"{run}")
    head.caption(f"{desc} · **{status.label}**" + (f" on {status.device}" if status.device else "")
                 + (f" · {status.message}" if status.message else ""))
    with buttons:
        c1, c2, c3 = st.columns(3)
        if status.state == "running" and not status.stale:
            c1.button("Pause", key="pause", on_click=m.pause, args=(run,), width="stretch")
        elif status.state == "paused" and not status.stale or not status.active and status.state != "finished":
            c1.button("Resume", key="resume", on_click=_resume, args=(run,), width="stretch", type="primary")
        if status.active:
            c2.button("Stop", key="stop", on_click=m.stop, args=(run,), width="stretch")

    if status.error:
        st.error(f"The run failed: {status.error}")
    if status.extra.get("snapshot_error"):
        st.warning(status.extra["snapshot_error"])
    metrics = rd.read_metrics(m.path(run))
    steps = [r for r in metrics if r.get("kind") == "step"]
    epochs = [r for r in metrics if r.get("kind") == "epoch"]
    if status.total_steps:
        eta = f" · about {_duration(status.eta_s)} left" if status.active and status.eta_s else ""
        rate = f" · {status.samples_per_s:,.0f} samples/s" if status.samples_per_s else ""
        lr = f" · learning rate {steps[-1]['lr']:.1e}" if steps and "lr" in steps[-1] else ""
        st.progress(status.progress, text=f"step {status.step:,} of {status.total_steps:,} · epoch {status.epoch}"
                                          f"{lr}{rate}{eta}")
    if steps:
        st.plotly_chart(_curves(steps, epochs), width="stretch", key="curves")
    elif status.active:
        st.info("Starting the worker and loading the data… the first curve point appears within seconds.")

    snap = _ui.snapshot(run)
    if snap is not None:
        data = _ui.run_dataset(snap)
        if data is not None:
            x = data.x_test[_ui.spread(len(data.x_test), 10)]
            rec = explore.reconstruct(snap.model, x)
            st.markdown(f"**Reconstructions** at step {snap.step:,}: test images (top) and the decoder's mean (bottom)")
            st.image(_ui.grid(np.stack([x.numpy(), rec.mean]), target_px=56))


def _curves(steps: list[dict], epochs: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss terms (nats per example)", "Test ELBO per epoch (nats)"))
    s = [r["step"] for r in steps]
    fig.add_scatter(x=s, y=[r["loss"] for r in steps], name="loss (−β-ELBO)", row=1, col=1)
    fig.add_scatter(x=s, y=[-r["log_likelihood"] for r in steps], name="reconstruction (−log p(x|z))", row=1, col=1)
    fig.add_scatter(x=s, y=[r["kl"] for r in steps], name="KL(q‖p)", row=1, col=1)
    if epochs:
        fig.add_scatter(x=[r["epoch"] for r in epochs], y=[r["test_elbo"] for r in epochs], name="test ELBO",
                        mode="lines+markers", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def _resume(run: str) -> None:
    st.session_state["_flash"] = m.resume(run).message


def _config_or_none(run: str):
    try:
        return rd.read_config(m.path(run))
    except rd.RunError:
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


if msg := st.session_state.pop("_flash", None):
    st.toast(msg)

if name:
    st.fragment(live_panel, run_every=_ui.refresh_every(name))(name)
else:
    st.info("No runs yet. Start one below, or press the button for a sensible default.")
    if st.button("Train a default model (MNIST, about a minute)", type="primary"):
        _ui.start_default_run()
        st.rerun()


# --- a new run ---------------------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _datasets():
    return list_datasets()


st.divider()
st.subheader("New run")
infos = _datasets()
available = [d for d in infos if d.available]
col_data, col_strip = st.columns([1, 2])
with col_data:
    choice = st.selectbox("Dataset", [d.name for d in available] + ["your own folder / IDX files…"],
                          help="Unavailable datasets, and how to get them, are listed below.")
    image_size = channels = None
    if choice.startswith("your own"):
        spec = st.text_input("Dataset spec", placeholder="folder:/path/to/images  or  idx:/path/to/idx-files",
                             help="folder: a directory, .zip or .npz of images; idx: MNIST-format IDX files.")
        if spec.startswith("folder:"):
            image_size = st.select_slider("Image size", [8, 16, 28, 32, 64], value=28)
            channels = 3 if st.radio("Colour", ["grayscale", "RGB"], horizontal=True) == "RGB" else 1
    else:
        spec = choice
    missing = [d for d in infos if not d.available]
    if missing:
        with st.expander(f"{len(missing)} dataset(s) unavailable here"):
            for d in missing:
                st.markdown(f"- **{d.name}**: {d.detail}")
with col_strip:
    if spec:
        try:
            ds = _ui.dataset(spec, image_size, channels)
            st.image(_ui.grid(ds.x_train[_ui.spread(len(ds.x_train), 16)].numpy(), ncols=16, target_px=40))
            classes = f" · {len(ds.class_names)} classes" if ds.class_names else ""
            st.caption(f"**{spec}**: {len(ds.x_train):,} training and {len(ds.x_test):,} test images of "
                       f"{ds.image_shape[1]}×{ds.image_shape[2]} × {ds.image_shape[0]} channel(s){classes}")
        except DatasetError as e:
            st.error(str(e))
            spec = ""

with st.form("new-run"):
    c1, c2, c3, c4 = st.columns(4)
    body = c1.radio("Model", ["mlp", "conv"], horizontal=True, help="MLP: one hidden layer each way. Conv: strided convolutions.")
    latent = c2.number_input("Latent dimensions", min_value=1, max_value=512, value=16,
                             help="2 lets you see the latent space directly; more reconstructs better.")
    likelihood = c3.selectbox("Decoder likelihood p(x|z)", ["bernoulli", "gaussian_fixed", "gaussian_learned"])
    sigma = c4.number_input("Gaussian σ (fixed, or initial)", min_value=0.001, max_value=10.0, value=0.1, format="%.3f")
    defaults = TrainConfig()
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    beta = c1.number_input("KL weight β", min_value=0.0, max_value=1000.0, value=defaults.beta, step=0.25)
    lr = c2.number_input("Learning rate", min_value=1e-6, max_value=1.0, value=defaults.lr, format="%.0e",
                         help="The peak rate; the cosine schedule warms up to it, then decays it to 0.")
    schedules = list(get_args(LRSchedule))
    schedule = c3.selectbox("Schedule", schedules, index=schedules.index(defaults.lr_schedule), help="cosine: warm-up, then decay to 0 by the last "
                            "epoch (better models in the same time); constant: the same rate throughout.")
    batch = c4.number_input("Batch size", min_value=1, max_value=65536, value=defaults.batch_size)
    epochs = c5.number_input("Epochs", min_value=1, max_value=100000, value=defaults.epochs)
    device = c6.selectbox("Device", ["auto", "cpu", "cuda", "mps"], help="auto: CUDA, then MPS, then CPU")
    run_name = st.text_input("Run name (optional)", max_chars=64, placeholder="letters, digits, '.', '_' or '-'")
    submitted = st.form_submit_button("Start training", type="primary", disabled=not spec)

if submitted:
    try:
        cfg = new_run_config(spec, image_size=image_size, channels=channels,
                             model={"body": body, "latent_dim": int(latent), "likelihood": likelihood, "decoder_sigma": float(sigma)},
                             train={"beta": float(beta), "lr": float(lr), "lr_schedule": schedule, "batch_size": int(batch), "epochs": int(epochs), "device": device})
        res = m.start(cfg, name=run_name.strip() or None)
        _ui.select_run(res.name)
        st.session_state["_flash"] = res.message
        st.rerun()
    except (ConfigError, DatasetError, rd.RunError) as e:
        st.error(str(e))


# --- all runs ------------------------------------------------------------------------------
st.divider()
st.subheader("Runs")
runs = m.list_runs()
if runs:
    rows = []
    for r in runs:
        ep = r.status.extra.get("test_elbo")
        rows.append({"run": r.name, "state": r.status.label,
                     "dataset": r.config.train.dataset if r.config else "?",
                     "model": f"{r.config.model.body} z={r.config.model.latent_dim}" if r.config else "?",
                     "step": r.status.step, "epoch": r.status.epoch,
                     "test ELBO": round(ep, 2) if isinstance(ep, (int, float)) else None})
    st.dataframe(rows, hide_index=True, width="stretch")
    target = st.selectbox("Manage run", [r.name for r in runs], index=[r.name for r in runs].index(name) if name in [r.name for r in runs] else 0)
    a1, a2, a3, a4 = st.columns(4)
    if a1.button("Open", width="stretch"):
        _ui.select_run(target)
        st.rerun()
    a2.download_button("Download (.zip)", data=m.export_zip(target), file_name=f"{target}.zip", mime="application/zip", width="stretch")
    with a3.popover("Rename", width="stretch"):
        new = st.text_input("New name", value=target, key="rename-to")
        if st.button("Rename run"):
            try:
                m.rename(target, new)
                if name == target:
                    _ui.select_run(new)
                st.rerun()
            except rd.RunError as e:
                st.error(str(e))
    with a4.popover("Delete", width="stretch"):
        st.write(f"Delete **{target}** and its files? This cannot be undone.")
        if st.button("Delete for good", type="primary"):
            try:
                m.delete(target)
                if name == target:
                    _ui.select_run(None)
                st.rerun()
            except rd.RunError as e:
                st.error(str(e))

with st.expander("Upload a run (config.json + weights.safetensors)"):
    up_cfg = st.file_uploader("config.json", type=["json"], key="up-cfg")
    up_w = st.file_uploader("weights.safetensors", type=["safetensors"], key="up-w")
    up_name = st.text_input("Name for the uploaded run", key="up-name")
    if st.button("Add run", disabled=not (up_cfg and up_w and up_name)):
        try:
            added = m.import_run(up_name.strip(), up_cfg.getvalue(), up_w.getvalue())
            _ui.select_run(added)
            st.rerun()
        except rd.RunError as e:
            st.error(str(e))
