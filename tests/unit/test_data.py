"""Datasets (vae_core.data): every dataset spec, the IDX parser, archive safety and caching."""

from __future__ import annotations

import gzip
import io
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core.data import (
    DEFAULT_DATASET,
    Dataset,
    DatasetError,
    clear_memo,
    images,
    list_datasets,
    load_dataset,
    parse_spec,
    read_idx,
)
from vae_core.data.sources import folder, idx, shapes

FASHION_PRESENT = Path(idx.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def check_common(ds: Dataset, n_train: int, n_test: int, shape: tuple[int, int, int], n_classes: int | None):
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.image_shape == shape
    for image_set in (ds.x_train, ds.x_test):
        x = image_set[:]                                          # every image, as floats
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert x.min() >= 0 and x.max() <= 1
    for y, n in ((ds.y_train, n_train), (ds.y_test, n_test)):
        assert y.dtype == torch.int64 and y.shape == (n,)
        if n_classes is not None:
            assert y.min() >= 0 and y.max() < n_classes
    if n_classes is not None:
        assert ds.class_names is not None and len(ds.class_names) == n_classes


def same(a: Dataset, b: Dataset) -> bool:
    fields = ("x_train", "y_train", "x_test", "y_test", "factors_train", "factors_test")
    for f in fields:
        ta, tb = getattr(a, f), getattr(b, f)
        if f.startswith("x_"):
            ta, tb = ta[:], tb[:]
        if (ta is None) != (tb is None) or (ta is not None and not torch.equal(ta, tb)):
            return False
    return a.class_names == b.class_names and a.factor_names == b.factor_names and a.preprocess == b.preprocess


def test_parse_spec():
    assert parse_spec("idx:/a/b") == ("idx", "/a/b")
    assert parse_spec("mnist") == ("mnist", None)
    assert parse_spec(" Shapes:64 ") == ("shapes", "64")
    assert parse_spec("folder:C:\\data") == ("folder", "C:\\data")
    assert parse_spec("fashion-mnist") == ("fashion-mnist", None)
    for bad in ("nope", "mnist:x", "idx:", "folder", "", "/some/path"):
        with pytest.raises(DatasetError):
            parse_spec(bad)
    assert DEFAULT_DATASET == "mnist"


def test_bad_options(cache):
    for kw in ({"image_size": 0}, {"image_size": 28.0}, {"channels": 2}, {"seed": -1}):
        with pytest.raises(DatasetError):
            load_dataset("digits", cache_dir=cache, **kw)
    with pytest.raises(DatasetError, match="shapes:64"):
        load_dataset("shapes:big", cache_dir=cache)
    with pytest.raises(DatasetError):
        load_dataset("shapes:4", cache_dir=cache)


def test_mnist(cache):
    ds = load_dataset("mnist", cache_dir=cache)
    check_common(ds, 4500, 500, (1, 28, 28), 10)
    assert ds.name == "mnist" and ds.preprocess == "digit"
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert np.bincount(ds.y_test.numpy()).tolist() == [50] * 10
    assert np.bincount(ds.y_train.numpy()).tolist() == [450] * 10
    # Real digits: dark background, a bright stroke.
    assert ds.x_train[:][:, :, 0, :].max() < 0.5 and ds.x_train[:].amax(dim=(1, 2, 3)).min() > 0.9
    assert load_dataset("mnist", cache_dir=cache) is ds          # memoised


def test_mnist_deterministic(cache, tmp_path):
    a = load_dataset("mnist", cache_dir=cache)
    clear_memo()
    b = load_dataset("mnist", cache_dir=tmp_path)                 # rebuilt from scratch
    assert same(a, b)


def test_digits(cache, tmp_path):
    ds = load_dataset("digits", cache_dir=cache)
    check_common(ds, 1617, 180, (1, 8, 8), 10)
    assert ds.preprocess == "digit" and ds.x_train[:].max() == 1.0
    counts = np.bincount(ds.y_test.numpy())
    assert counts.min() >= 17 and counts.max() <= 19             # stratified
    clear_memo()
    assert same(ds, load_dataset("digits", cache_dir=tmp_path))
    other = load_dataset("digits", cache_dir=cache, seed=1)
    assert not torch.equal(other.x_test[:], ds.x_test[:])              # the seed picks the split
    assert other.x_test.shape == ds.x_test.shape


def test_resize_builtin(cache):
    ds = load_dataset("digits", cache_dir=cache, image_size=16, channels=3)
    check_common(ds, 1617, 180, (3, 16, 16), 10)
    assert torch.equal(ds.x_train[:][:, 0], ds.x_train[:][:, 2])


@pytest.mark.parametrize("spec,size", [("shapes", 32), ("shapes:64", 64)])
def test_shapes(cache, tmp_path, spec, size):
    ds = load_dataset(spec, cache_dir=cache)
    n = shapes.SHAPES_COUNT
    n_test = round(n * 0.1)
    check_common(ds, n - n_test, n_test, (1, size, size), 3)
    assert ds.class_names == ("square", "ellipse", "heart")
    assert ds.factor_names == ("shape", "scale", "rotation", "x", "y")
    assert ds.factors_train.shape == (n - n_test, 5) and ds.factors_train.dtype == torch.float32
    assert torch.equal(ds.y_train, ds.factors_train[:, 0].long())

    x = torch.cat([ds.x_train[:], ds.x_test[:]])[:, 0]
    f = torch.cat([ds.factors_train, ds.factors_test])
    assert f[:, 3].min() == 0 and f[:, 3].max() == 1 and f[:, 2].max() < 2 * np.pi
    # Every shape is fully inside the frame.
    assert x[:, 0].max() == 0 and x[:, -1].max() == 0 and x[:, :, 0].max() == 0 and x[:, :, -1].max() == 0
    mass = x.sum(dim=(1, 2))
    assert mass.min() > 0
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    com_x = (x.sum(1) * coords).sum(1) / mass
    com_y = (x.sum(2) * coords).sum(1) / mass
    assert np.corrcoef(com_x, f[:, 3])[0, 1] > 0.99
    assert np.corrcoef(com_y, f[:, 4])[0, 1] > 0.99
    for shape in range(3):
        sel = f[:, 0] == shape
        means = [mass[sel & (f[:, 1] == s)].mean().item() for s in torch.unique(f[:, 1])]
        assert len(means) == 6 and all(a < b for a, b in zip(means, means[1:]))

    if size == 32:   # determinism: a fresh render equals the cached one
        clear_memo()
        assert same(ds, load_dataset(spec, cache_dir=tmp_path))


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool = False) -> None:
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)


