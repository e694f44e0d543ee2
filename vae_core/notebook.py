"""What the notebook API (``api``) hands back, made to show itself in Jupyter: pure display code
on arrays, with no model and no run directory.

``Images`` is a numpy array of images (N, C, H, W), (R, V, C, H, W) or one (C, H, W) that
behaves exactly like the array it wraps and has a ``_repr_png_``, so a cell ending in
``run.decode(z)`` shows the pictures. ``codes_html`` is the small table ``Codes`` shows,
``png_bytes`` / ``png_data_uri`` encode a ``tile``d grid, and ``latent_figure`` is the
latent-space scatter as a plotly figure (plotly figures show themselves).
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Sequence

import numpy as np

from .explore import Codes, tile

TARGET_PX = 48  # a small image is upscaled (nearest neighbour) until its longer side reaches this
MAX_SHOWN = 64  # images drawn for one (N, C, H, W) array; a (R, V, ...) grid shows 16 rows x 32 columns at most
MAX_ROWS, MAX_COLS = 16, 32
CHANNELS = (1, 3)  # grey or RGB: what ``explore.tile`` draws


def display_scale(h: int, w: int, target: int = TARGET_PX) -> int:
    """The nearest-neighbour upscale factor that brings an H x W image's longer side to about ``target`` px."""
    return max(1, math.ceil(target / max(1, h, w)))


def image_like(shape: Sequence[int]) -> bool:
    """Whether an array of this shape is images: (C, H, W), (N, C, H, W) or (R, V, C, H, W), C in 1 or 3."""
    return len(shape) in (3, 4, 5) and shape[-3] in CHANNELS and shape[-2] > 0 and shape[-1] > 0


