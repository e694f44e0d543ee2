"""Run management on real run directories: rename, delete, export, upload, and the
download -> upload round trip, plus hostile uploads (refused with a sentence, nothing written)."""
import io
import json
import os
import pickle  # only to build a hostile file; the project itself never unpickles
import shutil
import warnings
import zipfile

import pytest
import torch

from tests.conftest import tiny_config
from vae_core.engine.config import ModelConfig
from vae_core.engine.vae import VAE
from vae_core.runs import manager as rm
from vae_core.runs import rundir as rd
from vae_core.runs.manager import RunManager
from vae_core.runs.trainer import train

RUN_FILES = sorted((rd.CONFIG, rd.WEIGHTS, rd.BEST, rd.METRICS, rd.STATUS))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run, trained once for this module; each test works on its own copy."""
    path = tmp_path_factory.mktemp("trained") / "r"
    st = train(tiny_config(epochs=2), path)
    assert st.state == "finished", st.error
    return path


@pytest.fixture
def m(runs_dir, trained):
    shutil.copytree(trained, runs_dir / "r")
    return RunManager(runs_dir)


def entries(runs_dir) -> list[str]:
    """What the runs folder holds, bar the manager's lock file."""
    return sorted(p.name for p in runs_dir.iterdir() if p.name != ".manager.lock")


