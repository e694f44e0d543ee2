"""The one guarded image decoder (vae_core.data.images): a file gives the same pixels, or the same
refusal, whether it arrives in a dataset folder or as an upload. Images are generated here with PIL."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFile

from vae_core.data import DatasetError, images, load_dataset
from vae_core.data.upload import ImageImportError, decode_image, import_array, import_image


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_with_declared_size(w: int, h: int) -> bytes:
    """A tiny, structurally valid PNG whose IHDR claims w x h (1-bit grayscale)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def through_dataset(tmp_path: Path, data: bytes, shape: tuple[int, int, int], name: str = "a.png") -> torch.Tensor:
    """The one image of a folder dataset holding only ``data``."""
    folder = tmp_path / "images"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)
    ds = load_dataset(f"folder:{folder}", image_size=shape[1], channels=shape[0], cache_dir=tmp_path / "cache")
    assert len(ds.x_train) == 1 and len(ds.x_test) == 0
    return ds.x_train[0]


def through_upload(data: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    return import_image(data, shape, preprocess="fit").tensor


def ramp16(value_max: int, size=(48, 40)) -> Image.Image:
    w, h = size
    return Image.fromarray(np.tile(np.linspace(0, value_max, w).round().astype(np.uint16), (h, 1)))


# --------------------------------------------------------------------------- the guards


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).bytes(4096),
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<circle cx="5" cy="5" r="4"/></svg>',
        b"<!DOCTYPE html><html><body><img src='x.png'></body></html>",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
    ],
    ids=["random", "svg", "html", "pdf"],
)
def test_refuses_non_images(data):
    with pytest.raises(ImageImportError, match=r"not a supported image \(PNG, JPEG, WebP, BMP or GIF\)"):
        import_image(data, (1, 28, 28))


