"""The dataset cache at scale (vae_core.data.cache): memory-mapped entries, their manifest and
checks, eviction, build progress, the folder-scan memo, and the caps that stop decompression
bombs but let honest large files through. Real files in tmp_path throughout."""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import re
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core.cli import _BuildProgress
from vae_core.data import DatasetError, cache, clear_memo, load_dataset
from vae_core.data.sources import folder, idx, shapes
from vae_core.data.sources.plan import MAX_COMPRESSION_RATIO, BuildOutput, Plan

FIELDS = ("x", "y", "x_test", "y_test", "factors", "factors_test")


def png(value: int, size=(12, 10), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, value // 2)).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root: Path, n: int = 4, start: int = 0, classes=("a", "b")) -> Path:
    for i in range(start, start + n):
        d = root / classes[i % len(classes)]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.png").write_bytes(png(20 * i % 256))
    return root


def backdate(root: Path, seconds: float = 60) -> None:
    """Make a folder look settled: every file and folder last changed ``seconds`` ago."""
    t = time.time() - seconds
    for p in [root, *root.rglob("*")]:
        os.utime(p, (t, t))


def load(plan: Plan, cache_dir: Path, progress=None):
    return cache.load_or_build(plan.kind, plan.key, plan.build, cache_dir, origin=plan.origin, progress=progress)


def fresh(plan: Plan):
    """The same source decoded again, in memory, without the cache."""
    return plan.build(BuildOutput())


def assert_same(raw, ref) -> None:
    for f in FIELDS:
        a, b = getattr(raw, f), getattr(ref, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b), f
    assert raw.class_names == ref.class_names and raw.factor_names == ref.factor_names


def entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def idx_file(path: Path, a: np.ndarray, gz: bool = False) -> None:
    data = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def idx_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    idx_file(root / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 6, 5), dtype=np.uint8))
    idx_file(root / "train-labels-idx1-ubyte", np.arange(30, dtype=np.uint8) % 3)
    idx_file(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (8, 6, 5), dtype=np.uint8), gz=True)
    return root


@pytest.fixture(autouse=True)
def _forget():
    clear_memo()
    yield
    clear_memo()


# --------------------------------------------------------------------------- what comes back


def test_cached_images_are_read_only_maps_equal_to_a_fresh_build(tmp_path):
    c = tmp_path / "cache"
    sources = [folder.plan_folder(str(make_folder(tmp_path / "pets", 6)), None, 3),
               idx.plan_idx(str(idx_folder(tmp_path / "idx")), None, None)]
    for plan in sources:
        built = load(plan, c)                      # first build: returned from the cache as well
        again = load(plan, c)                      # a hit
        for raw in (built, again):
            images = [raw.x] + ([raw.x_test] if raw.x_test is not None else [])
            for a in images:
                assert isinstance(a, np.memmap) and a.mode == "r" and not a.flags.writeable
                assert Path(a.filename).parent.parent == c
                with pytest.raises(ValueError):
                    a[0, 0, 0, 0] = 1
            assert not isinstance(raw.y, np.memmap)
            assert_same(raw, fresh(plan))
    assert load(sources[1], c).x_test is not None


def test_manifest_records_the_source_and_every_array(tmp_path):
    root = make_folder(tmp_path / "pets", 5)
    (root / "a" / "bad.png").write_bytes(b"not a png")
    plan = folder.plan_folder(str(root), None, None)
    raw = load(plan, tmp_path / "cache")
    [entry] = entries(tmp_path / "cache")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["format"] == cache.FORMAT and meta["version"] == cache.CACHE_VERSION
    assert meta["source"]["key"] == json.loads(json.dumps(plan.key))
    assert meta["source"]["digest"] == cache._digest([cache.CACHE_VERSION, plan.kind, plan.key])
    assert set(meta["arrays"]) == {"x", "y"}
    for name, spec in meta["arrays"].items():
        data = (entry / spec["file"]).read_bytes()
        assert spec["file"] == f"{name}.npy" and spec["bytes"] == len(data)
        assert spec["crc32"] == f"{zlib.crc32(data):08x}"
        assert spec["shape"] == list(getattr(raw, name).shape) and spec["dtype"] == getattr(raw, name).dtype.str
    assert meta["class_names"] == ["a", "b"] and meta["scale"] == 255.0 and meta["preprocess"] == "fit"
    assert any("skipped 1 unreadable" in n and "bad.png" in n for n in meta["notes"])


