"""Turn a user's image (uploaded bytes or a drawn canvas array) into a model input.

Two stages:

* Guarded decoding (:func:`decode_image`): refuses empty and oversized uploads here, and
  non-image, over-the-pixel-limit, truncated and decompression-bomb files in the decoder
  shared with dataset files (:mod:`vae_core.data.images`), always with a plain-language
  :class:`ImageImportError`. Transparency is flattened onto a background that contrasts
  with the strokes, so a light drawing on a transparent canvas stays visible.
* Preprocessing (:func:`import_image` / :func:`import_array`): ``"digit"`` follows MNIST's
  recipe scaled to the target size (:mod:`vae_core.data.digit`); ``"fit"`` centre-crops and
  resizes exactly as dataset files are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .dataset import Preprocess
from .digit import preprocess_digit
from .images import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    ImageImportError,
    check_pixel_count,
    decode,
    fit_image,
    flatten_alpha,
    luminance,
    shrink,
    unit_from_16bit,
    unit_to_image,
)

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

# Internal working resolution: the model input is at most a few dozen pixels,
# so nothing is gained by processing a 24 MP photo at full size.
_WORK_SIDE = 1024
_PREVIEW_SIDE = 512


@dataclass(frozen=True)
class ImportedImage:
    tensor: torch.Tensor  # (C, H, W) float32 in [0, 1], what the model sees
    original: np.ndarray  # (h, w) or (h, w, 3) uint8 preview, long side <= 512
    inverted: bool  # polarity flipped to light-on-dark
    notes: tuple[str, ...]  # human-readable steps applied


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
    decoded = decode(data, transparent="contrast", max_side=max_side)
    return decoded.image, list(decoded.notes)


def decode_image(data: bytes, *, max_side: int | None = None) -> Image.Image:
    """Decode untrusted image bytes into an 8-bit ``L`` or ``RGB`` PIL image.

    Raises :class:`ImageImportError` with a user-facing sentence for empty,
    oversized, unsupported, truncated/corrupt or decompression-bomb files.
    EXIF orientation is applied, only the first frame of animations is used and
    transparency is flattened. ``max_side`` optionally caps the long side
    (JPEGs are then decoded at reduced scale, which is much faster).
    """
    return _decode(data, max_side)[0]


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


def _fit(im: Image.Image, shape: tuple[int, int, int], notes: list[str]) -> np.ndarray:
    """(H, W, C) floats, cropped and resized as a dataset file is, so an upload matches its dataset."""
    C, H, W = shape
    a = np.asarray(fit_image(im, (W, H), notes).convert("L" if C == 1 else "RGB"), dtype=np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _import_pil(im: Image.Image, shape, preprocess: str, notes: list[str]) -> ImportedImage:
    C, H, W = shape
    original = _preview(im)
    if preprocess == "fit":
        out, inverted = _fit(im, shape, notes), False
    else:
        img = np.asarray(im, dtype=np.float32) / 255.0
        if img.ndim == 3 and C == 1:
            img = luminance(img)
        out, inverted = preprocess_digit(img, shape, notes)
    if out.shape[-1] != C:  # grayscale source, RGB model
        out = np.repeat(out[..., :1], C, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(np.clip(out, 0, 1).transpose(2, 0, 1), np.float32))
    assert tuple(tensor.shape) == (C, H, W)
    return ImportedImage(tensor=tensor, original=original, inverted=inverted, notes=tuple(notes))


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
    check_pixel_count(a.shape[1], a.shape[0])
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = unit_from_16bit(a).astype(np.float32)
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
        f, note = flatten_alpha(f[..., :3], f[..., 3], "contrast")
        if note:
            notes.append(note)
    im = shrink(unit_to_image(f), _WORK_SIDE, notes)
    return _import_pil(im, shape, preprocess, notes)