def test_refuses_unlisted_format():
    data = encode(Image.new("L", (10, 10)), "TIFF")
    with pytest.raises(ImageImportError, match="not a supported image"):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_refuses_truncated(fmt):
    im = Image.effect_noise((128, 128), 60).convert("RGB")
    data = encode(im, fmt)
    with pytest.raises(ImageImportError, match="truncated or corrupt"):
        import_image(data[: len(data) // 2], (1, 28, 28))


@pytest.mark.parametrize("size", [(100_000, 100_000), (8_000, 8_000)])
def test_refuses_decompression_bomb(size):
    # 100k x 100k trips PIL's own guard at open; 8k x 8k (64 MP) only ours.
    data = png_with_declared_size(*size)
    assert len(data) < 200
    with pytest.raises(ImageImportError, match="too large") as ei:
        import_image(data, (1, 28, 28))
    assert "megapixels" in str(ei.value)


def test_truncated_tolerance_is_restored():
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        data = encode(Image.effect_noise((64, 64), 60), "PNG")
        with pytest.raises(ImageImportError, match="truncated"):
            decode_image(data[: len(data) // 2])
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_16bit_grayscale_keeps_range():
    mid = Image.fromarray(np.full((40, 40), 32768, np.uint16))
    assert encode(mid, "PNG") and Image.open(io.BytesIO(encode(mid, "PNG"))).mode.startswith("I")
    res = import_image(encode(mid, "PNG"), (1, 16, 16), preprocess="fit")
    assert res.tensor.mean().item() == pytest.approx(0.5, abs=0.01)
    ramp = Image.fromarray(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1)))
    t = import_image(encode(ramp, "PNG"), (1, 64, 64), preprocess="fit").tensor
    assert t.min().item() < 0.02 and t.max().item() > 0.98
    assert t[0, 0, 32].item() == pytest.approx(0.5, abs=0.03)


def test_decode_image_returns_l_or_rgb():
    assert decode_image(encode(Image.new("RGBA", (5, 5), (1, 2, 3, 4)), "PNG")).mode == "RGB"
    assert decode_image(encode(Image.new("LA", (5, 5)), "PNG")).mode == "L"
    assert decode_image(encode(Image.new("1", (5, 5)), "BMP")).mode == "L"
    assert decode_image(encode(Image.new("RGB", (5, 5)), "WEBP")).mode == "RGB"


# --------------------------------------------------------------------------- 16-bit


@pytest.mark.parametrize("value_max,expected_mean", [(65535, 0.5), (32768, 0.25), (255, 0.0)],
                         ids=["full", "half", "dark"])
def test_16bit_png_same_through_dataset_and_upload(tmp_path, value_max, expected_mean):
    data = encode(ramp16(value_max))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    shape = (1, 16, 16)
    from_dataset, from_upload = through_dataset(tmp_path, data, shape), through_upload(data, shape)
    assert torch.equal(from_dataset, from_upload)
    # The full 0..65535 range is the scale, whatever the brightest pixel: a dark 16-bit image stays dark.
    assert from_dataset.mean().item() == pytest.approx(expected_mean, abs=0.02)


def test_16bit_arrays_follow_the_same_rule(tmp_path):
    a = np.asarray(ramp16(32768))
    from_png = through_upload(encode(Image.fromarray(a)), (1, 16, 16))
    np.savez(tmp_path / "a.npz", x=a[None])
    from_npz = load_dataset(f"folder:{tmp_path / 'a.npz'}", image_size=16, cache_dir=tmp_path / "cache").x_train[0]
    from_array = import_array(a, (1, 16, 16), preprocess="fit").tensor
    assert torch.equal(from_png, from_npz) and torch.equal(from_png, from_array)
    assert from_png.mean().item() == pytest.approx(0.25, abs=0.02)


# --------------------------------------------------------------------------- transparency


def transparent_png(stroke: tuple[int, int, int], canvas_alpha: int) -> bytes:
    im = Image.new("RGBA", (60, 60), (0, 0, 0, canvas_alpha))
    ImageDraw.Draw(im).rectangle([24, 8, 35, 52], fill=(*stroke, 255))
    return encode(im)


@pytest.mark.parametrize("channels", [1, 3])
def test_transparent_png_same_through_dataset_and_upload(tmp_path, channels):
    data = transparent_png((20, 40, 200), 0)   # a dark bar on a transparent canvas
    shape = (channels, 20, 20)
    from_dataset, from_upload = through_dataset(tmp_path, data, shape), through_upload(data, shape)
    assert torch.equal(from_dataset, from_upload)
    assert from_dataset[:, 0, 0].min().item() == 1.0   # the transparent corner became white


def test_light_strokes_on_transparent_canvas_differ_on_purpose(tmp_path):
    """Uploads get a background that contrasts with the strokes; dataset files always get white."""
    data = transparent_png((255, 255, 255), 0)
    shape = (1, 20, 20)
    from_dataset, from_upload = through_dataset(tmp_path, data, shape), through_upload(data, shape)
    assert from_dataset.min().item() == 1.0                          # white bar on white: one flat image
    assert from_upload[0, 0, 0].item() == 0.0 and from_upload.max().item() == 1.0
    assert "transparent areas filled with black" in import_image(data, shape, "fit").notes


# --------------------------------------------------------------------------- the pixel limit


def test_one_pixel_limit_refuses_both_ways_alike(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    at_limit, over = encode(Image.new("L", (100, 100), 90)), encode(Image.new("L", (101, 100), 90))
    assert torch.equal(through_dataset(tmp_path / "ok", at_limit, (1, 8, 8)), through_upload(at_limit, (1, 8, 8)))

    with pytest.raises(ImageImportError) as refused:
        import_image(over, (1, 8, 8))
    message = str(refused.value)
    assert message.startswith("The image is too large (101×100 pixels); the limit is 0.01 megapixels.")

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "small.png").write_bytes(at_limit)
    (folder / "huge.png").write_bytes(over)
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable") as caught:
        ds = load_dataset(f"folder:{folder}", cache_dir=tmp_path / "cache")
    assert len(ds.x_train) + len(ds.x_test) == 1
    note = next(n for n in ds.notes if "skipped" in n)
    assert f"huge.png ({message})" in note and any(message in str(w.message) for w in caught)


def test_real_pixel_limit_is_read_from_the_header(tmp_path):
    assert images.MAX_PIXELS == 50_000_000
    data = png_with_declared_size(7072, 7071)   # 50,006,112 pixels, 7072 x 7071 just over
    assert len(data) < 200
    with pytest.raises(ImageImportError, match=r"too large \(7072×7071 pixels\); the limit is 50 megapixels"):
        import_image(data, (1, 28, 28))
    with pytest.raises(ImageImportError, match="the limit is 50 megapixels"):
        images.decode(data, fit=(28, 28))
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(data)
    with pytest.raises(DatasetError, match="no readable images") as refused:
        load_dataset(f"folder:{folder}", cache_dir=tmp_path / "cache")
    assert "the limit is 50 megapixels" in str(refused.value)


# --------------------------------------------------------------------------- the other guards, on dataset files


def test_dataset_files_get_the_upload_guards(tmp_path):
    folder = tmp_path / "guarded"
    folder.mkdir()
    good = encode(Image.new("L", (30, 30), 200))
    (folder / "good.png").write_bytes(good)
    (folder / "tiff.png").write_bytes(encode(Image.new("L", (30, 30)), "TIFF"))   # the content decides, not the name
    noisy = encode(Image.effect_noise((128, 128), 60))
    cut = noisy[: len(noisy) // 2]
    (folder / "cut.png").write_bytes(cut)
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True   # another module's tolerance must not let a cut file through
    try:
        with pytest.warns(RuntimeWarning, match="skipped 2 unreadable"):
            ds = load_dataset(f"folder:{folder}", cache_dir=tmp_path / "cache")
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    assert len(ds.x_train) + len(ds.x_test) == 1
    assert "cut.png (The image file is truncated or corrupt." in ds.notes[0]
    for data, message in ((cut, "truncated or corrupt"), ((folder / "tiff.png").read_bytes(), "not a supported image")):
        with pytest.raises(ImageImportError, match=message):
            import_image(data, (1, 8, 8))
        with pytest.raises(ImageImportError, match=message):
            images.decode(data, fit=(8, 8))


def test_decode_accepts_bytes_path_and_file(tmp_path):
    data = encode(Image.new("RGBA", (40, 20), (255, 0, 0, 128)))
    (tmp_path / "a.png").write_bytes(data)
    with open(tmp_path / "a.png", "rb") as fh:
        results = [images.decode(src, fit=(10, 10)) for src in (data, tmp_path / "a.png", str(tmp_path / "a.png"))]
        results.append(images.decode(fh, fit=(10, 10)))
    for r in results:
        assert r.image.mode == "RGB" and r.image.size == (10, 10)
        assert np.array_equal(np.asarray(r.image), np.asarray(results[0].image))
    assert "centre-cropped to square" in results[0].notes
    with pytest.raises(ValueError, match="max_side or fit"):
        images.decode(data, max_side=10, fit=(10, 10))
