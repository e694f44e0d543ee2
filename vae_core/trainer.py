"""The training worker: ``train(config, run_dir)`` is the one entry point.

It runs in its own process (``python -m vae_core train --run-dir runs/<name>``, started by
``RunManager``), so a crash, NaN or out-of-memory here cannot take the web app down. It
never draws and never imports streamlit; everything it has to say goes into the run
directory (see ``rundir``), which the UI reads.

Hot loop rules: the whole dataset sits on the training device and batches are
random-permutation indices (no per-sample DataLoader); loss terms accumulate on the device
and the host syncs only every ``log_every_steps`` steps, when it logs.
"""
from __future__ import annotations

import fcntl
import math
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import rundir as rd
from .config import RunConfig, TrainConfig
from .data import Dataset, load_dataset
from .device import pick_device
from .model import VAE
from .evaluate import evaluate_elbo
from .objectives import ElboTerms, elbo_terms, iwae_bound

HEARTBEAT_EVERY_S = 1.0
CONTROL_POLL_S = 0.1
# Test hook for fault injection (documented in the README's testing section): "nan@<step>"
# makes the loss NaN from that step on, so the NaN guard can be exercised on a real run.
FAULT_ENV = "LATENT_EXPLORER_FAULT"
# Set by RunManager for the workers it starts beside the web app: leave the app a core.
SHARE_CPU_ENV = "LATENT_EXPLORER_SHARE_CPU"


class AlreadyRunning(RuntimeError):
    """Another worker holds this run directory."""


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class _Window:
    """Loss sums since the last log line, kept on the device to avoid a host sync per step."""

    loss: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor
    steps: int = 0
    samples: int = 0
    t0: float = 0.0


def training_terms(model: VAE, x: torch.Tensor, config: RunConfig) -> tuple[torch.Tensor, ElboTerms]:
    """The loss the optimiser minimises and the ELBO terms to log, for one batch."""
    tc = config.train
    if tc.objective == "iwae":
        bound = iwae_bound(model, x, k=tc.samples)
        terms = elbo_terms(model, x, samples=1, kl_estimator=tc.kl_estimator)
        return -bound.mean(), terms
    terms = elbo_terms(model, x, samples=tc.samples, kl_estimator=tc.kl_estimator)
    return terms.loss(tc.beta), terms


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
    if spec.startswith("nan@"):
        return int(spec[4:])
    return None