def small_idx(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 6, 5), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 3


def test_idx_folder_gz_and_raw(cache, tmp_path):
    xtr, ytr = small_idx(40)
    xte, yte = small_idx(10, seed=1)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", xtr, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr, gz=True)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", xte)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", yte)
    ds = load_dataset(f"idx:{tmp_path}", cache_dir=cache)
    check_common(ds, 40, 10, (1, 6, 5), 3)
    assert torch.equal(ds.x_train[:][:, 0], torch.from_numpy(xtr).float() / 255)
    assert torch.equal(ds.x_test[:][:, 0], torch.from_numpy(xte).float() / 255)
    assert ds.y_train.tolist() == ytr.tolist() and ds.y_test.tolist() == yte.tolist()
    assert ds.class_names == ("0", "1", "2") and ds.name == f"idx:{tmp_path}"


def test_idx_train_only_and_no_labels(cache, tmp_path):
    x, _ = small_idx(50)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    ds = load_dataset(f"idx:{tmp_path}", cache_dir=cache)
    check_common(ds, 45, 5, (1, 6, 5), None)
    assert (ds.y_train == -1).all() and (ds.y_test == -1).all() and ds.class_names is None
    together = torch.cat([ds.x_train[:], ds.x_test[:]])[:, 0].mul(255).round().to(torch.uint8)
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, x))   # a partition, nothing lost
    clear_memo()
    assert same(ds, load_dataset(f"idx:{tmp_path}", cache_dir=cache))


def test_read_idx_parses_types(tmp_path):
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(a, 0x0C))
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.int32 and out.tolist() == a.tolist()


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b"\x12\x34" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x42" + b[3:], "type code"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b"", "truncated"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_idx(cache, tmp_path, damage, message, gz):
    x, _ = small_idx(20)
    data = damage(idx_bytes(x))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(f"idx:{tmp_path}", cache_dir=cache)
    assert str(path) in str(err.value)


def test_truncated_gzip_stream(tmp_path):
    x, _ = small_idx(200)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(x))[:-30])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_idx_label_mismatch_and_missing(cache, tmp_path):
    x, y = small_idx(20)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:19])
    with pytest.raises(DatasetError, match="19 labels for 20 images"):
        load_dataset(f"idx:{tmp_path}", cache_dir=cache)
    with pytest.raises(DatasetError, match="train-images"):
        load_dataset(f"idx:{tmp_path / 'empty'}", cache_dir=cache)


