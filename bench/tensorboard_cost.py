"""TensorBoard logging cost: the same training run with ``tensorboard`` off and on (issue 13).

  python bench/tensorboard_cost.py                          # MNIST, default MLP, 10 epochs, 5 pairs
  python bench/tensorboard_cost.py --threads 1 --repeats 7   # steadier CPU seconds on shared cores
  python bench/tensorboard_cost.py --dataset fashion-mnist --epochs 1 --repeats 3

Each repeat trains the dataset's default config (``new_run_config``: the recipe's MLP, batch and
learning rate) for --epochs epochs into a temporary run directory, once with TensorBoard logging
off and once on, the order alternating between repeats so a drift in the machine's load falls on
both, after one uncounted warm-up run (the process's first run is slower either way). Two measures:
1. the wall time of the whole ``train()`` call (start-up, steps, every epoch's evaluation and
   snapshot, the end), and the median of the on/off ratios of the pairs; the same for the
   process's CPU seconds (every thread's, the event writer's included), which other processes
   on shared cores move far less than the wall clock, at one thread;
2. the time spent inside ``TensorBoardLog`` (opening the writer, scalars, embeddings with the
   sprite, closing), counted by wrapping its methods, as a share of the on run's wall time: the
   direct overhead, which a shared machine's noise does not blur.
tensorboard and torch.utils.tensorboard are imported once before the first run (a worker pays
that import once per run at its start; it is reported on its own).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401  (puts the repo root on sys.path)
import torch

from _env import describe, machine, save
from vae_core.data import load_dataset
from vae_core.runs import tensorboard_log as tbl
from vae_core.runs.manager import new_run_config
from vae_core.runs.trainer import train, worker_threads


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="off/on pairs")
    p.add_argument("--threads", type=int, default=None, help="training threads (default: the worker's)")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    info = machine(torch.device("cpu"))

    t0 = time.perf_counter()
    for module in ("tensorboard.plugins.projector", "torch.utils.tensorboard"):
        importlib.import_module(module)
    import_s = time.perf_counter() - t0

    spent: dict[str, list[float]] = {}  # TensorBoardLog method -> seconds per call, this run

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent.setdefault(name, []).append(time.perf_counter() - t)
        return wrapper

    for name in ("__init__", "scalars", "embedding", "close"):
        setattr(tbl.TensorBoardLog, name, timed(name, getattr(tbl.TensorBoardLog, name)))

    data = load_dataset(args.dataset)
    fixed = {"epochs": args.epochs, "patience": 0, "num_threads": args.threads}
    base = new_run_config(args.dataset, data=data, train=fixed)
    threads = worker_threads(base.train)
    print(f"# tensorboard_cost: {args.dataset}, {base.model.body} z={base.model.latent_dim}, batch "
          f"{base.train.batch_size}, {args.epochs} epochs, {threads} threads; tensorboard import {import_s:.2f} s",
          flush=True)
    with tempfile.TemporaryDirectory() as d:  # warm-up, not counted
        train(base, Path(d) / "run", data=data)
    runs = {False: [], True: []}  # wall seconds
    cpu = {False: [], True: []}  # process CPU seconds
    ratios, cpu_ratios, shares, per_call = [], [], [], {"scalars": [], "embedding": [], "__init__": [], "close": []}
    embeddings = []
    for r in range(args.repeats):
        pair, cpu_pair = {}, {}
        for on in ((False, True) if r % 2 == 0 else (True, False)):
            cfg = new_run_config(args.dataset, data=data, train={**fixed, "tensorboard": on})
            spent.clear()
            with tempfile.TemporaryDirectory() as d:
                t, c = time.perf_counter(), time.process_time()
                st = train(cfg, Path(d) / "run", data=data)
                wall, cpu_s = time.perf_counter() - t, time.process_time() - c
            if st.state != "finished":
                raise RuntimeError(f"run {st.state}: {st.error}")
            pair[on], cpu_pair[on] = wall, cpu_s
            runs[on].append(wall)
            cpu[on].append(cpu_s)
            tb_s = sum(sum(v) for v in spent.values())
            if on:
                shares.append(tb_s / wall)
                embeddings.append(len(spent.get("embedding", [])))
                for k in per_call:
                    per_call[k] += [s * 1e3 for s in spent.get(k, [])]
            print(f"  tensorboard {'on ' if on else 'off'}: {wall:6.2f} s wall, {cpu_s:6.2f} s CPU"
                  + (f", {tb_s * 1e3:.0f} ms in TensorBoardLog ({len(spent.get('scalars', []))} scalar writes, "
                     f"{len(spent.get('embedding', []))} embeddings)" if on else "")
                  + f" (load {os.getloadavg()[0]:.2f})", flush=True)
        ratios.append(pair[True] / pair[False])
        cpu_ratios.append(cpu_pair[True] / cpu_pair[False])

    off, on = describe(runs[False]), describe(runs[True])
    cpu_off, cpu_on = describe(cpu[False]), describe(cpu[True])
    ms = {k: describe(v)["median"] for k, v in per_call.items()}
    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {threads} thread(s) "
             f"({'--threads' if args.threads else 'the worker default from a terminal'}); {args.dataset}, default config ({base.model.body}, "
             f"z={base.model.latent_dim}, batch {base.train.batch_size}), {args.epochs} epochs per run, "
             f"{args.repeats} off/on pairs alternating; load average {info['loadavg_start'][0]:.2f} at the start, "
             f"{os.getloadavg()[0]:.2f} at the end.", "",
             "| | wall s per run, median (min–max, n) | CPU s per run, median (min–max, n) |", "|---|---|---|",
             f"| tensorboard off | {fmt(off)} | {fmt(cpu_off)} |",
             f"| tensorboard on | {fmt(on)} | {fmt(cpu_on)} |", "",
             f"- on / off wall time, median of the pairs: **{statistics.median(ratios) - 1:+.1%}** "
             f"(pairs: {', '.join(f'{x - 1:+.1%}' for x in ratios)})",
             f"- on / off CPU time, median of the pairs: **{statistics.median(cpu_ratios) - 1:+.1%}** "
             f"(pairs: {', '.join(f'{x - 1:+.1%}' for x in cpu_ratios)})",
             f"- time inside TensorBoardLog / wall of the on run, median: **{statistics.median(shares):.2%}** "
             f"({statistics.median(embeddings):g} embeddings per run, median; per call, median: open {ms['__init__']:.0f} ms, "
             f"scalars {ms['scalars']:.2f} ms, embedding {ms['embedding']:.0f} ms, close {ms['close']:.0f} ms)",
             f"- importing tensorboard and torch.utils.tensorboard, once per worker: {import_s:.2f} s", ""]
    md = "\n".join(lines)
    print()
    print(md)
    path = save(args.name or f"tensorboard_cost_{args.dataset}",
                {"machine": info, "args": vars(args), "threads": threads, "import_s": import_s,
                 "wall_s": {"off": runs[False], "on": runs[True]}, "cpu_s": {"off": cpu[False], "on": cpu[True]},
                 "ratios": ratios, "cpu_ratios": cpu_ratios, "shares": shares,
                 "per_call_ms": per_call, "embeddings_per_run": embeddings}, md)
    print(f"saved {path}")


def fmt(d: dict) -> str:
    return f"{d['median']:.2f} ({d['min']:.2f}–{d['max']:.2f}, n={d['n']})"


if __name__ == "__main__":
    main()
