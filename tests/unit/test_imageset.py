"""Images stored as uint8 and served as floats: indexing, views, memory-mapped reads, and the
training feeds, whose streamed batches must equal the in-memory ones exactly."""
import os

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from vae_core.data.feed import DeviceFeed, StreamFeed, choose_placement, make_feed
from vae_core.data.imageset import ImageSet, iter_float_batches
from vae_core.runs import rundir as rd
from vae_core.runs.trainer import train


def pixels(n=50, shape=(3, 4, 5), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.fixture
def on_disk(tmp_path) -> np.memmap:
    path = tmp_path / "x.npy"
    np.save(path, pixels(), allow_pickle=False)
    return np.load(path, mmap_mode="r")


def test_indexing_gives_floats_in_the_unit_interval():
    u8 = pixels()
    x = ImageSet(u8)
    assert len(x) == 50 and x.shape == (50, 3, 4, 5) and x.image_shape == (3, 4, 5) and x.nbytes == u8.nbytes
    np.testing.assert_array_equal(x[7].numpy(), u8[7] / np.float32(255))
    assert x[7].dtype == torch.float32 and x[7].shape == (3, 4, 5)
    np.testing.assert_array_equal(x[-1].numpy(), u8[-1] / np.float32(255))
    for idx in (slice(3, 9), np.array([4, 0, 4, 49]), torch.tensor([2, 1]), [5, 6], np.arange(50) % 7 == 0):
        expected = u8[np.arange(50)[idx] if not isinstance(idx, torch.Tensor) else idx.numpy()]
        np.testing.assert_array_equal(x[idx].numpy(), expected / np.float32(255))
    with pytest.raises(IndexError, match="out of range"):
        x[50]
    with pytest.raises(IndexError, match="out of range"):
        x[np.array([1, 60])]
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(u8.astype(np.float32))


def test_another_scale_and_views_that_share_the_storage():
    digits = np.random.default_rng(1).integers(0, 17, size=(20, 1, 8, 8), dtype=np.uint8)  # scikit-learn's 0..16
    x = ImageSet(digits, scale=16.0)
    assert float(x[:].max()) <= 1.0 and x[3].numpy() == pytest.approx(digits[3] / 16.0)
    train, test = ImageSet(digits, 16.0, np.arange(0, 20, 2)), ImageSet(digits, 16.0, np.arange(1, 20, 2))
    assert len(train) == len(test) == 10 and train._storage is test._storage is digits  # no copy
    np.testing.assert_array_equal(test[2].numpy(), digits[5] / np.float32(16))
    sub = test.subset(np.array([4, 0]))
    np.testing.assert_array_equal(sub.uint8(), digits[[9, 1]])
    np.testing.assert_array_equal(sub.numpy(), test[np.array([4, 0])].numpy())


def test_memory_mapped_rows_are_read_with_pread_and_match_the_array(on_disk):
    x = ImageSet(on_disk, rows=np.arange(49, -1, -1))  # reversed, to scatter the reads
    assert x.memory_mapped
    for idx in (slice(None), np.array([0, 1, 2, 10, 11, 40]), np.array([33, 7, 33])):
        np.testing.assert_array_equal(x.uint8(idx), np.asarray(on_disk)[::-1][idx])
    assert not np.shares_memory(x.uint8(slice(0, 3)), on_disk)  # copies, not views of the mapping


def test_a_truncated_cache_file_is_an_error_with_a_sentence(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, pixels(), allow_pickle=False)
    m = np.load(path, mmap_mode="r")
    x = ImageSet(m)
    os.truncate(path, os.path.getsize(path) - 100)  # the file shrinks under the reader
    with pytest.raises(OSError, match="shorter than its header"):
        x.uint8(slice(45, 50))


def test_float_batches_cover_the_set_in_order(on_disk):
    x = ImageSet(on_disk)
    got = torch.cat(list(iter_float_batches(x, 16, "cpu")))
    np.testing.assert_array_equal(got.numpy(), np.asarray(on_disk) / np.float32(255))
    t = torch.rand(10, 2)
    assert torch.equal(torch.cat(list(iter_float_batches(t, 3, "cpu"))), t)


def test_streamed_batches_equal_the_in_memory_ones(on_disk):
    x = ImageSet(on_disk, rows=np.random.default_rng(3).permutation(50))
    order = [np.random.default_rng(s).permutation(50)[:8] for s in range(7)]
    device = torch.device("cpu")
    resident = list(DeviceFeed(x, device).batches(order))
    streamed = list(StreamFeed(x, device).batches(order))
    assert len(resident) == len(streamed) == 7
    for a, b in zip(resident, streamed):
        assert torch.equal(a, b) and a.dtype == torch.float32


def test_a_stream_can_be_left_early_and_reports_read_errors(on_disk, tmp_path):
    x = ImageSet(on_disk)
    feed = StreamFeed(x, torch.device("cpu"), depth=1)
    it = feed.batches([np.arange(5)] * 100)
    next(it)
    it.close()  # the reader thread stops instead of filling a queue nobody reads
    with pytest.raises(IndexError):
        list(feed.batches([np.arange(5), np.array([99])]))


def test_placement_follows_the_size(monkeypatch):
    x = ImageSet(pixels(n=100, shape=(1, 32, 32)))  # 100 KiB
    cpu = torch.device("cpu")
    monkeypatch.setenv("LATENT_EXPLORER_IN_MEMORY_MAX_GB", "0.001")  # ~1 MiB: fits
    assert choose_placement(x, cpu) == "device" and isinstance(make_feed(x, cpu), DeviceFeed)
    monkeypatch.setenv("LATENT_EXPLORER_IN_MEMORY_MAX_GB", "0.00005")  # ~52 KiB: streams
    assert choose_placement(x, cpu) == "stream" and isinstance(make_feed(x, cpu), StreamFeed)
    assert choose_placement(x, cpu, "device") == "device"  # an explicit request wins


def test_a_streamed_run_trains_exactly_like_a_resident_one(tmp_path):
    runs = {}
    for placement in ("device", "stream"):
        status = train(tiny_config(epochs=2, data_placement=placement), tmp_path / placement)
        assert status.state == "finished" and status.extra["data_placement"] == placement
        runs[placement] = rd.load_snapshot(tmp_path / placement).model.state_dict()
    for k, v in runs["device"].items():
        assert torch.equal(v, runs["stream"][k]), k
