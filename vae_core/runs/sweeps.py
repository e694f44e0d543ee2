"""Sweeps: several prepared runs trained one after another by one background worker.

Who calls what:
  ``start``  (the web app or a script) creates the runs and spawns ``python -m vae_core sweep``;
  ``run``    (that worker process) trains them in turn;
  ``list_sweeps``, ``sweep_of``, ``sweep_states``, ``stop_sweep``, ``sweep_active`` (any process)
             read and steer a sweep from its files alone.

Sequential, not parallel: on a small machine two workers only fight over the same cores, and
one worker leaves a core to the web app.

A sweep is recorded in ``<runs>/.sweeps/<id>.json``: {"id", "runs", "labels", "created", "pid",
...meta}; the worker's own output goes to ``<id>.log`` beside it, each run's to its worker.log.
Its runs keep to the run-directory contract: the first starts as "starting", the others wait as
state "stopped" with message ``QUEUED``. That is honest (nothing trains them yet) and keeps them
out of the active states, so the one-run-at-a-time rule sees only the run in training. The
worker trains a run only while it still waits, so a run the user resumed, stopped or deleted in
the meantime is skipped.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..engine.config import RunConfig
from . import rundir as rd
from .manager import RunManager

SWEEPS_DIR = ".sweeps"
QUEUED = "queued"
NOT_TRAINED = "not trained: the sweep was stopped"


@dataclass(frozen=True)
class Sweep:
    """A sweep's record, ``<runs>/.sweeps/<id>.json``, as ``start`` writes it."""

    id: str
    kind: str
    runs: tuple[str, ...]
    labels: tuple[str, ...]
    values: tuple[float | None, ...]
    created: float
    pid: int | None


@dataclass(frozen=True)
class SweepRunState:
    """One run of a sweep as a page lists it. ``state`` is the run's own state, except that a run
    still waiting reads "queued" while the sweep worker lives and "not trained" once it is gone."""

    name: str
    label: str
    value: float | None
    state: str
    progress: float
    active: bool
    exists: bool
    note: str = ""


# --- starting (the web app's process) ------------------------------------------------------
def start(manager: RunManager, configs: Sequence[RunConfig], prefix: str, labels: Sequence[str] | None = None,
          meta: dict | None = None, exclusive: bool = True) -> list[str]:
    """Create one run per config, named ``<prefix>-<label>`` (label default ``beta<β>``), and spawn
    ONE worker that trains them in order. Returns the run names in that order.

    The sweep's id is the prefix actually used: it gets a "-2" suffix if the prefix or one of
    the run names is taken. ``meta`` (e.g. {"kind": "beta", "values": [...]}) goes into the record.
    With ``exclusive`` (the app's default) a sweep is refused while another run trains.
    """
    if not configs:
        raise ValueError("a sweep needs at least one config")
    for c in configs:
        c.validate()
    labels = list(labels) if labels is not None else [f"beta{c.train.beta:g}" for c in configs]
    if len(labels) != len(configs) or len(set(labels)) != len(labels):
        raise ValueError("a sweep needs one distinct label per config")
    with manager.locked():
        if exclusive:
            active = manager.active_run()
            if active is not None:
                raise rd.RunError(f"Run {active} is training; stop it (or wait) before starting a sweep.")
        folder = manager.root / SWEEPS_DIR
        folder.mkdir(exist_ok=True)
        base = manager.unique_name(prefix)[:40].strip(".-") or "sweep"
        sweep_id, i = base, 2
        def taken(sid: str) -> bool:
            return (folder / f"{sid}.json").exists() or any((manager.root / f"{sid}-{lab}").exists() for lab in labels)

        while taken(sweep_id):
            sweep_id, i = f"{base}-{i}", i + 1
        names = [rd.validate_run_name(f"{sweep_id}-{lab}") for lab in labels]
        now = time.time()
        for k, (name, config) in enumerate(zip(names, configs)):
            path = manager.path(name)
            path.mkdir()
            rd.write_config(path, config)
            waiting = {} if k == 0 else {"message": QUEUED}
            rd.write_status(path, state="starting" if k == 0 else "stopped", heartbeat=now, step=0, epoch=0,
                            sweep=sweep_id, **waiting)
        record = {**(meta or {}), "id": sweep_id, "runs": names, "labels": labels, "created": now, "pid": None}
        rd.atomic_write_json(folder / f"{sweep_id}.json", record)
        proc = manager.launch(["sweep", "--run-dirs", *(str(manager.path(n)) for n in names)],
                              log=folder / f"{sweep_id}.log", runs=names)
        rd.atomic_write_json(folder / f"{sweep_id}.json", {**record, "pid": proc.pid})
    return names


