"""Turn a user's image (uploaded bytes or a drawn canvas array) into a model input.

Two stages:

* Guarded decoding (:func:`decode_image`): refuses empty, oversized, non-image,
  truncated and decompression-bomb files with a plain-language
  :class:`ImageImportError`, and normalises every accepted file to an 8-bit
  ``L`` or ``RGB`` PIL image (EXIF rotation applied, first frame only,
  transparency flattened).
* Preprocessing (:func:`import_image` / :func:`import_array`):
  ``"digit"`` follows MNIST's recipe scaled to the target size (light digit on a
  dark background, content fitted into a ``round(20/28 * H)`` box and centred by
  centre of mass); ``"fit"`` just centre-crops and resizes.

Centre-of-mass convention: pixel ``(r, c)`` has coordinates ``(r, c)``, so the
centre of an ``H x W`` field is ``((H - 1) / 2, (W - 1) / 2)`` — ``(13.5, 13.5)``
for 28x28. After ``"digit"`` preprocessing the centre of mass lies within half a
pixel of it (integer shifts only, as in MNIST).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy import ndimage

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "ImageImportError",
    "ImportedImage",
    "decode_image",
    "import_array",
    "import_image",
]

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 50_000_000
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF"}

# Internal working resolution: the model input is at most a few dozen pixels,
# so nothing is gained by processing a 24 MP photo at full size.
_WORK_SIDE = 1024
_PREVIEW_SIDE = 512
_SUPPORTED_TEXT = "PNG, JPEG, WebP, BMP or GIF"
# MNIST puts the digit in a 20x20 box inside a 28x28 field.
_BOX_FRACTION = 20 / 28

Preprocess = Literal["digit", "fit"]


class ImageImportError(ValueError):
    """A clear, user-facing reason the image can't be used."""


@dataclass(frozen=True)
class ImportedImage:
    tensor: torch.Tensor  # (C, H, W) float32 in [0, 1], what the model sees
    original: np.ndarray  # (h, w) or (h, w, 3) uint8 preview, long side <= 512
    inverted: bool  # polarity flipped to light-on-dark
    notes: tuple[str, ...]  # human-readable steps applied


# --------------------------------------------------------------------------
# Guarded decoding
# --------------------------------------------------------------------------


def _unsupported(data: bytes) -> ImageImportError:
    head = data[:512].lstrip().lower()
    kind = None
    if head.startswith(b"%pdf"):
        kind = "a PDF document"
    elif b"<svg" in head:
        kind = "an SVG drawing"
    elif head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        kind = "a web page (HTML)"
    prefix = f"This file looks like {kind}, which is" if kind else "This file is"
    return ImageImportError(
        f"{prefix} not a supported image ({_SUPPORTED_TEXT}). "
        "Please export or save it as PNG or JPEG and upload that."
    )


def _too_large(w: int | None = None, h: int | None = None) -> ImageImportError:
    dims = f" ({w}×{h} pixels)" if w and h else ""
    return ImageImportError(
        f"The image is too large{dims}; the limit is {MAX_PIXELS / 1e6:g} megapixels. "
        "Please resize it to a smaller size and try again."
    )


