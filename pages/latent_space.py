"""Latent space: where the encoder puts the test set, what each region decodes to, and which
latent dimensions the model actually uses.

Session state read and written here (shared with the Traverse and Encode pages):
  selected_point  {"run", "index"}: the clicked test image (global test-set index)
  traverse_base   {"run", "z", "label", "image"}: set by "Traverse from here"
  encoded_upload  {"run", "z", "label"}: set by the Encode page; drawn here as a star
Private to this page: ls_method, ls_dim_x, ls_dim_y, ls_ellipses (widgets), ls_scatter (the
chart's selection), _ls_tsne (the t-SNE layout in use, see tsne_layout).
"""
from dataclasses import astuple

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitAPIException

from pages import _ui
from vae_core import explore

MAX_POINTS = 1000  # test codes on the scatter: plenty to see structure, and t-SNE stays ~10 s
N_ELLIPSES = 60
ACTIVE, INACTIVE = "#1f77b4", "#c7c7c7"

st.title("Latent space")
name, snap, data = _ui.page_context("Latent space")

st.caption("The encoder maps each test image x to a Gaussian q(z|x) = N(μ, σ²). Each dot is one image's μ, "
           "coloured by its class. Click a dot to see the image, its reconstruction and its code.")

ids = _ui.spread(len(data.x_test), MAX_POINTS)  # global test indices of the plotted points
x_shown = data.x_test[ids]
y_shown = data.y_test[ids].numpy()
class_names = list(data.class_names or [])


def _class(i: int) -> str:
    """Readable class of global test example i: "digit 7", "Trouser", or "" when unlabelled."""
    y = int(data.y_test[i])
    if not (0 <= y < len(class_names)):
        return ""
    c = class_names[y]
    return f"digit {c}" if c.isdigit() else c


# --- cached per snapshot: (run, step, mtime) names the weights; _args stay out of the key --
# The cached values are plain tuples of arrays, rebuilt into the engine's dataclasses on the
# way out: a pickled dataclass breaks when Streamlit reloads vae_core after an edit on disk.
@st.cache_data(max_entries=16, show_spinner=False)
def _cached_codes(run: str, step: int, mtime: float, _model, _x) -> tuple:
    return astuple(explore.encode(_model, _x))


@st.cache_data(max_entries=8, show_spinner=False)
def _cached_tsne(run: str, step: int, mtime: float, _mu: np.ndarray) -> tuple:
    return astuple(explore.project_2d(_mu, "tsne", seed=0))


def _codes(run: str, s, x) -> explore.Codes:
    return explore.Codes(*_cached_codes(run, s.step, s.mtime, s.model, x))


@st.cache_data(max_entries=8, show_spinner=False)
def _manifold(run: str, step: int, mtime: float, dims: tuple[int, int], _model) -> tuple[np.ndarray, np.ndarray]:
    n = 15 if _model.input_spec.shape[1] <= 32 else 10
    return explore.manifold_grid(_model, n=n, dims=dims)


def tsne_layout(run: str, s, codes: explore.Codes) -> tuple[explore.Projection, np.ndarray, str]:
    """The t-SNE projection to show, the codes it was computed from, and a caption.

    t-SNE takes seconds, so it is not redone on every snapshot of a training run: the layout
    stays pinned to the snapshot it was computed on until the user asks for an update. Once
    the run is no longer training it follows the (now final) snapshot by itself.
    """
    pinned = st.session_state.get("_ls_tsne")
    training = _ui.refresh_every(run) is not None
    stale = pinned is None or pinned["run"] != run or len(pinned["mu"]) != len(codes.mu)
    behind = pinned is not None and not stale and pinned["step"] != s.step
    update = training and behind and st.button("Update t-SNE to the latest snapshot", key="ls_tsne_update")
    if stale or update or (behind and not training):
        with st.spinner(f"Running t-SNE on {len(codes.mu):,} codes (this takes a few seconds)…"):
            proj = explore.Projection(*_cached_tsne(run, s.step, s.mtime, codes.mu))
        pinned = {"run": run, "step": s.step, "epoch": s.epoch, "mu": codes.mu, "proj": proj}
        st.session_state["_ls_tsne"] = pinned
    note = (f" Computed on the snapshot at step {pinned['step']:,} (epoch {pinned['epoch']}); t-SNE is slow, so while "
            "the run trains it stays there until you press the update button." if training else "")
    return pinned["proj"], pinned["mu"], note


def strip_y(labels: np.ndarray) -> np.ndarray:
    """Display-only y for a 1-D latent: one row per class plus a fixed small jitter, so dots don't hide each other."""
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(labels))
    return np.maximum(labels, 0) + jitter