def learning_rate(tc: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    A linear warm-up keeps the first Adam steps, whose moment estimates are still noisy,
    from throwing the weights far; the cosine decay then lets a larger peak rate converge
    (Loshchilov & Hutter 2017). A function of the step alone, so a resumed run continues
    the same curve.
    """
    if tc.lr_schedule == "constant":
        return tc.lr
    warmup = min(tc.warmup_steps, total_steps // 10)  # a short run still spends most steps decaying
    if step < warmup:
        return tc.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return tc.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def worker_threads(tc: TrainConfig) -> int:
    """CPU threads for training: the config's, else every core (or all but one beside the app)."""
    if tc.num_threads is not None:
        return tc.num_threads
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if os.environ.get(SHARE_CPU_ENV) else cores


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam with the fused kernel where the build has one for this device, else the foreach one.

    Fused is the fast choice on CUDA, and on CPU too (bench/RESULTS.md: about 4x faster than
    foreach per optimizer step for the default MLP); both take the same step (tests/test_fast_paths.py).
    """
    if device.type == "cuda":
        # One fused kernel for all parameters. CUDA graphs, torch.compile and bf16 autocast stay
        # off until measured on a GPU (bench/RESULTS.md, "GPU").
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


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
    stop_signal = {"flag": False}

    def _on_signal(signum, frame):  # SIGTERM / SIGINT: stop at the next step, honestly
        stop_signal["flag"] = True

    if hasattr(signal, "SIGTERM") and _in_main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    # Requests count from the moment this run was launched (the manager records it), so a Stop
    # pressed while the worker was still starting is honoured and an old one is not.
    prior = rd.read_json(run_dir / rd.STATUS)
    launched = prior.get("launched_at") if isinstance(prior, dict) and prior.get("state") == "starting" else None
    since = launched if isinstance(launched, (int, float)) else time.time()
    status: dict = {"state": "starting", "pid": os.getpid(), "heartbeat": time.time(), "step": 0, "epoch": 0,
                    "launched_at": since}
    rd.write_status(run_dir, **status)
    try:
        config.validate()
        rd.write_config(run_dir, config)
        return _train_loop(config, run_dir, resume, status, stop_signal, on_log, since)
    except Exception as e:  # any failure is recorded, never lost
        status.update(
            state="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(limit=8),
            heartbeat=time.time(),
        )
        rd.write_status(run_dir, **status)
        return rd.read_status(run_dir)
    finally:
        lock.close()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _train_loop(config, run_dir, resume, status, stop_signal, on_log, since: float) -> rd.RunStatus:
    tc = config.train
    torch.set_num_threads(worker_threads(tc))
    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)

    data: Dataset = load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)
    if tuple(data.image_shape) != tuple(config.model.input_shape):
        raise ValueError(
            f"the model expects images of shape {tuple(config.model.input_shape)} but {tc.dataset} has {data.image_shape}"
        )
    x_train = data.x_train.to(device)  # (N, C, H, W), resident for the whole run
    x_test = data.x_test.to(device)
    n = len(x_train)
    batch = min(tc.batch_size, n)  # a batch larger than the data set is the whole set
    steps_per_epoch = max(1, n // batch)  # drop the ragged last batch: equal-size steps
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)

    model = VAE(config.model).to(device)
    optimizer = make_optimizer(model, tc.lr, device)
    step, start_epoch = 0, 0
    if resume and (run_dir / rd.WEIGHTS).exists():
        snap = rd.load_snapshot(run_dir, device=str(device))
        model.load_state_dict(snap.model.state_dict())
        step = snap.step
        start_epoch = step // steps_per_epoch
        if rd.load_optimizer_state(run_dir, optimizer, device) != step:
            optimizer = make_optimizer(model, tc.lr, device)  # stale optimiser file: restart its moments
    model.train()

    gen = torch.Generator(device=device).manual_seed(tc.seed + start_epoch)
    fault_at = _fault_step()
    status.update(
        state="running", device=str(device), threads=torch.get_num_threads(), total_steps=total_steps, step=step, epoch=start_epoch,
        steps_per_epoch=steps_per_epoch, n_train=n, n_test=len(x_test), heartbeat=time.time(),
    )
    rd.write_status(run_dir, **status)

    t_start = time.time()
    t_last_snapshot = time.monotonic()
    t_last_poll = t_last_heartbeat = time.monotonic()
    zero = torch.zeros((), device=device)
    win = _Window(zero.clone(), zero.clone(), zero.clone(), t0=time.monotonic())
    rate_ema: float | None = None
    paused = False

    def log_window() -> None:
        nonlocal rate_ema, win
        if win.steps == 0:
            return
        now = time.monotonic()
        # The one host sync per window: all three sums in one transfer.
        loss, log_likelihood, kl = (torch.stack((win.loss, win.log_likelihood, win.kl)) / win.steps).tolist()
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} at step {step}; the last good weights are kept")
        rate = win.samples / max(1e-9, now - win.t0)
        rate_ema = rate if rate_ema is None else 0.7 * rate_ema + 0.3 * rate
        remaining = (total_steps - step) * batch / max(1e-9, rate_ema)
        rec = {
            "kind": "step", "step": step, "epoch": step / steps_per_epoch, "loss": loss,
            "log_likelihood": log_likelihood, "kl": kl,
            "samples_per_s": rate, "wall_s": time.time() - t_start, "eta_s": remaining,
            "lr": optimizer.param_groups[0]["lr"],  # the rate the last step really used
        }
        rec["elbo"] = rec["log_likelihood"] - rec["kl"]
        rd.append_metrics(run_dir, rec)
        if on_log:
            on_log(rec)
        status.update(step=step, samples_per_s=rate_ema, eta_s=remaining)
        win = _Window(zero.clone(), zero.clone(), zero.clone(), t0=time.monotonic())

    def publish() -> None:
        nonlocal t_last_snapshot
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise NonFiniteLoss(f"weights became non-finite by step {step}; the last good weights are kept")
        try:
            rd.save_snapshot(run_dir, model, step, step // steps_per_epoch, optimizer)
            status.pop("snapshot_error", None)
        except OSError as e:  # disk full or unwritable: keep training, keep the old snapshot, say so
            status["snapshot_error"] = f"could not save a snapshot: {e}"
        t_last_snapshot = time.monotonic()

    def poll_control() -> str | None:
        """Handle pause/resume/stop requests and the heartbeat; returns "stop" to end the run."""
        nonlocal paused, t_last_heartbeat
        req = "stop" if stop_signal["flag"] else rd.read_request(run_dir, since)
        if req == "stop":
            return "stop"
        if req == "pause" and not paused:
            paused = True
            log_window()
            publish()
            status.update(state="paused", step=step, heartbeat=time.time())
            rd.write_status(run_dir, **status)
        elif req == "resume" and paused:
            paused = False
            status.update(state="running", heartbeat=time.time())
            rd.write_status(run_dir, **status)
        now = time.monotonic()
        if now - t_last_heartbeat >= HEARTBEAT_EVERY_S:
            status["heartbeat"] = time.time()
            rd.write_status(run_dir, **status)
            t_last_heartbeat = now
        return None

    rd.append_metrics(run_dir, {"kind": "start", "step": step, "device": str(device), "resumed": bool(resume and step)})
    outcome = "finished"
    try:
        for epoch in range(start_epoch, tc.epochs):
            if step >= total_steps:
                break
            perm = torch.randperm(n, device=device, generator=gen)
            first = step - epoch * steps_per_epoch if epoch == start_epoch else 0
            for b in range(max(0, first), steps_per_epoch):
                if step >= total_steps:
                    break
                now = time.monotonic()
                if now - t_last_poll >= CONTROL_POLL_S:
                    t_last_poll = now
                    if poll_control() == "stop":
                        outcome = "stopped"
                        break
                    while paused:
                        time.sleep(0.05)
                        if poll_control() == "stop":
                            outcome = "stopped"
                            break
                    if outcome == "stopped":
                        break
                    if win.steps == 0:  # just resumed from a pause: don't count the pause in samples/s
                        win.t0 = time.monotonic()
                idx = perm[b * batch : (b + 1) * batch]
                xb = x_train.index_select(0, idx)  # a row gather; x_train[idx] takes the slower generic index kernel
                lr = learning_rate(tc, step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, terms = training_terms(model, xb, config)
                if fault_at is not None and step >= fault_at:
                    loss = loss * float("nan")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                win.loss += loss.detach()
                win.log_likelihood += terms.log_likelihood.detach().mean()
                win.kl += terms.kl.detach().mean()
                win.steps += 1
                win.samples += len(idx)
                if step % tc.log_every_steps == 0:
                    log_window()
                    if time.monotonic() - t_last_snapshot >= tc.snapshot_every_s:
                        publish()
            if outcome == "stopped":
                break
            # End of an epoch: log, evaluate on the test set, publish a snapshot.
            log_window()
            ev = evaluate_elbo(model, x_test, seed=tc.seed)
            rec = {"kind": "epoch", "step": step, "epoch": epoch + 1, "test_elbo": ev["elbo"],
                   "test_log_likelihood": ev["log_likelihood"], "test_kl": ev["kl"], "wall_s": time.time() - t_start}
            if not math.isfinite(ev["elbo"]):
                raise NonFiniteLoss(f"the test ELBO became {ev['elbo']} after epoch {epoch + 1}; the last good weights are kept")
            rd.append_metrics(run_dir, rec)
            if on_log:
                on_log(rec)
            status.update(epoch=epoch + 1, test_elbo=ev["elbo"])
            publish()
        log_window()
        publish()
    except NonFiniteLoss as e:
        status.update(state="failed", error=str(e), step=step, heartbeat=time.time())
        rd.write_status(run_dir, **status)
        return rd.read_status(run_dir)

    status.update(state=outcome, step=step, heartbeat=time.time(), eta_s=0.0 if outcome == "finished" else None)
    rd.write_status(run_dir, **status)
    (run_dir / rd.CONTROL).unlink(missing_ok=True)
    return rd.read_status(run_dir)