def _corrupt() -> ImageImportError:
    return ImageImportError(
        "The image file is truncated or corrupt. Please re-save or re-export it and upload it again."
    )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601 weights, the same ones PIL uses for convert("L").
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _flatten_alpha(color: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Composite straight-alpha float colour onto a solid background.

    White is the default (what viewers show). But when most of the picture is
    transparent — a drawing on a transparent canvas — the background is chosen
    to contrast with the drawn strokes, so white strokes don't vanish on white.
    """
    if alpha.size == 0 or float(alpha.min()) >= 1.0:
        return color, None
    bg = 1.0
    transparent = alpha < 0.5
    if transparent.mean() >= 0.5 and alpha.sum() > 0:
        lum = _luminance(color) if color.ndim == 3 else color
        content = float((lum * alpha).sum() / alpha.sum())
        if content > 0.5:
            bg = 0.0
    a = alpha[..., None] if color.ndim == 3 else alpha
    flat = color * a + bg * (1.0 - a)
    return flat, f"transparent areas filled with {'white' if bg else 'black'}"


def _float_to_pil(arr: np.ndarray) -> Image.Image:
    u8 = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(u8, "RGB" if u8.ndim == 3 else "L")


def _normalise_mode(im: Image.Image, notes: list[str]) -> Image.Image:
    """Bring any decoded mode to 8-bit ``L`` or ``RGB``."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale: rescale the full 0..65535 range (plain convert("L") would clip).
        arr = np.asarray(im).astype(np.float64)
        arr = np.clip(arr, 0, 65535) / 65535.0
        notes.append("16-bit grayscale scaled to 8-bit")
        return _float_to_pil(arr)
    if mode == "F":
        return _float_to_pil(np.clip(np.asarray(im, dtype=np.float64), 0, 255) / 255.0)
    if mode == "1":
        return im.convert("L")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
        return im.convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        gray = mode in ("LA", "La") or (mode == "L")
        rgba = im.convert("LA" if gray else "RGBA")
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
        color = arr[..., 0] if gray else arr[..., :3]
        flat, note = _flatten_alpha(color, arr[..., -1])
        if note:
            notes.append(note)
        return _float_to_pil(flat)
    if mode in ("L", "RGB"):
        return im
    return im.convert("RGB")  # P without transparency, YCbCr, LAB, HSV, RGBX ...


def _shrink(im: Image.Image, max_side: int | None, notes: list[str]) -> Image.Image:
    if max_side is None or max(im.size) <= max_side:
        return im
    w, h = im.size
    im = im.copy()
    # reducing_gap makes PIL box-reduce first: fast and still antialiased.
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    notes.append(f"downscaled from {w}×{h} to {im.size[0]}×{im.size[1]} for processing")
    return im


def _decode(data: bytes, max_side: int | None) -> tuple[Image.Image, list[str]]:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageImportError("The file is empty. Please choose an image file with content.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageImportError(
            f"The file is {len(data) / 2**20:.1f} MB, over the {MAX_UPLOAD_BYTES / 2**20:g} MB limit. "
            "Please upload a smaller image."
        )

    notes: list[str] = []
    # Another module may have switched truncated-image tolerance on globally; this
    # decoder must reject truncated files, so force it off for the duration only.
    saved_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # PIL only warns between its own limits; treat that as a refusal too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise _too_large() from None
            except UnidentifiedImageError:
                raise _unsupported(data) from None
            except Exception:  # malformed header that a plugin recognised
                raise _corrupt() from None

            if im.format not in ALLOWED_FORMATS:
                raise _unsupported(data)
            w, h = im.size
            # Checked before any pixel is decoded: the header alone decides.
            if w <= 0 or h <= 0:
                raise _corrupt()
            if w * h > MAX_PIXELS:
                raise _too_large(w, h)

            try:
                if getattr(im, "is_animated", False):
                    notes.append("animated image: first frame used")
                    im.seek(0)
            except Exception:
                pass  # a broken later frame is irrelevant; frame 0 is checked by load()

            if im.format == "JPEG" and max_side is not None and max(w, h) > 2 * max_side:
                # Let libjpeg decode at 1/2..1/8 scale: far less memory and time.
                s = max_side / max(w, h)
                im.draft(None, (max(1, math.ceil(w * s)), max(1, math.ceil(h * s))))

            try:
                im.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise _too_large(w, h) from None
            except MemoryError:
                raise _too_large(w, h) from None
            except Exception:
                raise _corrupt() from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved_truncated

    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:
        orientation = 1
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        try:
            im = ImageOps.exif_transpose(im)
            notes.append("EXIF rotation applied")
        except Exception:
            pass  # unusable EXIF: keep the stored orientation rather than refuse
    im = _normalise_mode(im, notes)
    im = _shrink(im, max_side, notes)
    return im, notes


def decode_image(data: bytes, *, max_side: int | None = None) -> Image.Image:
    """Decode untrusted image bytes into an 8-bit ``L`` or ``RGB`` PIL image.

    Raises :class:`ImageImportError` with a user-facing sentence for empty,
    oversized, unsupported, truncated/corrupt or decompression-bomb files.
    EXIF orientation is applied, only the first frame of animations is used and
    transparency is flattened. ``max_side`` optionally caps the long side
    (JPEGs are then decoded at reduced scale, which is much faster).
    """
    return _decode(data, max_side)[0]


# --------------------------------------------------------------------------
# Preprocessing helpers (float32 arrays in [0, 1])
# --------------------------------------------------------------------------


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


def _digit(img: np.ndarray, shape: tuple[int, int, int], notes: list[str]) -> tuple[np.ndarray, bool]:
    """MNIST-style preprocessing. ``img`` is float (h, w) or (h, w, 3); returns (H, W, n)."""
    C, H, W = shape
    rgb = img if (img.ndim == 3 and C == 3) else None
    lum = _luminance(img) if img.ndim == 3 else img
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
    plum = patch.mean(-1) if n_out == 1 else _luminance(patch)
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


def _fit(im: Image.Image, shape: tuple[int, int, int], notes: list[str]) -> np.ndarray:
    """Centre-crop to the target aspect ratio and resize; no polarity change."""
    C, H, W = shape
    im = im.convert("L" if C == 1 else "RGB")
    w, h = im.size
    target = W / H
    if w / h > target:
        cw, chh = max(1, round(h * target)), h
    else:
        cw, chh = w, max(1, round(w / target))
    left, top = (w - cw) // 2, (h - chh) // 2
    if (cw, chh) != (w, h):
        im = im.crop((left, top, left + cw, top + chh))
        notes.append("centre-cropped to square" if H == W else "centre-cropped to target aspect")
    if im.size != (W, H):
        im = im.resize((W, H), Image.Resampling.LANCZOS, reducing_gap=3.0)
        notes.append(f"resized to {H}×{W}")
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _check_args(image_shape, preprocess) -> tuple[int, int, int]:
    try:
        C, H, W = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}") from None
    if C not in (1, 3) or H < 1 or W < 1:
        raise ValueError(f"image_shape must have C in (1, 3) and positive H, W; got {image_shape!r}")
    if preprocess not in ("digit", "fit"):
        raise ValueError(f"preprocess must be 'digit' or 'fit', got {preprocess!r}")
    return C, H, W


