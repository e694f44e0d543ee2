"""One run's training, step by step: ``TrainLoop`` (the worker's process-level concerns, the run lock,
signals and the final status, are ``trainer.train``'s).

Each step draws a batch, takes an optimiser step, logs a window, publishes a snapshot and polls
for control requests; each epoch ends with an evaluation. Data-parallel runs (torchrun,
``TrainConfig.nproc``; see ``distributed``): every rank runs the same loop on its shard of each
global batch, DDP averages the gradients, and rank 0 alone writes the run directory; control and
the log window are collectives at deterministic steps.

Hot loop rules: batches are random-permutation indices (no per-sample DataLoader) served by a
``data.feed`` (the whole set on the training device as uint8 when it fits, else streamed from
the dataset cache one batch ahead); loss terms accumulate on the device and the host syncs
only every ``log_every_steps`` steps, when it logs.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..data import Dataset, split_digest, validation_split
from ..data.feed import choose_placement, make_feed
from ..engine.config import ConfigError, RunConfig, TrainConfig
from ..engine.device import pick_device
from ..engine.evaluate import evaluate_test_set
from ..engine.families import build_model
from ..engine.objectives import corpus_log_coefficient, perplexity_from_bound, prior_of, training_loss
from ..engine.optim import cooldown_rate, learning_rate, make_optimizer
from . import distributed as dd
from . import rundir as rd
from .run_data import load_run_data, store_vocabulary
from .summary import SnapshotSummary, summarise, summary_of_codes, write_summary
from .tensorboard_log import TensorBoardLog, label_names, scalars_of

HEARTBEAT_EVERY_S = 1.0
CONTROL_POLL_S = 0.1
# An epoch's end publishes a snapshot unless one went out less than this long ago: on a small
# dataset epochs take well under a second, and snapshots faster than the app's 2 s refresh are
# never seen but each costs a write and an fsync (bench/RESULTS.md, "Snapshot cost").
EPOCH_SNAPSHOT_GAP_S = 2.0
# Test hook for fault injection (documented in the README's testing section): "nan@<step>"
# makes the loss NaN from that step on, so the NaN guard can be exercised on a real run;
# "die@<step>:rank<r>" SIGKILLs rank r of a distributed run just before that step;
# "worse@<epoch>" zeroes every weight just before that epoch's evaluation, so its validation
# ELBO is worse than the last (to check that the best snapshot survives a bad epoch).
FAULT_ENV = "LATENT_EXPLORER_FAULT"
# Early stopping's cooldown lasts this many times ``patience`` epochs (see ``TrainLoop.begin_cooldown``).
COOLDOWN_PER_PATIENCE = 2
# Set by RunManager for the workers it starts beside the web app: leave the app a core.
SHARE_CPU_ENV = "LATENT_EXPLORER_SHARE_CPU"

Outcome = Literal["finished", "stopped"]


class Diverged(RuntimeError):
    """Training produced non-finite numbers; the last good snapshot is kept."""


class NonFiniteLoss(Diverged):
    """The training loss or the test ELBO is NaN or infinite."""


class NonFiniteWeights(Diverged):
    """A weight became NaN or infinite."""


def worker_threads(tc: TrainConfig, local_world: int = 1) -> int:
    """CPU threads for training: the config's, else every core (or all but one beside the app),
    shared out among the ``local_world`` training processes on this machine (at least one each)."""
    if tc.num_threads is not None:
        return tc.num_threads
    cores = os.cpu_count() or 1
    cores = max(1, cores - 1) if os.environ.get(SHARE_CPU_ENV) else cores
    return max(1, cores // max(1, local_world))


def _fault_step() -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    return int(spec[4:]) if spec.startswith("nan@") else None


def _worse_epoch() -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    return int(spec[6:]) if spec.startswith("worse@") else None


def _channel_mean(images, seed: int, n: int = 2000) -> torch.Tensor:
    """Each channel's mean intensity over (up to ``n`` of) the training images, (C,), drawn with
    their own generator so the run's random stream is untouched; the same on every rank."""
    ids = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[ids.numpy()].mean((0, 2, 3))


