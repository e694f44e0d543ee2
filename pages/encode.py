"""Encode your image: upload or draw a picture, see it as the model sees it, its posterior and
reconstruction, where it lands in latent space and which training images it is closest to. On a
topic model: paste or upload a text, see its topic mixture and the nearest posts (``_ui.text_explore``).

Session state (``_ui.state``): ENCODED_UPLOAD, the last successful encode (drawn as a star on
Latent space); TRAVERSE_BASE, set by "Traverse from this image"; the last import per input
(``encode_memo``), so a rerun does not import the same bytes again.
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import figures as figs
from pages._ui import state, text_explore
from vae_core import explore
from vae_core.data.upload import ImportedImage, import_array, import_image

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
CANVAS_PX = 280
MAX_SCATTER = 5000  # test codes drawn on the scatter (enough to show the clusters)
N_NEIGHBOURS = 8
STAR = dict(symbol="star", size=26, color="#111", line=dict(color="white", width=2))

text_explore.route(text_explore.encode_page)  # a topic model: its own page, then stop
st.title("Encode your image")
run, snap, data = _ui.page_context("Encode your image")
model, D = snap.model, snap.model.latent_dim
_ui.snapshot_caption(run, snap)
kind = "a handwritten digit" if data.preprocess == "digit" else "a picture like the training images"
st.caption(f"Upload or draw {kind}. It is turned into a {data.image_shape[1]}×{data.image_shape[2]} "
           f"{'colour' if data.image_shape[0] == 3 else 'grey'} input, encoded to q(z|x) and decoded again.")


@_ui.per_snapshot(max_entries=4, progress="Encoding the training set")
def train_codes(snap, *, x, progress) -> np.ndarray:
    """Posterior means of the whole training set (an ImageSet, read a batch at a time), (N, D),
    for the nearest neighbours: encoded on the first image, so that opening the page costs
    nothing more than the test set's summary; only the codes are kept, never the images."""
    return explore.posterior_means(snap.model, x, progress=progress)


with _ui.guard("Could not encode the test set") as g:
    ets = _ui.encoded_test_set(snap, x_test=data.x_test)  # same dim order as Traverse's sliders
if g.failed:
    st.stop()
class_names = list(data.class_names or [])


def label(y: int) -> str:
    """A class name, the label number, or "" for unlabelled data (y = -1)."""
    return figs.group_name(y, class_names) if y >= 0 else ""


def imported(source: str, payload: bytes, convert) -> ImportedImage:
    """Import once per distinct input (by content hash), kept in session state only."""
    key = (hashlib.sha1(payload).hexdigest(), data.image_shape, data.preprocess)
    memo = state.encode_memo(source)
    if (kept := memo.get()) is None or kept.key != key:
        memo.set(kept := state.Memo(key, convert()))
    return kept.value