def _preview(im: Image.Image) -> np.ndarray:
    p = im.copy()
    p.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.array(p, dtype=np.uint8)


def _import_pil(im: Image.Image, shape, preprocess: str, notes: list[str]) -> ImportedImage:
    C, H, W = shape
    original = _preview(im)
    if preprocess == "fit":
        out, inverted = _fit(im, shape, notes), False
    else:
        img = np.asarray(im, dtype=np.float32) / 255.0
        if img.ndim == 3 and C == 1:
            img = _luminance(img)
        out, inverted = _digit(img, shape, notes)
    if out.shape[-1] != C:  # grayscale source, RGB model
        out = np.repeat(out[..., :1], C, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(np.clip(out, 0, 1).transpose(2, 0, 1), np.float32))
    assert tuple(tensor.shape) == (C, H, W)
    return ImportedImage(tensor=tensor, original=original, inverted=inverted, notes=tuple(notes))


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def import_image(
    data: bytes, image_shape: tuple[int, int, int], preprocess: Preprocess = "digit"
) -> ImportedImage:
    """Decode uploaded image bytes and turn them into a ``(C, H, W)`` model input.

    ``preprocess="digit"`` applies MNIST's recipe (light-on-dark, content fitted
    into a ``round(20/28*H)`` box, centre of mass at ``((H-1)/2, (W-1)/2)``);
    ``"fit"`` centre-crops and resizes without changing polarity.
    Raises :class:`ImageImportError` for unusable files.
    """
    shape = _check_args(image_shape, preprocess)
    im, notes = _decode(data, _WORK_SIDE)
    return _import_pil(im, shape, preprocess, notes)


def import_array(
    arr: np.ndarray, image_shape: tuple[int, int, int], preprocess: Preprocess = "digit"
) -> ImportedImage:
    """Like :func:`import_image` for an in-memory array, e.g. a drawing canvas.

    Accepts (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) arrays: uint8 (0..255),
    uint16 (0..65535), bool, or float (0..1; 0..255 if larger values occur).
    An alpha channel is composited onto a background that contrasts with the
    strokes (white unless the strokes themselves are light).
    """
    shape = _check_args(image_shape, preprocess)
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageImportError(
            f"The drawing has an unexpected shape {a.shape}; expected height × width "
            "with 1, 3 or 4 colour channels."
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageImportError("The drawing is empty (it has no pixels).")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise _too_large(a.shape[1], a.shape[0])
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            raise ImageImportError("The drawing contains invalid (NaN or infinite) values.")
        if f.size and float(f.max()) > 1.0:
            f = f / 255.0
    else:
        raise ImageImportError(f"The drawing has an unsupported pixel type ({a.dtype}).")
    f = np.clip(f, 0.0, 1.0)
    notes: list[str] = []
    if f.ndim == 3 and f.shape[2] == 4:
        f, note = _flatten_alpha(f[..., :3], f[..., 3])
        if note:
            notes.append(note)
    im = _shrink(_float_to_pil(f), _WORK_SIDE, notes)
    return _import_pil(im, shape, preprocess, notes)
