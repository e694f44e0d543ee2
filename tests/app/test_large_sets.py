"""AppTest of Latent space and Encode on a dataset larger than what they draw, whose images are
memory-mapped from the dataset cache (issue 12): the test set is encoded a batch at a time, the
scatters draw an evenly spread sample, the nearest neighbours search the whole training set a
batch at a time with a progress bar, and no page reads a whole set as floats.

The dataset is an IDX folder written here: 12,000 training and 6,000 test images of 8×8, one
bright bar per class plus noise, so that a run of a few steps already separates the classes a
little. Its worker summary is removed, so the pages encode the test set themselves.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from tests.conftest import page_app

N_TRAIN, N_TEST = 12_000, 6_000
LATENT_MAX_POINTS, ENCODE_MAX_SCATTER = 1000, 5000  # pages/latent_space.py MAX_POINTS, pages/encode.py MAX_SCATTER
BATCH = 1000  # vae_core.explore.BATCH: the most images a page may hold as floats at once


def _idx(path, a: np.ndarray) -> None:
    path.write_bytes(bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.uint8)
    x = rng.integers(0, 60, (n, 8, 8), dtype=np.uint8)
    for k in range(10):  # class k: a bright bar, row k for k < 8, else column k - 8
        m = y == k
        if k < 8:
            x[m, k, :] = 230
        else:
            x[m, :, (k - 8) * 4] = 230
    return x, y


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """(runs folder, dataset spec) with one run "big" of a few steps on the 18,000-image IDX set."""
    from vae_core.runs.manager import new_run_config
    from vae_core.runs.trainer import train

    folder = tmp_path_factory.mktemp("big-idx")
    for prefix, n, seed in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1)):
        x, y = _images(n, seed)
        _idx(folder / f"{prefix}-images-idx3-ubyte", x)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    spec = f"idx:{folder}"
    root = tmp_path_factory.mktemp("big-runs")
    cfg = new_run_config(spec, model={"latent_dim": 3, "hidden": 32},
                         train={"epochs": 1, "max_steps": 30, "batch_size": 256, "lr": 3e-3, "log_every_steps": 10,
                                "num_threads": 1})
    status = train(cfg, root / "big")
    assert status.state == "finished", status.error
    (root / "big" / "summary.safetensors").unlink(missing_ok=True)  # the pages must encode the test set here
    return root, spec


@pytest.fixture
def big(big_run, monkeypatch):
    """The app on ``big_run``, with Streamlit's caches cleared, recording every float batch read
    from an ImageSet (``rows``) and every progress bar (``bars``: text -> [(done, total)])."""
    import streamlit as st

    from pages._ui import cache as ui_cache
    from vae_core.data.imageset import ImageSet

    root, spec = big_run
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()
    st.cache_data.clear()
    rows: list[int] = []
    real_to_float = ImageSet.to_float

    def to_float(self, u8, device=None):
        out = real_to_float(self, u8, device)
        rows.append(1 if out.dim() == 3 else len(out))
        return out

    monkeypatch.setattr(ImageSet, "to_float", to_float)
    bars: dict[str, list[tuple[int, int]]] = {}
    real_bar = ui_cache.progress_bar

    @contextlib.contextmanager
    def progress_bar(text, every_s=0.25):
        with real_bar(text, every_s) as bar:
            def progress(done, total):
                bars.setdefault(text, []).append((done, total))
                bar(done, total)
            yield progress

    monkeypatch.setattr(ui_cache, "progress_bar", progress_bar)
    yield {"spec": spec, "rows": rows, "bars": bars}
    st.cache_resource.clear()
    st.cache_data.clear()


def _arr(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _points(fig: dict) -> int:
    return sum(len(_arr(t.get("x", []))) for t in fig["data"] if str(t.get("mode", "")).startswith("markers"))


def test_the_dataset_is_memory_mapped_and_larger_than_the_scatters(big):
    from vae_core.data import load_dataset

    ds = load_dataset(big["spec"])
    assert ds.x_train.memory_mapped and ds.x_test.memory_mapped
    assert (len(ds.x_train), len(ds.x_test)) == (N_TRAIN, N_TEST)
    assert N_TEST > ENCODE_MAX_SCATTER > LATENT_MAX_POINTS


def test_latent_space_encodes_the_test_set_a_batch_at_a_time_and_draws_a_spread_sample(big):
    at = page_app("pages/latent_space.py", run="big", timeout=120).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    # The test set was encoded here (no summary), every image once, a batch at a time.
    assert big["bars"]["Encoding the test set"][-1] == (N_TEST, N_TEST)
    assert max(big["rows"]) <= BATCH and sum(big["rows"]) < N_TEST + 200  # + the health probe and no more
    scatter = json.loads(at.get("plotly_chart")[0].proto.spec)
    ids = np.concatenate([_arr(t["customdata"])[:, 0] if not isinstance(t["customdata"], dict) else
                          _arr(t["customdata"]) for t in scatter["data"] if "customdata" in t]).astype(int)
    assert len(ids) == _points(scatter) == LATENT_MAX_POINTS
    assert ids.min() == 0 and ids.max() == N_TEST - 1  # spread over the whole test set, not its first rows
    assert f"evenly spread over all {N_TEST:,}" in "\n".join(c.value for c in at.caption)
    # The KL bars are over every test image.
    assert any(f"over the {N_TEST:,} test images" in c.value for c in at.caption)


def _png() -> bytes:
    im = Image.new("L", (80, 80), 0)
    im.paste(255, (0, 30, 80, 40))  # a horizontal bar, like class 3 or 4
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_encode_searches_the_whole_training_set_a_batch_at_a_time(big):
    at = page_app("pages/encode.py", run="big", timeout=120).run()
    assert not at.exception, at.exception
    assert "Encoding the training set" not in big["bars"]  # nothing before an image is given
    opened = len(big["rows"])
    at.file_uploader(key="encode_file").set_value(("bar.png", _png(), "image/png")).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    seen = big["bars"]["Encoding the training set"]
    assert seen[-1] == (N_TRAIN, N_TRAIN) and len(seen) >= N_TRAIN // BATCH  # a bar that moved batch by batch
    after = big["rows"][opened:]
    assert max(after) <= BATCH and sum(after) < N_TRAIN + 50
    assert after[-8:] == [1] * 8  # then only the 8 neighbours' images are read, one each
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    scatter = max(charts, key=_points)
    assert ENCODE_MAX_SCATTER <= _points(scatter) <= ENCODE_MAX_SCATTER + 1  # the spread test codes and the star
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    assert sum(" · d " in c or c.startswith("d ") for c in captions) == 8  # the 8 nearest training images
