"""Data-parallel training over several processes, GPUs or machines: PyTorch's own DDP, launched
by torchrun. Nothing here averages parameters or builds process groups by hand.

Two halves:

- **In a worker** (``python -m vae_core train`` started by torchrun, which sets ``WORLD_SIZE``,
  ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``): ``DistContext.from_env`` says which rank this
  is; ``init`` joins the process group (gloo on the CPU, nccl on CUDA) with a timeout from
  ``LATENT_EXPLORER_DIST_TIMEOUT_S``, so no rank waits forever on one that died. The trainer
  uses the context to shard batches, all-reduce its log window and broadcast control.
- **The launcher** (``python -m vae_core train --nproc N``, or a run whose config says
  ``nproc > 1``, which is how the app's RunManager starts one): ``launch`` runs
  ``python -m torch.distributed.run … -m vae_core train --run-dir X`` as a child, forwards
  SIGTERM/SIGINT to it (after recording a stop request), waits, and if torchrun exits non-zero
  while the run still says it is active (rank 0 was killed before it could say why), marks
  the run ``failed`` with a message naming the exit code.
"""
from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import rundir as rd

TIMEOUT_ENV = "LATENT_EXPLORER_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
# Control (pause / resume / stop) reaches every rank at the same step: rank 0 broadcasts its
# decision before every CONTROL_EVERY_STEPS-th step and at each epoch's end.
CONTROL_EVERY_STEPS = 10
# While paused, rank 0 broadcasts "still paused" this often, so the others never hit the timeout.
PAUSE_TICK_S = 0.25
# CMD_COOLDOWN: run on, and begin the early-stopping cooldown at this step (rank 0 alone
# evaluates, so it alone knows the validation ELBO has stopped improving).
CMD_RUN, CMD_STOP, CMD_PAUSE, CMD_COOLDOWN = 0, 1, 2, 3


def timeout_s() -> float:
    """How long a collective may wait for the other ranks before it fails (seconds)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return max(1.0, value)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict | None = None) -> "DistContext | None":
        """The context torchrun's variables describe, or None outside torchrun (or for one process)."""
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local_rank = int(env.get("LOCAL_RANK", "0"))
            local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            return None
        if world <= 1:
            return None
        return cls(rank, world, local_rank, max(1, local_world))


def under_torchrun() -> bool:
    """True in a worker torchrun started (any world size): never launch torchrun again from there."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "RANK" in os.environ)


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """One GPU per local rank on CUDA; the CPU is shared."""
    if device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    if device.type != "cpu":
        from ..engine.config import ConfigError

        raise ConfigError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device.type}")
    return device


def init(ctx: DistContext, device: torch.device) -> str:
    """Join the process group (env:// from torchrun's variables); returns the backend's name."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()), **kwargs)
    return backend


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a broken group (a rank died): nothing left to tidy
            pass


def shard_of(perm, rank: int, world: int):
    """DistributedSampler's split of one epoch's permutation: every rank gets the same number of
    examples (the ragged tail dropped), rank r takes perm[r::world]."""
    usable = (len(perm) // world) * world
    return perm[:usable][rank::world]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_command(nproc: int, train_args: Sequence[str], port: int | None = None) -> list[str]:
    """The single-node torchrun command for ``python -m vae_core train <train_args>``.

    Rendezvous on 127.0.0.1 (``localhost`` may resolve to ::1) at a free port, no restarts:
    a failed worker fails the run, and the run is resumed from its last snapshot instead.
    """
    port = free_port() if port is None else port
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-id", f"latent-explorer-{uuid.uuid4().hex[:12]}", "--max-restarts", "0",
            "--monitor-interval", "0.2", "-m", "vae_core", "train", *train_args]


def launch(nproc: int, run_dir: Path, resume: bool) -> int:
    """Run the run in ``run_dir`` (its config.json already written) on ``nproc`` local processes
    under torchrun; returns the exit code for the command line (0 finished or stopped)."""
    run_dir = Path(run_dir)
    prior = rd.read_json(run_dir / rd.STATUS)
    prior = prior if isinstance(prior, dict) else {}
    now = time.time()
    if prior.get("state") != "starting" or not isinstance(prior.get("launched_at"), (int, float)):
        # Launched from a terminal: requests count from now (the manager records its own launch).
        prior = {**prior, "state": "starting", "launched_at": now, "error": None, "traceback": None}
    rd.write_status(run_dir, **{**prior, "heartbeat": now, "launcher_pid": os.getpid(), "world_size": nproc})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if sys.platform.startswith("linux") and Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: gloo talks over loopback
    cmd = torchrun_command(nproc, ["--run-dir", str(run_dir), *(["--resume"] if resume else [])])
    print("launching: " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, frame):
        # A stop the user asked for: say so in the run (rank 0 turns it into a collective stop),
        # then let torchrun pass the signal to its workers.
        try:
            rd.request(run_dir, "stop")
        except OSError:
            pass
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                continue
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    st = rd.read_status(run_dir)
    if code != 0 and st.state in rd.ACTIVE_STATES:
        raw = rd.read_json(run_dir / rd.STATUS)
        raw = raw if isinstance(raw, dict) else {}
        how = f"signal {-code}" if code < 0 else f"code {code}"
        rd.write_status(run_dir, **{**raw, "state": "failed", "heartbeat": time.time(),
                                    "error": f"a training process died: torchrun exited with {how} before rank 0 "
                                             "recorded why; the last snapshot is kept and the run can be resumed "
                                             "(see worker.log)"})
        st = rd.read_status(run_dir)
    print(f"{run_dir}: {st.state} at step {st.step}" + (f" ({st.error})" if st.error else ""))
    return 0 if st.state in ("finished", "stopped") else 1
