"""Train: choose data and model, start/pause/resume/stop, watch live curves; manage runs."""
import streamlit as st

from pages import _ui
from pages._ui import run_panel, text_views

m = _ui.manager()
name = _ui.selected_run()

st.title("Latent Explorer")
st.caption("Train a variational autoencoder (or a topic model on text) and look inside it while it learns. "
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
kind = st.radio("What to model", ["Images, with a VAE", "Text, with a topic model"], horizontal=True,
                key="train_modality", help="Text: ProdLDA (a VAE for bags of words) or classical LDA, on 20 "
                "Newsgroups or your own documents. The explorer's pages adapt to the run's kind.")
if kind.startswith("Text"):
    text_views.new_topic_run()
else:
    run_panel.new_image_run()


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
