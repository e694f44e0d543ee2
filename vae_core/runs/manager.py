"""RunManager: starts, controls, lists and moves runs under one runs folder.

Runs in the web app's process (one instance, cached by the UI) or in any script. It never
trains: each run's worker is a separate ``python -m vae_core train`` process, so the app's
cores and GIL stay free and a crash there cannot take the app down. The manager only writes
config and control files and spawns or signals processes; all state lives on disk, so a
reloaded page or a restarted server re-attaches by reading the run directories.

Thread- and process-safe: ``start`` holds a lock (threading + an flock on the runs folder)
while it checks for an active run and creates the new one, so two sessions pressing Start
at once produce one run.
"""
from __future__ import annotations

import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..engine.config import ModelConfig, RunConfig, TrainConfig
from . import rundir as rd
from .trainer import SHARE_CPU_ENV

DEFAULT_RUNS_DIR = "runs"
RUNS_ENV = "LATENT_EXPLORER_RUNS"
MAX_IMPORT_BYTES = 256 * 1024 * 1024
# Sweeps (see ``start_sweep``): one JSON per sweep in this hidden folder of the runs folder,
# and the message that marks a sweep's run as waiting for its turn.
SWEEPS_DIR = ".sweeps"
SWEEP_QUEUED = "queued"
# Workers run as `python -m vae_core` from the folder that holds the package.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: rd.RunStatus
    config: RunConfig | None
    modified: float


@dataclass(frozen=True)
class StartResult:
    name: str
    created: bool
    message: str


def new_run_config(dataset: str = "mnist", *, image_size: int | None = None, channels: int | None = None,
                   model: dict | None = None, train: dict | None = None) -> RunConfig:
    """A validated RunConfig whose model input shape is read from the dataset itself."""
    from ..data import load_dataset

    data = load_dataset(dataset, image_size=image_size, channels=channels)
    mc = ModelConfig(input_shape=tuple(data.image_shape), **(model or {}))
    tc = TrainConfig(dataset=dataset, image_size=image_size, channels=channels, **(train or {}))
    return RunConfig(model=mc, train=tc).validate()


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV, DEFAULT_RUNS_DIR)).resolve()


def _worker_env() -> dict[str, str]:
    # Workers started here train beside the web app: unbuffered logs, and a core left to the app.
    return {**os.environ, "PYTHONUNBUFFERED": "1", SHARE_CPU_ENV: "1"}