def test_fashion_missing(cache, monkeypatch):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist:/nonexistent", cache_dir=cache)
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", "/nonexistent")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", cache_dir=cache)
    status = {s.name: s for s in list_datasets()}["fashion-mnist"]
    assert not status.available and "apt-get install dataset-fashion-mnist" in status.detail


@pytest.mark.skipif(not FASHION_PRESENT, reason="Fashion-MNIST is not installed here")
def test_fashion_and_cache_speed(tmp_path):
    first = load_dataset("fashion-mnist", cache_dir=tmp_path)
    check_common(first, 60000, 10000, (1, 28, 28), 10)
    assert first.class_names[0] == "T-shirt/top" and first.class_names[9] == "Ankle boot"
    assert np.bincount(first.y_test.numpy()).tolist() == [1000] * 10
    clear_memo()
    t0 = time.perf_counter()
    second = load_dataset("fashion-mnist", cache_dir=tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"cached Fashion-MNIST load took {elapsed:.2f}s"
    assert second is not first and same(first, second)


def test_corrupt_cache_is_rebuilt(tmp_path):
    first = load_dataset("digits", cache_dir=tmp_path)
    entries = [p for p in tmp_path.iterdir() if p.name.startswith("digits-")]
    assert len(entries) == 1 and not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
    x_file = entries[0] / "x.npy"
    x_file.write_bytes(x_file.read_bytes()[:100])                # simulate a damaged file
    clear_memo()
    assert same(first, load_dataset("digits", cache_dir=tmp_path))
    (entries[0] / "meta.json").write_text("{not json")
    clear_memo()
    assert same(first, load_dataset("digits", cache_dir=tmp_path))
    assert not any(p.suffix == ".pkl" for p in tmp_path.rglob("*"))


def test_cache_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path))
    clear_memo()  # an earlier test may have loaded digits in this process already
    load_dataset("digits")
    assert any(p.name.startswith("digits-") for p in tmp_path.iterdir())