@_ui.guarded("Could not encode this image")
def show_results(image: ImportedImage, source: str) -> None:
    """Everything about one imported image; source ("upload" or "draw") keeps widget keys apart."""
    x = image.tensor  # (C, H, W), what the model sees
    codes, rec = explore.encode(model, x), explore.reconstruct(model, x)
    mu, sigma = codes.mu[0], codes.sigma[0]  # (D,)
    state.ENCODED_UPLOAD.set(state.EncodedUpload(run, mu.tolist(), sigma.tolist(), "your image"))

    c_orig, c_in, c_rec = st.columns(3)
    if source == "upload":  # a drawing is already on screen, right above
        c_orig.markdown("**Your image**")
        c_orig.image(image.original, width=min(224, image.original.shape[1]))
    c_in.markdown("**As the model sees it**")
    c_in.image(_ui.picture(x.numpy(), 224), width=224)
    c_in.caption(f"{data.image_shape[1]}×{data.image_shape[2]} · {data.preprocess} preprocessing"
                 + "".join(f"  \n· {n}" for n in image.notes))
    c_rec.markdown("**Reconstruction**")
    c_rec.image(_ui.picture(rec.mean[0], 224), width=224)
    c_rec.caption(f"Decoder mean at μ · −ELBO {rec.per_example_loss[0]:.1f} nats "
                  f"(KL {rec.kl[0]:.1f}, reconstruction {-rec.log_likelihood[0]:.1f})")
    if c_rec.button("Traverse from this image", key=f"encode_traverse_{source}", type="primary"):
        _ui.traverse_from(state.TraverseBase(run, mu.tolist(), "your image", x.numpy().tolist()))

    c_bar, c_map = st.columns(2)
    c_bar.plotly_chart(figs.code_bars(mu, sigma, "Posterior q(z|x): μ ± σ per dim (grey band: prior ±1σ; grey bars: "
                                      "collapsed)", ets.summary.order, ets.summary.active, prior_band=True, height=300),
                       width="stretch", key=f"encode_bars_{source}")
    ids = _ui.spread(len(data.x_test), MAX_SCATTER)
    labels = data.y_test[ids].numpy()
    view = figs.code_view(ets.codes.mu[ids], labels, ets.pca, mu)
    errors = (float(sigma[0]), float(sigma[1]) if D == 2 else None) if D <= 2 else (None, None)
    c_map.plotly_chart(figs.codes_with_points(view, labels, class_names, name="your image", marker=STAR, errors=errors,
                                              row_label="you", height=380), width="stretch", key=f"encode_map_{source}")
    c_map.caption(f"{view.note} The star is your image" + ("; its bars are ±1 posterior σ." if D <= 2 else "."))

    idx, dist = explore.nearest_neighbours(train_codes(snap, x=data.x_train), mu, N_NEIGHBOURS)
    st.markdown("**Nearest training images** (d: Euclidean distance between posterior means)")
    # One column per neighbour: equal sizes whatever the caption lengths.
    for col, i, d in zip(st.columns(N_NEIGHBOURS), idx, dist):  # only these k images are read
        col.image(_ui.picture(data.x_train[int(i)].numpy(), 112), width="stretch",
                  caption=" · ".join(filter(None, [label(int(data.y_train[i])), f"d {d:#.3g}"])))


# Stateful tabs: only the open tab's image is analysed, but both inputs keep their content.
tab_up, tab_draw = st.tabs(["Upload", "Draw"], key="encode_tab", on_change="rerun")

with tab_up:
    f = st.file_uploader("An image file", type=UPLOAD_TYPES, key="encode_file",
                         help="A photo or scan works: the background is removed, the polarity fixed "
                              "and the content centred as in the training data.")
    if f is not None and tab_up.open is not False:
        payload = f.getvalue()
        with _ui.guard("Could not read this image") as g:
            image = imported("upload", payload, lambda: import_image(payload, data.image_shape, data.preprocess))
        if not g.failed:
            show_results(image, "upload")

with tab_draw:
    with _ui.guard("The drawing pad is not available here", show=False) as pad:
        from streamlit_drawable_canvas import st_canvas

        canvas = st_canvas(stroke_width=18, stroke_color="#ffffff", background_color="#000000", height=CANVAS_PX,
                           width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True, key="encode_canvas")
    if pad.failed:  # the component may not load, or not render, in this Streamlit version
        st.warning(f"The drawing pad is not available here ({type(pad.error).__name__}: {pad.error}). "
                   "Upload an image instead.")
    else:
        # Below the canvas: its toolbar floats over whatever sits right above it.
        st.caption("Draw with the mouse (white on black, like MNIST); the result updates when you lift "
                   "the pen. The bin icon clears the pad.")
        drawing, objects = canvas.image_data, (canvas.json_data or {}).get("objects")
        if drawing is not None and objects and tab_draw.open is not False:
            arr = np.ascontiguousarray(drawing)
            with _ui.guard("Could not use this drawing") as g:
                image = imported("draw", arr.tobytes() + str(arr.shape).encode(),
                                 lambda: import_array(arr, data.image_shape, data.preprocess))
            if not g.failed:
                show_results(image, "draw")
        elif drawing is not None:
            st.caption("Nothing drawn yet.")
