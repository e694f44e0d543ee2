"""Latent space: where the encoder puts the test set, what each region decodes to, and which
latent dimensions the model actually uses; for a topic model, the test documents by their topic
proportions, a click reading the post (``_ui.text_views``).

Session state (``_ui.state``): SELECTED_POINT (the clicked test image), TRAVERSE_BASE (set by
"Traverse from here"), ENCODED_UPLOAD (set by Encode, drawn here as a star), LS_TSNE (the
t-SNE layout in use) and the widgets ls_method, ls_dim_x, ls_dim_y, ls_ellipses, ls_scatter.
"""
import numpy as np
import streamlit as st

from pages import _ui
from pages._ui import figures as figs
from pages._ui import state, text_runs, text_views, views
from vae_core import explore

MAX_POINTS = 1000  # test codes on the scatter: plenty to see structure, and t-SNE stays ~10 s
N_ELLIPSES = 60

st.title("Latent space")
if (text := text_runs.text_page_context("Latent space")) is not None:
    text_views.latent_space(text)
    st.stop()
name, snap, data = _ui.page_context("Latent space")
st.caption("The encoder maps each test image x to a Gaussian q(z|x) = N(μ, σ²). Each dot is one image's μ, "
           "coloured by its class. Click a dot to see the image, its reconstruction and its code.")

ids = _ui.spread(len(data.x_test), MAX_POINTS)  # global test indices of the plotted points
y_shown = data.y_test[ids].numpy()
class_names = list(data.class_names or [])
shown = f"{len(ids):,} test images" + (f" (evenly spread over all {len(data.x_test):,})" if len(ids) < len(data.x_test) else "")