def zip_of(files: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate-name case
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items() if isinstance(files, dict) else files:
                z.writestr(name, data)
    return buf.getvalue()


def flagged_encrypted(data: bytes) -> bytes:
    """The zip with every member's "encrypted" bit set in the central directory (zipfile
    cannot write encrypted members, and a reader decides from that directory)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        start = z.start_dir
    out = bytearray(data)
    at = out.find(b"PK\x01\x02", start)
    while at != -1:
        out[at + 8] |= 0x1  # general purpose bit flag, bit 0
        at = out.find(b"PK\x01\x02", at + 46)
    return bytes(out)


def read_files(path, names=(rd.CONFIG, rd.WEIGHTS, rd.METRICS)) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in names}


def assert_same_weights(a, b):
    sa, sb = rd.load_snapshot(a).model.state_dict(), rd.load_snapshot(b).model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- rename and delete ------------------------------------------------------------------------
def test_rename_moves_the_run_and_it_still_loads(m, runs_dir):
    before = (runs_dir / "r" / rd.WEIGHTS).read_bytes()
    m.rename("r", "renamed")
    assert entries(runs_dir) == ["renamed"]
    assert [r.name for r in m.list_runs()] == ["renamed"]
    assert (runs_dir / "renamed" / rd.WEIGHTS).read_bytes() == before
    assert rd.load_snapshot(runs_dir / "renamed").step > 0


def test_rename_onto_an_existing_run_is_refused_and_both_stay(m, runs_dir):
    shutil.copytree(runs_dir / "r", runs_dir / "other")
    rd.write_status(runs_dir / "other", state="stopped", step=1, epoch=0, message="the other run")
    with pytest.raises(rd.RunError, match="already exists"):
        m.rename("r", "other")
    assert entries(runs_dir) == ["other", "r"]
    assert rd.read_status(runs_dir / "other").message == "the other run"
    assert rd.read_status(runs_dir / "r").state == "finished"


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "a..b", "x" * 65, "ünï"])
def test_rename_to_a_bad_name_is_refused(bad, m, runs_dir):
    with pytest.raises(rd.RunError, match="not allowed"):
        m.rename("r", bad)
    assert entries(runs_dir) == ["r"]
    assert not (runs_dir.parent / "x").exists()


def test_delete_removes_the_run(m, runs_dir):
    m.delete("r")
    assert entries(runs_dir) == [] and m.list_runs() == []


def test_rename_or_delete_of_a_missing_run_says_so(m, runs_dir):
    with pytest.raises(rd.RunError, match="no run named"):
        m.rename("nope", "x")
    with pytest.raises(rd.RunError, match="no run named"):
        m.delete("nope")
    with pytest.raises(rd.RunError, match="not allowed"):
        m.delete("../runs")
    assert entries(runs_dir) == ["r"]


def test_unique_name_always_gives_a_valid_free_name(m):
    for base in ("r", "ünï/../x", "..", "_a..b.", "x" * 80, ""):
        name = m.unique_name(base)
        assert rd.validate_run_name(name) == name and not m.path(name).exists(), base
    assert m.unique_name("r") == "r-2"


# --- export --------------------------------------------------------------------------------------
def test_export_holds_only_the_run_files(m, runs_dir):
    run = runs_dir / "r"
    for stray in ("worker.log", "control.json", ".weights.safetensors.123.tmp", "summary.safetensors"):
        (run / stray).write_bytes(b"not for export")
    assert (run / rd.OPTIMIZER).exists()
    with zipfile.ZipFile(io.BytesIO(m.export_zip("r"))) as z:
        assert sorted(z.namelist()) == [f"r/{f}" for f in RUN_FILES]
        assert z.read(f"r/{rd.WEIGHTS}") == (run / rd.WEIGHTS).read_bytes()


# --- upload ----------------------------------------------------------------------------------------
def test_upload_of_separate_files(m, runs_dir):
    files = read_files(runs_dir / "r")
    assert m.import_run("uploaded", files[rd.CONFIG], files[rd.WEIGHTS]) == "uploaded"
    assert sorted(os.listdir(runs_dir / "uploaded")) == sorted((rd.CONFIG, rd.WEIGHTS, rd.STATUS))
    assert_same_weights(runs_dir / "r", runs_dir / "uploaded")
    st = rd.read_status(runs_dir / "uploaded")
    assert (st.state, st.message, st.step) == ("stopped", "imported", rd.load_snapshot(runs_dir / "r").step)
    with pytest.raises(rd.RunError, match="already exists"):
        m.import_run("uploaded", files[rd.CONFIG], files[rd.WEIGHTS])


def test_download_then_upload_is_a_round_trip(m, runs_dir):
    name = m.import_zip(m.export_zip("r"), "copy")
    assert name == "copy"
    src, dst = runs_dir / "r", runs_dir / "copy"
    assert sorted(os.listdir(dst)) == RUN_FILES
    a, b = rd.load_snapshot(src), rd.load_snapshot(dst)
    assert b.config == a.config and (b.step, b.epoch) == (a.step, a.epoch)
    assert (dst / rd.WEIGHTS).read_bytes() == (src / rd.WEIGHTS).read_bytes()
    assert (dst / rd.BEST).read_bytes() == (src / rd.BEST).read_bytes()  # the best snapshot travels too
    assert_same_weights(src, dst)
    assert rd.read_metrics(dst) == rd.read_metrics(src) != []
    st = rd.read_status(dst)
    assert (st.state, st.message, st.step) == ("stopped", "imported", a.step) and not st.active
    assert {r.name for r in m.list_runs()} == {"r", "copy"}
    # And once more: the imported run downloads and uploads like any other.
    assert m.import_zip(m.export_zip("copy"), "copy-of-copy") == "copy-of-copy"
    assert_same_weights(src, runs_dir / "copy-of-copy")


def test_upload_without_a_name_takes_the_zip_folder_made_unique(m, runs_dir):
    data = m.export_zip("r")
    assert m.import_zip(data) == "r-2"
    assert m.import_zip(data) == "r-3"
    files = read_files(runs_dir / "r")
    assert m.import_zip(zip_of(files)) == "imported"  # files at the top of the zip, no folder
    assert m.import_zip(zip_of({"r/": b"", **{f"r/{k}": v for k, v in files.items()}})) == "r-4"  # as `zip -r` makes


def test_upload_keeps_metrics_and_drops_torn_lines(m, runs_dir):
    files = read_files(runs_dir / "r")
    good = rd.read_metrics(runs_dir / "r")
    files[rd.METRICS] += b'not json\n[1, 2]\n\xff\xfe\n' + b"[" * 100_000 + b'\n{"kind": "st'
    m.import_zip(zip_of({f"r/{k}": v for k, v in files.items()}), "torn")
    assert rd.read_metrics(runs_dir / "torn") == good
    assert (runs_dir / "torn" / rd.METRICS).read_text().count("\n") == len(good)


# --- hostile uploads ---------------------------------------------------------------------------------
def hostile_zip(case: str, files: dict[str, bytes], tmp_path) -> bytes:
    cfg, w = files[rd.CONFIG], files[rd.WEIGHTS]
    if case == "garbage":
        return os.urandom(4096)
    if case == "empty":
        return b""
    if case == "not_a_zip_but_json":
        return cfg
    if case == "traversal":
        return zip_of({"../config.json": cfg, "../weights.safetensors": w})
    if case == "traversal_inside":
        return zip_of({"r/../../config.json": cfg, "r/weights.safetensors": w})
    if case == "absolute":
        return zip_of({"/tmp/r/config.json": cfg, "/tmp/r/weights.safetensors": w})
    if case == "backslash":
        return zip_of({"r\\..\\config.json": cfg, "r/weights.safetensors": w})
    if case == "extra_file":
        return zip_of({"r/config.json": cfg, "r/weights.safetensors": w, "r/run.py": b"import os"})
    if case == "nested_folder":
        return zip_of({"r/x/config.json": cfg, "r/x/weights.safetensors": w})
    if case == "two_folders":
        return zip_of({"a/config.json": cfg, "b/weights.safetensors": w})
    if case == "duplicate":
        return zip_of([("r/config.json", cfg), ("r/config.json", b"{}"), ("r/weights.safetensors", w)])
    if case == "too_many_members":
        return zip_of({f"r/{i}.json": b"{}" for i in range(9)})
    if case == "encrypted":
        return flagged_encrypted(zip_of({"r/config.json": cfg, "r/weights.safetensors": w}))
    if case == "bomb_by_ratio":  # 20 MB of zeros packs into a few kB
        return zip_of({"r/config.json": cfg, "r/weights.safetensors": bytes(20 * 2**20)})
    if case == "oversized_member":  # valid JSON, padded past the config limit
        return zip_of({"r/config.json": cfg + b" " * 2_000_000, "r/weights.safetensors": w})
    if case == "missing_weights":
        return zip_of({"r/config.json": cfg, "r/metrics.jsonl": b"{}\n"})
    if case == "missing_config":
        return zip_of({"r/weights.safetensors": w})
    if case == "unknown_family":
        d = json.loads(cfg)
        d["family"] = "topic_model"
        return zip_of({"r/config.json": json.dumps(d).encode(), "r/weights.safetensors": w})
    if case == "config_too_deep":
        return zip_of({"r/config.json": b"[" * 100_000, "r/weights.safetensors": w})
    if case == "config_not_text":
        return zip_of({"r/config.json": b"\xff\xfe\x00", "r/weights.safetensors": w})
    if case == "weights_of_another_model":
        other = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=5, hidden=16)).state_dict()
        rd.atomic_save_tensors(tmp_path / "other.safetensors", {k: v.contiguous() for k, v in other.items()}, {})
        return zip_of({"r/config.json": cfg, "r/weights.safetensors": (tmp_path / "other.safetensors").read_bytes()})
    if case == "pickled_weights":
        class Boom:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))
        return zip_of({"r/config.json": cfg, "r/weights.safetensors": pickle.dumps({"state_dict": Boom()})})
    raise AssertionError(case)


@pytest.mark.parametrize("case,words", [
    ("garbage", "not a readable zip"),
    ("empty", "not a readable zip"),
    ("not_a_zip_but_json", "not a readable zip"),
    ("traversal", "unsafe path"),
    ("traversal_inside", "unsafe path"),
    ("absolute", "unsafe path"),
    ("backslash", "unsafe path"),
    ("extra_file", "not part of a run"),
    ("nested_folder", "not part of a run"),
    ("two_folders", "not all in one folder"),
    ("duplicate", "twice"),
    ("too_many_members", "entries"),
    ("encrypted", "encrypted"),
    ("bomb_by_ratio", "zip bomb"),
    ("oversized_member", "over the 1.0 MB limit"),
    ("missing_weights", "no weights.safetensors"),
    ("missing_config", "no config.json"),
    ("unknown_family", "unknown model family 'topic_model'"),
    ("config_not_text", "not text"),
    ("config_too_deep", "not a valid run config"),
    ("weights_of_another_model", "do not match"),
    ("pickled_weights", "not a readable safetensors file"),
])
def test_hostile_zip_is_refused_and_nothing_is_written(case, words, m, runs_dir, tmp_path):
    data = hostile_zip(case, read_files(runs_dir / "r"), tmp_path)
    for name in (None, "up"):
        with pytest.raises(rd.RunError, match=words):
            m.import_zip(data, name)
    assert entries(runs_dir) == ["r"]  # no new run, no staging folder left behind
    assert not (tmp_path / "pwned").exists()
    assert not (runs_dir.parent / "config.json").exists()


def test_an_upload_name_is_checked_before_anything_else(m, runs_dir):
    data = m.export_zip("r")
    with pytest.raises(rd.RunError, match="not allowed"):
        m.import_zip(data, "../escape")
    with pytest.raises(rd.RunError, match="already exists"):
        m.import_zip(data, "r")
    assert entries(runs_dir) == ["r"]


def test_a_zip_too_large_to_be_a_run_is_refused_unread(m, runs_dir, monkeypatch):
    files = read_files(runs_dir / "r")
    files[rd.METRICS] += b'{"kind": "step", "loss": 1.0}\n' * 30_000  # under 1 MB, packs small
    data = zip_of({f"r/{k}": v for k, v in files.items()})
    monkeypatch.setattr(rm, "MAX_IMPORT_BYTES", len(data) + 1)
    with pytest.raises(rd.RunError, match="The zip unpacks to .* over the"):
        m.import_zip(data, "big")  # small enough to receive, too large once unpacked
    monkeypatch.setattr(rm, "MAX_IMPORT_BYTES", len(data) - 1)
    with pytest.raises(rd.RunError, match="The zip is .* over the"):
        m.import_zip(data, "big")
    assert entries(runs_dir) == ["r"]


def test_a_zip_whose_best_snapshot_is_broken_is_refused_and_nothing_is_written(m, runs_dir):
    with zipfile.ZipFile(io.BytesIO(m.export_zip("r"))) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[f"r/{rd.BEST}"] = b"not a safetensors file"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(rd.RunError, match="best.safetensors"):
        m.import_zip(buf.getvalue(), "broken-best")
    assert [p.name for p in runs_dir.iterdir() if not p.name.startswith(".")] == ["r"]
