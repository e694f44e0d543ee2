"""Data-parallel training speed: N processes (DDP under torchrun; gloo on the CPU, nccl on CUDA)
against one process, at the same global batch, through the real CLI.

  python bench/ddp.py                                   # Fashion-MNIST MLP, CPU, 1 vs 2 processes
  python bench/ddp.py --dataset mnist --body conv --nproc 2 --steps 200 --repeats 3
  python bench/ddp.py --device cuda --nproc 2          # one GPU per process (not taken here)

Each run is ``python -m vae_core train --run-dir <tmp>`` on a prepared config (nproc 1 or N,
threads left to the trainer: every core for one process, cores // N for each of N), for
--steps steps with no snapshots and no epoch end in between. Samples/s is the median of the
run's own logged rates (global samples per wall second, one per 25-step window) after the
first window (warm-up); the figure for a setting is the median over --repeats runs, the
settings alternating. Reported: both figures, their ratio, and the loss at the last step of
each (which should agree: the same global batches, the same noise).

Results are printed as markdown and saved to bench/results/ddp_<dataset>_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401
from _env import ROOT, machine, save


def one_run(config, nproc: int, steps: int) -> dict:
    import dataclasses

    from vae_core.runs import rundir as rd

    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        tc = dataclasses.replace(config.train, nproc=nproc, max_steps=steps)
        rd.write_config(run_dir, dataclasses.replace(config, train=tc))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        t0 = time.time()
        res = subprocess.run([sys.executable, "-m", "vae_core", "train", "--run-dir", str(run_dir)], cwd=str(ROOT),
                             env=env, capture_output=True, text=True)
        wall = time.time() - t0
        st = rd.read_status(run_dir)
        if res.returncode != 0 or st.state != "finished":
            raise SystemExit(f"nproc={nproc}: {st.state} {st.error}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        recs = [r for r in rd.read_metrics(run_dir) if r.get("kind") == "step"]
        rates = [r["samples_per_s"] for r in recs[1:]]  # the first window is warm-up
        return {"rate": statistics.median(rates), "loss": recs[-1]["loss"], "wall_s": wall,
                "threads": st.extra.get("threads"), "world_size": st.extra.get("world_size", 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--body", default="mlp", choices=("mlp", "conv"))
    ap.add_argument("--batch-size", type=int, default=128, help="the global batch")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from vae_core.runs.manager import new_run_config

    config = new_run_config(args.dataset, model={"body": args.body},
                            train={"batch_size": args.batch_size, "device": args.device, "log_every_steps": 25,
                                   "snapshot_every_s": 86_400.0, "epochs": 1000, "seed": 0})
    results: dict[int, list[dict]] = {1: [], args.nproc: []}
    for rep in range(args.repeats):
        order = (1, args.nproc) if rep % 2 == 0 else (args.nproc, 1)
        for n in order:
            r = one_run(config, n, args.steps)
            results[n].append(r)
            print(f"  repeat {rep + 1}: {n} process(es): {r['rate']:,.0f} samples/s, "
                  f"loss {r['loss']:.4f}, {r['threads']} thread(s) each, {r['wall_s']:.1f} s wall", flush=True)
    med = {n: statistics.median(r["rate"] for r in rs) for n, rs in results.items()}
    ratio = med[args.nproc] / med[1]
    loss1, lossn = results[1][0]["loss"], results[args.nproc][0]["loss"]
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    cmd = " ".join(["python", "bench/ddp.py", *sys.argv[1:]])
    md = (f"| {args.dataset} {args.body}, global batch {args.batch_size}, {args.device} ({backend}), "
          f"{os.cpu_count()} cores | 1 process: {med[1]:,.0f} samples/s | {args.nproc} processes: "
          f"{med[args.nproc]:,.0f} samples/s | ratio {ratio:.2f}x | loss at step {args.steps}: "
          f"{loss1:.4f} vs {lossn:.4f} |\n\ncommand: `{cmd}` (median of {args.repeats} runs each, "
          f"{args.steps} steps, first 25-step window left out)")
    print(md)
    save(f"ddp_{args.dataset}_{args.device.split(':')[0]}",
         {"machine": machine(torch.device(args.device)), "args": vars(args), "median_samples_per_s": med,
          "ratio": ratio, "runs": results}, md)


if __name__ == "__main__":
    main()