# --- the worker (its own process) ------------------------------------------------------------
def run(run_dirs: Sequence[Path]) -> int:
    """Train the prepared runs one after another in this process; the exit code of the sweep.

    A run is trained only while its status still says it waits (the first "starting", the rest
    "stopped" + ``QUEUED``) and nobody asked it to stop; anything else means the user took it
    over and it is skipped. If a run ends "stopped" (the user pressed Stop, or SIGTERM), the sweep
    ends too and the runs still waiting say so; a "failed" run does not stop the others (exit 1).
    """
    from .trainer import AlreadyRunning, train

    interrupted = False

    def on_signal(signum, frame):  # between runs, train()'s own handler is not listening
        nonlocal interrupted
        interrupted = True

    outcome = 0
    for i, run_dir in enumerate(map(Path, run_dirs)):
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        st = rd.read_status(run_dir)
        waiting = st.state == "starting" or (st.state == "stopped" and st.message == QUEUED and st.step == 0)
        if interrupted or rd.read_request(run_dir) == "stop":
            if waiting:
                _mark_not_trained(run_dir)
            continue
        if not waiting:
            print(f"{run_dir.name}: skipped ({st.label}{', ' + st.message if st.message else ''})", flush=True)
            continue
        try:
            config = rd.read_config(run_dir)
        except rd.RunError as e:
            print(f"{run_dir.name}: skipped ({e})", flush=True)
            continue
        if interrupted:  # a signal that came in while this run was being read
            _mark_not_trained(run_dir)
            continue
        print(f"sweep run {i + 1} of {len(run_dirs)}: {run_dir.name}", flush=True)
        try:
            with _output_to(run_dir / "worker.log"):  # as for a run started alone
                status = train(config, run_dir)
        except AlreadyRunning as e:
            print(f"{run_dir.name}: skipped ({e})", flush=True)
            continue
        print(f"{run_dir}: {status.state} at step {status.step}" + (f" ({status.error})" if status.error else ""),
              flush=True)
        if status.state == "failed":
            outcome = 1
        elif status.state == "stopped":
            interrupted = True
    return outcome


def _mark_not_trained(run_dir: Path) -> None:
    rd.write_status(run_dir, state="stopped", message=NOT_TRAINED, heartbeat=time.time(), step=0, epoch=0)


@contextmanager
def _output_to(log: Path):
    """Point this process's stdout and stderr at ``log`` for the duration. The file descriptors
    themselves are redirected, so output from native code lands there too."""
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(f.fileno(), 1), os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


# --- reading and steering (any process) --------------------------------------------------------
def list_sweeps(root: str | Path, kind: str | None = None) -> list[Sweep]:
    """Every readable sweep record under the runs folder ``root``, newest first."""
    out = []
    for p in (Path(root) / SWEEPS_DIR).glob("*.json"):
        d = rd.read_json(p)
        if not isinstance(d, dict) or not isinstance(d.get("runs"), list):
            continue
        runs = tuple(str(r) for r in d["runs"])
        labels = tuple(str(x) for x in d.get("labels", runs))
        values = d.get("values") or [None] * len(runs)
        sw = Sweep(str(d.get("id", p.stem)), str(d.get("kind", "beta")), runs, labels,
                   tuple(None if v is None else float(v) for v in values), float(d.get("created", 0.0)),
                   d.get("pid") if isinstance(d.get("pid"), int) else None)
        if kind is None or sw.kind == kind:
            out.append(sw)
    return sorted(out, key=lambda s: s.created, reverse=True)


def sweep_of(root: str | Path, run: str) -> str | None:
    """The id of the sweep that run ``run`` belongs to, if any."""
    return next((s.id for s in list_sweeps(root) if run in s.runs), None)


def worker_alive(pid: int | None) -> bool:
    """Whether the sweep worker with this pid still runs. On Linux the process is also checked to
    be a sweep worker, so a recycled pid is not mistaken for one (and never signalled)."""
    if not pid:
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"vae_core" in cmd and b"sweep" in cmd
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return False  # Linux, and no such process
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_states(manager: RunManager, sweep: Sweep) -> list[SweepRunState]:
    """Each of the sweep's runs, in the sweep's order, as read from its run directory now."""
    alive = worker_alive(sweep.pid)
    out = []
    for name, label, value in zip(sweep.runs, sweep.labels, sweep.values):
        if not manager.exists(name):
            out.append(SweepRunState(name, label, value, "deleted", 0.0, False, False))
            continue
        st = manager.status(name)
        state, note = st.label, st.message or ""
        if st.state == "stopped" and st.message == QUEUED:
            state, note = ("queued", "") if alive else ("not trained", "the sweep worker is gone")
        elif st.error:
            note = st.error
        out.append(SweepRunState(name, label, value, state, st.progress, st.active, True, note))
    return out


def stop_sweep(manager: RunManager, sweep: Sweep) -> None:
    """Stop the run in training and ask every waiting run to stay untrained. The worker then ends
    the sweep, and the waiting runs say ``NOT_TRAINED``.

    Once the worker has begun training (a run's status carries its pid) it also gets SIGTERM
    directly: the trainer clears old control requests when its loop begins, so a request alone
    can be lost while a run is still starting, and the signal sets a flag that survives that.
    Before then the worker may still be importing, where SIGTERM would kill it outright; then the
    requests alone do it, since the worker checks each run's request before training it."""
    started = any(manager.status(n).pid == sweep.pid for n in sweep.runs if manager.exists(n))
    if started and worker_alive(sweep.pid):
        try:
            os.kill(sweep.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for name in sweep.runs:
        if not manager.exists(name):
            continue
        st = manager.status(name)
        if st.active:
            manager.stop(name)
        elif st.state == "stopped" and st.message == QUEUED:
            rd.request(manager.path(name), "stop")


def sweep_active(states: Sequence[SweepRunState]) -> bool:
    """True while some run trains or waits its turn (a page keeps refreshing)."""
    return any(s.active or s.state == "queued" for s in states)
