"""The run directory: the contract between the trainer process and every reader.

runs/<name>/
  config.json           RunConfig, written once by whoever creates the run
  weights.safetensors   latest weight snapshot (metadata: step, epoch), replaced atomically
  best.safetensors      the snapshot with the best validation ELBO so far (metadata: step, epoch,
                        validation_elbo); the explorer and ``eval`` show it by default
  optimizer.safetensors optimiser state matching the snapshot, for resume
  metrics.jsonl         one JSON object per line: kind "step" or "epoch"
  status.json           state, pid, heartbeat, step, error; replaced atomically
  control.json          requests from the UI: {"request": "pause" | "resume" | "stop"}
  summary.safetensors   the test set's codes under the latest snapshot (see ``summary``)
  worker.log            the worker process's output, for when it fails

Every writer here replaces whole files with ``os.replace``, so a reader never sees half a
file and a failed write leaves the previous version intact. Nothing here imports streamlit,
and nothing here unpickles: weights are safetensors, everything else JSON.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..engine.config import ConfigError, RunConfig
from ..engine.external import ExternalModelError
from ..engine.families import build_model
from ..engine.protocol import LatentModel
from .external_source import trusted_source
from .files import RunError, atomic_write_bytes, atomic_write_json, read_json  # noqa: F401 (re-exported)

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.safetensors"
METRICS = "metrics.jsonl"
STATUS = "status.json"
CONTROL = "control.json"

SnapshotKind = Literal["best", "latest"]
RunState = Literal["starting", "running", "paused", "stopped", "finished", "failed"]
ACTIVE_STATES = ("starting", "running", "paused")
# The worker writes a heartbeat at least every second; after this long without one, an
# "active" run is reported stale (killed, or its machine went away).
STALE_AFTER_S = 20.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_run_name(name: str) -> str:
    """Run names are single safe path components, so no name can escape the runs folder."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith(".") or ".." in name:
        raise RunError(
            f"Run name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


# --- config -----------------------------------------------------------------------------
def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_bytes(run_dir / CONFIG, config.to_json().encode())


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    try:
        text = path.read_text()
    except OSError:
        raise RunError(f"{path} is missing: not a run directory") from None
    try:
        return RunConfig.from_json(text)
    except ConfigError as e:
        raise RunError(f"{path}: {e}") from None


# --- status -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStatus:
    """What ``status.json`` says, checked against the clock (pure: see ``status_from_dict``)."""

    state: RunState | Literal["new"]
    stale: bool = False
    error: str | None = None
    pid: int | None = None
    heartbeat: float | None = None
    step: int = 0
    epoch: int = 0
    total_steps: int | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    device: str | None = None
    message: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """A live worker owns this run (it may be paused)."""
        return self.state in ACTIVE_STATES and not self.stale

    @property
    def label(self) -> str:
        return "stale (worker gone)" if self.stale else self.state

    @property
    def progress(self) -> float:
        if not self.total_steps:
            return 0.0
        return max(0.0, min(1.0, self.step / self.total_steps))


def status_from_dict(d: dict | None, now: float) -> RunStatus:
    """Turn the parsed ``status.json`` into a RunStatus; no I/O, so it has its own unit test."""
    if not isinstance(d, dict):
        return RunStatus(state="new")
    state = d.get("state")
    if state not in ("starting", "running", "paused", "stopped", "finished", "failed"):
        return RunStatus(state="failed", error=f"unreadable status: {state!r}")
    hb = d.get("heartbeat")
    stale = state in ACTIVE_STATES and (not isinstance(hb, (int, float)) or now - hb > STALE_AFTER_S)
    known = {f for f in RunStatus.__dataclass_fields__} - {"stale", "extra", "state"}
    kwargs = {k: d[k] for k in known if k in d}
    extra = {k: v for k, v in d.items() if k not in known and k != "state"}
    return RunStatus(state=state, stale=stale, extra=extra, **kwargs)


def read_status(run_dir: Path, now: float | None = None) -> RunStatus:
    return status_from_dict(read_json(Path(run_dir) / STATUS), time.time() if now is None else now)


def write_status(run_dir: Path, **fields: Any) -> None:
    atomic_write_json(Path(run_dir) / STATUS, fields)


# --- control requests ---------------------------------------------------------------------
def request(run_dir: Path, what: Literal["pause", "resume", "stop"]) -> None:
    atomic_write_json(Path(run_dir) / CONTROL, {"request": what, "time": time.time()})


def read_request(run_dir: Path, since: float = 0.0) -> str | None:
    """The pending request, ignoring one made before ``since`` (left over from an earlier worker)."""
    d = read_json(Path(run_dir) / CONTROL)
    if not isinstance(d, dict) or not isinstance(d.get("time"), (int, float)) or d["time"] < since:
        return None
    return d.get("request")


# --- metrics ------------------------------------------------------------------------------
def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """All complete metric lines; a torn last line (writer mid-append) is skipped."""
    try:
        return parse_metrics((Path(run_dir) / METRICS).read_text())
    except OSError:
        return []


def parse_metrics(text: str) -> list[dict]:
    """The JSON objects of a metrics.jsonl text, one per line; torn or foreign lines are dropped."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a hostile line nested too deep
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


# --- weight snapshots ---------------------------------------------------------------------
def save_snapshot(run_dir: Path, model: torch.nn.Module, step: int, epoch: int, optimizer=None) -> None:
    """Write weights (and optimiser state) atomically; on failure the previous snapshot stays."""
    meta = {"step": str(step), "epoch": str(epoch)}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_save_tensors(Path(run_dir) / WEIGHTS, tensors, meta)
    if optimizer is not None:
        opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
        atomic_save_tensors(Path(run_dir) / OPTIMIZER, opt_tensors, {**meta, **opt_meta})


def save_best_snapshot(run_dir: Path, model: torch.nn.Module, step: int, epoch: int, validation_elbo: float) -> None:
    """Write the best-so-far weights (by validation ELBO) atomically beside the latest ones."""
    meta = {"step": str(step), "epoch": str(epoch), "validation_elbo": repr(float(validation_elbo))}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_save_tensors(Path(run_dir) / BEST, tensors, meta)


def atomic_save_tensors(path: Path, tensors: dict, meta: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _optimizer_to_flat(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.detach().to("cpu").contiguous()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": json.dumps(groups)}


def load_optimizer_state(run_dir: Path, optimizer, device) -> int | None:
    """Restore optimiser state saved with the snapshot; returns its step, or None if absent/invalid."""
    path = Path(run_dir) / OPTIMIZER
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        flat = load_file(str(path))
        state: dict[int, dict] = {}
        for key, t in flat.items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = t if name == "step" else t.to(device)
        groups = json.loads(meta["param_groups"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        return int(meta["step"])
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError):
        return None


@dataclass(frozen=True)
class Snapshot:
    """A model rebuilt from a run directory, on the CPU, in eval mode.

    path: the weights file it was read from; (path, step, mtime) names these weights.
    kind: "best" (best.safetensors, the best validation ELBO so far) or "latest".
    validation_elbo: the validation ELBO that made a best snapshot best (None otherwise).
    """

    model: LatentModel
    config: RunConfig
    step: int
    epoch: int
    mtime: float
    path: Path
    kind: SnapshotKind = "latest"
    validation_elbo: float | None = None

    @property
    def run_dir(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class SnapshotMeta:
    """What a weights file says about itself, read without loading it."""

    step: int
    epoch: int
    mtime: float
    kind: SnapshotKind
    validation_elbo: float | None = None


def snapshot_path(run_dir: Path, which: SnapshotKind = "latest") -> Path:
    """The file holding the ``which`` snapshot: "best" falls back to the latest weights while a
    run has no best snapshot (before its first validation, or with no validation split)."""
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / BEST).exists():
        return run_dir / BEST
    return run_dir / WEIGHTS


def snapshot_meta(run_dir: Path, which: SnapshotKind = "latest") -> SnapshotMeta | None:
    """The ``which`` snapshot's step, epoch and mtime without loading it, or None if there is none."""
    path = snapshot_path(run_dir, which)
    try:
        from safetensors import safe_open

        mtime = path.stat().st_mtime
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        val = meta.get("validation_elbo")
        return SnapshotMeta(int(meta.get("step", 0)), int(meta.get("epoch", 0)), mtime,
                            "best" if path.name == BEST else "latest", float(val) if val is not None else None)
    except (OSError, SafetensorError, ValueError):
        return None


def load_snapshot(run_dir: Path, device: str = "cpu", which: SnapshotKind = "latest") -> Snapshot:
    """Rebuild the model from ``config.json`` and load its weights (never unpickles): the latest
    snapshot, or with ``which="best"`` the best one by validation ELBO (the latest if none yet)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    path = snapshot_path(run_dir, which)
    if not path.exists():
        raise RunError(f"{run_dir.name} has no weight snapshot yet")
    # A user's own code is built only from a run this machine's CLI signed.
    external = trusted_source(run_dir) if config.family == "external" else None
    return load_weights_file(path, config, device=device, external=external)


def load_weights_file(path: Path, config: RunConfig, device: str = "cpu", external=None) -> Snapshot:
    """The model of ``config`` with the weights in ``path``; ``external``: an external model's
    ``families.ExternalSource`` (see ``load_snapshot``)."""
    try:
        model = build_model(config, external)
    except ExternalModelError as e:
        raise RunError(f"The imported model cannot be built: {e}") from None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=device)
    except (OSError, SafetensorError, ValueError) as e:
        raise RunError(f"{path.name} is not a readable safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in expected if k in tensors and tensors[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(tensors[k].shape)}, the config needs {tuple(expected[k].shape)}")
        raise RunError("The weights do not match the run's config: " + "; ".join(parts))
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise RunError(f"{path.name} contains NaN or infinite weights")
    model.load_state_dict(tensors)
    model.to(device).eval()
    val = meta.get("validation_elbo")
    return Snapshot(model, config, int(meta.get("step", 0)), int(meta.get("epoch", 0)), path.stat().st_mtime,
                    Path(path).resolve(), "best" if Path(path).name == BEST else "latest",
                    float(val) if val is not None else None)
