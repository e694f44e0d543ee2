"""Issue 2: does ``python -m vae_core train`` + ``eval`` beat the plain VAE given the same wall clock?

  python bench/cli_vs_reference.py                       # the CLI's defaults, MNIST, 3 repeats
  python bench/cli_vs_reference.py --cli "" --cli "--epochs 60" --repeats 2
  python bench/cli_vs_reference.py --seconds 45 --cli "--epochs 100000"   # a fixed budget instead

Each CLI variant runs as a user would run it: ``python -m vae_core train --dataset D --run-dir R
[flags]`` as a subprocess, timed from launch to exit, so its imports, data loading, per-epoch
evaluation and snapshots all count against it; then ``python -m vae_core eval R --k 0 --json``
gives the test ELBO. The plain pytorch/examples-style VAE (bench/reference_vae.py: 784-400-20,
Adam 1e-3, batch 128, torch's default threads, as the example runs) then trains on the same
split for exactly that wall clock, counting only its training loop (its imports, data loading
and evaluation are free), and its weights go through the same ``vae_core.evaluate.evaluate_elbo``
(seed 0). With --seconds, the CLI instead gets SIGINT (it stops at the next step and saves)
once that much wall clock has passed, and the plain VAE trains for --seconds.
"""
from __future__ import annotations

import argparse
import json
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
from vae_core.runs import rundir as rd
from vae_core.data import load_dataset
from vae_core.engine.evaluate import evaluate_elbo


def run_plain(data, seconds, threads, seed):
    torch.set_num_threads(threads)
    curve = []
    x_test = data.x_test

    def on_epoch(epoch, train_s, model, cpu_s):  # the clocks are stopped while this runs
        if epoch % 10 == 0:
            curve.append({"epoch": epoch, "train_s": round(train_s, 2),
                          "test_elbo": evaluate_elbo(to_project_vae(model, data.image_shape), x_test, seed=0)["elbo"]})

    r = train_plain(data.x_train[:], data.y_train, torch.device("cpu"), seconds=seconds, seed=seed, on_epoch=on_epoch)
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
            "epochs_done": len(epochs), "threads": rd.read_status(run).extra.get("threads"),
            "lr": cfg.train.lr, "curve": [{"epoch": m["epoch"], "wall_s": round(m["wall_s"], 2),
                                           "test_elbo": m["test_elbo"]} for m in epochs if m["epoch"] % 10 == 0]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seconds", type=float, default=None,
                   help="a fixed wall-clock budget for both (default: the plain VAE gets whatever the CLI run took)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain-threads", type=int, default=torch.get_num_threads(),
                   help="torch threads for the plain VAE (default: torch's own default, as the example runs)")
    p.add_argument("--cli", action="append", default=None,
                   help='a CLI variant\'s extra train flags, e.g. --cli "" --cli "--epochs 60" (repeatable; default: "")')
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    variants = args.cli if args.cli is not None else [""]

    info = machine(torch.device("cpu"))
    data = load_dataset(args.dataset)
    budget = f"{args.seconds:g} s each" if args.seconds else "the plain VAE gets each CLI run's wall clock"
    print(f"# cli_vs_reference: {args.dataset} ({len(data.x_train)} train / {len(data.x_test)} test), "
          f"{budget}, {info['cpu']}, torch {info['torch']}", flush=True)
    pairs = {v: [] for v in variants}  # per variant: [(cli result, plain result at the same wall clock)]
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.repeats):
            for v in variants:
                seed = args.seed + r
                cli = run_cli(args.dataset, args.seconds, shlex.split(v) + ["--seed", str(seed)], work)
                plain = run_plain(data, args.seconds or cli["wall_s"], args.plain_threads, seed)
                pairs[v].append((cli, plain))
                print(f"  repeat {r + 1} [{v or 'defaults'}]: cli {cli['test_elbo']:.2f} after {cli['step']} steps "
                      f"({cli['epochs_done']} epochs, {cli['wall_s']:.1f} s whole process) | plain "
                      f"{plain['test_elbo']:.2f} after {plain['steps']} steps ({plain['epochs']:.0f} epochs, "
                      f"{plain['train_s']:.1f} s loop) | margin {cli['test_elbo'] - plain['test_elbo']:+.2f}", flush=True)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}; {args.dataset} "
             f"({len(data.x_train)} train / {len(data.x_test)} test); {budget}; {args.repeats} repeat(s) with "
             f"seeds {args.seed}…{args.seed + args.repeats - 1}; load average at start {info['loadavg_start'][0]:.2f}. "
             f"Test ELBO from evaluate_elbo (seed 0) for both; higher is better. Medians over repeats.", "",
             "| CLI command (+ `eval`) | CLI: threads, steps (epochs), whole-process wall clock | CLI test ELBO | "
             "plain VAE: threads, steps (epochs) in the same wall clock | plain test ELBO | margin per repeat | median margin |",
             "|---|---|---|---|---|---|---|"]
    for v, ps in pairs.items():
        cl, pl = [c for c, _ in ps], [q for _, q in ps]
        margins = [c["test_elbo"] - q["test_elbo"] for c, q in ps]
        m = med(margins)
        cmd = f"python -m vae_core train --dataset {args.dataset} {v}".strip()
        lines.append(f"| `{cmd}` | {cl[0]['threads']}, {med([c['step'] for c in cl]):.0f} "
                     f"({med([c['epochs_done'] for c in cl]):.0f}), {med([c['wall_s'] for c in cl]):.1f} s | "
                     f"{med([c['test_elbo'] for c in cl]):.2f} | {pl[0]['threads']}, {med([q['steps'] for q in pl]):.0f} "
                     f"({med([q['epochs'] for q in pl]):.0f}) | {med([q['test_elbo'] for q in pl]):.2f} | "
                     f"{', '.join(f'{x:+.2f}' for x in margins)} | {'**CLI wins**' if min(margins) > 0 else 'not a win'} "
                     f"by {m:+.2f} |")
    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"cli_vs_reference_{args.dataset}", {
        "machine": info, "args": vars(args),
        "results": {v: [{"cli": c, "plain": q} for c, q in ps] for v, ps in pairs.items()}}, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
