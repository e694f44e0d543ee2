"""Lab: does one latent dimension move one factor? MIG and DCI on the shapes set, where the true
factors are known, computed by ``vae_core.labs.disentangle`` on the selected run's latest snapshot."""
import streamlit as st

from pages import _ui
from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from vae_core.labs import disentangle as dis
from vae_core.runs.manager import new_run_config

# What the "train a shapes model" button starts: an MLP (a conv body is ~10x slower per epoch on a
# CPU), β = 4 as in Higgins et al. (2017) to press the code towards independent dims, a few epochs.
SHAPES_RUN = {"model": {"body": "mlp", "latent_dim": 8}, "train": {"beta": 4.0, "epochs": 5}}

m = _ui.manager()
st.title("Disentanglement")
st.caption("The shapes set is drawn from five known factors: shape, scale, rotation, x and y. A disentangled "
           "code gives each factor its own latent dimension. Here we measure how close the selected run comes.")


def shapes_runs() -> list[str]:
    """Runs trained on the shapes set (a run with an unreadable config is none of them)."""
    return [r.name for r in m.list_runs() if r.config and r.config.train.dataset.split(":")[0].strip().lower() == "shapes"]


def offer_shapes_run(name: str | None, others: list[str]) -> None:
    if name:
        st.info(f"**{name}** was not trained on `shapes`, so there are no true factors to compare its latent "
                "dimensions with. Disentanglement can only be measured where the factors are known.")
    else:
        st.info("No model yet. This lab needs a run on the `shapes` dataset (ground-truth factors).")
    if others:
        pick = st.selectbox("Open a shapes run", others)
        if st.button("Open"):
            _ui.select_run(pick)
            st.rerun()
    if st.button("Train a shapes model (MLP, z = 8, β = 4, 5 epochs, about a minute)", type="primary"):
        res = m.start(new_run_config("shapes", **SHAPES_RUN))
        _ui.select_run(res.name)
        _ui.flash(res.message)
        st.rerun()


@_ui.per_snapshot(max_entries=8, spinner="Encoding 10,000 images and fitting the DCI forests…")
def factor_report(snap, *, data) -> dis.FactorReport:
    return dis.factor_report(snap.model, data.x_train, data.factors_train.numpy(), data.factor_names)


def show_report(report: dis.FactorReport) -> None:
    if warning := text.code_warning(report):
        st.warning(warning)
    c = st.columns(4)
    c[0].metric("MIG", f"{report.mig.score:.2f}", help="Mean over factors of the MI gap between the two best dims, / H(factor). 1 = perfectly separated.")
    c[1].metric("DCI disentanglement", f"{report.dci.disentanglement:.2f}", help="Does each dimension serve one factor? (Eastwood & Williams 2018)")
    c[2].metric("DCI completeness", f"{report.dci.completeness:.2f}", help="Is each factor served by one dimension?")
    c[3].metric("DCI informativeness", f"{report.dci.informativeness:.2f}", help="Held-out accuracy of predicting each factor from the code.")

    left, right = st.columns([3, 2])
    left.plotly_chart(figs.mutual_information(report), width="stretch", key="mi")
    right.markdown(text.how_to_read_mi(report))

    st.subheader("Which dimension moves each factor")
    st.caption("Each row sweeps the factor's best dimension over the range the data uses (2nd to 98th percentile of "
               "its mean), with the other dimensions held at a typical image's code.")
    for k in range(len(report.factor_names)):
        head, caption = text.factor_row(report, k)
        a, b = st.columns([1, 4], vertical_alignment="center")
        a.markdown(head)
        b.image(_ui.grid(report.traversals[k], ncols=report.traversals.shape[1], target_px=56), caption=caption)

    with st.expander("DCI importance matrix (random-forest feature importances)"):
        st.plotly_chart(figs.dci_importance(report), width="stretch", key="imp")
        st.caption("Per-factor prediction accuracy: " + ", ".join(
            f"{n} {a:.2f}" for n, a in zip(report.factor_names, report.dci.accuracy)))


_ui.show_flash()
name, shapes = _ui.selected_run(), shapes_runs()
if name not in shapes:
    offer_shapes_run(name, shapes)
    st.stop()
snap = _ui.require_snapshot("Disentanglement")
data = _ui.run_dataset(snap) if snap is not None else None
if data is None:
    st.stop()
_ui.snapshot_caption(name, snap)
if data.factors_train is None:
    st.error("The shapes dataset came without its factors; the metrics need them.")
    st.stop()
if m.status(name).active:
    st.caption("The run is still training: the numbers are for this snapshot.")
    st.button("Measure the latest snapshot")
with _ui.guard("Could not measure disentanglement on this run"):
    show_report(factor_report(snap, data=data))