def _death_step(rank: int) -> int | None:
    """The step before which this rank kills itself ("die@<step>:rank<r>"), or None."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith("die@"):
        return None
    step, _, who = spec[4:].partition(":rank")
    return int(step) if who and int(who) == rank else None


class _DDPLoss(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel can wrap it (DDP
    synchronises gradients only for what runs through its forward)."""

    def __init__(self, model: torch.nn.Module, tc: TrainConfig, shard: tuple[int, int]):
        super().__init__()
        self.model, self.tc, self.shard = model, tc, shard

    def forward(self, x: torch.Tensor):
        loss, terms = training_loss(self.model, x, self.tc, shard=self.shard)
        return loss, terms.log_likelihood.detach().mean(), terms.kl.detach().mean()


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
                 resume: bool = False, dist: "dd.DistContext | None" = None, data: Dataset | None = None):
        self.config, self.tc, self.run_dir, self.status = config, config.train, run_dir, status
        self.since, self.on_log = since, on_log
        self.stop_flag = stop_flag or threading.Event()
        self.dist = dist
        self.main = dist is None or dist.is_main
        self.world = dist.world_size if dist else 1
        self.tb: TensorBoardLog | None = None  # made last (below): emit may run before then, on a resume
        tc = self.tc
        torch.set_num_threads(worker_threads(tc, dist.local_world_size if dist else 1))
        self.device = pick_device(tc.device)
        self.backend = None
        if dist is not None:
            if tc.batch_size % self.world:
                raise ConfigError(f"batch_size {tc.batch_size} must be a multiple of the number of training "
                                  f"processes ({self.world}): each takes an equal share of every batch")
            self.device = dd.device_for(dist, self.device)
            self.backend = dd.init(dist, self.device)
        # The same seed on every rank: the same initial weights and the same reparameterisation
        # noise stream (each rank draws the global batch's noise and takes its rows). Nothing only
        # rank 0 does (evaluation, summaries) may draw from the global generator.
        torch.manual_seed(tc.seed)

        self.model = build_model(config).to(self.device)
        if data is None or data.name != tc.dataset.strip():
            data = load_run_data(config, run_dir)
        data_shape = data.input_shape if config.is_text else data.image_shape
        if tuple(data_shape) != tuple(self.model.input_spec.shape):
            raise ValueError(f"the model expects inputs of shape {tuple(self.model.input_spec.shape)} "
                             f"but {tc.dataset} has {tuple(data_shape)}")
        if config.is_text and self.main:
            store_vocabulary(run_dir, data)
        x_train, self.x_val = self._hold_out_validation(data)
        self.feed = make_feed(x_train, self.device, tc.data_placement)
        self.x_test = self._for_evaluation(data.x_test)
        self.x_val = self._for_evaluation(self.x_val)
        # A text run's test perplexity needs the test set's word count and multinomial coefficients.
        self.test_words = self.test_log_coefficients = None
        if config.is_text:
            counts = data.x_test.csr
            self.test_words = float(counts.sum())
            self.test_log_coefficients = corpus_log_coefficient(data.x_test)
        n = self.n_train = len(x_train)
        # A batch larger than the data set is the whole set (on several ranks, the largest
        # multiple of their number that fits).
        self.batch = min(tc.batch_size, (n // self.world) * self.world)  # the global batch
        self.rank_batch = self.batch // self.world  # this process's share of it
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
        if self.step == 0 and hasattr(self.model, "start_output_at"):
            self.model.start_output_at(_channel_mean(x_train, tc.seed))
        # The best validation ELBO so far and its epoch, from the best snapshot on a resume.
        self.best_val: float | None = None
        self.best_epoch = 0
        # Early stopping: once the validation ELBO has not improved for ``patience`` epochs, the
        # learning rate is annealed to 0 over ``patience`` more epochs and the run ends there.
        self.planned_steps = self.total_steps  # the schedule's own length
        self.cooldown: tuple[int, int, float] | None = None  # (first step, steps, starting rate)
        self.cooldown_pending = False  # decided at an epoch's end, begun before the next step
        if self.step > 0:
            self._resume_cooldown()
        best = rd.snapshot_meta(run_dir, "best") if self.step > 0 else None
        if best is not None and best.kind == "best" and best.validation_elbo is not None:
            self.best_val, self.best_epoch = best.validation_elbo, best.epoch
        elif self.main and self.step == 0:
            (run_dir / rd.BEST).unlink(missing_ok=True)  # a fresh start owns no earlier best
        self.worse_at = _worse_epoch()
        self.model.train()
        self.generator = torch.Generator().manual_seed(tc.seed + self.start_epoch)  # on the CPU: the feed reads there
        self.fault_at = _fault_step()
        self.ddp = None
        self.death_at = None
        if dist is not None:
            from torch.nn.parallel import DistributedDataParallel

            self._check_same_step()
            # DDP broadcasts rank 0's weights here and averages gradients in every backward.
            self.ddp = DistributedDataParallel(_DDPLoss(self.model, tc, (dist.rank, self.world)),
                                               device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.death_at = _death_step(dist.rank)

        self.window = _Window.empty(self.device)
        self.summary_step: int | None = None  # the step of the last published summary
        self.snapshot_step: int | None = None  # the step of the last published weights
        self.snapshots = 0  # published by this worker
        self.rate_ema: float | None = None
        self.paused = False
        self.t_start = time.time()
        self.t_last_snapshot = self.t_last_poll = self.t_last_heartbeat = time.monotonic()
        if not self.main:
            return
        if tc.tensorboard and config.is_text:
            raise ConfigError("TensorBoard logging is for image runs: a topic model's curves and topics are "
                              "on the Train page and in metrics.jsonl")
        if tc.tensorboard:  # fails here, before the first step, when the package is missing
            self.tb = TensorBoardLog(run_dir, first_step=self.step)
            self.test_labels = label_names(data.y_test, data.class_names)
        status.update(state="running", device=str(self.device), threads=torch.get_num_threads(),
                      world_size=self.world, backend=self.backend, global_batch=self.batch,
                      total_steps=self.total_steps, step=self.step, epoch=self.start_epoch,
                      steps_per_epoch=self.steps_per_epoch, n_train=n, n_test=len(self.x_test),
                      n_validation=len(self.x_val), patience=tc.patience,
                      data_placement=self.feed.placement, data_mb=round(data.x_train.nbytes / 2**20, 1),
                      heartbeat=time.time())
        rd.write_status(run_dir, **status)

    def _hold_out_validation(self, data: Dataset):
        """(training images, validation images): the config's stratified split of the training
        set. Its digest goes into config.json when the run starts; a resume that would draw a
        different split (the dataset changed since) is refused."""
        tc = self.tc
        train_pos, val_pos = validation_split(data.y_train, tc.validation_fraction, tc.seed)
        digest = split_digest(val_pos)
        if tc.validation_split_sha256 is None:
            tc.validation_split_sha256 = digest
            if self.main:
                rd.write_config(self.run_dir, self.config)
        elif tc.validation_split_sha256 != digest:
            raise ConfigError(f"{tc.dataset} no longer gives the validation split this run started with (the "
                              "dataset has changed since): resuming would train on validation images. "
                              "Start a new run on it instead.")
        if not len(val_pos):
            return data.x_train, data.x_train.subset(val_pos)
        return data.x_train.subset(train_pos), data.x_train.subset(val_pos)

    def _for_evaluation(self, images):
        """An evaluation set on the training device when it fits, else read in batches."""
        return images.to(self.device) if choose_placement(images, self.device) == "device" else images

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> Outcome:
        if self.main:
            rd.append_metrics(self.run_dir, {"kind": "start", "step": self.step, "device": str(self.device),
                                             "resumed": self.step > 0, "world_size": self.world,
                                             "backend": self.backend})
        outcome: Outcome = "finished"
        for epoch in range(self.start_epoch, self.tc.epochs):
            if self.step >= self.total_steps:
                break
            for i, xb in enumerate(self.feed.batches(self.epoch_batches(epoch))):
                if self.stop_requested(boundary=i == 0):
                    outcome = "stopped"
                    break
                self.train_step(xb)
            if outcome == "stopped":
                break
            self.end_epoch(epoch)
            if self.cooldown_pending and self.dist is None:  # distributed: begun together (sync_control)
                self.begin_cooldown()
        self.log_window()
        if (self.snapshot_step, self.summary_step) != (self.step, self.step):  # the last epoch's end may have
            self.publish_snapshot(summary=True)
        if outcome == "finished":
            self.finish_status()
        return outcome

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Index batches of this epoch's permutation, from where a resumed run left off, up to
        the run's last step (a list, so a streaming feed can read ahead)."""
        perm = torch.randperm(self.n_train, generator=self.generator).numpy()  # the same on every rank
        first = self.step - epoch * self.steps_per_epoch if epoch == self.start_epoch else 0
        last = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        if self.dist is not None:  # DistributedSampler's split; step b's shards make up perm[b*B:(b+1)*B]
            perm = dd.shard_of(perm, self.dist.rank, self.world)
        b_ = self.rank_batch
        return [perm[b * b_ : (b + 1) * b_] for b in range(max(0, first), last)]

    def train_step(self, xb: torch.Tensor) -> None:
        """One optimiser step on the batch ``xb`` (float images on the device)."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.death_at is not None and self.step >= self.death_at:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection: this rank dies mid-run
        if self.ddp is not None:
            loss, log_likelihood, kl = self.ddp(xb)
        else:
            loss, terms = training_loss(self.model, xb, self.tc)
            log_likelihood, kl = terms.log_likelihood.detach().mean(), terms.kl.detach().mean()
        if self.fault_at is not None and self.step >= self.fault_at:
            loss = loss * float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: gradients all-reduced (averaged) across ranks here
        self.optimizer.step()
        self.step += 1
        w = self.window
        w.loss += loss.detach()
        w.log_likelihood += log_likelihood
        w.kl += kl
        w.steps += 1
        w.samples += len(xb) * self.world
        if self.step % self.tc.log_every_steps == 0:
            self.log_window()
            if self.main and time.monotonic() - self.t_last_snapshot >= self.tc.snapshot_every_s:
                self.publish_snapshot()

    def end_epoch(self, epoch: int) -> None:
        """Log, evaluate on the validation and test sets, publish a snapshot, keep the best one
        and decide on early stopping (rank 0 alone evaluates: the others wait for it at their
        next collective, within the process group's timeout, and learn of an early stop there)."""
        self.log_window()
        if self.worse_at == epoch + 1:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.zero_()
        if not self.main:
            return
        ev = evaluate_test_set(self.model, self.x_test, seed=self.tc.seed)
        val = evaluate_test_set(self.model, self.x_val, seed=self.tc.seed).elbo if len(self.x_val) else None
        for name, value in (("test", ev.elbo), ("validation", val)):
            if value is not None and not math.isfinite(value):
                raise NonFiniteLoss(f"the {name} ELBO became {value} after epoch {epoch + 1}; "
                                    "the last good weights are kept")
        record = {"kind": "epoch", "step": self.step, "epoch": epoch + 1, "test_elbo": ev.elbo,
                  "test_log_likelihood": ev.log_likelihood, "test_kl": ev.kl, "wall_s": time.time() - self.t_start}
        if val is not None:
            record["val_elbo"] = val
        if self.test_words and math.isfinite(perplexity := self.elbo_perplexity(ev.elbo)):
            record["test_perplexity"] = perplexity  # JSON has no infinity: an untrained model's goes unrecorded
        self.emit(record)
        self.status.update(epoch=epoch + 1, test_elbo=ev.elbo)
        gap = min(self.tc.snapshot_every_s, EPOCH_SNAPSHOT_GAP_S)
        if self.snapshots == 0 or time.monotonic() - self.t_last_snapshot >= gap:
            self.publish_snapshot(summary=summary_of_codes(ev.mu, ev.logvar, self.step, prior_of(self.model)))
        if val is not None:
            self.keep_best(epoch + 1, val)

    def elbo_perplexity(self, mean_elbo: float) -> float:
        """A text run's test perplexity from its mean test ELBO: the bound on the word sequences
        (the ELBO less each document's multinomial coefficient), per word (``perplexity_from_bound``)."""
        n = len(self.x_test)
        return perplexity_from_bound(mean_elbo * n - self.test_log_coefficients, self.test_words)

    def keep_best(self, epoch: int, val_elbo: float) -> None:
        """Save the weights when ``val_elbo`` is the best so far; otherwise count towards patience."""
        if self.best_val is None or val_elbo > self.best_val:
            try:
                rd.save_best_snapshot(self.run_dir, self.model, self.step, epoch, val_elbo)
            except OSError as e:  # as for the latest snapshot: keep training, keep the old one, say so
                self.status["snapshot_error"] = f"could not save the best snapshot: {e}"
                return
            self.best_val, self.best_epoch = val_elbo, epoch
            self.status.update(best_epoch=epoch, best_val_elbo=val_elbo)
            return
        patience = self.tc.patience
        if (patience and epoch - self.best_epoch >= patience and self.cooldown is None
                and self.step + COOLDOWN_PER_PATIENCE * patience * self.steps_per_epoch
                < self.steps_per_epoch * self.tc.epochs):
            self.cooldown_pending = True  # otherwise the planned epochs end sooner than a cooldown would

    def learning_rate(self) -> float:
        """The rate for the next step: the schedule's, or the cooldown's once one has begun."""
        if self.cooldown is None:
            return learning_rate(self.tc, self.step, self.planned_steps)
        first, steps, lr0 = self.cooldown
        return cooldown_rate(lr0, self.step - first, steps)

    def begin_cooldown(self, first: int | None = None, steps: int | None = None, lr0: float | None = None,
                       plateau_best: int | None = None) -> None:
        """Anneal from the current rate to 0 over ``patience`` epochs, then end the run (called on
        every rank at the same step; with arguments, to restore a cooldown on resume)."""
        first = self.step if first is None else first
        steps = COOLDOWN_PER_PATIENCE * self.tc.patience * self.steps_per_epoch if steps is None else steps
        lr0 = self.learning_rate() if lr0 is None else lr0
        self.cooldown, self.cooldown_pending = (first, steps, lr0), False
        self.plateau_best = self.best_epoch if plateau_best is None else plateau_best
        self.total_steps = min(self.total_steps, first + steps)  # a --max-steps cap still holds
        if not self.main or first != self.step:
            return
        epoch = self.step // self.steps_per_epoch
        self.emit({"kind": "cooldown", "step": first, "steps": steps, "lr": lr0, "epoch": epoch,
                   "best_epoch": self.best_epoch, "patience": self.tc.patience})
        self.status.update(total_steps=self.total_steps, plateau_at_epoch=epoch,
                           message=f"no better validation ELBO since epoch {self.best_epoch}: annealing the learning "
                                   f"rate to 0 over {steps // self.steps_per_epoch} epochs, then stopping")

    def _resume_cooldown(self) -> None:
        """A resumed run goes on with the cooldown it had begun (its record is in metrics.jsonl)."""
        begun = [r for r in rd.read_metrics(self.run_dir)
                 if r.get("kind") == "cooldown" and isinstance(r.get("step"), int) and r["step"] <= self.step]
        if begun:
            r = begun[-1]
            self.begin_cooldown(r["step"], int(r["steps"]), float(r["lr"]), int(r.get("best_epoch", 0)))

    def finish_status(self) -> None:
        """Say how the run ended when a cooldown ended it before its planned epochs."""
        if self.cooldown is None or self.step < self.cooldown[0] + self.cooldown[1] or not self.main:
            return
        epoch = self.step // self.steps_per_epoch
        self.status.update(stopped_early_at_epoch=epoch, best_epoch=self.best_epoch, best_val_elbo=self.best_val,
                           message=f"stopped early after epoch {epoch} of {self.tc.epochs}: the validation ELBO stopped "
                                   f"improving after epoch {self.plateau_best}, then "
                                   f"{self.cooldown[1] // self.steps_per_epoch} epochs of annealing; the best snapshot "
                                   f"is epoch {self.best_epoch}'s")
        self.emit({"kind": "early_stop", "step": self.step, "epoch": epoch, "best_epoch": self.best_epoch,
                   "plateau_best_epoch": self.plateau_best, "best_val_elbo": self.best_val,
                   "patience": self.tc.patience})

    # --- what the loop says -----------------------------------------------------------------
    def emit(self, record: dict) -> None:
        if not self.main:
            return
        rd.append_metrics(self.run_dir, record)
        if self.tb is not None:
            self.tb.scalars(record["step"], scalars_of(record))
        if self.on_log:
            self.on_log(record)

    def log_window(self) -> None:
        w = self.window
        if w.steps == 0:
            return
        now = time.monotonic()
        # The one host sync per window: all three sums in one transfer (across ranks, one
        # all-reduce: every rank logs at the same steps, and the mean of the ranks' equal-size
        # shard means is the global batch's mean).
        sums = torch.stack((w.loss, w.log_likelihood, w.kl)) / w.steps
        if self.dist is not None:
            import torch.distributed as tdist

            tdist.all_reduce(sums)
            sums = sums / self.world
        loss, log_likelihood, kl = sums.tolist()
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} at step {self.step}; the last good weights are kept")
        rate, remaining = self.pace(w, now)
        self.emit({"kind": "step", "step": self.step, "epoch": self.step / self.steps_per_epoch, "loss": loss,
                   "log_likelihood": log_likelihood, "kl": kl, "elbo": log_likelihood - kl,
                   "samples_per_s": rate, "wall_s": time.time() - self.t_start, "eta_s": remaining,
                   "lr": self.optimizer.param_groups[0]["lr"]})  # the rate the last step really used
        self.status.update(step=self.step, samples_per_s=self.rate_ema, eta_s=remaining)
        self.window = _Window.empty(self.device)

    def pace(self, w: _Window, now: float) -> tuple[float, float]:
        """(the window's examples per second, the seconds left at the smoothed rate)."""
        rate = w.samples / max(1e-9, now - w.t0)
        self.rate_ema = rate if self.rate_ema is None else 0.7 * self.rate_ema + 0.3 * rate
        return rate, (self.total_steps - self.step) * self.batch / max(1e-9, self.rate_ema)

    def publish_snapshot(self, summary: SnapshotSummary | bool = False) -> None:
        """Weights and optimiser state, each replaced atomically, and the test-set summary when
        ``summary`` is one or is True (then encoded here, unless this step already has one).
        Timed mid-epoch snapshots go without: a page visiting one computes what it needs.
        Rank 0 alone writes (the weights are the same on every rank)."""
        if not self.main:
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise NonFiniteWeights(f"weights became non-finite by step {self.step}; the last good weights are kept")
        epoch = self.step // self.steps_per_epoch
        if summary is True:
            summary = None if self.summary_step == self.step else summarise(self.model, self.x_test, self.step)
        try:
            rd.save_snapshot(self.run_dir, self.model, self.step, epoch, self.optimizer)
            self.snapshots += 1
            self.snapshot_step = self.step
            if isinstance(summary, SnapshotSummary):
                write_summary(self.run_dir, summary)
                self.summary_step = summary.step
                if self.tb is not None:
                    self.tb.embedding(summary.step, summary.mu, self.test_labels, self.x_test)
            self.status.pop("snapshot_error", None)
        except OSError as e:  # disk full or unwritable: keep training, keep the old snapshot, say so
            self.status["snapshot_error"] = f"could not save a snapshot: {e}"
        self.model.train()
        self.t_last_snapshot = time.monotonic()

    # --- control ------------------------------------------------------------------------------
    def stop_requested(self, boundary: bool = False) -> bool:
        """The one stop check: polls control requests at most every CONTROL_POLL_S, waits here
        while paused, and says whether the run should stop now.

        Distributed: rank 0 decides and broadcasts before every CONTROL_EVERY_STEPS-th step and
        at the start of each epoch (``boundary``), so every rank acts at the same step."""
        if self.dist is not None:
            if self.main and time.monotonic() - self.t_last_heartbeat >= HEARTBEAT_EVERY_S:
                self.write_heartbeat()
            if not boundary and self.step % dd.CONTROL_EVERY_STEPS:
                return False
            return self.sync_control()
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

    # --- control across ranks -------------------------------------------------------------------
    def _broadcast(self, value: int) -> int:
        import torch.distributed as tdist

        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        tdist.broadcast(t, src=0)
        return int(t.item())

    def _check_same_step(self) -> None:
        """Every rank must start from rank 0's step (a resume reads the run directory on each
        machine; it must be the same directory, on a shared file system)."""
        step0 = self._broadcast(self.step)
        if step0 != self.step:
            raise RuntimeError(f"rank {self.dist.rank} would resume at step {self.step} but rank 0 at step {step0}: "
                               "every machine must see the same run directory")

    def _rank0_command(self) -> int:
        """Rank 0's decision from SIGTERM/SIGINT and the control file."""
        if self.stop_flag.is_set():
            return dd.CMD_STOP
        req = rd.read_request(self.run_dir, self.since)
        if req == "stop":
            return dd.CMD_STOP
        if req == "pause" or (self.paused and req != "resume"):
            return dd.CMD_PAUSE
        return dd.CMD_COOLDOWN if self.cooldown_pending else dd.CMD_RUN

    def sync_control(self) -> bool:
        """Rank 0's command reaches every rank; all pause, resume, stop or begin the cooldown
        together. True: stop."""
        cmd = self._broadcast(self._rank0_command() if self.main else dd.CMD_RUN)
        if cmd == dd.CMD_STOP:
            return True
        if cmd == dd.CMD_COOLDOWN:
            self.begin_cooldown()
        if cmd != dd.CMD_PAUSE:
            return False
        self.paused = True
        self.log_window()  # a collective: every rank is here
        if self.main:
            self.publish_snapshot(summary=True)  # a paused run is what people look at
            self.status.update(state="paused", step=self.step)
            self.write_heartbeat()
        while cmd == dd.CMD_PAUSE:  # "still paused" ticks keep every rank inside the timeout
            if self.main:
                time.sleep(dd.PAUSE_TICK_S)
                if time.monotonic() - self.t_last_heartbeat >= HEARTBEAT_EVERY_S:
                    self.write_heartbeat()
            cmd = self._broadcast(self._rank0_command() if self.main else dd.CMD_RUN)
        self.paused = False
        if cmd == dd.CMD_STOP:
            return True
        if self.main:
            self.status.update(state="running")
            self.write_heartbeat()
        self.window.t0 = time.monotonic()  # don't count the pause in samples/s
        return False

    def close(self) -> None:
        """Flush what is still buffered outside the run directory's own files (TensorBoard's events)."""
        if self.tb is not None:
            self.tb.close()

    def write_heartbeat(self) -> None:
        self.status["heartbeat"] = time.time()
        rd.write_status(self.run_dir, **self.status)
        self.t_last_heartbeat = time.monotonic()