# --------------------------------------------------------------------------- damage and change


def _cut(entry: Path) -> None:
    f = entry / "x.npy"
    f.write_bytes(f.read_bytes()[:-100])


def _cut_and_fix_manifest(entry: Path) -> None:   # the manifest agrees; the header's shape does not
    _cut(entry)
    meta = json.loads((entry / "meta.json").read_text())
    meta["arrays"]["x"]["bytes"] = (entry / "x.npy").stat().st_size
    (entry / "meta.json").write_text(json.dumps(meta))


def _flip(entry: Path) -> None:
    f = entry / "x.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x40
    f.write_bytes(bytes(data))


def _manifest(change):
    def damage(entry: Path) -> None:
        meta = json.loads((entry / "meta.json").read_text())
        change(meta)
        (entry / "meta.json").write_text(json.dumps(meta))
    return damage


def _stray_file(entry: Path) -> None:
    np.save(entry / "stray.npy", np.zeros(3))


DAMAGE = {
    "truncated": (_cut, r"x\.npy is [\d,]+ bytes but the manifest says [\d,]+"),
    "truncated, manifest fixed": (_cut_and_fix_manifest, r"x\.npy is [\d,]+ bytes, not the [\d,]+ its shape needs"),
    "flipped byte": (_flip, r"x\.npy fails its checksum"),
    "manifest shape": (_manifest(lambda m: m["arrays"]["x"]["shape"].__setitem__(0, 99)),
                       r"x\.npy holds \|u1 \[\d+, 1, 28, 28\] but the manifest says \|u1 \[99"),
    "manifest source": (_manifest(lambda m: m["source"]["key"].__setitem__("size", 99)),
                        "its manifest describes another source"),
    "manifest files": (_stray_file, r"its manifest lists \['x.npy', 'y.npy'\] but the folder holds"),
    "manifest json": (lambda e: (e / "meta.json").write_text("{not json"), "its manifest is unreadable"),
    "no manifest": (lambda e: (e / "meta.json").unlink(), "it has no manifest"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_entry_is_detected_dropped_and_rebuilt(tmp_path, case):
    damage, reason = DAMAGE[case]
    c = tmp_path / "cache"
    plan = folder.plan_folder(str(make_folder(tmp_path / "pets", 6)), None, None)
    load(plan, c)
    [entry] = entries(c)
    damage(entry)
    raw = load(plan, c)
    [note] = [n for n in raw.notes if "damaged" in n]
    assert note.startswith(f"the cached copy in {entry} was damaged (")
    assert note.endswith("); it was removed and the dataset decoded again from its source")
    assert re.search(reason, note), note
    assert_same(raw, fresh(plan))
    assert entries(c) == [entry] and not any(p.name.startswith(".") for p in c.iterdir())
    again = load(plan, c)                                        # whole again: a quiet hit
    assert not any("damaged" in n for n in again.notes)
    assert_same(again, fresh(plan))


def test_the_damage_is_a_warning_from_load_dataset(tmp_path):
    root = make_folder(tmp_path / "pets", 6)
    load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")
    _flip(entries(tmp_path / "cache")[0])
    clear_memo()
    with pytest.warns(RuntimeWarning, match=rf"folder:{re.escape(str(root))}: the cached copy in .* was damaged \(x\.npy fails its "
                                            rf"checksum .*\); it was removed and the dataset decoded again"):
        ds = load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")
    assert len(ds.x_train) + len(ds.x_test) == 6


def test_bit_rot_that_keeps_the_mtime_is_caught_by_the_next_process(tmp_path):
    c = tmp_path / "cache"
    plan = folder.plan_folder(str(make_folder(tmp_path / "pets", 6)), None, None)
    load(plan, c)
    x_file = entries(c)[0] / "x.npy"
    st = x_file.stat()
    _flip(x_file.parent)
    os.utime(x_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache.clear_verified()                                       # as a new process starts
    raw = load(plan, c)
    assert any("fails its checksum" in n for n in raw.notes)
    assert_same(raw, fresh(plan))


def test_a_changed_folder_is_decoded_again_never_served_stale(tmp_path):
    c = tmp_path / "cache"
    root = make_folder(tmp_path / "pets", 4)
    first = load(folder.plan_folder(str(root), None, None), c)
    assert len(first.x) == 4 and not first.notes

    (root / "a" / "new.png").write_bytes(png(250))              # a file added
    plan = folder.plan_folder(str(root), None, None)
    added = load(plan, c)
    assert "the source changed since it was cached, so it was decoded again" in added.notes
    assert len(added.x) == 5 and (added.x == 250).all(axis=(1, 2, 3)).sum() == 1
    assert_same(added, fresh(plan))

    target = root / "a" / "000.png"                             # a file modified in place
    target.write_bytes(png(77))
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))   # a new mtime even on a coarse clock
    plan = folder.plan_folder(str(root), None, None)
    modified = load(plan, c)
    assert "the source changed since it was cached, so it was decoded again" in modified.notes
    assert (modified.x == 77).all(axis=(1, 2, 3)).sum() == 1 and not (modified.x == 0).all(axis=(1, 2, 3)).any()
    assert_same(modified, fresh(plan))
    assert not np.array_equal(modified.x, added.x)


# --------------------------------------------------------------------------- progress


def _recorder():
    calls = []
    return calls, lambda done, total: calls.append((done, total))


def _check_progress(calls):
    assert calls, "no progress during a build"
    dones = [d for d, _ in calls]
    totals = {t for _, t in calls}
    assert len(totals) == 1 and dones == sorted(dones) and dones[-1] == totals.pop()


def test_progress_during_a_build_and_never_on_a_hit(tmp_path):
    c = tmp_path / "cache"
    root = make_folder(tmp_path / "pets", 7)
    (root / "b" / "broken.png").write_bytes(b"garbage")
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.random.default_rng(0).random((40, 28, 28), dtype=np.float32))   # two passes
    plans = {"folder": folder.plan_folder(str(root), None, None),
             "npz": folder.plan_folder(str(npz), None, None),
             "idx": idx.plan_idx(str(idx_folder(tmp_path / "idx")), None, None),
             "shapes": shapes.plan_shapes(None, 16, None)}
    for name, plan in plans.items():
        calls, progress = _recorder()
        load(plan, c, progress)
        _check_progress(calls)
        if name == "folder":                     # per file, the broken one included
            assert [d for d, _ in calls] == list(range(9)) and calls[-1] == (8, 8)
        calls, progress = _recorder()
        load(plan, c, progress)
        assert calls == [], name

    calls, progress = _recorder()
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        load_dataset(f"folder:{root}", image_size=16, cache_dir=c, progress=progress)
    _check_progress(calls)
    calls.clear()
    clear_memo()
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        load_dataset(f"folder:{root}", image_size=16, cache_dir=c, progress=progress)
    assert calls == []


