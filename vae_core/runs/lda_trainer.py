"""The training loop of classical LDA (family ``lda``): online variational Bayes, one update of the
topics per mini-batch (``engine.lda.LdaModel.update``), in the same worker and run directory as
every other run.

``LdaLoop`` is a ``TrainLoop`` whose step is an online VB update instead of an optimiser step:
it keeps the worker contract (status, heartbeat, pause / resume / stop, snapshots, metrics) by
inheriting the control and publishing machinery, and replaces what gradients did.
What it writes differs in three ways, each said in ``status.json`` or the metrics:
  - a step record's ``elbo`` is the bound of the window's last mini-batch (nats per document);
    there is no loss, log-likelihood or KL split and no learning rate (rho_t is logged instead);
  - an epoch record's ``test_elbo`` is scikit-learn's variational bound per test document plus its
    multinomial coefficient, a lower bound on log p(counts) like ProdLDA's, and
    ``test_perplexity`` is scikit-learn's perplexity;
  - no validation split, early stopping or best snapshot (the bound is not a training loss to
    stop on), and no test-set summary (the text pages compute topic proportions themselves).
It trains in one process: scikit-learn's online VB has no data-parallel form here.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engine.config import ConfigError, RunConfig
from ..engine.families import build_model
from ..engine.objectives import corpus_log_coefficient
from . import rundir as rd
from .run_data import load_run_data, store_vocabulary
from .train_loop import NonFiniteLoss, NonFiniteWeights, TrainLoop, _Window, worker_threads


class LdaLoop(TrainLoop):
    """One LDA run, step by step (see the module docstring)."""

    def __init__(self, config: RunConfig, run_dir: Path, status: dict, *, since: float,
                 stop_flag: threading.Event | None = None, on_log: Callable[[dict], None] | None = None,
                 resume: bool = False, dist=None, data=None):
        if dist is not None:
            raise ConfigError("LDA trains in one process: start it without torchrun")
        self.config, self.tc, self.run_dir, self.status = config, config.train, Path(run_dir), status
        self.since, self.on_log = since, on_log
        self.stop_flag = stop_flag or threading.Event()
        self.dist, self.main, self.world, self.tb, self.backend = None, True, 1, None, None
        tc = self.tc
        torch.set_num_threads(worker_threads(tc))
        self.device = torch.device("cpu")
        if data is None or data.name != tc.dataset.strip():
            data = load_run_data(config, run_dir)
        store_vocabulary(run_dir, data)
        self.x_train, self.x_test = data.x_train.csr, data.x_test.csr
        self.test_log_coefficients = corpus_log_coefficient(data.x_test)
        n = self.n_train = self.x_train.shape[0]
        self.batch = self.rank_batch = min(tc.batch_size, n)
        self.steps_per_epoch = max(1, n // self.batch)
        self.total_steps = self.planned_steps = self.steps_per_epoch * tc.epochs
        if tc.max_steps is not None:
            self.total_steps = min(self.total_steps, tc.max_steps)

        self.model = build_model(config)
        self.step = 0
        if resume and (self.run_dir / rd.WEIGHTS).exists():
            snap = rd.load_snapshot(self.run_dir)
            self.model.load_state_dict(snap.model.state_dict())
            self.step = snap.step
        else:
            self.model.start(n, seed=tc.seed)
        self.start_epoch = self.step // self.steps_per_epoch
        self.generator = torch.Generator().manual_seed(tc.seed + self.start_epoch)
        self.cooldown, self.cooldown_pending, self.best_val = None, False, None
        self.worse_at = self.fault_at = self.death_at = self.ddp = None
        self.window = _Window.empty(self.device)
        self.last_batch = None
        self.summary_step = self.snapshot_step = None
        self.snapshots = 0
        self.rate_ema: float | None = None
        self.paused = False
        self.t_start = time.time()
        self.t_last_snapshot = self.t_last_poll = self.t_last_heartbeat = time.monotonic()
        (self.run_dir / rd.BEST).unlink(missing_ok=True)  # no validation split: no best snapshot
        status.update(state="running", device="cpu", threads=torch.get_num_threads(), world_size=1, backend=None,
                      global_batch=self.batch, total_steps=self.total_steps, step=self.step, epoch=self.start_epoch,
                      steps_per_epoch=self.steps_per_epoch, n_train=n, n_test=self.x_test.shape[0],
                      n_validation=0, patience=0, data_placement="device",
                      data_mb=round(data.x_train.nbytes / 2**20, 1), heartbeat=time.time())
        rd.write_status(self.run_dir, **status)

    # --- the loop's steps ------------------------------------------------------------------------
    @property
    def feed(self):
        return self

    def batches(self, index_batches):
        for idx in index_batches:
            yield self.x_train[np.sort(idx)]

    def rho(self) -> float:
        """The online step size rho_t = (offset + t)^-decay of the next update (Hoffman et al. 2010)."""
        c = self.config.model
        return (c.learning_offset + int(self.model.updates)) ** -c.learning_decay

    def train_step(self, xb) -> None:
        self.model.update(xb)
        self.step += 1
        self.last_batch = xb
        self.window.steps += 1
        self.window.samples += xb.shape[0]
        if self.step % self.tc.log_every_steps == 0:
            self.log_window()
            if time.monotonic() - self.t_last_snapshot >= self.tc.snapshot_every_s:
                self.publish_snapshot()

    def log_window(self) -> None:
        w = self.window
        if w.steps == 0:
            return
        now = time.monotonic()
        bound, _ = self.model.evaluate(self.last_batch)
        if not math.isfinite(bound):
            raise NonFiniteLoss(f"the LDA bound became {bound} at step {self.step}; the last good topics are kept")
        rate, remaining = self.pace(w, now)
        self.emit({"kind": "step", "step": self.step, "epoch": self.step / self.steps_per_epoch, "elbo": bound,
                   "samples_per_s": rate, "wall_s": time.time() - self.t_start, "eta_s": remaining,
                   "rho": self.rho()})
        self.status.update(step=self.step, samples_per_s=self.rate_ema, eta_s=remaining)
        self.window = _Window.empty(self.device)

    def end_epoch(self, epoch: int) -> None:
        self.log_window()
        bound, perplexity = self.model.evaluate(self.x_test)
        if not math.isfinite(bound):
            raise NonFiniteLoss(f"the test bound became {bound} after epoch {epoch + 1}; the last good topics are kept")
        test_elbo = bound + self.test_log_coefficients / max(1, self.x_test.shape[0])
        self.emit({"kind": "epoch", "step": self.step, "epoch": epoch + 1, "test_elbo": test_elbo,
                   "test_perplexity": perplexity, "wall_s": time.time() - self.t_start})
        self.status.update(epoch=epoch + 1, test_elbo=test_elbo)
        self.publish_snapshot()

    def publish_snapshot(self, summary=False) -> None:
        if not torch.isfinite(self.model.components).all():
            raise NonFiniteWeights(f"the topics became non-finite by step {self.step}; the last good ones are kept")
        try:
            rd.save_snapshot(self.run_dir, self.model, self.step, self.step // self.steps_per_epoch)
            self.snapshots += 1
            self.snapshot_step = self.summary_step = self.step
            self.status.pop("snapshot_error", None)
        except OSError as e:
            self.status["snapshot_error"] = f"could not save a snapshot: {e}"
        self.t_last_snapshot = time.monotonic()
