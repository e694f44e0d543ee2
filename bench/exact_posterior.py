"""The exact posterior (issue 14): quadrature log p(x) beside the IWAE bound and the ELBO, and its cost.

  python bench/exact_posterior.py                       # trains the reference run first (15 epochs, 2-D MNIST)
  python bench/exact_posterior.py --run runs/NAME       # an existing 1-D or 2-D run

The reference run is ``python -m vae_core train --dataset mnist --latent-dim 2 --epochs 15`` (the
current defaults). On its best snapshot, over the test set (500 images):

- the mean log p(x) by quadrature (``labs.exact.exact_test_set``), with the grid it needed and
  its wall time (target: under a minute for the 500 images);
- the IWAE bound at k = 1, 10, 100, 1000 and 5000 (``engine.evaluate.evaluate_iwae``, seed 0);
- the ELBO (quadrature, as the exact lab computes it) and the trainer's one-draw ELBO;
- one image's exact posterior: median wall time over ``--repeats`` images (target: under 0.3 s).
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
import numpy as np
from _env import ROOT, machine, save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a run directory with a 1-D or 2-D latent (default: train the reference run)")
    p.add_argument("--ks", default="1,10,100,1000,5000")
    p.add_argument("--repeats", type=int, default=20, help="images timed one at a time")
    p.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all)")
    p.add_argument("--fixed-grid", type=int, default=0, metavar="N",
                   help="also integrate on fixed N x N grids over ±6 and ±8 (brute force) and report the largest "
                        "per-image difference from the adaptive grids")
    args = p.parse_args()

    import torch

    from vae_core.data import load_dataset
    from vae_core.engine.evaluate import evaluate_elbo, evaluate_iwae
    from vae_core.labs.exact import exact_posterior, exact_test_set
    from vae_core.runs import rundir as rd

    run = Path(args.run) if args.run else Path(tempfile.mkdtemp(prefix="exact-bench-")) / "mnist2d"
    if not args.run:
        cmd = [sys.executable, "-m", "vae_core", "train", "--dataset", "mnist", "--latent-dim", "2", "--epochs", "15",
               "--run-dir", str(run)]
        t = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        print(f"trained {run} in {time.time() - t:.0f} s: {' '.join(cmd[1:])}", flush=True)
    snap = rd.load_snapshot(run, which="best")
    tc = snap.config.train
    data = load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)
    x = data.x_test.subset(slice(0, args.limit)) if args.limit else data.x_test
    model = snap.model
    rows = {}
    with torch.no_grad():
        t = time.perf_counter()
        ex = exact_test_set(model, x, progress=lambda d, n: print(f"\rexact: {d}/{n}", end="", file=sys.stderr))
        print(file=sys.stderr)
        exact_s = time.perf_counter() - t
        rows["log p(x), quadrature"] = float(ex.log_px.mean())
        for k in (int(v) for v in args.ks.split(",")):
            t = time.perf_counter()
            rows[f"IWAE k={k}"] = evaluate_iwae(model, x, k, seed=0)
            print(f"IWAE k={k}: {rows[f'IWAE k={k}']:.3f} ({time.perf_counter() - t:.1f} s)", flush=True)
        rows["ELBO, quadrature"] = float(ex.elbo.mean())
        rows["ELBO, one draw (trainer's)"] = evaluate_elbo(model, x, seed=0)["elbo"]
        single = []
        for i in range(min(args.repeats, len(x))):
            t = time.perf_counter()
            exact_posterior(model, x[slice(i, i + 1)])
            single.append(time.perf_counter() - t)
        fixed = {}
        if args.fixed_grid:
            from vae_core.labs.exact import _grid_points, _log_integral, exact_batch, grid_log_joint
            from vae_core.data.imageset import iter_float_batches

            adaptive = np.concatenate([exact_batch(model, xb).log_px for xb in iter_float_batches(x, 25, "cpu")])
            for half in (6.0, 8.0):
                t = time.perf_counter()
                parts = []
                for xb in iter_float_batches(x, 10, "cpu"):
                    lo = torch.full((len(xb), 2), -half, dtype=torch.float64)
                    z, area = _grid_points(lo, -lo, args.fixed_grid)
                    parts.append(_log_integral(grid_log_joint(model, xb, z), args.fixed_grid, 2, area).numpy())
                brute = np.concatenate(parts)
                fixed[half] = (float(brute.mean()), float(np.abs(brute - adaptive).max()), time.perf_counter() - t)
    exact = rows["log p(x), quadrature"]
    lines = [f"Run `{run}` (best snapshot, step {snap.step}, epoch {snap.epoch}), {len(x)} test images, "
             f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", "",
             "| estimate | mean over the test images (nats) | below log p(x) |", "|---|---:|---:|"]
    lines += [f"| {name} | {v:.3f} | {exact - v:+.3f} |" for name, v in rows.items()]
    lines += ["", f"Quadrature over the {len(x)} images: {exact_s:.1f} s, grids up to {ex.points_per_axis} points "
                  f"per axis, converged to 0.01 nats: {ex.converged}; mean KL(q || p(z|x)) "
                  f"{ex.kl_q_posterior.mean():.3f} nats.",
              *[f"Fixed {args.fixed_grid}² grid over ±{h:g}: mean log p(x) {m:.4f}, largest per-image difference "
                f"from the adaptive grids {d:.4f} nats ({sec:.0f} s)." for h, (m, d, sec) in fixed.items()],
              f"One image's exact posterior: median {statistics.median(single):.3f} s over {len(single)} images "
              f"(min {min(single):.3f}, max {max(single):.3f})."]
    text = "\n".join(lines)
    print(text)
    save("exact_posterior" + (f"_first{len(x)}" if args.limit else ""), {"machine": machine("cpu"), "rows": rows, "exact_s": exact_s, "single_s": single,
                             "grid": ex.points_per_axis, "n": len(x), "run": str(run), "fixed": fixed}, text)


if __name__ == "__main__":
    main()
