"""The one guarded image decoder, serving dataset files and uploads alike.

:func:`decode` turns untrusted image bytes (or a file) into an 8-bit ``L`` or ``RGB`` PIL
image, or raises :class:`ImageImportError` whose message is a plain sentence saying what is
wrong and what to do. Its guards:

* the format, sniffed from the content (never the file name), is one of :data:`ALLOWED_FORMATS`;
* the pixel count read from the header is at most :data:`MAX_PIXELS` before any pixel is
  decoded, and PIL's own ``DecompressionBombWarning`` is a refusal too;
* a truncated file is refused, even when another module switched PIL's tolerance for them on.

An accepted image then has its EXIF orientation applied, only its first frame used when it
is animated, and its mode normalised (:func:`normalise_mode`): 16-bit grayscale scaled by its
full 0..65535 range, transparency flattened onto a solid background.

The callers differ on purpose, each through an explicit parameter of :func:`decode`:

* ``transparent``: dataset files use ``"white"``, so every image of a set gets the same
  background; uploads use ``"contrast"``, so light strokes drawn on a transparent canvas
  do not vanish onto white;
* sizing: uploads pass ``max_side`` to cap the long side of a working image; dataset files
  pass ``fit`` to be centre-cropped and LANCZOS-resized straight to the dataset's size.
  Either lets a large JPEG be decoded at a reduced scale, which is far cheaper.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ALLOWED_FORMATS",
    "FILE_SUFFIXES",
    "LUMA_WEIGHTS",
    "MAX_PIXELS",
    "DecodedImage",
    "ImageImportError",
    "Transparency",
    "check_pixel_count",
    "decode",
    "fit_image",
    "flatten_alpha",
    "luminance",
    "normalise_mode",
    "shrink",
    "unit_from_16bit",
    "unit_to_image",
]

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF"})
# Names a folder scan picks up; the content still has to be one of ALLOWED_FORMATS.
FILE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
FORMATS_TEXT = "PNG, JPEG, WebP, BMP or GIF"
# Per decoded image. A 50 MP phone photo (8160x6120) still passes; a decoded 50 MP RGBA image
# takes 200 MB, and PIL's own bomb warning starts near 89 MP.
MAX_PIXELS = 50_000_000
# ITU-R 601 luma weights, the ones PIL's convert("L") uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

Transparency = Literal["white", "contrast"]


class ImageImportError(ValueError):
    """A plain sentence saying why an image can't be used and what to do instead."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image          # 8-bit "L" or "RGB"
    notes: tuple[str, ...]      # the steps applied, in words


# --------------------------------------------------------------------------- refusals


def _unsupported(head: bytes) -> ImageImportError:
    head = head.lstrip().lower()
    kind = None
    if head.startswith(b"%pdf"):
        kind = "a PDF document"
    elif b"<svg" in head:
        kind = "an SVG drawing"
    elif head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        kind = "a web page (HTML)"
    prefix = f"This file looks like {kind}, which is" if kind else "This file is"
    return ImageImportError(f"{prefix} not a supported image ({FORMATS_TEXT}). "
                            "Please export or save it as PNG or JPEG and use that.")


def _too_large(w: int | None = None, h: int | None = None) -> ImageImportError:
    dims = f" ({w}×{h} pixels)" if w and h else ""
    return ImageImportError(f"The image is too large{dims}; the limit is {MAX_PIXELS / 1e6:g} megapixels. "
                            "Please resize it to a smaller size and try again.")


def _corrupt() -> ImageImportError:
    return ImageImportError("The image file is truncated or corrupt. Please re-save or re-export it "
                            "and try again.")


def check_pixel_count(w: int, h: int) -> None:
    """Refuse an image of ``w x h`` pixels when it is over :data:`MAX_PIXELS`."""
    if w * h > MAX_PIXELS:
        raise _too_large(w, h)