def scatter(xy, labels, sel_pos, star, ellipses, square, equal_axes, revision) -> go.Figure:
    fig = go.Figure()
    groups = [(k, class_names[k]) for k in np.unique(labels) if 0 <= k < len(class_names)] or [(None, "test images")]
    for k, label in groups:
        m = np.ones(len(labels), bool) if k is None else labels == k
        fig.add_scatter(
            x=xy[m, 0], y=xy[m, 1], mode="markers", name=label, marker=dict(size=6, opacity=0.75),
            # the global test index rides along with each point: point indices are per trace
            customdata=[[int(i), _class(int(i))] for i in ids[m]],
            hovertemplate="test image #%{customdata[0]} %{customdata[1]}<br>(%{x:.2f}, %{y:.2f})<extra></extra>")
    for j, (ex, ey) in enumerate(ellipses):
        fig.add_scatter(x=ex, y=ey, mode="lines", line=dict(width=1, color="rgba(60,60,60,0.45)"), hoverinfo="skip",
                        name="1σ of q(z|x)", legendgroup="ell", showlegend=j == 0)
    if square is not None:
        lo, hi = square
        fig.add_shape(type="rect", x0=lo, x1=hi, y0=lo, y1=hi, line=dict(dash="dash", width=1, color="grey"))
    if sel_pos is not None:
        fig.add_scatter(x=[sel_pos[0]], y=[sel_pos[1]], mode="markers", name="selected", hoverinfo="skip",
                        marker=dict(size=16, symbol="circle-open", color="black", line=dict(width=2)))
    if star is not None:
        fig.add_scatter(x=[star[0][0]], y=[star[0][1]], mode="markers", name=star[1], hoverinfo="skip",
                        marker=dict(size=20, symbol="star", color="gold", line=dict(width=1.5, color="black")))
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10), legend=dict(title="class"),
                      uirevision=revision, clickmode="event+select")  # uirevision keeps zoom across refreshes
    if equal_axes:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def on_pick(run: str):
    """Remember the clicked point's global test index: the live figure changes on every
    refresh and would drop its own selection."""
    def handler() -> None:
        state = st.session_state.get("ls_scatter") or {}
        for p in (state.get("selection") or {}).get("points", []):
            cd = p.get("customdata")
            if isinstance(cd, (list, tuple)) and cd and isinstance(cd[0], (int, float)):
                st.session_state["selected_point"] = {"run": run, "index": int(cd[0])}
                return
    return handler