@_ui.per_snapshot(max_entries=8)
def manifold(snap, dims: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return explore.manifold_grid(snap.model, n=15 if snap.model.input_spec.shape[1] <= 32 else 10, dims=dims)


def on_pick(run: str):
    """Remember the clicked point's global test index: the live figure changes on every refresh
    and would drop its own selection."""
    def handler() -> None:
        for p in ((state.LS_SCATTER.get() or {}).get("selection") or {}).get("points", []):
            cd = p.get("customdata")
            if isinstance(cd, (list, tuple)) and cd and isinstance(cd[0], (int, float)):
                return state.SELECTED_POINT.set(state.SelectedPoint(run, int(cd[0])))
    return handler


# --- the live part ---------------------------------------------------------------------
def live(run: str) -> None:
    s = _ui.live_snapshot(run, data)
    if s is None:
        return
    d = s.model.latent_dim
    with _ui.guard("Could not encode the test set with this snapshot") as g:
        ets = _ui.encoded_test_set(s, x_test=data.x_test)
        codes = explore.Codes(ets.codes.mu[ids], ets.codes.sigma[ids])
    if g.failed:
        return
    method, dims = views.choose_view(d, ets.summary.order)
    with _ui.guard("Could not project the codes") as g:
        proj, mu_for_xy, note = views.project(run, s, method, dims, codes.mu)
    if g.failed:
        return
    xy = proj.xy.copy()
    if proj.method == "strip":
        xy[:, 1] = figs.strip_y(y_shown)

    # Extras in raw latent coordinates: σ ellipses and the manifold grid; the upload as a star.
    raw_axes = proj.method in ("identity", "dims")
    ellipses, square, grid = [], None, None
    if raw_axes and st.checkbox("σ ellipses", key="ls_ellipses", help=f"The 1σ outline of q(z|x) for {N_ELLIPSES} "
                                "test images: how uncertain the encoder is about each code."):
        ellipses = explore.sigma_ellipses(codes, _ui.spread(len(ids), N_ELLIPSES), dims=proj.dims)
    if raw_axes and proj.dims[0] != proj.dims[1]:  # one dim against itself has no 2-D manifold
        with _ui.guard("Could not decode the manifold grid"):
            grid = manifold(s, tuple(proj.dims))
            square = (float(grid[1][0]), float(grid[1][-1]))
    star = None
    if up := state.ENCODED_UPLOAD.for_run(run):
        with _ui.guard("The uploaded image does not fit this view", show=False):  # a stale upload: left out
            star = figs.position_in(proj, np.asarray(up.z, np.float32), mu_for_xy, xy), up.label
    sel = state.SELECTED_POINT.for_run(run)
    hit = np.flatnonzero(ids == sel.index) if sel else []
    axes = ("μ (latent dim z0)", "class") if proj.method == "strip" and class_names else (
        (f"z{proj.dims[0]}", f"z{proj.dims[1]}") if raw_axes else None)
    fig = figs.latent_scatter(xy, y_shown, ids, class_names, selected=xy[hit[0]] if len(hit) else None, star=star,
                              ellipses=ellipses, square=square, axes=axes, strip=proj.method == "strip",
                              equal_axes=proj.method in ("identity", "dims", "pca"), revision=f"{run}-{proj.method}-{proj.dims}")
    left, right = st.columns([3, 2]) if grid is not None else (st.container(), None)
    left.plotly_chart(fig, width="stretch", key=state.LS_SCATTER.key, on_select=on_pick(run), selection_mode="points")
    left.caption(views.caption(proj, d, shown, note))
    if right is not None:
        images, vals = grid
        right.image(_ui.grid(images, target_px=32), width="stretch", output_format="PNG")  # JPEG would blur the pixels
        right.caption(f"**The decoded manifold** (Kingma & Welling, fig. 4): decoder means on a {len(vals)}×{len(vals)} "
                      f"grid from {vals[0]:.2f} to {vals[-1]:.2f} on z{proj.dims[0]} (across) and z{proj.dims[1]} (up)"
                      f"{' with every other dim at 0' if d > 2 else ''}, at evenly spaced prior quantiles. "
                      "The dashed square marks the same region on the scatter.")
    selected(run, s, sel.index if sel else None)
    st.subheader(f"Per-dimension KL · {ets.summary.n_active} of {d} active")
    st.plotly_chart(figs.kl_bars(ets.summary.kl_per_dim, ets.summary.active), width="stretch", key="ls_kl")
    st.caption(f"Mean KL(q(z_d|x) ‖ p(z_d)) over the {len(data.x_test):,} test images: the nats each dim carries about "
               "the image. A dim is **active** when its mean μ varies across images (Var_x E_q[z_d] > 0.01, Burda et al. "
               "2016); an inactive dim has collapsed to the prior and the decoder ignores it.")


@_ui.guarded("Could not show the selected test image")
def selected(run: str, s, index: int | None) -> None:
    st.subheader("Selected point")
    if index is None or not 0 <= index < len(data.x_test):
        st.info("Click a dot in the scatter to see its image, its reconstruction and its code here.")
        return
    x = data.x_test[index : index + 1]
    code, rec = explore.encode(s.model, x), explore.reconstruct(s.model, x)
    label = f"test image #{index}" + (f" ({c})" if (c := figs.class_text(int(data.y_test[index]), class_names)) else "")
    c_in, c_rec, c_code = st.columns([1, 1, 3])
    # Width pinned to the picture's own size: a caption wider than the picture would stretch it.
    pic_in, pic_rec = _ui.picture(x[0].numpy(), 140), _ui.picture(rec.mean[0], 140)
    c_in.image(pic_in, caption=label, width=pic_in.shape[1], output_format="PNG")
    c_rec.image(pic_rec, caption="reconstruction (mean)", width=pic_rec.shape[1], output_format="PNG")
    c_rec.caption(f"loss {rec.per_example_loss[0]:.1f} nats")
    c_code.plotly_chart(figs.code_bars(code.mu[0], code.sigma[0], "code: μ ± σ per latent dim"), width="stretch", key="ls_code")
    if st.button("Traverse from here", type="primary", key="ls_traverse",
                 help="Open the Traverse page with this image's code μ as the starting point."):
        _ui.traverse_from(state.TraverseBase(run, [float(v) for v in code.mu[0]], label, x[0].tolist()))


st.fragment(live, run_every=_ui.refresh_every(name))(name)