# --------------------------------------------------------------------------- pixel values


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) colour -> (...) gray, by :data:`LUMA_WEIGHTS`."""
    return rgb[..., 0] * LUMA_WEIGHTS[0] + rgb[..., 1] * LUMA_WEIGHTS[1] + rgb[..., 2] * LUMA_WEIGHTS[2]


def unit_from_16bit(a: np.ndarray) -> np.ndarray:
    """16-bit values -> floats in [0, 1], by the full 0..65535 range.

    A 16-bit image's range is its type's range, not its brightest pixel: a dark 16-bit
    picture stays dark instead of being read as 8-bit values.
    """
    return np.clip(np.asarray(a, dtype=np.float64), 0, 65535) / 65535.0


def unit_to_image(a: np.ndarray) -> Image.Image:
    """Floats in [0, 1], (h, w) or (h, w, 3) -> an 8-bit ``L`` or ``RGB`` image."""
    u8 = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(u8, "RGB" if u8.ndim == 3 else "L")


def flatten_alpha(color: np.ndarray, alpha: np.ndarray, transparent: Transparency) -> tuple[np.ndarray, str | None]:
    """Composite straight-alpha float colour onto a solid background; a note says which one.

    color: (h, w) or (h, w, 3) floats in [0, 1]; alpha: (h, w) floats in [0, 1].

    White is what viewers show. With ``transparent="contrast"`` a mostly transparent picture
    (a drawing on a transparent canvas) whose strokes are light gets black instead.
    """
    if alpha.size == 0 or float(alpha.min()) >= 1.0:
        return color, None
    bg = 1.0
    if transparent == "contrast" and (alpha < 0.5).mean() >= 0.5 and alpha.sum() > 0:
        lum = luminance(color) if color.ndim == 3 else color
        if float((lum * alpha).sum() / alpha.sum()) > 0.5:
            bg = 0.0
    a = alpha[..., None] if color.ndim == 3 else alpha
    return color * a + bg * (1.0 - a), f"transparent areas filled with {'white' if bg else 'black'}"


def normalise_mode(im: Image.Image, transparent: Transparency, notes: list[str]) -> Image.Image:
    """Bring any decoded mode to 8-bit ``L`` or ``RGB``, appending what was done to ``notes``."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # convert("L") would clip every value over 255 to white.
        notes.append("16-bit grayscale scaled to 8-bit")
        return unit_to_image(unit_from_16bit(np.asarray(im)))
    if mode == "F":
        return unit_to_image(np.clip(np.asarray(im, dtype=np.float64), 0, 255) / 255.0)
    if mode == "1":
        return im.convert("L")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
        return im.convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        gray = mode in ("LA", "La", "L")
        arr = np.asarray(im.convert("LA" if gray else "RGBA"), dtype=np.float32) / 255.0
        flat, note = flatten_alpha(arr[..., 0] if gray else arr[..., :3], arr[..., -1], transparent)
        if note:
            notes.append(note)
        return unit_to_image(flat)
    if mode in ("L", "RGB"):
        return im
    return im.convert("RGB")  # P without transparency, YCbCr, LAB, HSV, RGBX ...


# --------------------------------------------------------------------------- geometry


def shrink(im: Image.Image, max_side: int | None, notes: list[str]) -> Image.Image:
    """Cap the long side at ``max_side`` (antialiased), keeping the aspect ratio."""
    if max_side is None or max(im.size) <= max_side:
        return im
    w, h = im.size
    im = im.copy()
    # reducing_gap makes PIL box-reduce first: fast and still antialiased.
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    notes.append(f"downscaled from {w}×{h} to {im.size[0]}×{im.size[1]} for processing")
    return im