# --- the live part ---------------------------------------------------------------------
def live(run: str) -> None:
    _ui.rerun_when_run_ends(run)
    s = _ui.snapshot(run)
    if s is None:
        return
    _ui.snapshot_caption(run, s)
    d = s.config.model.latent_dim
    try:
        codes = _codes(run, s, x_shown)
        summary = _ui.encoded_test_set(s, x_test=data.x_test).summary
    except Exception as e:
        st.error(f"Could not encode the test set with this snapshot: {e}")
        return
    shown = f"{len(ids):,} test images" + (f" (evenly spread over all {len(data.x_test):,})" if len(ids) < len(data.x_test) else "")

    # Which 2-D view: fixed for 1-D and 2-D latents, the user's choice above that.
    method, dims = ("strip", (0,)) if d == 1 else ("identity", (0, 1)) if d == 2 else (None, None)
    if method is None:
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        choice = c1.radio("View", ["PCA", "t-SNE", "two latent dims"], horizontal=True, key="ls_method",
                          help="PCA: the two directions of largest spread (linear, fast). t-SNE: a non-linear "
                               "map that keeps neighbours together (slow; distances between clusters mean little). "
                               "Two latent dims: the raw coordinates of two chosen dims.")
        method = {"PCA": "pca", "t-SNE": "tsne", "two latent dims": "dims"}[choice]
        if method == "dims":
            # Defaults (the two most informative dims) go through session state, not index=, so a
            # ranking that shifts while the run trains never resets the user's choice; a choice
            # out of range for this run's latent size falls back to the default.
            top = [int(k) for k in summary.order[:2]]
            for key, default in (("ls_dim_x", top[0]), ("ls_dim_y", top[1])):
                if st.session_state.get(key) not in range(d):
                    st.session_state[key] = default
            a = c2.selectbox("x: latent dim", range(d), key="ls_dim_x", format_func=lambda k: f"z{k}")
            b = c3.selectbox("y: latent dim", range(d), key="ls_dim_y", format_func=lambda k: f"z{k}")
            dims = (a, b)

    try:
        mu_for_xy = codes.mu
        tsne_note = ""
        if method == "tsne":
            proj, mu_for_xy, tsne_note = tsne_layout(run, s, codes)
        else:
            # a 1-D model gets the engine's strip whatever is asked ("auto" says so)
            proj = explore.project_2d(codes.mu, "auto" if method == "strip" else method, dims=dims if method == "dims" else (0, 1))
    except Exception as e:
        st.error(f"Could not project the codes: {e}")
        return

    xy = proj.xy.copy()
    if proj.method == "strip":
        xy[:, 1] = strip_y(y_shown)
    caption = _view_caption(proj, d, shown, tsne_note)

    # Optional extras in raw latent coordinates: σ ellipses, the manifold grid, the upload star.
    raw_axes = proj.method in ("identity", "dims")
    ellipses, square, manifold = [], None, None
    if raw_axes:
        if st.checkbox("σ ellipses", key="ls_ellipses", help=f"The 1σ outline of q(z|x) for {N_ELLIPSES} test images: "
                       "how uncertain the encoder is about each code."):
            ellipses = explore.sigma_ellipses(codes, _ui.spread(len(ids), N_ELLIPSES), dims=proj.dims)
        try:
            if proj.dims[0] != proj.dims[1]:  # one dim against itself has no 2-D manifold
                manifold = _manifold(run, s.step, s.mtime, tuple(proj.dims), s.model)
                square = (float(manifold[1][0]), float(manifold[1][-1]))
        except Exception as e:
            st.error(f"Could not decode the manifold grid: {e}")
    star = _upload_star(run, proj, mu_for_xy, xy, dims)
    sel = st.session_state.get("selected_point")
    sel_index = sel["index"] if isinstance(sel, dict) and sel.get("run") == run else None
    hit = np.flatnonzero(ids == sel_index) if sel_index is not None else []
    sel_pos = xy[hit[0]] if len(hit) else None

    fig = scatter(xy, y_shown, sel_pos, star, ellipses, square, equal_axes=proj.method in ("identity", "dims", "pca"),
                  revision=f"{run}-{proj.method}-{proj.dims}")
    if proj.method == "strip" and class_names:
        fig.update_yaxes(tickvals=list(range(len(class_names))), ticktext=class_names, title="class")
        fig.update_xaxes(title="μ (latent dim z0)")
    elif raw_axes:
        fig.update_xaxes(title=f"z{proj.dims[0]}")
        fig.update_yaxes(title=f"z{proj.dims[1]}")
    left, right = st.columns([3, 2]) if manifold is not None else (st.container(), None)
    with left:
        st.plotly_chart(fig, width="stretch", key="ls_scatter", on_select=on_pick(run), selection_mode="points")
        # the engine's note on a strip says y is 0; the page's own caption explains its rows instead
        st.caption(caption + (f" {proj.note}" if proj.note and proj.method != "strip" else ""))
    if right is not None:
        with right:
            images, vals = manifold
            st.image(_ui.grid(images, target_px=32), width="stretch", output_format="PNG")  # JPEG would blur the pixels
            rest = " with every other dim at 0" if d > 2 else ""
            st.caption(f"**The decoded manifold** (Kingma & Welling, fig. 4): decoder means on a {len(vals)}×{len(vals)} "
                       f"grid from {vals[0]:.2f} to {vals[-1]:.2f} on z{proj.dims[0]} (across) and z{proj.dims[1]} (up)"
                       f"{rest}, at evenly spaced prior quantiles. The dashed square marks the same region on the scatter.")

    _selected(run, s, sel_index)
    _kl_bars(summary, d, len(ids))


def _view_caption(proj: explore.Projection, d: int, shown: str, tsne_note: str) -> str:
    """Says which view is on screen (the tests look for the method's name here)."""
    if proj.method == "strip":
        return (f"**Strip** (the model has a single latent dim): x is μ, and each class gets its own row, with a "
                f"little vertical jitter so dots don't overlap. {shown}.")
    if proj.method == "identity":
        return f"**The codes themselves**: the latent space is 2-D, so μ is plotted directly. {shown}."
    if proj.method == "dims":
        return f"**Two latent dims**: z{proj.dims[0]} across, z{proj.dims[1]} up (the other {d - 2} dims are not shown). {shown}."
    if proj.method == "pca":
        ev = ", ".join(f"{v:.0%}" for v in proj.explained_variance or ())
        return f"**PCA** of the {d}-dim codes μ: the two axes explain {ev} of their variance. {shown}."
    return (f"**t-SNE** of the {d}-dim codes μ (perplexity 30, seed 0): nearby dots have similar codes; the axes "
            f"have no units and distances between clusters mean little. {shown}.{tsne_note}")


