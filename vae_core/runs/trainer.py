"""The training worker: ``train(config, run_dir)`` is the one entry point.

It runs in its own process (``python -m vae_core train --run-dir runs/<name>``, started by
``RunManager``), so a crash, NaN or out-of-memory here cannot take the web app down. It
never draws and never imports streamlit; everything it has to say goes into the run
directory (see ``rundir``), which the UI reads, and, when the config asks, into TensorBoard's
event files there too (``tensorboard_log``).

``train`` owns the process-level concerns (the run lock, signals, the final status) and hands
the run to its family's loop: ``train_loop.TrainLoop`` for every gradient-trained model,
``lda_trainer.LdaLoop`` for classical LDA.
"""
from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from ..data import Dataset
from ..engine.config import RunConfig
from . import distributed as dd
from . import rundir as rd
from .lda_trainer import LdaLoop
from .tensorboard_log import TensorBoardMissing
from .train_loop import (  # noqa: F401 (the worker's contract, re-exported)
    FAULT_ENV, SHARE_CPU_ENV, Diverged, NonFiniteLoss, NonFiniteWeights, Outcome, TrainLoop, worker_threads)


class AlreadyRunning(RuntimeError):
    """Another worker holds this run directory."""


def _lock_run(run_dir: Path):
    """An exclusive lock on the run directory for the worker's lifetime (released by the OS if it dies)."""
    f = open(run_dir / ".worker.lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise AlreadyRunning(f"another worker is already training {run_dir.name}") from None
    return f


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    data: Dataset | None = None,
) -> rd.RunStatus:
    """Train ``config`` into ``run_dir``; returns the final status. Never raises for training
    failures: they end as state "failed" with the error in ``status.json``.

    data: the config's dataset when the caller has just loaded it (the CLI does, to build the
    config), so it is not looked up again; otherwise it is loaded here."""
    run_dir = Path(run_dir)
    ctx = dd.DistContext.from_env()
    if ctx is not None and not ctx.is_main:
        return _train_follower(config, run_dir, ctx, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_run(run_dir)
    stop_flag = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop at the next step, honestly
            signal.signal(sig, lambda signum, frame: stop_flag.set())

    # Requests count from the moment this run was launched (the manager records it), so a Stop
    # pressed while the worker was still starting is honoured and an old one is not.
    prior = rd.read_json(run_dir / rd.STATUS)
    launched = prior.get("launched_at") if isinstance(prior, dict) and prior.get("state") == "starting" else None
    since = launched if isinstance(launched, (int, float)) else time.time()
    status: dict = {"state": "starting", "pid": os.getpid(), "heartbeat": time.time(), "step": 0, "epoch": 0,
                    "launched_at": since, "world_size": ctx.world_size if ctx else 1,
                    "backend": None}
    if ctx is not None and isinstance(prior, dict) and prior.get("launcher_pid"):
        status["launcher_pid"] = prior["launcher_pid"]
    rd.write_status(run_dir, **status)
    loop = None
    try:
        config.validate()
        rd.write_config(run_dir, config)
        loop = _loop_class(config)(config, run_dir, status, since=since, stop_flag=stop_flag, on_log=on_log,
                                   resume=resume, dist=ctx, data=data)
        outcome = loop.run()
        status.update(state=outcome, eta_s=0.0 if outcome == "finished" else None)
        (run_dir / rd.CONTROL).unlink(missing_ok=True)
    except (Diverged, TensorBoardMissing) as e:  # said in one sentence: no traceback helps here
        status.update(state="failed", error=str(e))
    except Exception as e:  # any failure is recorded, never lost
        error = f"{type(e).__name__}: {e}"
        if ctx is not None and _is_dist_failure(e):
            error = ("lost contact with another training process (it died, or a collective timed out after "
                     f"{dd.timeout_s():.0f} s); the last snapshot is kept and the run can be resumed. {error}")
        status.update(state="failed", error=error, traceback=traceback.format_exc(limit=8))
    finally:
        if loop is not None:
            loop.close()
        lock.close()
        if ctx is not None:
            dd.shutdown()
    if loop is not None:
        status["step"] = loop.step
    status["heartbeat"] = time.time()
    rd.write_status(run_dir, **status)
    return rd.read_status(run_dir)


def _loop_class(config: RunConfig):
    """The loop that trains the config's family: ``TrainLoop`` for every gradient-trained model,
    ``LdaLoop`` for classical LDA (online variational Bayes, no gradients)."""
    return LdaLoop if config.family == "lda" else TrainLoop


def _is_dist_failure(e: BaseException) -> bool:
    """A collective failed: a peer died (connection closed) or did not answer in time."""
    import torch.distributed as dist

    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "timed out",
                                                                     "timeout", "peer"))


def _train_follower(config: RunConfig, run_dir: Path, ctx: "dd.DistContext", resume: bool) -> rd.RunStatus:
    """Rank > 0: the same loop, writing nothing. Signals are left to rank 0, which turns a stop
    into a collective decision; a failure here raises (torchrun then ends the job)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)
    status: dict = {}
    try:
        config.validate()
        loop = TrainLoop(config, run_dir, status, since=time.time(), resume=resume, dist=ctx)
        outcome = loop.run()
    finally:
        dd.shutdown()
    return rd.RunStatus(state=outcome, step=loop.step, epoch=loop.step // loop.steps_per_epoch,
                        total_steps=loop.total_steps)