def fit_image(im: Image.Image, size: tuple[int, int], notes: list[str] | None = None) -> Image.Image:
    """Centre-crop to the aspect ratio of ``size`` (width, height), then LANCZOS-resize to it."""
    W, H = size
    w, h = im.size
    if w / h > W / H:
        cw, ch = max(1, round(h * W / H)), h
    else:
        cw, ch = w, max(1, round(w * H / W))
    left, top = (w - cw) // 2, (h - ch) // 2
    notes = [] if notes is None else notes
    if (cw, ch) != (w, h):
        im = im.crop((left, top, left + cw, top + ch))
        notes.append("centre-cropped to square" if H == W else "centre-cropped to target aspect")
    if im.size != (W, H):
        im = im.resize((W, H), Image.Resampling.LANCZOS, reducing_gap=3.0)
        notes.append(f"resized to {H}×{W}")
    return im


# --------------------------------------------------------------------------- decoding


def _head(fp: BinaryIO) -> bytes:
    try:
        fp.seek(0)
        return fp.read(512)
    except (OSError, ValueError):
        return b""


def _open(fp: BinaryIO) -> Image.Image:
    """Identify and header-check the image; no pixel is decoded yet."""
    try:
        im = Image.open(fp, formats=sorted(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large() from None
    except UnidentifiedImageError:
        raise _unsupported(_head(fp)) from None
    except Exception:  # malformed header that a plugin recognised
        raise _corrupt() from None
    if im.format not in ALLOWED_FORMATS:
        raise _unsupported(_head(fp))
    w, h = im.size
    if w <= 0 or h <= 0:
        raise _corrupt()
    check_pixel_count(w, h)
    return im


def _load(im: Image.Image, draft_scale: float, notes: list[str]) -> Image.Image:
    """Decode the first frame's pixels, JPEGs at no less than ``draft_scale`` of full size."""
    w, h = im.size
    try:
        if getattr(im, "is_animated", False):
            notes.append("animated image: first frame used")
            im.seek(0)
    except Exception:
        pass  # a broken later frame is irrelevant; frame 0 is checked by load()
    if im.format == "JPEG" and draft_scale < 0.5:
        # libjpeg decodes at 1/2..1/8 scale directly: far less memory and time.
        im.draft(None, (max(1, math.ceil(w * draft_scale)), max(1, math.ceil(h * draft_scale))))
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise _too_large(w, h) from None
    except Exception:
        raise _corrupt() from None
    return im


def _upright(im: Image.Image, notes: list[str]) -> Image.Image:
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
    return im


def decode(source: bytes | str | os.PathLike | BinaryIO, *, transparent: Transparency = "white",
           max_side: int | None = None, fit: tuple[int, int] | None = None) -> DecodedImage:
    """Decode one untrusted image into an 8-bit ``L`` or ``RGB`` image.

    source: the file's bytes, its path, or a binary file object.
    transparent: the background transparency is flattened onto (see the module docstring).
    max_side: cap the long side of the result (uploads' working image).
    fit: centre-crop and resize the result to exactly (width, height) (dataset files).
    Raises :class:`ImageImportError` for a file that is not an allowed image, is over the
    pixel limit, or is truncated or corrupt; ``OSError`` when a path cannot be read.
    """
    if max_side is not None and fit is not None:
        raise ValueError("pass max_side or fit, not both")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return decode(fh, transparent=transparent, max_side=max_side, fit=fit)
    fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    notes: list[str] = []
    # Another module may have switched truncated-image tolerance on globally; this
    # decoder must refuse truncated files, so it is forced off for the duration only.
    saved_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # PIL only warns between its own limits; that is a refusal here too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _open(fp)
            w, h = im.size
            if max_side is not None:
                draft_scale = max_side / max(w, h)
            elif fit is not None:
                draft_scale = 2 * max(fit[0] / w, fit[1] / h)   # LANCZOS from at least twice the target
            else:
                draft_scale = 1.0
            im = _load(im, draft_scale, notes)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved_truncated
    im = normalise_mode(_upright(im, notes), transparent, notes)
    im = fit_image(im, fit, notes) if fit is not None else shrink(im, max_side, notes)
    return DecodedImage(im, tuple(notes))