def test_cli_progress_prints_a_line_every_few_seconds_without_a_terminal():
    class Log(io.StringIO):
        def isatty(self):
            return False

    log = Log()
    clock = iter([0.0, 1.0, 6.0, 7.0, 12.5, 13.0])
    bar = _BuildProgress("decoding folder:x", every_s=5.0, stream=log, clock=lambda: next(clock))
    for done in (0, 10, 20, 30, 40, 50):
        bar(done, 50)
    bar.close()
    assert log.getvalue().splitlines() == ["decoding folder:x: 20 of 50 (40%), 6 s, about 9 s left",
                                           "decoding folder:x: 40 of 50 (80%), 12 s, about 3 s left",
                                           "decoding folder:x: 50 of 50 (100%), 13 s"]
    quiet = Log()
    short = _BuildProgress("decoding digits", stream=quiet, clock=lambda: 100.0)
    short(0, 5)
    short(5, 5)
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- eviction


def _age(entry: Path, seconds: float) -> None:
    t = time.time() - seconds
    for name in ("meta.json", "last_used"):
        os.utime(entry / name, (t, t))


def _size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.iterdir())


def test_eviction_removes_the_least_recently_used_beyond_the_limit(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    roots = [make_folder(tmp_path / f"set{i}", 4, start=10 * i) for i in range(4)]
    plans = [folder.plan_folder(str(r), None, None) for r in roots]
    made = []
    for i, plan in enumerate(plans[:3]):
        load(plan, c)
        made.append(next(e for e in entries(c) if e not in made))
    _age(made[0], 3000)                                     # least recently used
    _age(made[1], 1000)
    _age(made[2], 2000)
    load(plans[1], c)                                       # used again now: becomes the most recent
    _age(made[1], 900)
    sizes = [_size(e) for e in made]
    # Room for about two entries: writing a fourth must drop the two least recently used.
    monkeypatch.setenv(cache.MAX_GB_ENV, str((sizes[1] + max(sizes) + 200) / 1e9))
    load(plans[3], c)
    newest = next(e for e in entries(c) if e not in made)
    assert entries(c) == sorted([made[1], newest])
    # A limit of zero still never removes the entry just written, nor one used in the grace period.
    monkeypatch.setenv(cache.MAX_GB_ENV, "0")
    load(plans[0], c)                                       # rebuilt: no damage, nothing stale
    assert made[0] in entries(c) and newest in entries(c)   # newest: used less than EVICT_GRACE_S ago
    assert made[1] not in entries(c)
    raw = load(plans[1], c)                                 # an evicted entry is simply built again
    assert not raw.notes and len(raw.x) == 4


def test_leftovers_of_dead_writers_are_cleaned_but_not_live_ones(tmp_path):
    c = tmp_path / "cache"
    c.mkdir()
    dead, live, trash = (c / ".tmp-folder-0-1-999999999-0123abcd", c / f".tmp-folder-0-1-{os.getpid()}-0123abcd",
                         c / ".trash-folder-0-1-89abcdef")
    for d in (dead, live, trash):
        d.mkdir()
        (d / "x.npy").write_bytes(b"x")
        old = time.time() - 2 * cache.STALE_TMP_S
        os.utime(d, (old, old))
    cache.evict(c)
    assert not dead.exists() and not trash.exists() and live.exists()


# --------------------------------------------------------------------------- the scan memo


def test_a_folder_is_scanned_once_per_process_until_it_changes(tmp_path, monkeypatch):
    walks = []
    real_walk = folder._walk
    monkeypatch.setattr(folder, "_walk", lambda root: walks.append(root) or real_walk(root))
    c = tmp_path / "cache"
    root = make_folder(tmp_path / "pets", 6)
    backdate(root)
    first = load_dataset(f"folder:{root}", cache_dir=c)
    second = load_dataset(f"folder:{root}", cache_dir=c)     # new_run_config, then the trainer
    assert len(walks) == 1 and second is first

    (root / "b" / "extra.png").write_bytes(png(5))            # added: its folder's mtime changes
    third = load_dataset(f"folder:{root}", cache_dir=c)
    assert len(walks) == 2 and len(third.x_train) + len(third.x_test) == 7

    backdate(root)
    load_dataset(f"folder:{root}", cache_dir=c)
    walks.clear()
    target = root / "a" / "000.png"                           # modified in place: no folder changes
    target.write_bytes(png(99))
    os.utime(target, (time.time() - 30, time.time() - 30))
    os.utime(root / "a", (time.time() - 60, time.time() - 60))
    scan = folder.scan_folder(root)
    assert len(walks) == 1
    assert scan.stats[[p for _, p in scan.found].index(str(target))] == (target.stat().st_size, target.stat().st_mtime_ns)
    folder.scan_folder(root)
    assert len(walks) == 1                                    # settled again: memoised


def test_a_scan_right_after_a_change_is_not_kept(tmp_path, monkeypatch):
    # A coarse file-system clock could give a second change the same mtime: such a scan is redone.
    walks = []
    real_walk = folder._walk
    monkeypatch.setattr(folder, "_walk", lambda root: walks.append(root) or real_walk(root))
    root = make_folder(tmp_path / "pets", 3)
    folder.scan_folder(root)
    folder.scan_folder(root)
    assert len(walks) == 2


def test_scan_order_and_key_match_os_walk(tmp_path):
    root = make_folder(tmp_path / "pets", 6, classes=("b", "a", "c"))
    (root / "top.png").write_bytes(png(1))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.png").write_bytes(png(1))
    (root / "a" / "deeper").mkdir()
    (root / "a" / "deeper" / "d.png").write_bytes(png(1))
    (root / "link").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    expected = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).parts
        expected += [(*rel, f) for f in sorted(filenames) if folder._is_image_name([*rel, f])]
    scan = folder.scan_folder(root)
    assert [parts for parts, _ in scan.found] == expected
    assert scan.stats[expected.index(("a", "dangling.png"))] == (-1, 0)   # named as unreadable later, not a crash


