"""Train: choose data and model, start/pause/resume/stop, watch live curves; manage runs."""
import importlib.util
from typing import get_args

import streamlit as st
import torch

from pages import _ui
from pages._ui import run_panel
from vae_core.data import list_datasets
from vae_core.engine.config import LRSchedule, TrainConfig
from vae_core.engine.recipe import auto_summary

OWN_FILES = "Your own files…"
TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
m = _ui.manager()
name = _ui.selected_run()

st.title("Latent Explorer")
st.caption("Train a variational autoencoder and look inside it while it learns. "
           "Every other page works on the selected run's best snapshot (or its latest, chosen in the sidebar), even mid-training.")
_ui.show_flash()


if name:
    st.fragment(run_panel.live_panel, run_every=_ui.refresh_every(name))(name)
else:
    st.info("No runs yet. Start one below, or press the button for a sensible default.")
    if st.button("Train a default model (MNIST, about a minute)", type="primary"):
        _ui.start_default_run()
        st.rerun()


# --- a new run ---------------------------------------------------------------------------
st.divider()
st.subheader("New run")
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
    with col_strip, _ui.guard("Could not read the dataset") as g:
        if (peek := _ui.dataset_peek(spec, image_size, channels)) is not None:
            st.image(_ui.grid(peek.images, ncols=16, target_px=40))
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
    devices = run_panel.device_choices(torch.cuda.device_count())
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
    with _ui.guard("Could not start the run"):
        res = m.start(_ui.run_config(
            spec, image_size=image_size, channels=channels,
            model={"body": body, "latent_dim": int(latent), "likelihood": likelihood, "decoder_sigma": float(sigma)},
            train={"beta": float(beta), **({"lr": float(lr)} if lr is not None else {}), "lr_schedule": schedule,
                   "batch_size": int(batch), "epochs": int(epochs), "patience": int(patience),
                   "validation_fraction": float(validation), "tensorboard": bool(tensorboard), **devices[device]}), name=run_name.strip() or None)
        _ui.select_run(res.name)
        _ui.flash(res.message)
        st.rerun()


# --- all runs ------------------------------------------------------------------------------
st.divider()
st.subheader("Runs")
if runs := m.list_runs():
    st.dataframe([{"run": r.name, "state": r.status.label, "dataset": r.config.train.dataset if r.config else "?",
                   "model": r.config.model.label() if r.config else "?",
                   "step": r.status.step, "epoch": r.status.epoch,
                   "test ELBO": round(ep, 2) if isinstance(ep := r.status.extra.get("test_elbo"), (int, float)) else None}
                  for r in runs], hide_index=True, width="stretch")
    names = [r.name for r in runs]
    target = st.selectbox("Manage run", names, index=names.index(name) if name in names else 0)
    a1, a2, a3, a4 = st.columns(4)
    if a1.button("Open", width="stretch"):
        _ui.select_run(target)
        st.rerun()
    a2.download_button("Download (.zip)", data=m.export_zip(target), file_name=f"{target}.zip", mime="application/zip",
                       width="stretch", help="The run's config, weights and metrics; upload it below on any machine.")
    with a3.popover("Rename", width="stretch"):
        new = st.text_input("New name", value=target, key="rename-to")
        if st.button("Rename run"):
            with _ui.guard("Could not rename the run"):
                m.rename(target, new)
                _ui.select_run(new if name == target else name)
                st.rerun()
    with a4.popover("Delete", width="stretch"):
        st.write(f"Delete **{target}** and its files? This cannot be undone.")
        if st.button("Delete for good", type="primary"):
            with _ui.guard("Could not delete the run"):
                m.delete(target)
                _ui.select_run(None if name == target else name)
                st.rerun()

with st.expander("Upload a run (the .zip from Download, or config.json + weights.safetensors)"):
    files = st.file_uploader("The run's .zip, or its config.json and weights.safetensors", key="up-files",
                             type=["zip", "json", "safetensors"], accept_multiple_files=True)
    up_name = st.text_input("Name for the uploaded run", key="up-name",
                            help="Optional for a .zip: it keeps the name it was downloaded with.").strip()
    by_kind = {f.name.rsplit(".", 1)[-1].lower(): f for f in files or []}
    is_zip = "zip" in by_kind and len(by_kind) == 1
    if files and not (is_zip or {"json", "safetensors"} <= set(by_kind)):
        st.caption("Upload either one .zip, or a config.json together with a weights.safetensors.")
    if st.button("Add run", disabled=not (is_zip or {"json", "safetensors"} <= set(by_kind) and up_name)):
        with _ui.guard("Could not add the run"):
            added = (m.import_zip(by_kind["zip"].getvalue(), name=up_name or None) if is_zip else
                     m.import_run(up_name, by_kind["json"].getvalue(), by_kind["safetensors"].getvalue()))
            _ui.select_run(added)
            st.rerun()
