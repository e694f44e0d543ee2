"""Uploaded and drawn images (vae_core.data.upload) and their MNIST-style preprocessing
(vae_core.data.digit); the decoder's guards are tested in test_image_decode.py. All images
are generated here with PIL.

Centre-of-mass convention (see vae_core.data.digit): pixel (r, c) sits at
(r, c), so the centre of a 28x28 field is (13.5, 13.5)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vae_core.data import upload as ii
from vae_core.data.upload import (
    ImageImportError,
    decode_image,
    import_array,
    import_image,
)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo_of_seven(w: int = 400, h: int = 300) -> Image.Image:
    """Dark thick '7' on off-white paper with a lighting gradient and noise, off-centre."""
    rng = np.random.default_rng(0)
    paper = np.linspace(190, 240, w)[None, :] + np.linspace(-10, 5, h)[:, None]
    paper = paper + rng.normal(0, 4, (h, w))
    im = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")
    d = ImageDraw.Draw(im)
    d.line([(230, 60), (320, 60), (270, 230)], fill=(40, 40, 45), width=18)
    return im


def _com(x: np.ndarray) -> tuple[float, float]:
    tot = x.sum()
    return (x.sum(1) @ np.arange(x.shape[0])) / tot, (x.sum(0) @ np.arange(x.shape[1])) / tot


def _bbox(x: np.ndarray, thr: float = 0.0) -> tuple[int, int]:
    ys, xs = np.nonzero(x > thr)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def _assert_centred_digit(x: np.ndarray, size: int = 28) -> None:
    assert x.shape == (size, size)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    assert border.mean() < 0.05
    assert x.max() > 0.9
    bh, bw = _bbox(x)
    box = round(20 / 28 * size)
    assert bh <= box and bw <= box
    cy, cx = _com(x)
    c = (size - 1) / 2
    assert abs(cy - c) <= 1.0 and abs(cx - c) <= 1.0


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1])


def test_photo_of_dark_digit_on_light_paper():
    res = import_image(_encode(_photo_of_seven(), "JPEG", quality=85), (1, 28, 28))
    assert res.tensor.dtype == torch.float32 and tuple(res.tensor.shape) == (1, 28, 28)
    assert res.inverted is True
    x = res.tensor[0].numpy()
    _assert_centred_digit(x)
    # Outer rows are background.
    assert np.concatenate([x[0], x[-1]]).mean() < 0.05
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert res.original.dtype == np.uint8 and res.original.shape == (300, 400, 3)
    assert any("inverted" in n for n in res.notes)
    assert "centred by centre of mass" in res.notes
    assert "fitted to 20×20 box" in res.notes


def test_exif_orientation_matches_upright():
    upright = _photo_of_seven()
    # Orientation 6 = "rotate 90° clockwise to display", so store it rotated 90° CCW.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    a = import_image(_encode(upright, "JPEG", quality=90), (1, 28, 28))
    b = import_image(_encode(stored, "JPEG", quality=90, exif=exif.tobytes()), (1, 28, 28))
    assert "EXIF rotation applied" in b.notes
    assert b.original.shape == a.original.shape
    assert _corr(a.tensor, b.tensor) > 0.9


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 32, 32), (1, 64, 64), (3, 28, 28)])
def test_digit_other_target_sizes(shape):
    res = import_image(_encode(_photo_of_seven(), "PNG"), shape)
    assert tuple(res.tensor.shape) == shape
    x = res.tensor.mean(0).numpy()
    _assert_centred_digit(x, shape[1])


def test_mnist_like_input_is_stable():
    # Already light-on-dark and centred: must not be inverted.
    x = np.zeros((28, 28), np.uint8)
    x[6:22, 12:16] = 255
    res = import_image(_encode(Image.fromarray(x), "PNG"), (1, 28, 28))
    assert res.inverted is False
    _assert_centred_digit(res.tensor[0].numpy())


def test_refuses_empty():
    with pytest.raises(ImageImportError, match="The file is empty"):
        import_image(b"", (1, 28, 28))


def test_refuses_oversize_bytes(monkeypatch):
    monkeypatch.setattr(ii, "MAX_UPLOAD_BYTES", 1000)
    data = _encode(Image.effect_noise((100, 100), 50), "PNG")
    assert len(data) > 1000
    with pytest.raises(ImageImportError, match="limit"):
        import_image(data, (1, 28, 28))


def test_error_is_value_error():
    assert issubclass(ImageImportError, ValueError)


def test_cmyk_jpeg():
    im = _photo_of_seven().convert("CMYK")
    res = import_image(_encode(im, "JPEG", quality=90), (1, 28, 28))
    assert res.inverted is True
    _assert_centred_digit(res.tensor[0].numpy())
    assert res.original.ndim == 3


def test_palette_png_with_transparency():
    im = Image.new("P", (60, 60), 0)
    im.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    ImageDraw.Draw(im).rectangle([25, 10, 34, 50], fill=1)
    im.info["transparency"] = 0
    data = _encode(im, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    res = import_image(data, (1, 28, 28))
    # Dark bar on a transparent background: flattened onto white, then inverted.
    assert res.inverted is True
    assert any("transparent" in n for n in res.notes)
    _assert_centred_digit(res.tensor[0].numpy())


def test_animated_gif_uses_first_frame():
    f1 = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(f1).rectangle([18, 5, 21, 34], fill=255)  # vertical bar
    f2 = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(f2).rectangle([5, 18, 34, 21], fill=255)  # horizontal bar
    data = _encode(f1, "GIF", save_all=True, append_images=[f2], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    res = import_image(data, (1, 28, 28))
    assert any("first frame" in n for n in res.notes)
    bh, bw = _bbox(res.tensor[0].numpy(), 0.5)
    assert bh == 20 and bw < 6  # tall, thin: the first (vertical) frame


@pytest.mark.parametrize("color", [0, 255])
def test_one_pixel_image(color):
    res = import_image(_encode(Image.new("L", (1, 1), color), "PNG"), (1, 28, 28))
    assert tuple(res.tensor.shape) == (1, 28, 28)
    assert torch.isfinite(res.tensor).all()
    assert "image has no content" in res.notes
    assert res.original.shape == (1, 1)


def test_large_photo_is_decoded_quickly():
    im = _photo_of_seven(600, 400).resize((6000, 4000), Image.Resampling.NEAREST)
    data = _encode(im, "JPEG", quality=70)
    del im
    res = import_image(data, (1, 28, 28))
    assert max(res.original.shape) <= 512
    assert res.inverted is True
    _assert_centred_digit(res.tensor[0].numpy())
    # decode_image with a cap uses JPEG draft mode; without it returns full size.
    assert max(decode_image(data, max_side=1024).size) <= 1024


def _canvas(stroke, background, alpha_bg: int) -> np.ndarray:
    arr = np.zeros((280, 280, 4), np.uint8)
    arr[..., :3] = background
    arr[..., 3] = alpha_bg
    im = Image.fromarray(arr, "RGBA")
    d = ImageDraw.Draw(im)
    d.line([(60, 40), (90, 200)], fill=(*stroke, 255), width=20)  # off-centre '1'
    return np.asarray(im)


def test_canvas_white_on_black():
    res = import_array(_canvas((255, 255, 255), (0, 0, 0), 255), (1, 28, 28))
    assert res.inverted is False
    _assert_centred_digit(res.tensor[0].numpy())


def test_canvas_black_on_transparent():
    res = import_array(_canvas((0, 0, 0), (0, 0, 0), 0), (1, 28, 28))
    assert res.inverted is True
    _assert_centred_digit(res.tensor[0].numpy())
    assert res.original.shape == (280, 280, 3)


def test_canvas_white_on_transparent():
    # Light strokes on a transparent canvas must not vanish onto white.
    res = import_array(_canvas((255, 255, 255), (0, 0, 0), 0), (1, 28, 28))
    assert res.inverted is False
    _assert_centred_digit(res.tensor[0].numpy())


def test_import_array_grayscale_float_and_rejects_bad_shape():
    x = np.zeros((8, 8), np.float32)
    x[1:7, 3:5] = 1.0
    res = import_array(x, (1, 8, 8))
    assert tuple(res.tensor.shape) == (1, 8, 8)
    with pytest.raises(ImageImportError):
        import_array(np.zeros((4, 4, 2)), (1, 8, 8))
    with pytest.raises(ImageImportError):
        import_array(np.zeros((0, 4)), (1, 8, 8))


def test_fit_rgb():
    im = Image.new("RGB", (120, 60), (255, 0, 0))
    res = import_image(_encode(im, "PNG"), (3, 32, 32), preprocess="fit")
    t = res.tensor
    assert tuple(t.shape) == (3, 32, 32) and t.dtype == torch.float32
    assert res.inverted is False
    assert t[0].mean() > 0.95 and t[1].mean() < 0.05
    assert "centre-cropped to square" in res.notes


def test_fit_grayscale_no_inversion():
    im = Image.new("L", (50, 50), 230)
    t = import_image(_encode(im, "PNG"), (1, 28, 28), preprocess="fit").tensor
    assert t.mean().item() == pytest.approx(230 / 255, abs=0.01)


def test_bad_arguments():
    data = _encode(Image.new("L", (4, 4)), "PNG")
    with pytest.raises(ValueError):
        import_image(data, (2, 28, 28))
    with pytest.raises(ValueError):
        import_image(data, (1, 28, 28), preprocess="stretch")