# --------------------------------------------------------------------------- bad files


def test_bad_files_are_counted_named_and_skipped(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(2):
        (root / f"good{i}.png").write_bytes(png(100 + i))
    for i in range(5):
        (root / f"bad{i}.png").write_bytes(b"broken" * i)
    plan = folder.plan_folder(str(root), None, None)
    raw = load(plan, tmp_path / "cache")
    assert len(raw.x) == 2
    [note] = raw.notes
    assert note.startswith(f"skipped 5 unreadable file(s) in {root}: bad0.png (")
    assert "bad1.png (" in note and "bad2.png (" in note and "bad3.png" not in note and note.endswith("; and 2 more")
    assert load(plan, tmp_path / "cache").notes == (note,)   # kept in the manifest


# --------------------------------------------------------------------------- caps


def _zeros_deflated(mib: int) -> bytes:
    c = zlib.compressobj(9)
    return b"".join([*(c.compress(bytes(1 << 20)) for _ in range(mib)), c.flush()])


def test_zip_bomb_by_ratio_is_refused_in_a_sentence(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("ok.png", png(10))
        with zf.open("a/big.bmp", "w", force_zip64=True) as fh:
            for _ in range(25):
                fh.write(bytes(4 << 20))
    with pytest.raises(DatasetError) as refused:
        load(folder.plan_folder(str(archive), None, None), tmp_path / "cache")
    message = str(refused.value)
    assert message.startswith(f"refusing {archive}: entry 'a/big.bmp' unpacks to 100 MB from 0.1 MB (1,0")
    assert f"the limit is {MAX_COMPRESSION_RATIO}x, far above what images compress to) (possible zip bomb); " \
           f"re-create the archive" in message
    assert not (tmp_path / "cache").exists() or not entries(tmp_path / "cache")


def test_overlapping_zip_entries_are_refused(tmp_path):
    archive = tmp_path / "overlap.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", np.random.default_rng(0).bytes(1 << 20))
    with zipfile.ZipFile(archive, "a") as zf:                # a second name for the same bytes
        info = copy.copy(zf.getinfo("a.png"))
        info.filename = info.orig_filename = "b.png"
        zf.filelist.append(info)
        zf.NameToInfo["b.png"] = info
        zf._didModify = True
    with pytest.raises(DatasetError, match="so they overlap"):
        load(folder.plan_folder(str(archive), None, None), tmp_path / "cache")


def test_idx_headers_claiming_the_impossible_or_a_bomb_are_refused(tmp_path):
    absurd = tmp_path / "absurd"
    absurd.mkdir()
    (absurd / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 100_000, 1000, 1000) + bytes(1000)))
    with pytest.raises(DatasetError, match=r"is corrupt: header dims \(100000, 1000, 1000\) need "
                                           r"100,000,000,000 data bytes, more than a \d+-byte gzip file can hold"):
        load(idx.plan_idx(str(absurd), None, None), tmp_path / "cache")
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 102_400, 32, 32)   # 100 MiB of zeros
    c = zlib.compressobj(9, zlib.DEFLATED, 31)                              # gzip framing
    body = c.compress(header) + b"".join(c.compress(bytes(1 << 20)) for _ in range(100)) + c.flush()
    (bomb / "train-images-idx3-ubyte.gz").write_bytes(body)
    with pytest.raises(DatasetError, match="possible decompression bomb"):
        load(idx.plan_idx(str(bomb), None, None), tmp_path / "cache")
    with pytest.raises(DatasetError, match="possible decompression bomb"):
        idx.read_idx(bomb / "train-images-idx3-ubyte.gz")


