"""MNIST's recipe for a picture of a handwritten digit (the ``"digit"`` preprocessing).

A photo of ink on paper, a scan or a drawing becomes what an MNIST model expects: a light
digit on a dark background, uneven lighting removed, content fitted into a ``round(20/28 * H)``
box and shifted so its centre of mass sits at the field centre.

Centre-of-mass convention: pixel ``(r, c)`` has coordinates ``(r, c)``, so the centre of an
``H x W`` field is ``((H - 1) / 2, (W - 1) / 2)``, ``(13.5, 13.5)`` for 28x28. After this
preprocessing the centre of mass lies within half a pixel of it (integer shifts only, as in MNIST).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from .images import luminance

__all__ = ["preprocess_digit"]

# MNIST puts the digit in a 20x20 box inside a 28x28 field.
_BOX_FRACTION = 20 / 28


def _resize(a: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of a float (h, w) or (h, w, n) array."""
    if a.shape[1] == size_wh[0] and a.shape[0] == size_wh[1]:
        return a.astype(np.float32, copy=True)
    if a.ndim == 3:
        return np.stack([_resize(a[..., i], size_wh) for i in range(a.shape[2])], axis=-1)
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize(size_wh, Image.Resampling.LANCZOS), dtype=np.float32)


def _ring(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    k = max(1, round(0.02 * min(h, w)))
    if 2 * k >= min(h, w):
        return a.reshape(-1)
    return np.concatenate(
        [a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()]
    )


def _mad_sigma(v: np.ndarray) -> float:
    if v.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


class _Background:
    """Smooth background model: a quadratic surface fitted to non-content pixels.

    Phone photos of paper have lighting gradients that a single background level
    can't remove; a quadratic follows gradients and mild vignetting while the
    iterative outlier rejection keeps strokes out of the fit. Small images (and
    the fallback) use the median of the border ring instead.
    """

    def __init__(self, x: np.ndarray):
        h, w = x.shape
        self.shape = (h, w)
        self.coef_mode = min(h, w) >= 32
        if not self.coef_mode:
            ring = _ring(x)
            self.sigma = _mad_sigma(ring)
            return
        s = max(1, max(h, w) // 128)
        xs = x[::s, ::s]
        hs, ws = xs.shape
        v, u = np.mgrid[0:hs, 0:ws].astype(np.float64)
        u = (u * s) / max(w - 1, 1) * 2 - 1
        v = (v * s) / max(h - 1, 1) * 2 - 1
        self.A = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], -1).reshape(-1, 6)
        b = xs.reshape(-1).astype(np.float64)
        k = max(1, round(0.02 * min(hs, ws)))
        m = np.zeros((hs, ws), bool)
        m[:k], m[-k:], m[:, :k], m[:, -k:] = True, True, True, True
        m = m.reshape(-1)
        sigma = 0.0
        for _ in range(4):
            coef, *_ = np.linalg.lstsq(self.A[m], b[m], rcond=None)
            r = b - self.A @ coef
            sigma = _mad_sigma(r[m])
            new_m = np.abs(r) < max(3.0 * sigma, 0.01)
            if new_m.sum() < 12:
                break
            m = new_m
        self.mask, self.sigma, self.stride = m, sigma, s

    def surface(self, x: np.ndarray) -> np.ndarray:
        """Background of ``x`` (the image used for fitting, or another channel of it)."""
        if not self.coef_mode:
            return np.full(self.shape, float(np.median(_ring(x))), np.float32)
        b = x[:: self.stride, :: self.stride].reshape(-1).astype(np.float64)
        c, *_ = np.linalg.lstsq(self.A[self.mask], b[self.mask], rcond=None)
        h, w = self.shape
        u = np.linspace(-1, 1, w)[None, :]
        v = np.linspace(-1, 1, h)[:, None]
        return (c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v).astype(
            np.float32
        )


def _keep_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop specks and edge artefacts (paper edge, table, shadow) from the content mask."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask, 0
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    keep = areas >= max(2, 0.05 * areas.max())
    # A component lying mostly inside the outer margin band is treated as an
    # artefact of the photo's edge, not as part of the digit.
    h, w = mask.shape
    mh, mw = max(1, round(0.1 * h)), max(1, round(0.1 * w))
    inner = np.zeros_like(mask)
    inner[mh:h - mh, mw:w - mw] = True
    border_ids = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )
    inner_area = np.bincount(labels[inner].ravel(), minlength=n + 1)
    edge = np.zeros(n + 1, bool)
    edge[border_ids] = True
    edge[0] = False
    artefact = edge & (inner_area < 0.4 * areas)
    if (keep & ~artefact).any():
        keep &= ~artefact
    keep[0] = False
    # Report only drops that matter, not the many single-pixel noise specks.
    dropped_area = int(areas[1:][~keep[1:]].sum())
    significant = dropped_area >= max(10, 0.005 * int(areas[keep].sum()))
    return keep[labels], int(significant) * int(n - keep[1:].sum())