def png_bytes(picture: np.ndarray) -> bytes:
    """A uint8 picture (H, W) or (H, W, 3), as ``explore.tile`` makes, encoded as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(picture: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def grid_of(images: np.ndarray, ncols: int | None = None) -> np.ndarray | None:
    """The uint8 picture an image array shows as (at most ``MAX_SHOWN`` images, or ``MAX_ROWS`` x
    ``MAX_COLS`` of a grid), upscaled by ``display_scale``; None when the array is not images or is empty."""
    a = np.asarray(images)
    if not image_like(a.shape) or a.size == 0:
        return None
    if a.ndim == 3:
        a = a[None]  # one image: (1, C, H, W)
    if a.ndim == 4:
        a = a[:MAX_SHOWN]
    else:
        a = a[:MAX_ROWS, :MAX_COLS]
    if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
        return None
    return tile(a.astype(np.float32), ncols=ncols, scale=display_scale(a.shape[-2], a.shape[-1]))


class Images(np.ndarray):
    """Images as a numpy array that Jupyter shows as a picture (a ``tile``d grid).

    It is the array: shape, dtype, indexing, arithmetic and every numpy function work as on the
    plain array, and ``np.asarray(images)`` gives the plain array (no copy). A result that is
    still images (a slice of them, ``images[0]``, ``1 - images``, ``images.mean(0)``) stays
    ``Images``; one that is not (a row of pixels, a sum, per-image means) is a plain array or
    scalar. (N, C, H, W) shows as a square-ish grid of the first ``MAX_SHOWN``; (R, V, C, H, W)
    keeps its rows (a traversal over several dims); one (C, H, W) shows alone.
    """

    def __new__(cls, images) -> "Images":
        return np.asarray(images).view(cls)

    def __array_finalize__(self, obj) -> None:  # no attributes of its own to carry
        pass

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        out = np.ndarray.__array_wrap__(self, obj, context)
        if isinstance(out, np.ndarray) and not image_like(out.shape):
            out = out.view(np.ndarray)
            if out.ndim == 0 and return_scalar:
                return out[()]
        return out

    def __getitem__(self, key):
        return _plain_unless_images(super().__getitem__(key))

    def _repr_png_(self) -> bytes | None:
        """The images as one PNG (Jupyter's display hook); None (the text repr instead) for an empty array."""
        try:
            picture = grid_of(self)
            return None if picture is None else png_bytes(picture)
        except Exception:  # a display hook must never break the cell
            return None


def _plain_unless_images(out):
    """A result of indexing or reshaping: ``Images`` while it is still image-shaped, else the plain array."""
    if isinstance(out, Images) and not image_like(out.shape):
        return out.view(np.ndarray)
    return out


def _keeping_images_only(name: str):
    method = getattr(np.ndarray, name)

    def wrapped(self, *args, **kwargs):
        return _plain_unless_images(method(self, *args, **kwargs))

    wrapped.__name__, wrapped.__doc__ = name, method.__doc__
    return wrapped


# Views and copies in a new shape: still Images only when they are still images ((6, 64) is not).
for _name in ("reshape", "ravel", "flatten", "squeeze", "transpose", "swapaxes"):
    setattr(Images, _name, _keeping_images_only(_name))
del _name


def as_images(a) -> Images | None:
    """``Images`` of an array of images; None stays None."""
    return None if a is None else Images(a)


def codes_html(codes: Codes, rows: int = 8, dims: int = 12) -> str:
    """A small table of mu ± sigma: the first ``rows`` examples and ``dims`` latent dims."""
    mu, sigma = np.asarray(codes.mu), np.asarray(codes.sigma)
    if mu.ndim == 1:
        mu, sigma = mu[None], sigma[None]
    n, d = mu.shape if mu.ndim == 2 else (len(mu), 0)
    head = "".join(f"<th>z{j}</th>" for j in range(min(d, dims))) + ("<th>…</th>" if d > dims else "")
    body = []
    for i in range(min(n, rows)):
        cells = "".join(f"<td>{mu[i, j]:+.2f} ± {sigma[i, j]:.2f}</td>" for j in range(min(d, dims)))
        body.append(f"<tr><th>{i}</th>{cells}{'<td>…</td>' if d > dims else ''}</tr>")
    more = f"<tr><td colspan='{min(d, dims) + 2}'>… {n - rows:,} more</td></tr>" if n > rows else ""
    return (f"<div><b>Codes</b>: q(z|x) = N(mu, sigma²) for {n:,} example{'s' if n != 1 else ''}, {d} latent dims "
            f"(<code>.mu</code>, <code>.sigma</code>)<table style='font-family:monospace;font-size:90%'>"
            f"<tr><th></th>{head}</tr>{''.join(body)}{more}</table></div>")


class NotebookCodes(Codes):
    """``explore.Codes`` (the same ``mu`` and ``sigma`` fields) with a table for Jupyter."""

    def _repr_html_(self) -> str:
        try:
            return codes_html(self)
        except Exception as e:  # never break the cell
            return f"<div>Codes (could not draw the table: {html.escape(str(e))})</div>"


# --- the latent-space scatter ------------------------------------------------------------------
def strip_rows(labels: np.ndarray) -> np.ndarray:
    """y for a 1-D latent: one row per class (unlabelled on row 0) plus a fixed small jitter."""
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(labels))
    return np.maximum(labels, 0) + jitter


def latent_figure(xy: np.ndarray, labels: np.ndarray, ids: np.ndarray, class_names: Sequence[str],
                  axes: tuple[str, str], title: str, equal_axes: bool = True, strip: bool = False):
    """A plotly scatter of codes placed at xy (N, 2), one trace per class, each point's hover
    naming its test index ``ids`` and class. ``strip``: a 1-D latent, whose y is replaced by one
    row per class (``strip_rows``)."""
    import plotly.graph_objects as go

    xy = np.array(xy, np.float64).reshape(-1, 2)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if strip:
        xy[:, 1] = strip_rows(labels)
    ids = np.asarray(ids, np.int64).reshape(-1)
    names = list(class_names or [])
    present = [int(k) for k in np.unique(labels) if 0 <= k < len(names)]
    groups = [(k, names[k]) for k in present]
    if not groups or (labels < 0).any() or (labels >= len(names)).any():
        groups.append((None, "test images" if not groups else "unlabelled"))
    fig = go.Figure()
    for k, name in groups:
        m = labels == k if k is not None else ~np.isin(labels, present)
        fig.add_scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(name), marker=dict(size=5, opacity=0.75),
                        customdata=ids[m], hovertemplate=f"test image #%{{customdata}} ({html.escape(str(name))})"
                        "<br>(%{x:.2f}, %{y:.2f})<extra></extra>")
    fig.update_layout(title=title, height=480, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(title="class" if names else None))
    fig.update_xaxes(title=axes[0])
    fig.update_yaxes(title=axes[1])
    if strip and names:
        fig.update_yaxes(tickvals=list(range(len(names))), ticktext=names)
    if equal_axes:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
