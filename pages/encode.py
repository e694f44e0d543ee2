"""Encode your image: upload or draw a picture, see it as the model sees it, its posterior and
reconstruction, where it lands in latent space and which training images it is closest to.

Session state this page writes (shared contract with Latent space and Traverse):
  encoded_upload  {"run", "z", "sigma", "label"}: the last successful encode (drawn as a star
                  on Latent space).
  traverse_base   {"run", "z", "label", "image"}: set by "Traverse from this image".
Nothing is cached per upload beyond the session: the file's bytes are re-read from the widget
and only the last import per input is kept in session state.
"""
from __future__ import annotations

import hashlib

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitAPIException

from pages import _ui
from vae_core import explore
from vae_core.data.upload import ImageImportError, ImportedImage, import_array, import_image

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
CANVAS_PX = 280
MAX_SCATTER = 5000  # test codes drawn on the scatter (enough to show the clusters)
N_NEIGHBOURS = 8


@st.cache_data(max_entries=4, show_spinner="Encoding the data set…")
def _dataset_codes(run: str, step: int, mtime: float, _model, _x_train, _x_test) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of the training set (for neighbours) and the test set (for the scatter)."""
    return explore.encode(_model, _x_train).mu, explore.encode(_model, _x_test).mu


def _label(data, y: int) -> str:
    """A class name, the label number, or "" for unlabelled data (y = -1)."""
    if data.class_names and 0 <= y < len(data.class_names):
        return data.class_names[y]
    return str(y) if y >= 0 else ""


def _imported(source: str, payload: bytes, convert) -> ImportedImage:
    """Import once per distinct input (by content hash), kept in session state only."""
    sig = (hashlib.sha1(payload).hexdigest(), data.image_shape, data.preprocess)
    memo = st.session_state.get(f"_encode_memo_{source}")
    if memo and memo[0] == sig:
        return memo[1]
    result = convert()
    st.session_state[f"_encode_memo_{source}"] = (sig, result)
    return result


# --- figures -------------------------------------------------------------------------------
def posterior_figure(mu: np.ndarray, sigma: np.ndarray, order: list[int], active: np.ndarray) -> go.Figure:
    names = [f"z{d}" for d in order]
    fig = go.Figure(go.Bar(
        x=names, y=mu[order], error_y=dict(type="data", array=sigma[order], thickness=1.5),
        marker_color=["#4c78a8" if active[d] else "#bbbbbb" for d in order],
        hovertemplate="%{x}: μ %{y:+.2f} ± %{error_y.array:.2f}<extra></extra>"))
    # The prior's ±1σ band: a posterior far outside it, or much narrower, is informative.
    fig.add_hrect(y0=-1, y1=1, fillcolor="#999", opacity=0.12, line_width=0)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      title=dict(text="Posterior q(z|x): μ ± σ per dim (grey band: prior ±1σ; grey bars: collapsed)",
                                 font=dict(size=13)),
                      xaxis=dict(type="category"), yaxis_title="z (prior σ)")
    return fig


def scatter_figure(test_mu: np.ndarray, labels: np.ndarray, z: np.ndarray, s: np.ndarray) -> tuple[go.Figure, str]:
    """Test codes coloured by label with the image as a star, on the same axes."""
    D = test_mu.shape[1]
    keep = _ui.spread(len(test_mu), MAX_SCATTER)
    mu, lab = test_mu[keep], labels[keep]
    err_x = err_y = None
    classes = sorted(set(lab.tolist()))
    if D == 1:
        # One dim: x is its value; each class gets its own row so the points don't pile up.
        row = {c: i for i, c in enumerate(classes)}
        xy = np.stack([mu[:, 0], np.array([row[c] for c in lab], np.float32)], 1)
        star = np.array([[z[0], -1.0]], np.float32)
        err_x = s[0]
        axes = ("z0", "class")
        note = "One latent dim: x is z0; rows separate the classes, the star's row is your image."
    elif D == 2:
        xy, star = mu, z[None, :2]
        err_x, err_y = s[0], s[1]
        axes = ("z0", "z1")
        note = "Two latent dims: the codes themselves. The star's bars are ±1 posterior σ."
    else:
        pca = explore.pca_fit(mu)  # fitted on the shown codes; the star goes on the same axes
        xy, star = pca.transform(mu), pca.transform(z[None])
        ev = pca.explained_variance
        axes = (f"PC1 ({ev[0]:.0%} of variance)", f"PC2 ({ev[1]:.0%})")
        note = f"{D} latent dims, shown on the first two principal axes of the test codes."
    fig = go.Figure()
    # An explicit qualitative palette: the theme's default pairs pale tints that vanish on white.
    palette = px.colors.qualitative.T10 if len(classes) <= 10 else px.colors.qualitative.Alphabet
    for i, c in enumerate(classes):
        m = lab == c
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(c) or "test images",
                                   marker=dict(size=5, opacity=0.6, color=palette[i % len(palette)]),
                                   hoverinfo="name"))
    # WebGL too: an SVG trace would be drawn underneath the WebGL points and hide in a dense cloud.
    fig.add_trace(go.Scattergl(
        x=star[:, 0], y=star[:, 1], mode="markers", name="your image",
        marker=dict(symbol="star", size=26, color="#111", line=dict(color="white", width=2)),
        error_x=dict(type="data", array=[err_x], color="#111") if err_x is not None else None,
        error_y=dict(type="data", array=[err_y], color="#111") if err_y is not None else None))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10), legend=dict(itemsizing="constant"),
                      xaxis_title=axes[0], yaxis_title=axes[1])
    if D == 1:
        fig.update_yaxes(tickvals=[-1] + list(range(len(classes))), ticktext=["you"] + [str(c) or "test" for c in classes])
    return fig, note


# --- results for one imported image --------------------------------------------------------
def show_results(imported: ImportedImage, source: str) -> None:
    """Everything about one imported image; source ("upload" or "draw") keeps widget keys apart."""
    x = imported.tensor  # (C, H, W), what the model sees
    try:
        codes = explore.encode(model, x)
        rec = explore.reconstruct(model, x)
    except Exception as e:
        st.error(f"The model could not encode this image: {e}")
        return
    mu, sigma = codes.mu[0], codes.sigma[0]  # (D,)
    st.session_state["encoded_upload"] = {"run": run, "z": mu.tolist(), "sigma": sigma.tolist(), "label": "your image"}

    c_orig, c_in, c_rec = st.columns(3)
    if source == "upload":  # a drawing is already on screen, right above
        with c_orig:
            st.markdown("**Your image**")
            st.image(imported.original, width=min(224, imported.original.shape[1]))
    with c_in:
        st.markdown("**As the model sees it**")
        st.image(_ui.picture(x.numpy(), 224), width=224)
        st.caption(f"{data.image_shape[1]}×{data.image_shape[2]} · {data.preprocess} preprocessing"
                   + ("".join(f"  \n· {n}" for n in imported.notes) if imported.notes else ""))
    with c_rec:
        st.markdown("**Reconstruction**")
        st.image(_ui.picture(rec.mean[0], 224), width=224)
        st.caption(f"Decoder mean at μ · −ELBO {rec.per_example_loss[0]:.1f} nats "
                   f"(KL {rec.kl[0]:.1f}, reconstruction {-rec.log_likelihood[0]:.1f})")
        if st.button("Traverse from this image", key=f"encode_traverse_{source}", type="primary"):
            st.session_state["traverse_base"] = {"run": run, "z": mu.tolist(), "label": "your image",
                                                 "image": x.numpy().tolist()}
            try:
                st.switch_page("pages/traverse.py", query_params={"run": run})
            except StreamlitAPIException:  # the page is not registered (a page run on its own)
                st.info("Base code set: open the Traverse page to move through it.")

    if summary is not None:
        order, active = [int(d) for d in summary.order], summary.active
    else:
        order, active = list(range(D)), np.ones(D, bool)
    c_bar, c_map = st.columns(2)
    with c_bar:
        st.plotly_chart(posterior_figure(mu, sigma, order, active), width="stretch", key=f"encode_bars_{source}")
    with c_map:
        if codes_all is None:
            st.info("The data set's codes are not available, so there is no map or neighbours.")
        else:
            try:
                fig, note = scatter_figure(codes_all[1], np.array([_label(data, int(y)) for y in data.y_test]),
                                           mu, sigma)
                st.plotly_chart(fig, width="stretch", key=f"encode_map_{source}")
                st.caption(note)
            except Exception as e:
                st.error(f"Could not draw the latent map: {e}")

    if codes_all is not None:
        try:
            idx, dist = explore.nearest_neighbours(codes_all[0], mu, N_NEIGHBOURS)
        except Exception as e:
            st.error(f"Could not find neighbours: {e}")
            return
        st.markdown("**Nearest training images** (d: Euclidean distance between posterior means)")
        # One column per neighbour: equal sizes whatever the caption lengths.
        for col, i, d in zip(st.columns(N_NEIGHBOURS), idx, dist):
            col.image(_ui.picture(data.x_train[i].numpy(), 112), width="stretch",
                      caption=" · ".join(filter(None, [_label(data, int(data.y_train[i])), f"d {d:#.3g}"])))


# --- page ----------------------------------------------------------------------------------
run, snap, data = _ui.page_context("Encode your image")
model = snap.model
D = model.latent_dim

st.title("Encode your image")
_ui.snapshot_caption(run, snap)
kind = "a handwritten digit" if data.preprocess == "digit" else "a picture like the training images"
st.caption(f"Upload or draw {kind}. It is turned into a {data.image_shape[1]}×{data.image_shape[2]} "
           f"{'colour' if data.image_shape[0] == 3 else 'grey'} input, encoded to q(z|x) and decoded again.")

try:
    summary = _ui.encoded_test_set(snap, x_test=data.x_test).summary  # same order as Traverse's sliders
except Exception as e:
    st.error(f"Could not measure the latent dimensions: {e}")
    summary = None
try:
    codes_all = _dataset_codes(run, snap.step, snap.mtime, model, data.x_train, data.x_test)
except Exception as e:
    st.error(f"Could not encode the data set: {e}")
    codes_all = None

# Stateful tabs: only the open tab's image is analysed, but both inputs keep their content.
tab_up, tab_draw = st.tabs(["Upload", "Draw"], key="encode_tab", on_change="rerun")

with tab_up:
    f = st.file_uploader("An image file", type=UPLOAD_TYPES, key="encode_file",
                         help="A photo or scan works: the background is removed, the polarity fixed "
                              "and the content centred as in the training data.")
    if f is not None and tab_up.open is not False:
        payload = f.getvalue()
        try:
            imported = _imported("upload", payload, lambda: import_image(payload, data.image_shape, data.preprocess))
        except ImageImportError as e:
            st.error(str(e))
        except Exception as e:  # anything else the decoder throws: still a message, never a crash
            st.error(f"Could not read this image: {e}")
        else:
            show_results(imported, "upload")

with tab_draw:
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as e:  # the component may not load in this Streamlit version
        st_canvas = None
        st.warning(f"The drawing pad is not available here ({type(e).__name__}: {e}). Upload an image instead.")
    if st_canvas is not None:
        try:
            canvas = st_canvas(stroke_width=18, stroke_color="#ffffff", background_color="#000000",
                               height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw",
                               return_image_data=True, key="encode_canvas")
            drawing = canvas.image_data
            # Below the canvas: its toolbar floats over whatever sits right above it.
            st.caption("Draw with the mouse (white on black, like MNIST); the result updates when you lift "
                       "the pen. The bin icon clears the pad.")
        except Exception as e:
            st.warning(f"The drawing pad failed to render ({type(e).__name__}: {e}). Upload an image instead.")
            drawing = None
        objects = (canvas.json_data or {}).get("objects") if drawing is not None else None
        if drawing is not None and objects and tab_draw.open is not False:
            arr = np.ascontiguousarray(drawing)
            try:
                imported = _imported("draw", arr.tobytes() + str(arr.shape).encode(),
                                     lambda: import_array(arr, data.image_shape, data.preprocess))
            except ImageImportError as e:
                st.error(str(e))
            except Exception as e:
                st.error(f"Could not use this drawing: {e}")
            else:
                show_results(imported, "draw")
        elif drawing is not None:
            st.caption("Nothing drawn yet.")
