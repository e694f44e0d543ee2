"""Latent Explorer: `streamlit run app.py`.

The entry point only sets the page up, shows the run picker and routes to the pages in
pages/. Pages call vae_core and draw; training runs in separate worker processes.
"""
from pathlib import Path

import streamlit as st

from pages import _ui
from pages._ui import warmup
from vae_core.runs import rundir as rd
from vae_core.runs.external_source import EXTERNAL

st.set_page_config(page_title="Latent Explorer", page_icon=":material/explore:", layout="wide")
warmup.start(str(_ui.manager().root))

HERE = Path(__file__).parent
SECTIONS = {
    "Explore": [
        ("pages/train.py", "Train", ":material/model_training:"),
        ("pages/reconstructions.py", "Reconstructions", ":material/compare:"),
        ("pages/latent_space.py", "Latent space", ":material/scatter_plot:"),
        ("pages/sample.py", "Sample", ":material/casino:"),
        ("pages/traverse.py", "Traverse", ":material/tune:"),
        ("pages/encode.py", "Encode your image", ":material/draw:"),
    ],
    "Labs": [
        ("pages/lab_gradients.py", "Gradient estimators", ":material/show_chart:"),
        ("pages/lab_marginal_likelihood.py", "Marginal likelihood", ":material/balance:"),
        ("pages/lab_beta.py", "β and the decoder", ":material/stacked_line_chart:"),
        ("pages/lab_disentanglement.py", "Disentanglement", ":material/extension:"),
        ("pages/lab_topics.py", "Topic models", ":material/topic:"),
    ],
}
nav = {
    section: [
        st.Page(path, title=title, icon=icon, default=(path == "pages/train.py"))
        for path, title, icon in items
        if (HERE / path).exists()
    ]
    for section, items in SECTIONS.items()
}
page = st.navigation({k: v for k, v in nav.items() if v})


def run_status_line(name: str) -> None:
    """The selected run's state, live: the picker's labels are only as fresh as the last full rerun."""
    status = _ui.manager().status(name)
    _ui.rerun_when_run_ends(name, status.active)
    text = f"**{status.label}**"
    if status.total_steps:
        text += f" · step {status.step:,} of {status.total_steps:,} · epoch {status.epoch}"
    st.caption(text)
    if status.active and status.total_steps:
        st.progress(status.progress)
    path = _ui.manager().path(name)
    if (meta := rd.snapshot_meta(path, _ui.shown_kind())) is not None:
        imported = (path / EXTERNAL).exists()
        st.caption(f"Shown: {_ui.describe_snapshot(meta, imported)}")


with st.sidebar:
    runs = _ui.manager().list_runs()
    current = _ui.selected_run()
    if runs:
        names = [r.name for r in runs]
        # The selected run's state is on the live line below; a label only refreshes on a full rerun.
        labels = {r.name: r.name if r.name == current else f"{r.name} · {r.status.label}" for r in runs}
        choice = st.selectbox("Run", names, index=names.index(current) if current in names else 0,
                              format_func=labels.get, help="Every page works on this run's snapshot chosen below.")
        if choice != current:
            _ui.select_run(choice)
            st.rerun()
        st.radio("Snapshot", ["best", "latest"], key="snapshot_kind", horizontal=True,
                 help="Best: the weights with the best validation ELBO so far (the latest until the first epoch "
                      "ends, or when the run holds out no validation set). Latest: the newest weights, mid-epoch "
                      "included, as training moves them.")
        st.fragment(run_status_line, run_every=_ui.refresh_every(choice))(choice)
    else:
        st.caption("No runs yet: start one on the Train page.")

page.run()
