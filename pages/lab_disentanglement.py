"""Lab: does one latent dimension move one factor? MIG and DCI on the shapes set, where the true
factors are known, computed by ``vae_core.disentangle`` on the selected run's latest snapshot."""
import plotly.graph_objects as go
import streamlit as st

from pages import _ui
from vae_core.labs import disentangle as dis
from vae_core.runs import rundir as rd
from vae_core.data import parse_spec
from vae_core.runs.manager import new_run_config

# What the "train a shapes model" button starts: an MLP (a conv body is ~10x slower per epoch on a
# CPU), β = 4 as in Higgins et al. (2017) to press the code towards independent dims, a few epochs.
SHAPES_RUN = {"model": {"body": "mlp", "latent_dim": 8}, "train": {"beta": 4.0, "epochs": 5}}

UNKNOWN_BELOW = 0.05  # a factor whose best dim has less than 5% of its entropy is "not encoded"

m = _ui.manager()
st.title("Disentanglement")
st.caption("The shapes set is drawn from five known factors: shape, scale, rotation, x and y. A disentangled "
           "code gives each factor its own latent dimension. Here we measure how close the selected run comes.")


def on_shapes(name: str) -> bool:
    try:
        return parse_spec(rd.read_config(m.path(name)).train.dataset)[0] == "shapes"
    except Exception:  # unreadable config or unknown dataset: not a shapes run
        return False


def offer_shapes_run(name: str | None) -> None:
    if name:
        st.info(f"**{name}** was not trained on `shapes`, so there are no true factors to compare its latent "
                "dimensions with. Disentanglement can only be measured where the factors are known.")
    else:
        st.info("No model yet. This lab needs a run on the `shapes` dataset (ground-truth factors).")
    others = [r.name for r in m.list_runs() if on_shapes(r.name)]
    if others:
        pick = st.selectbox("Open a shapes run", others)
        if st.button("Open"):
            _ui.select_run(pick)
            st.rerun()
    if st.button("Train a shapes model (MLP, z = 8, β = 4, 5 epochs, about a minute)", type="primary"):
        res = m.start(new_run_config("shapes", **SHAPES_RUN))
        _ui.select_run(res.name)
        st.session_state["_flash"] = res.message
        st.rerun()


@st.cache_resource(max_entries=8, show_spinner="Encoding 10,000 images and fitting the DCI forests…")
def _report(name: str, step: int, mtime: float) -> dis.FactorReport | None:
    snap = _ui.snapshot(name)
    data = _ui.run_dataset(snap) if snap else None
    if data is None or data.factors_train is None:
        return None
    return dis.factor_report(snap.model, data.x_train, data.factors_train.numpy(), data.factor_names)


def heatmap(r: dis.FactorReport) -> go.Figure:
    mi = r.mig.normalized_mi.T  # (K, D): factors down, dims across
    dims = [f"z{d}<br>{r.kl_per_dim[d]:.1f} nats" for d in range(mi.shape[1])]
    fig = go.Figure(go.Heatmap(z=mi, x=dims, y=list(r.factor_names), zmin=0, zmax=1, colorscale="Blues",
                               text=[[f"{v:.2f}" for v in row] for row in mi], texttemplate="%{text}",
                               colorbar=dict(title="I/H")))
    fig.update_layout(title="Normalised mutual information I(z_d; v_k) / H(v_k)", height=330,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"))
    return fig


if msg := st.session_state.pop("_flash", None):
    st.toast(msg)

name = _ui.selected_run()
if name is None or not on_shapes(name):
    offer_shapes_run(name)
    st.stop()
snap = _ui.require_snapshot("Disentanglement")
if snap is None:
    st.stop()
_ui.snapshot_caption(name, snap)
report = _report(name, snap.step, snap.mtime)
if report is None:
    st.error("The shapes dataset came without its factors; the metrics need them.")
    st.stop()
if m.status(name).active:
    st.caption("The run is still training: the numbers are for this snapshot.")
    st.button("Measure the latest snapshot")

c = st.columns(4)
c[0].metric("MIG", f"{report.mig.score:.2f}", help="Mean over factors of the MI gap between the two best dims, / H(factor). 1 = perfectly separated.")
c[1].metric("DCI disentanglement", f"{report.dci.disentanglement:.2f}", help="Does each dimension serve one factor? (Eastwood & Williams 2018)")
c[2].metric("DCI completeness", f"{report.dci.completeness:.2f}", help="Is each factor served by one dimension?")
c[3].metric("DCI informativeness", f"{report.dci.informativeness:.2f}", help="Held-out accuracy of predicting each factor from the code.")

left, right = st.columns([3, 2])
left.plotly_chart(heatmap(report), width="stretch", key="mi")
right.markdown(
    "**How to read it.** Each cell says how much of a factor's uncertainty one latent dimension removes "
    "(1 = knowing z_d tells you the factor exactly). Disentangled means one bright cell per row, in "
    "different columns. **MIG** (Chen et al. 2018) takes, per factor, the best dimension's share minus the "
    "runner-up's: two dims that both know x score 0, however much they know. **DCI** (Eastwood & Williams "
    "2018) asks a small random forest to predict each factor from the code and checks whether its "
    "importances concentrate. Collapsed dims (≈0 nats of KL) carry nothing and stay pale.\n\n"
    "Don't expect miracles from a short run: a larger β presses the code towards independent dims, but "
    "does not by itself guarantee one factor per dim (Locatello et al. 2019). Compare runs with different β.\n\n"
    f"Measured on {report.n:,} training images. MI uses one draw z ~ q(z|x) per image, binned into "
    f"{dis.DEFAULT_BINS} bins (the code the decoder receives, so a collapsed dim cannot look informative); "
    "DCI's forests read the means.")

st.subheader("Which dimension moves each factor")
st.caption("Each row sweeps the factor's best dimension over the range the data uses (2nd to 98th percentile of "
           "its mean), with the other dimensions held at a typical image's code.")
for k, fname in enumerate(report.factor_names):
    d, d2 = int(report.mig.top[k]), int(report.mig.second[k])
    a, b = st.columns([1, 4], vertical_alignment="center")
    second = f", then z{d2} {report.mig.normalized_mi[d2, k]:.2f}" if d2 >= 0 else ""
    known = report.mig.normalized_mi[d, k] >= UNKNOWN_BELOW
    head = f"**{fname}** → z{d}" if known else f"**{fname}** → no dimension"
    a.markdown(f"{head}  \nI/H {report.mig.normalized_mi[d, k]:.2f}{second}  \ngap {report.mig.gap[k]:.2f}")
    span = f"z{d} from {report.traversal_values[k][0]:.2f} to {report.traversal_values[k][-1]:.2f}"
    b.image(_ui.grid(report.traversals[k], ncols=report.traversals.shape[1], target_px=56),
            caption=span if known else f"{span}: its best dimension, which knows next to nothing about {fname}")

with st.expander("DCI importance matrix (random-forest feature importances)"):
    imp = report.dci.importance.T  # (K, D)
    fig = go.Figure(go.Heatmap(z=imp, x=[f"z{d}" for d in range(imp.shape[1])], y=list(report.factor_names),
                               colorscale="Greens", zmin=0, text=[[f"{v:.2f}" for v in row] for row in imp],
                               texttemplate="%{text}"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(autorange="reversed"))
    st.plotly_chart(fig, width="stretch", key="imp")
    st.caption("Per-factor prediction accuracy: " + ", ".join(
        f"{n} {a:.2f}" for n, a in zip(report.factor_names, report.dci.accuracy)))
