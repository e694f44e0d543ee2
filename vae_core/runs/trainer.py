"""The training worker: ``train(config, run_dir)`` is the one entry point.

It runs in its own process (``python -m vae_core train --run-dir runs/<name>``, started by
``RunManager``), so a crash, NaN or out-of-memory here cannot take the web app down. It
never draws and never imports streamlit; everything it has to say goes into the run
directory (see ``rundir``), which the UI reads.

``train`` owns the process-level concerns (the run lock, signals, the final status);
``TrainLoop`` is one run, step by step: draw a batch, take an optimiser step, log a window,
publish a snapshot, poll for control requests, end an epoch.

Hot loop rules: batches are random-permutation indices (no per-sample DataLoader) served by a
``data.feed`` (the whole set on the training device as uint8 when it fits, else streamed from
the dataset cache one batch ahead); loss terms accumulate on the device and the host syncs
only every ``log_every_steps`` steps, when it logs.
"""
from __future__ import annotations

import fcntl
import math
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..data import load_dataset
from ..data.feed import choose_placement, make_feed
from ..engine.config import RunConfig, TrainConfig
from ..engine.device import pick_device
from ..engine.evaluate import evaluate_test_set
from ..engine.families import build_model
from ..engine.objectives import training_loss
from ..engine.optim import learning_rate, make_optimizer
from . import rundir as rd
from .summary import SnapshotSummary, summarise, summary_of_codes, write_summary

HEARTBEAT_EVERY_S = 1.0
CONTROL_POLL_S = 0.1
# An epoch's end publishes a snapshot unless one went out less than this long ago: on a small
# dataset epochs take well under a second, and snapshots faster than the app's 2 s refresh are
# never seen but each costs a write and an fsync (bench/RESULTS.md, "Snapshot cost").
EPOCH_SNAPSHOT_GAP_S = 2.0
# Test hook for fault injection (documented in the README's testing section): "nan@<step>"
# makes the loss NaN from that step on, so the NaN guard can be exercised on a real run.
FAULT_ENV = "LATENT_EXPLORER_FAULT"
# Set by RunManager for the workers it starts beside the web app: leave the app a core.
SHARE_CPU_ENV = "LATENT_EXPLORER_SHARE_CPU"

Outcome = Literal["finished", "stopped"]


class AlreadyRunning(RuntimeError):
    """Another worker holds this run directory."""


class Diverged(RuntimeError):
    """Training produced non-finite numbers; the last good snapshot is kept."""


class NonFiniteLoss(Diverged):
    """The training loss or the test ELBO is NaN or infinite."""


class NonFiniteWeights(Diverged):
    """A weight became NaN or infinite."""


def worker_threads(tc: TrainConfig) -> int:
    """CPU threads for training: the config's, else every core (or all but one beside the app)."""
    if tc.num_threads is not None:
        return tc.num_threads
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if os.environ.get(SHARE_CPU_ENV) else cores