def test_a_large_honest_npz_loads_streamed_into_a_map(tmp_path):
    # ~600 MB of incompressible uint8 images: over the old 512 MB cap. About 5 s here.
    n = 765_000
    rng = np.random.default_rng(0)
    x = np.frombuffer(rng.bytes(n * 784), np.uint8).reshape(n, 28, 28)
    y = (np.arange(n) % 10).astype(np.int64)
    path = tmp_path / "big.npz"
    np.savez(path, x=x, y=y)
    probe = np.array([0, 1, n // 2, n - 1])
    expected = x[probe].copy()
    del x
    assert path.stat().st_size > 512 * 2**20
    plan = folder.plan_folder(str(path), None, None)
    tracemalloc.start()
    try:
        raw = load(plan, tmp_path / "cache")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, f"building held {peak / 2**20:.0f} MB"   # chunks, never the whole array
    assert isinstance(raw.x, np.memmap) and raw.x.shape == (n, 1, 28, 28)
    assert np.array_equal(raw.x[probe, 0], expected) and np.array_equal(raw.y, y)
    assert raw.class_names == tuple(str(i) for i in range(10))


def test_sparse_images_compressed_200x_are_not_a_bomb(tmp_path):
    # Sprites on black (like dSprites, or our `shapes`) deflate ~100-250x: they must load.
    sprites = shapes._render_shapes(32).x
    x = np.concatenate([sprites] * 3)                        # 80 MB, over the ratio check's floor
    path = tmp_path / "sprites.npz"
    np.savez_compressed(path, x=x)
    ratio = x.nbytes / path.stat().st_size
    assert 100 < ratio < MAX_COMPRESSION_RATIO and x.nbytes > 64 * 2**20
    raw = load(folder.plan_folder(str(path), 32, None), tmp_path / "cache")
    assert np.array_equal(raw.x[-5:], x[-5:])


# --------------------------------------------------------------------------- a peek without loading


def test_peek_reads_a_few_rows_of_a_cached_dataset_and_never_builds(tmp_path, monkeypatch):
    from vae_core.data import peek_dataset
    from vae_core.data.imageset import ImageSet

    c = tmp_path / "cache"
    root = idx_folder(tmp_path / "idx")
    spec = f"idx:{root}"
    assert peek_dataset(spec, cache_dir=c) is None           # not cached: nothing decoded, nothing written
    assert not c.exists() or not entries(c)
    ds = load_dataset(spec, cache_dir=c)
    read = []
    real = ImageSet._gather
    monkeypatch.setattr(ImageSet, "_gather", lambda self, rows: read.append(len(rows)) or real(self, rows))
    monkeypatch.setattr(cache, "file_crc32", lambda p: pytest.fail("a peek must not checksum the cache"))
    p = peek_dataset(spec, n=4, cache_dir=c)
    assert read == [4]                                         # only the 4 rows shown
    assert p.images.shape == (4, 1, 6, 5) and p.images.dtype == np.float32
    assert (p.n_train, p.n_test, p.image_shape) == (len(ds.x_train), len(ds.x_test), ds.image_shape) == (30, 8, (1, 6, 5))
    np.testing.assert_array_equal(p.images[0], ds.x_train[0].numpy())   # row 0, then evenly spread to the last
    np.testing.assert_array_equal(p.images[-1], ds.x_train[29].numpy())


def test_peek_of_a_split_dataset_counts_its_split_and_resizes_like_a_load(tmp_path):
    from vae_core.data import peek_dataset

    c = tmp_path / "cache"
    pets = make_folder(tmp_path / "pets", 10)
    spec = f"folder:{pets}"
    assert peek_dataset(spec, image_size=8, channels=3, cache_dir=c) is None
    ds = load_dataset(spec, image_size=8, channels=3, cache_dir=c)
    p = peek_dataset(spec, image_size=8, channels=3, cache_dir=c)
    assert (p.n_train, p.n_test) == (len(ds.x_train), len(ds.x_test)) and p.n_train + p.n_test == 10
    assert p.image_shape == (3, 8, 8) and p.class_names == ds.class_names == ("a", "b")
    assert peek_dataset(spec, image_size=16, channels=3, cache_dir=c) is None   # another size is another entry
    # A built-in source resized after loading (post_resize) peeks resized too.
    d = load_dataset("digits", image_size=16, cache_dir=c)
    q = peek_dataset("digits", image_size=16, n=3, cache_dir=c)
    assert q.image_shape == (1, 16, 16) == d.image_shape and (q.n_train, q.n_test) == (len(d.x_train), len(d.x_test))
    assert 0.0 <= q.images.min() and q.images.max() <= 1.0
    with pytest.raises(DatasetError):
        peek_dataset(f"folder:{tmp_path / 'missing'}", cache_dir=c)


def test_peek_ignores_a_damaged_entry(tmp_path):
    from vae_core.data import peek_dataset

    c = tmp_path / "cache"
    spec = f"idx:{idx_folder(tmp_path / 'idx')}"
    load_dataset(spec, cache_dir=c)
    (entry,) = entries(c)
    with open(entry / "x.npy", "ab") as f:
        f.write(b"\0" * 7)                                     # the size no longer matches the manifest
    assert peek_dataset(spec, cache_dir=c) is None


# --------------------------------------------------------------------------- the checksum stamp


def test_an_untouched_entry_is_not_checksummed_again_by_the_next_process(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    plan = folder.plan_folder(str(make_folder(tmp_path / "pets", 6)), None, None)
    first = load(plan, c)
    stamp = json.loads((entries(c)[0] / cache.VERIFIED).read_text())
    assert set(stamp) == {"x.npy", "y.npy"}
    crcs = []
    real = cache.file_crc32
    monkeypatch.setattr(cache, "file_crc32", lambda p: crcs.append(Path(p).name) or real(p))
    cache.clear_verified()                                       # as a new process starts
    again = load(plan, c)
    assert crcs == [] and not again.notes
    assert_same(again, first)


def test_a_damaged_stamp_only_costs_a_checksum(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    plan = folder.plan_folder(str(make_folder(tmp_path / "pets", 6)), None, None)
    first = load(plan, c)
    (entries(c)[0] / cache.VERIFIED).write_text("{not json")
    crcs = []
    real = cache.file_crc32
    monkeypatch.setattr(cache, "file_crc32", lambda p: crcs.append(Path(p).name) or real(p))
    cache.clear_verified()
    again = load(plan, c)
    assert sorted(crcs) == ["x.npy", "y.npy"] and not again.notes   # checked, found good, kept
    assert_same(again, first)
    assert set(json.loads((entries(c)[0] / cache.VERIFIED).read_text())) == {"x.npy", "y.npy"}  # re-stamped


# --------------------------------------------------------------------------- remembered splits


@pytest.mark.parametrize("y", [np.repeat(np.arange(5), 40), np.full(200, -1)], ids=["stratified", "unlabelled"])
def test_a_remembered_split_is_the_split_and_is_read_not_recomputed(tmp_path, monkeypatch, y):
    from vae_core.data.dataset import split_indices

    want_tr, want_te = split_indices(y, 0.1, 7)
    tr, te = cache.remembered_split(tmp_path, y, 0.1, 7)
    assert np.array_equal(tr, want_tr) and np.array_equal(te, want_te)
    monkeypatch.setattr(cache, "split_indices", lambda *a: pytest.fail("recomputed a remembered split"))
    tr2, te2 = cache.remembered_split(tmp_path, y, 0.1, 7)
    assert np.array_equal(tr2, want_tr) and np.array_equal(te2, want_te)
    assert len(list((tmp_path / cache.SPLITS).glob("*.npy"))) == 1
    with pytest.raises(pytest.fail.Exception):               # another seed is another split
        cache.remembered_split(tmp_path, y, 0.1, 8)


def test_a_damaged_remembered_split_is_computed_again(tmp_path):
    from vae_core.data.dataset import split_indices

    y = np.repeat(np.arange(4), 25)
    cache.remembered_split(tmp_path, y, 0.2, 0)
    (f,) = (tmp_path / cache.SPLITS).glob("*.npy")
    np.save(f, np.array([5, 3, 99], np.int64))               # wrong length, unsorted
    tr, te = cache.remembered_split(tmp_path, y, 0.2, 0)
    want_tr, want_te = split_indices(y, 0.2, 0)
    assert np.array_equal(tr, want_tr) and np.array_equal(te, want_te)
    f.write_bytes(b"\x93NUMPY garbage")
    assert np.array_equal(cache.remembered_split(tmp_path, y, 0.2, 0)[1], want_te)


def test_load_dataset_gives_the_same_split_remembered_or_computed(tmp_path):
    from vae_core.data import registry

    root = make_folder(tmp_path / "pets", 60, classes=("a", "b", "c"))
    first = load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")      # computed, then remembered
    assert len(list((tmp_path / "cache" / cache.SPLITS).glob("*.npy"))) == 1
    registry.clear_memo()
    remembered = load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")
    for ds in (first, remembered):
        assert np.array_equal(ds.y_test.numpy(), first.y_test.numpy())
        assert torch.equal(ds.x_test[:], first.x_test[:]) and torch.equal(ds.x_train[:], first.x_train[:])
    assert len(set(first.y_test.tolist())) == 3                               # stratified: every class held out
