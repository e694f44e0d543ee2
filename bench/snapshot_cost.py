"""Snapshot cost: training with snapshot_every_s = 5 (the default) against effectively never (86400, the maximum).

  python bench/snapshot_cost.py                       # Fashion-MNIST, worker-default threads
  python bench/snapshot_cost.py --every 5,0.5,86400 --seconds 20 --repeats 3

Two measures, both on the project's trainer (``bench/train_speed.run_project``):
1. samples/s with each setting, alternating order (end-of-epoch snapshots happen in all of
   them; only the mid-epoch ones change, and the step rate leaves out the end-of-epoch stretch);
2. the time spent publishing snapshots (``TrainLoop.publish_snapshot``: weights + optimiser
   state, fsync, atomic replace) plus the test-set summaries (built from the end-of-epoch
   evaluation's codes, or encoded afresh at the end of a run; PCA basis; written), counted by
   wrapping them, as a share of the run's wall time: the direct overhead; and the summaries'
   part of it on its own.
"""
from __future__ import annotations

import argparse
import os
import time

import _env  # noqa: F401
import torch

from _env import describe, machine, save
from train_speed import fmt_range, run_project
from vae_core.runs import trainer as trainer_mod


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--every", default="5,86400", help="comma list of snapshot_every_s values")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="default: the worker's")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    everies = [float(e) for e in args.every.split(",")]  # 86400 (the config maximum) = never within a run
    info = machine(torch.device("cpu"))

    saves: list[float] = []  # publish_snapshot calls
    summaries: list[float] = []  # building or writing a summary: inside publish_snapshot or before it
    outside: list[float] = []  # the part of ``summaries`` spent before publish_snapshot (building from codes)

    def timed(fn, into):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                into.append(time.perf_counter() - t0)
        return wrapper

    # The trainer looks these up in its module, so wrapping the module's names reaches it.
    summary_fns = ("summary_of_codes", "summarise", "write_summary")
    real = {name: getattr(trainer_mod, name) for name in summary_fns}
    real_publish = trainer_mod.TrainLoop.publish_snapshot
    trainer_mod.TrainLoop.publish_snapshot = timed(real_publish, saves)
    for name in summary_fns:
        wrapped = timed(real[name], summaries)
        setattr(trainer_mod, name, timed(wrapped, outside) if name == "summary_of_codes" else wrapped)
    print(f"# snapshot_cost: {args.dataset}, {args.threads} threads, {args.seconds:g} s per run", flush=True)
    rows = {e: {"rate": [], "share": [], "saves": [], "save_ms": [], "summary_ms": []} for e in everies}
    for r in range(args.repeats):
        for e in (everies if r % 2 == 0 else everies[::-1]):
            saves.clear(), summaries.clear(), outside.clear()
            t0 = time.perf_counter()
            res = run_project(args.dataset, torch.device("cpu"), args.threads, seconds=args.seconds, snapshot_every_s=e)
            wall = time.perf_counter() - t0
            rows[e]["rate"].append(res["samples_per_s"])
            rows[e]["share"].append((sum(saves) + sum(outside)) / wall)
            rows[e]["saves"].append(len(saves))
            rows[e]["save_ms"] += [s * 1e3 for s in saves]
            rows[e]["summary_ms"].append(sum(summaries) * 1e3)
            print(f"  every {e:g} s: {res['samples_per_s']:8.0f} samples/s, {len(saves)} snapshots, "
                  f"{sum(saves) * 1e3:.0f} ms publishing, {sum(summaries) * 1e3:.0f} ms on summaries, of {wall:.1f} s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    trainer_mod.TrainLoop.publish_snapshot = real_publish
    for name in summary_fns:
        setattr(trainer_mod, name, real[name])

    base = describe(rows[max(everies)]["rate"])["median"]
    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} thread(s) "
             f"(the worker default); {args.dataset}, default MLP, batch 128; {args.seconds:g} s per run, "
             f"{args.repeats} repeats alternating; load average at start {info['loadavg_start'][0]:.2f}.", "",
             "| snapshot_every_s | samples/s median (min–max, n) | vs never | snapshots per run | ms per snapshot "
             "(median) | summaries, ms per run (median) | publishing + summaries / wall |", "|---|---|---|---|---|---|---|"]
    for e in everies:
        d = describe(rows[e]["rate"])
        label = "never (86400; epoch ends only)" if e >= 86400 else f"{e:g}"
        lines.append(f"| {label} | {fmt_range(d)} | {d['median'] / base - 1:+.1%} | "
                     f"{describe(rows[e]['saves'])['median']:.0f} | {describe(rows[e]['save_ms'])['median']:.1f} | "
                     f"{describe(rows[e]['summary_ms'])['median']:.1f} | {describe(rows[e]['share'])['median']:.2%} |")
    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"snapshot_cost_{args.dataset}", {"machine": info, "args": vars(args),
                                                                "rows": {str(k): v for k, v in rows.items()}}, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