def _thicken(inter: np.ndarray, px_per_out: float, out_side: int, notes: list[str]) -> np.ndarray:
    """Dilate strokes that would be thinner than MNIST's once shrunk.

    A pen line on a large sheet ends up a fraction of a pixel wide at 28x28 and
    nearly vanishes; MNIST strokes are roughly 2-3 px wide at that size.
    """
    if px_per_out < 2:
        return inter
    lum = inter.mean(-1)
    m = lum > 0.5
    if not m.any():
        return inter
    dt = ndimage.distance_transform_edt(m)
    ridge = m & (dt >= ndimage.maximum_filter(dt, size=3))
    width_out = max(2.0 * float(np.median(dt[ridge])) - 1.0, 1.0) / px_per_out
    scale = out_side / 28
    if width_out >= 1.5 * scale:
        return inter
    r = min((2.2 * scale - width_out) / 2 * px_per_out, 2.0 * px_per_out)
    if r < 0.75:
        return inter
    ri = int(math.ceil(r))
    yy, xx = np.mgrid[-ri:ri + 1, -ri:ri + 1]
    disk = (yy * yy + xx * xx) <= r * r
    notes.append("thickened thin strokes")
    return np.stack(
        [ndimage.grey_dilation(inter[..., i], footprint=disk) for i in range(inter.shape[-1])],
        axis=-1,
    )


def preprocess_digit(img: np.ndarray, shape: tuple[int, int, int], notes: list[str]) -> tuple[np.ndarray, bool]:
    """MNIST-style preprocessing of float (h, w) or (h, w, 3) pixels in [0, 1] for a (C, H, W) model input.

    Returns the (H, W, n) field (n = 3 only for colour in and colour out) and whether the
    polarity was flipped; appends the steps taken to ``notes``.
    """
    C, H, W = shape
    rgb = img if (img.ndim == 3 and C == 3) else None
    lum = luminance(img) if img.ndim == 3 else img
    lum = lum.astype(np.float32)
    h, w = lum.shape

    # 1. Polarity: compare how far the content departs from the border level
    #    towards dark vs towards light; mid-grey paper is handled too.
    bg_level = float(np.median(_ring(lum)))
    smooth = ndimage.gaussian_filter(lum, 1.0) if min(h, w) >= 16 else lum
    lo, hi_p = np.percentile(smooth, [0.2, 99.8])
    dark_dev, light_dev = bg_level - lo, hi_p - bg_level
    if max(dark_dev, light_dev) < 0.02:
        inverted = bg_level > 0.5
    else:
        inverted = bool(dark_dev > light_dev)
    if inverted:
        notes.append("inverted: light background")
        lum = 1.0 - lum
        if rgb is not None:
            rgb = 1.0 - rgb

    # 2. Contrast: remove the (possibly uneven) background, stretch strokes to 1.
    bgm = _Background(lum)
    bg = bgm.surface(lum)
    if float(bg.max() - bg.min()) > 0.05:
        notes.append("uneven lighting flattened")
    fg = lum - bg
    sigma = bgm.sigma
    blur = max(0.0, min(2.0, max(h, w) / 400))
    fg_s = ndimage.gaussian_filter(fg, blur) if blur >= 0.5 else fg
    t_abs = max(4.0 * sigma, 0.03)
    cand = fg_s > t_abs
    stroke = float(np.percentile(fg[cand], 90)) if cand.any() else 0.0
    n_out = 3 if rgb is not None else 1
    field = np.zeros((H, W, n_out), np.float32)
    if stroke < max(0.04, 5.0 * sigma):
        notes.append("image has no content")
        return field, inverted
    t = float(np.clip(4.0 * sigma / stroke, 0.1, 0.5))  # faint noise -> 0
    y = np.clip((fg / stroke - t) / (1.0 - t), 0.0, 1.0)

    # 3. Crop to content, ignoring specks and photo-edge artefacts.
    mask, dropped = _keep_components(y > 0)
    if dropped:
        notes.append("ignored specks / edge marks")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if rgb is not None:
        chans = np.stack(
            [np.clip((rgb[..., i] - bgm.surface(rgb[..., i])) / stroke, 0, None) for i in range(3)],
            axis=-1,
        )
        chans = np.clip((chans - t) / (1.0 - t), 0.0, 1.0)
    else:
        chans = y[..., None]
    content = (chans * mask[..., None])[r0:r1, c0:c1]
    if (r1 - r0, c1 - c0) != (h, w):
        notes.append("cropped to content")

    # 4. Fit into the MNIST box, preserving aspect ratio.
    box_h, box_w = max(1, round(_BOX_FRACTION * H)), max(1, round(_BOX_FRACTION * W))
    ch, cw = content.shape[:2]
    scale = min(box_h / ch, box_w / cw)
    ph = min(box_h, max(1, round(ch * scale)))
    pw = min(box_w, max(1, round(cw * scale)))
    px_per_out = ch / ph
    if px_per_out > 4:
        # Go through 4x the output size so stroke width can be judged and fixed cheaply.
        inter = _resize(content, (4 * pw, 4 * ph))
        px_per_out = 4.0
    else:
        inter = content
    inter = _thicken(inter, px_per_out, min(H, W), notes)
    patch = np.clip(_resize(inter, (pw, ph)), 0.0, 1.0)
    plum = patch.mean(-1) if n_out == 1 else luminance(patch)
    peak = float(plum.max())
    if peak > 0:
        patch = np.clip(patch / peak, 0.0, 1.0)
        plum = plum / peak
    notes.append(f"fitted to {box_h}×{box_w} box")

    # 5. Shift so the centre of mass sits at the field centre (MNIST's recipe).
    total = float(plum.sum())
    if total > 0:
        cy = float(plum.sum(1) @ np.arange(ph)) / total
        cx = float(plum.sum(0) @ np.arange(pw)) / total
    else:
        cy, cx = (ph - 1) / 2, (pw - 1) / 2
    top = int(np.clip(math.floor((H - 1) / 2 - cy + 0.5), 0, H - ph))
    left = int(np.clip(math.floor((W - 1) / 2 - cx + 0.5), 0, W - pw))
    field[top:top + ph, left:left + pw] = patch
    notes.append("centred by centre of mass")
    return field, inverted