def _upload_star(run, proj, mu_for_xy, xy, dims):
    """Position of the Encode page's upload in the current view, or None."""
    up = st.session_state.get("encoded_upload")
    if not isinstance(up, dict) or up.get("run") != run:
        return None
    try:
        z = np.asarray(up["z"], np.float32).reshape(-1)
        if proj.method == "strip":
            pos = (float(z[0]), -1.0)
        elif proj.method in ("identity", "dims"):
            pos = (float(z[proj.dims[0]]), float(z[proj.dims[1]]))
        elif proj.method == "pca":
            pos = tuple(explore.pca_fit(mu_for_xy).transform(z)[0])
        else:
            pos = tuple(explore.place_new_points_tsne(mu_for_xy, xy, z)[0])
        return pos, up.get("label") or "your image"
    except Exception:  # a stale upload from another model size: just leave it out
        return None


def _selected(run: str, s, index: int | None) -> None:
    st.subheader("Selected point")
    if index is None or not 0 <= index < len(data.x_test):
        st.info("Click a dot in the scatter to see its image, its reconstruction and its code here.")
        return
    x = data.x_test[index : index + 1]
    try:
        code = explore.encode(s.model, x)
        rec = explore.reconstruct(s.model, x)
    except Exception as e:
        st.error(f"Could not encode test image #{index}: {e}")
        return
    label = f"test image #{index}" + (f" ({_class(index)})" if _class(index) else "")
    c_in, c_rec, c_code = st.columns([1, 1, 3])
    # Width pinned to the picture's own size: a caption wider than the picture would stretch it.
    pic_in, pic_rec = _ui.picture(x[0].numpy(), 140), _ui.picture(rec.mean[0], 140)
    c_in.image(pic_in, caption=label, width=pic_in.shape[1], output_format="PNG")
    c_rec.image(pic_rec, caption="reconstruction (mean)", width=pic_rec.shape[1], output_format="PNG")
    c_rec.caption(f"loss {rec.per_example_loss[0]:.1f} nats")
    d = len(code.mu[0])
    bars = go.Figure(go.Bar(x=[f"z{k}" for k in range(d)], y=code.mu[0],
                            error_y=dict(type="data", array=code.sigma[0], thickness=1.2),
                            hovertemplate="%{x}: μ = %{y:.2f} ± %{error_y.array:.2f}<extra></extra>"))
    bars.update_layout(height=240, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="code: μ ± σ per latent dim", font_size=13),
                       yaxis_title="prior σ units")
    c_code.plotly_chart(bars, width="stretch", key="ls_code")
    if st.button("Traverse from here", type="primary", key="ls_traverse",
                 help="Open the Traverse page with this image's code μ as the starting point."):
        st.session_state["traverse_base"] = {"run": run, "z": [float(v) for v in code.mu[0]], "label": label,
                                             "image": x[0].tolist()}
        try:
            st.switch_page("pages/traverse.py", query_params={"run": run})
        except StreamlitAPIException:  # the page is not there (yet): the base is kept for when it is
            st.info("The starting point is set; open the Traverse page to use it.")


def _kl_bars(summary: explore.LatentSummary, d: int, n: int) -> None:
    k = summary.n_active
    st.subheader(f"Per-dimension KL · {k} of {d} active")
    dim_names = [f"z{j}" for j in range(d)]
    fig = go.Figure()
    for on, colour, label in ((True, ACTIVE, "active"), (False, INACTIVE, "inactive")):
        m = summary.active == on
        if m.any():
            fig.add_bar(x=[dim_names[j] for j in np.flatnonzero(m)], y=summary.kl_per_dim[m], name=label, marker_color=colour,
                        hovertemplate="%{x}: %{y:.2f} nats<extra>" + label + "</extra>")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="KL (nats)", barmode="overlay", showlegend=True,
                      xaxis=dict(categoryorder="array", categoryarray=dim_names), legend=dict(orientation="h", y=1.1))
    st.plotly_chart(fig, width="stretch", key="ls_kl")
    st.caption(f"Mean KL(q(z_d|x) ‖ p(z_d)) over {n:,} test images: the nats each dim carries about the image. "
               "A dim is **active** when its mean μ varies across images (Var_x E_q[z_d] > 0.01, Burda et al. 2016); "
               "an inactive dim has collapsed to the prior and the decoder ignores it.")


st.fragment(live, run_every=_ui.refresh_every(name))(name)