def _lock_run(run_dir: Path):
    """An exclusive lock on the run directory for the worker's lifetime (released by the OS if it dies)."""
    f = open(run_dir / ".worker.lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise AlreadyRunning(f"another worker is already training {run_dir.name}") from None
    return f


def _fault_step() -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    return int(spec[4:]) if spec.startswith("nan@") else None


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
) -> rd.RunStatus:
    """Train ``config`` into ``run_dir``; returns the final status. Never raises for training
    failures: they end as state "failed" with the error in ``status.json``."""
    run_dir = Path(run_dir)
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
                    "launched_at": since}
    rd.write_status(run_dir, **status)
    loop = None
    try:
        config.validate()
        rd.write_config(run_dir, config)
        loop = TrainLoop(config, run_dir, status, since=since, stop_flag=stop_flag, on_log=on_log, resume=resume)
        outcome = loop.run()
        status.update(state=outcome, eta_s=0.0 if outcome == "finished" else None)
        (run_dir / rd.CONTROL).unlink(missing_ok=True)
    except Diverged as e:
        status.update(state="failed", error=str(e))
    except Exception as e:  # any failure is recorded, never lost
        status.update(state="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
    finally:
        lock.close()
    if loop is not None:
        status["step"] = loop.step
    status["heartbeat"] = time.time()
    rd.write_status(run_dir, **status)
    return rd.read_status(run_dir)


@dataclass
class _Window:
    """Loss sums since the last log line, kept on the device to avoid a host sync per step."""

    loss: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor
    steps: int = 0
    samples: int = 0
    t0: float = field(default_factory=time.monotonic)

    @classmethod
    def empty(cls, device: torch.device) -> "_Window":
        zero = torch.zeros((), device=device)
        return cls(zero.clone(), zero.clone(), zero.clone())


class TrainLoop:
    """One run's training, in the order it happens. ``status`` is the dict the worker keeps
    writing to ``status.json``; the loop updates it as it goes."""

    def __init__(self, config: RunConfig, run_dir: Path, status: dict, *, since: float,
                 stop_flag: threading.Event | None = None, on_log: Callable[[dict], None] | None = None,
                 resume: bool = False):
        self.config, self.tc, self.run_dir, self.status = config, config.train, run_dir, status
        self.since, self.on_log = since, on_log
        self.stop_flag = stop_flag or threading.Event()
        tc = self.tc
        torch.set_num_threads(worker_threads(tc))
        self.device = pick_device(tc.device)
        torch.manual_seed(tc.seed)

        self.model = build_model(config).to(self.device)
        data = load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)
        if tuple(data.image_shape) != tuple(self.model.input_spec.shape):
            raise ValueError(f"the model expects inputs of shape {tuple(self.model.input_spec.shape)} "
                             f"but {tc.dataset} has {data.image_shape}")
        self.feed = make_feed(data.x_train, self.device, tc.data_placement)
        small_test = choose_placement(data.x_test, self.device) == "device"
        self.x_test = data.x_test.to(self.device) if small_test else data.x_test  # read in batches when evaluating
        n = self.n_train = len(data.x_train)
        self.batch = min(tc.batch_size, n)  # a batch larger than the data set is the whole set
        self.steps_per_epoch = max(1, n // self.batch)  # drop the ragged last batch: equal-size steps
        self.total_steps = self.steps_per_epoch * tc.epochs
        if tc.max_steps is not None:
            self.total_steps = min(self.total_steps, tc.max_steps)

        self.optimizer = make_optimizer(self.model, tc.lr)
        self.step = 0
        if resume and (run_dir / rd.WEIGHTS).exists():
            snap = rd.load_snapshot(run_dir, device=str(self.device))
            self.model.load_state_dict(snap.model.state_dict())
            self.step = snap.step
            if rd.load_optimizer_state(run_dir, self.optimizer, self.device) != self.step:
                self.optimizer = make_optimizer(self.model, tc.lr)  # stale optimiser file: restart its moments
        self.start_epoch = self.step // self.steps_per_epoch
        self.model.train()
        self.generator = torch.Generator().manual_seed(tc.seed + self.start_epoch)  # on the CPU: the feed reads there
        self.fault_at = _fault_step()

        self.window = _Window.empty(self.device)
        self.summary_step: int | None = None  # the step of the last published summary
        self.snapshots = 0  # published by this worker
        self.rate_ema: float | None = None
        self.paused = False
        self.t_start = time.time()
        self.t_last_snapshot = self.t_last_poll = self.t_last_heartbeat = time.monotonic()
        status.update(state="running", device=str(self.device), threads=torch.get_num_threads(),
                      total_steps=self.total_steps, step=self.step, epoch=self.start_epoch,
                      steps_per_epoch=self.steps_per_epoch, n_train=n, n_test=len(self.x_test),
                      data_placement=self.feed.placement, data_mb=round(data.x_train.nbytes / 2**20, 1),
                      heartbeat=time.time())
        rd.write_status(run_dir, **status)

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> Outcome:
        rd.append_metrics(self.run_dir, {"kind": "start", "step": self.step, "device": str(self.device),
                                         "resumed": self.step > 0})
        outcome: Outcome = "finished"
        for epoch in range(self.start_epoch, self.tc.epochs):
            if self.step >= self.total_steps:
                break
            for xb in self.feed.batches(self.epoch_batches(epoch)):
                if self.stop_requested():
                    outcome = "stopped"
                    break
                self.train_step(xb)
            if outcome == "stopped":
                break
            self.end_epoch(epoch)
        self.log_window()
        self.publish_snapshot(summary=True)
        return outcome

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Index batches of this epoch's permutation, from where a resumed run left off, up to
        the run's last step (a list, so a streaming feed can read ahead)."""
        perm = torch.randperm(self.n_train, generator=self.generator).numpy()
        first = self.step - epoch * self.steps_per_epoch if epoch == self.start_epoch else 0
        last = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        return [perm[b * self.batch : (b + 1) * self.batch] for b in range(max(0, first), last)]

    def train_step(self, xb: torch.Tensor) -> None:
        """One optimiser step on the batch ``xb`` (float images on the device)."""
        lr = learning_rate(self.tc, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, terms = training_loss(self.model, xb, self.tc)
        if self.fault_at is not None and self.step >= self.fault_at:
            loss = loss * float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        w = self.window
        w.loss += loss.detach()
        w.log_likelihood += terms.log_likelihood.detach().mean()
        w.kl += terms.kl.detach().mean()
        w.steps += 1
        w.samples += len(xb)
        if self.step % self.tc.log_every_steps == 0:
            self.log_window()
            if time.monotonic() - self.t_last_snapshot >= self.tc.snapshot_every_s:
                self.publish_snapshot()

    def end_epoch(self, epoch: int) -> None:
        """Log, evaluate on the test set and publish a snapshot."""
        self.log_window()
        ev = evaluate_test_set(self.model, self.x_test, seed=self.tc.seed)
        if not math.isfinite(ev.elbo):
            raise NonFiniteLoss(f"the test ELBO became {ev.elbo} after epoch {epoch + 1}; "
                                "the last good weights are kept")
        self.emit({"kind": "epoch", "step": self.step, "epoch": epoch + 1, "test_elbo": ev.elbo,
                   "test_log_likelihood": ev.log_likelihood, "test_kl": ev.kl,
                   "wall_s": time.time() - self.t_start})
        self.status.update(epoch=epoch + 1, test_elbo=ev.elbo)
        gap = min(self.tc.snapshot_every_s, EPOCH_SNAPSHOT_GAP_S)
        if self.snapshots == 0 or time.monotonic() - self.t_last_snapshot >= gap:
            self.publish_snapshot(summary=summary_of_codes(ev.mu, ev.logvar, self.step))

    # --- what the loop says -----------------------------------------------------------------
    def emit(self, record: dict) -> None:
        rd.append_metrics(self.run_dir, record)
        if self.on_log:
            self.on_log(record)

    def log_window(self) -> None:
        w = self.window
        if w.steps == 0:
            return
        now = time.monotonic()
        # The one host sync per window: all three sums in one transfer.
        loss, log_likelihood, kl = (torch.stack((w.loss, w.log_likelihood, w.kl)) / w.steps).tolist()
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} at step {self.step}; the last good weights are kept")
        rate = w.samples / max(1e-9, now - w.t0)
        self.rate_ema = rate if self.rate_ema is None else 0.7 * self.rate_ema + 0.3 * rate
        remaining = (self.total_steps - self.step) * self.batch / max(1e-9, self.rate_ema)
        self.emit({"kind": "step", "step": self.step, "epoch": self.step / self.steps_per_epoch, "loss": loss,
                   "log_likelihood": log_likelihood, "kl": kl, "elbo": log_likelihood - kl,
                   "samples_per_s": rate, "wall_s": time.time() - self.t_start, "eta_s": remaining,
                   "lr": self.optimizer.param_groups[0]["lr"]})  # the rate the last step really used
        self.status.update(step=self.step, samples_per_s=self.rate_ema, eta_s=remaining)
        self.window = _Window.empty(self.device)

    def publish_snapshot(self, summary: SnapshotSummary | bool = False) -> None:
        """Weights and optimiser state, each replaced atomically, and the test-set summary when
        ``summary`` is one or is True (then encoded here, unless this step already has one).
        Timed mid-epoch snapshots go without: a page visiting one computes what it needs."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise NonFiniteWeights(f"weights became non-finite by step {self.step}; the last good weights are kept")
        epoch = self.step // self.steps_per_epoch
        if summary is True:
            summary = None if self.summary_step == self.step else summarise(self.model, self.x_test, self.step)
        try:
            rd.save_snapshot(self.run_dir, self.model, self.step, epoch, self.optimizer)
            self.snapshots += 1
            if isinstance(summary, SnapshotSummary):
                write_summary(self.run_dir, summary)
                self.summary_step = summary.step
            self.status.pop("snapshot_error", None)
        except OSError as e:  # disk full or unwritable: keep training, keep the old snapshot, say so
            self.status["snapshot_error"] = f"could not save a snapshot: {e}"
        self.model.train()
        self.t_last_snapshot = time.monotonic()

    # --- control ------------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        """The one stop check: polls control requests at most every CONTROL_POLL_S, waits here
        while paused, and says whether the run should stop now."""
        now = time.monotonic()
        if now - self.t_last_poll < CONTROL_POLL_S:
            return False
        self.t_last_poll = now
        while True:
            if self.poll_control() == "stop":
                return True
            if not self.paused:
                break
            time.sleep(0.05)
        if self.window.steps == 0:  # just resumed from a pause: don't count the pause in samples/s
            self.window.t0 = time.monotonic()
        return False

    def poll_control(self) -> str | None:
        """Handle pause / resume requests and the heartbeat; returns "stop" when asked to stop."""
        req = "stop" if self.stop_flag.is_set() else rd.read_request(self.run_dir, self.since)
        if req == "stop":
            return "stop"
        if req == "pause" and not self.paused:
            self.paused = True
            self.log_window()
            self.publish_snapshot(summary=True)  # a paused run is what people look at
            self.status.update(state="paused", step=self.step)
            self.write_heartbeat()
        elif req == "resume" and self.paused:
            self.paused = False
            self.status.update(state="running")
            self.write_heartbeat()
        elif time.monotonic() - self.t_last_heartbeat >= HEARTBEAT_EVERY_S:
            self.write_heartbeat()
        return None

    def write_heartbeat(self) -> None:
        self.status["heartbeat"] = time.time()
        rd.write_status(self.run_dir, **self.status)
        self.t_last_heartbeat = time.monotonic()