def png_bytes(value: int, size=(20, 30), mode="L") -> bytes:
    buf = io.BytesIO()
    color = value if mode == "L" else (value, value // 2, 255 - value, 255)
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_class_folder(root: Path) -> Path:
    for cls, value in (("cats", 40), ("dogs", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            (root / cls / f"{i}.png").write_bytes(png_bytes(value + i, size=(20 + i, 30)))
    (root / "dogs" / "broken.png").write_bytes(b"not an image")
    (root / "dogs" / "notes.txt").write_text("ignored")
    return root


def test_folder_with_classes(cache, tmp_path):
    root = make_class_folder(tmp_path / "pets")
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        ds = load_dataset(f"folder:{root}", cache_dir=cache)
    check_common(ds, 11, 1, (1, 28, 28), 2)
    assert ds.class_names == ("cats", "dogs") and ds.preprocess == "fit"
    assert any("skipped 1" in n for n in ds.notes)
    x = torch.cat([ds.x_train[:], ds.x_test[:]])
    y = torch.cat([ds.y_train, ds.y_test])
    means = x.mean(dim=(1, 2, 3))
    assert (means[y == 0] < 0.3).all() and (means[y == 1] > 0.7).all()   # labels follow the folders

    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        rgb = load_dataset(f"folder:{root}", cache_dir=cache, image_size=16, channels=3)
    check_common(rgb, 11, 1, (3, 16, 16), 2)


def test_folder_flat_rgba(cache, tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(10 * i, mode="RGBA"))
    ds = load_dataset(f"folder:{tmp_path}", cache_dir=cache, channels=3)
    check_common(ds, 3, 1, (3, 28, 28), None)
    assert ds.class_names is None and (ds.y_train == -1).all()


def test_folder_empty_or_unreadable(cache, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        load_dataset(f"folder:{tmp_path / 'empty'}", cache_dir=cache)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no readable images"):
        load_dataset(f"folder:{tmp_path / 'bad'}", cache_dir=cache)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}", cache_dir=cache)


def test_folder_decompression_bomb_skipped(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 500)
    (tmp_path / "small.png").write_bytes(png_bytes(100, size=(10, 10)))
    (tmp_path / "huge.png").write_bytes(png_bytes(100, size=(100, 100)))
    with pytest.warns(RuntimeWarning, match="skipped 1"):
        ds = load_dataset(f"folder:{tmp_path}", cache_dir=cache)
    assert len(ds.x_train) + len(ds.x_test) == 1


def test_zip_traversal_entries_skipped(cache, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    archive = work / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for cls, value in (("a", 30), ("b", 220)):
            for i in range(5):
                zf.writestr(f"top/{cls}/{i}.png", png_bytes(value))
        zf.writestr("../evil.png", png_bytes(128))
        zf.writestr("/abs.png", png_bytes(128))
        zf.writestr("__MACOSX/top/a/._0.png", b"resource fork")
    before = {p for p in tmp_path.rglob("*")}
    with pytest.warns(RuntimeWarning, match="unsafe paths"):
        ds = load_dataset(f"folder:{archive}", cache_dir=cache)
    assert {p for p in tmp_path.rglob("*")} == before             # nothing extracted anywhere
    assert not (tmp_path / "evil.png").exists() and not Path("/abs.png").exists()
    assert len(ds.x_train) + len(ds.x_test) == 10                  # the unsafe entries were skipped
    assert ds.class_names == ("a", "b")
    assert any("skipped 2 zip entries" in n for n in ds.notes)


def write_bomb(archive: Path, name: str = "bomb.png", mib: int = 100) -> None:
    """A real zip bomb: ``mib`` MiB of zeros deflated ~1000x (the most deflate can do)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            chunk = bytes(4 << 20)
            for _ in range(mib // 4):
                fh.write(chunk)


def test_zip_bomb_refused(cache, tmp_path):
    archive = tmp_path / "bomb.zip"
    write_bomb(archive)                                            # 100 MiB of zeros, ~100 KB on disk
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(DatasetError, match="zip bomb") as refused:
        load_dataset(f"folder:{archive}", cache_dir=cache)
    assert "bomb.png" in str(refused.value) and "1,0" in str(refused.value)   # names it, with its ~1,000x ratio
    npz = tmp_path / "bomb.npz"                                    # an .npz is a zip: the same check
    write_bomb(npz, "x.npy")
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(f"folder:{npz}", cache_dir=cache)


def test_zip_member_count_cap(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "MAX_ZIP_MEMBERS", 3)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"{i}.png", png_bytes(i))
    with pytest.raises(DatasetError, match="entries exceed"):
        load_dataset(f"folder:{archive}", cache_dir=cache)


def test_npz(cache, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = np.arange(30) % 2
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = load_dataset(f"folder:{tmp_path / 'a.npz'}", cache_dir=cache)
    check_common(ds, 27, 3, (1, 28, 28), 2)
    together = torch.cat([ds.x_train[:], ds.x_test[:]]).mul(255).round().to(torch.uint8)[:, 0].numpy()
    assert sorted(map(bytes, together)) == sorted(map(bytes, x))   # same size: pixels kept exactly

    np.savez(tmp_path / "b.npz", images=rng.random((10, 12, 16, 3), dtype=np.float32))
    ds = load_dataset(f"folder:{tmp_path / 'b.npz'}", cache_dir=cache, image_size=8, channels=3)
    check_common(ds, 9, 1, (3, 8, 8), None)

    np.savez(tmp_path / "c.npz", pixels=x)
    with pytest.raises(DatasetError, match="'x'"):
        load_dataset(f"folder:{tmp_path / 'c.npz'}", cache_dir=cache)
    np.savez(tmp_path / "d.npz", x=np.array([object()] * 3, dtype=object))
    with pytest.raises(DatasetError):
        load_dataset(f"folder:{tmp_path / 'd.npz'}", cache_dir=cache)


def test_folder_cache_tracks_changes(cache, tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(50))
    first = load_dataset(f"folder:{tmp_path}", cache_dir=cache)
    (tmp_path / "3.png").write_bytes(png_bytes(60))
    second = load_dataset(f"folder:{tmp_path}", cache_dir=cache)
    assert len(first.x_train) + len(first.x_test) == 3
    assert len(second.x_train) + len(second.x_test) == 4


def test_list_datasets():
    statuses = list_datasets()
    names = [s.name for s in statuses]
    for expected in ("mnist", "digits", "fashion-mnist", "shapes", "shapes:64", "idx:<folder>", "folder:<path>"):
        assert expected in names
    for s in statuses:
        assert isinstance(s.available, bool) and s.detail and s.description
    by_name = {s.name: s for s in statuses}
    assert by_name["mnist"].available and by_name["shapes"].available
    assert by_name["fashion-mnist"].available == FASHION_PRESENT
    assert by_name["idx:<folder>"].needs_path and not by_name["mnist"].needs_path
    # Every concrete listed name actually loads as a spec.
    for s in statuses:
        if not s.needs_path:
            parse_spec(s.name)