class RunManager:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root is not None else default_runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}

    # --- paths -------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / rd.validate_run_name(name)

    def exists(self, name: str) -> bool:
        try:
            return (self.path(name) / rd.CONFIG).exists()
        except rd.RunError:
            return False

    @contextmanager
    def _locked(self):
        with self._lock, open(self.root / ".manager.lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # --- listing -----------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        """Every run directory, newest first. Unreadable configs are listed with config None."""
        self._reap()
        out = []
        for p in self.root.iterdir():
            if not p.is_dir() or p.name.startswith(".") or not (p / rd.CONFIG).exists():
                continue
            try:
                cfg = rd.read_config(p)
            except rd.RunError:
                cfg = None
            out.append(RunInfo(p.name, p, rd.read_status(p), cfg, _mtime(p)))
        return sorted(out, key=lambda r: r.modified, reverse=True)

    def status(self, name: str) -> rd.RunStatus:
        self._reap()
        return rd.read_status(self.path(name))

    def active_run(self) -> str | None:
        for r in self.list_runs():
            if r.status.active:
                return r.name
        return None

    def unique_name(self, base: str) -> str:
        base = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in base)[:48].strip(".-") or "run"
        name, i = base, 2
        while (self.root / name).exists():
            name, i = f"{base}-{i}", i + 1
        return name

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, config: RunConfig, name: str | None = None, exclusive: bool = True) -> StartResult:
        """Create a run and spawn its worker. With ``exclusive`` (the app's default), if a run is
        already active the caller is attached to it instead: the machine trains one at a time."""
        config.validate()
        with self._locked():
            if exclusive:
                active = self.active_run()
                if active is not None:
                    return StartResult(active, False, f"Run {active} is already training; showing it.")
            if name is None:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                name = self.unique_name(f"{config.train.dataset.split(':')[0]}-{config.model.body}-z{config.model.latent_dim}-{stamp}")
            path = self.path(name)
            try:
                path.mkdir()
            except FileExistsError:
                raise rd.RunError(f"A run named {name!r} already exists; choose another name.") from None
            rd.write_config(path, config)
            now = time.time()
            rd.write_status(path, state="starting", heartbeat=now, launched_at=now, step=0, epoch=0)
            self._spawn(name, resume=False)
            return StartResult(name, True, f"Started {name}.")

    def start_sweep(self, configs: list[RunConfig], prefix: str, labels: list[str] | None = None,
                    meta: dict | None = None, exclusive: bool = True) -> list[str]:
        """Create one run per config, named ``<prefix>-<label>`` (label default ``beta<β>``), and
        spawn ONE ``python -m vae_core sweep`` process that trains them one after another.

        Sequential, not parallel: on a small machine two workers only fight over the same cores,
        and one worker leaves a core to the web app. The sweep is recorded in
        ``<runs>/.sweeps/<id>.json`` (id = the prefix actually used; it gets a "-2" suffix if taken):
        {"id", "runs", "labels", "created", "pid", ...meta}.

        States stay within the run-directory contract: the first run starts as "starting"; the
        others are written as state "stopped" with message "queued" (honest: nothing trains them
        yet, and they are not "active", so the app's one-run-at-a-time rule sees only the run in
        training). The sweep worker trains a run only while it still says queued, so a run the user
        resumed, stopped or deleted in the meantime is skipped. Returns the run names in order.
        """
        if not configs:
            raise ValueError("a sweep needs at least one config")
        for c in configs:
            c.validate()
        labels = list(labels) if labels is not None else [f"beta{c.train.beta:g}" for c in configs]
        if len(labels) != len(configs) or len(set(labels)) != len(labels):
            raise ValueError("a sweep needs one distinct label per config")
        with self._locked():
            if exclusive:
                active = self.active_run()
                if active is not None:
                    raise rd.RunError(f"Run {active} is training; stop it (or wait) before starting a sweep.")
            sweeps = self.root / SWEEPS_DIR
            sweeps.mkdir(exist_ok=True)
            base = self.unique_name(prefix)[:40].strip(".-") or "sweep"
            sweep_id, i = base, 2
            while (sweeps / f"{sweep_id}.json").exists() or any((self.root / f"{sweep_id}-{lab}").exists() for lab in labels):
                sweep_id, i = f"{base}-{i}", i + 1
            names = [rd.validate_run_name(f"{sweep_id}-{lab}") for lab in labels]
            now = time.time()
            for k, (name, config) in enumerate(zip(names, configs)):
                path = self.path(name)
                path.mkdir()
                rd.write_config(path, config)
                if k == 0:
                    rd.write_status(path, state="starting", heartbeat=now, step=0, epoch=0, sweep=sweep_id)
                else:
                    rd.write_status(path, state="stopped", message=SWEEP_QUEUED, heartbeat=now, step=0, epoch=0,
                                    sweep=sweep_id)
            record = {**(meta or {}), "id": sweep_id, "runs": names, "labels": labels, "created": now, "pid": None}
            rd.atomic_write_json(sweeps / f"{sweep_id}.json", record)
            cmd = [sys.executable, "-m", "vae_core", "sweep", "--run-dirs", *(str(self.path(n)) for n in names)]
            log = open(sweeps / f"{sweep_id}.log", "ab")  # each run's own output goes to its worker.log
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(_SOURCE_ROOT), env=_worker_env(), start_new_session=True)
            log.close()
            for name in names:  # _reap marks whichever run was in training failed if the process dies
                self._procs[name] = proc
            rd.atomic_write_json(sweeps / f"{sweep_id}.json", {**record, "pid": proc.pid})
            return names

    def resume(self, name: str) -> StartResult:
        with self._locked():
            st = self.status(name)
            if st.active:
                if st.state == "paused":
                    rd.request(self.path(name), "resume")
                    return StartResult(name, False, f"Resumed {name}.")
                return StartResult(name, False, f"{name} is already running.")
            other = self.active_run()
            if other is not None:
                return StartResult(other, False, f"Run {other} is training; stop it before resuming {name}.")
            now = time.time()
            rd.write_status(self.path(name), **{**_status_dict(st), "state": "starting", "heartbeat": now,
                                                "launched_at": now, "error": None})
            self._spawn(name, resume=True)
            return StartResult(name, True, f"Resuming {name} from step {st.step}.")

    def pause(self, name: str) -> None:
        rd.request(self.path(name), "pause")

    def stop(self, name: str, wait: float = 0.0) -> rd.RunStatus:
        """Ask the worker to stop (control file and SIGTERM); optionally wait for it to say so."""
        path = self.path(name)
        rd.request(path, "stop")
        st = rd.read_status(path)
        if st.pid and st.active:
            try:
                os.kill(st.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + wait
        while time.time() < deadline and rd.read_status(path).active:
            time.sleep(0.05)
        self._reap()
        return rd.read_status(path)

    def delete(self, name: str) -> None:
        with self._locked():
            if self.status(name).active:
                raise rd.RunError(f"{name} is training; stop it before deleting it.")
            shutil.rmtree(self.path(name))

    def rename(self, old: str, new: str) -> None:
        with self._locked():
            src, dst = self.path(old), self.path(new)
            if self.status(old).active:
                raise rd.RunError(f"{old} is training; stop it before renaming it.")
            if dst.exists():
                raise rd.RunError(f"A run named {new!r} already exists.")
            os.rename(src, dst)

    # --- moving runs -------------------------------------------------------------------
    def export_zip(self, name: str) -> bytes:
        """The run directory as a zip (config, weights, metrics, status; no lock or temp files)."""
        path = self.path(name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for fname in (rd.CONFIG, rd.WEIGHTS, rd.METRICS, rd.STATUS):
                if (path / fname).exists():
                    z.write(path / fname, f"{name}/{fname}")
        return buf.getvalue()

    def import_run(self, name: str, config_bytes: bytes, weights_bytes: bytes) -> str:
        """Add a run from an uploaded config.json and weights.safetensors, after checking that the
        weights load into the model the config describes. Nothing is written unless both are valid."""
        rd.validate_run_name(name)
        if len(config_bytes) > 1_000_000 or len(weights_bytes) > MAX_IMPORT_BYTES:
            raise rd.RunError("The uploaded files are too large to be a Latent Explorer run.")
        try:
            config = RunConfig.from_json(config_bytes.decode("utf-8"))
        except UnicodeDecodeError:
            raise rd.RunError("config.json is not text.") from None
        except Exception as e:
            raise rd.RunError(f"config.json is not a valid run config: {e}") from None
        with self._locked():
            final = self.path(name)
            if final.exists():
                raise rd.RunError(f"A run named {name!r} already exists.")
            staging = self.root / f".import-{name}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                (staging / rd.WEIGHTS).write_bytes(weights_bytes)
                snap = rd.load_weights_file(staging / rd.WEIGHTS, config)
                rd.write_config(staging, config)
                rd.write_status(staging, state="stopped", step=snap.step, epoch=snap.epoch, heartbeat=time.time(),
                                message="imported")
                os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return name

    # --- processes ---------------------------------------------------------------------
    def _spawn(self, name: str, resume: bool) -> None:
        path = self.path(name)
        cmd = [sys.executable, "-m", "vae_core", "train", "--run-dir", str(path)]
        if resume:
            cmd.append("--resume")
        log = open(path / "worker.log", "ab")
        # Own session: the worker outlives a restarted web server, which re-attaches from files.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(_SOURCE_ROOT), env=_worker_env(), start_new_session=True)
        log.close()
        self._procs[name] = proc

    def _reap(self) -> None:
        """Collect finished child processes (no zombies) and mark ones that died silently."""
        for name, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[name]
            path = self.root / name
            st = rd.read_status(path)
            if st.state in rd.ACTIVE_STATES:  # died without writing a final state (killed, crashed at import)
                rd.write_status(path, **{**_status_dict(st), "state": "failed",
                                         "error": f"the worker exited with code {code}; see worker.log"})

    def wait(self, name: str, timeout: float) -> rd.RunStatus:
        """Block until the run is no longer active (for scripts and tests)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status(name)
            if not st.active and st.state != "new":
                return st
            time.sleep(0.1)
        return self.status(name)


def _status_dict(st: rd.RunStatus) -> dict:
    d = {k: getattr(st, k) for k in ("state", "error", "pid", "heartbeat", "step", "epoch", "total_steps",
                                      "samples_per_s", "eta_s", "device", "message")}
    d.update(st.extra)
    return d


def _mtime(p: Path) -> float:
    try:
        return max((p / f).stat().st_mtime for f in (rd.CONFIG, rd.STATUS) if (p / f).exists())
    except (OSError, ValueError):
        return 0.0
