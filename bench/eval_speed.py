"""Evaluation speed: the test-set IWAE bound with k = 5000 for the default MLP (784-400-20).

  python bench/eval_speed.py                         # 200 Fashion-MNIST test images, extrapolated to 10,000
  python bench/eval_speed.py --images 10000          # the whole test set (minutes on 2 cores)
  python bench/eval_speed.py --run runs/NAME         # a trained run's weights instead of a fresh init

Every measurement runs ``vae_core.evaluate.evaluate_iwae`` in a fresh subprocess so its peak
resident memory can be read: VmHWM is reset (/proc/self/clear_refs) after the data and model
are loaded, so the figure is the evaluation's own high-water mark; ru_maxrss (whole process)
is reported too. Variants: "fast" is the code as it is; "generic" forces the plain
decode + log_likelihood path (the shortcut disabled), i.e. the code before the speed-up.
Timing does not depend on the weights; with no --run a seeded fresh model is used.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _env  # noqa: F401
from _env import ROOT, describe, machine, save

MODEL = dict(body="mlp", hidden=400, latent_dim=20, likelihood="bernoulli")


def child(spec: dict) -> dict:
    """Runs inside the subprocess: one evaluate_iwae call, timed, with its memory high-water mark."""
    import resource

    import torch

    from vae_core import evaluate, objectives
    from vae_core import rundir as rd
    from vae_core.config import ModelConfig
    from vae_core.model import VAE

    torch.set_num_threads(spec["threads"])
    x = torch.load(spec["data_file"], weights_only=True)  # only the images timed: a small baseline RSS
    if spec["run"]:
        model = rd.load_snapshot(spec["run"]).model
    else:
        torch.manual_seed(0)
        model = VAE(ModelConfig(input_shape=tuple(x.shape[1:]), **MODEL))
    if spec["variant"] == "generic":
        objectives._mlp_bernoulli_log_px = lambda *a: None
    if spec["budget"]:
        budget = spec["budget"]
        evaluate.auto_chunk_size = lambda b, p: objectives.auto_chunk_size(b, p, budget_floats=budget)
    import gc

    gc.collect()
    hwm_reset = _reset_hwm()
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    bound = evaluate.evaluate_iwae(model, x, spec["k"], batch_size=spec["batch"], seed=0)
    secs = time.perf_counter() - t0
    return {**spec, "seconds": secs, "bound": bound, "rss_before_mb": base_kb / 1024,
            "peak_eval_mb": _status_kb("VmHWM") / 1024 if hwm_reset else None,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "chunk": evaluate.auto_chunk_size(min(spec["batch"], len(x)), x[0].numel())}


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def measure(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         cwd=str(ROOT))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemm_gflops(threads: int, rows: int = 40_000) -> float:
    """Achieved float32 GFLOP/s of the decoder's big matmul shape here: the floor's yardstick."""
    import torch

    torch.set_num_threads(threads)
    h, w = torch.rand(rows, 400), torch.rand(784, 400)
    torch.addmm(torch.zeros(784), h, w.t())
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        torch.addmm(torch.zeros(784), h, w.t())
        best = min(best, time.perf_counter() - t0)
    return 2 * rows * 400 * 784 / best / 1e9


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--images", type=int, default=200, help="test images to evaluate (the rest is extrapolated)")
    p.add_argument("--full-n", type=int, default=10_000, help="test-set size to extrapolate to")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=100, help="images per batch (evaluate_iwae's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default="generic,fast")
    p.add_argument("--budgets", default="0", help="comma list of chunk budgets in floats; 0 = the default")
    p.add_argument("--memory-ks", default="500,5000", help="k values for the memory-vs-k check (fast variant)")
    p.add_argument("--run", default=None)
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import tempfile

    import torch

    from vae_core.data import load_dataset

    info = machine(torch.device("cpu"))
    tmp = tempfile.TemporaryDirectory()
    data_file = os.path.join(tmp.name, "x.pt")
    torch.save(load_dataset(args.dataset).x_test[: args.images].clone(), data_file)
    base = dict(dataset=args.dataset, images=args.images, threads=args.threads, batch=args.batch, run=args.run,
                data_file=data_file)
    print(f"# eval_speed: IWAE k={args.k}, {args.images} {args.dataset} test images, {args.threads} threads, "
          f"{info['cpu']}, torch {info['torch']}", flush=True)
    runs = []
    variants = args.variants.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    configs = [(v, b) for v in variants for b in budgets]
    for r in range(args.repeats):
        for v, b in (configs if r % 2 == 0 else configs[::-1]):
            res = measure({**base, "variant": v, "budget": b, "k": args.k})
            runs.append(res)
            print(f"  {v:8s} budget={b or 'default':>9}: {res['seconds']:7.2f} s  bound {res['bound']:.4f}  "
                  f"peak {res['peak_eval_mb']:.0f} MB, +{res['peak_eval_mb'] - res['rss_before_mb']:.0f} MB over "
                  f"{res['rss_before_mb']:.0f} (load {os.getloadavg()[0]:.2f})", flush=True)
    mem = []
    for k in [int(s) for s in args.memory_ks.split(",") if s]:
        res = measure({**base, "variant": variants[-1], "budget": budgets[0], "k": k})
        mem.append(res)
        print(f"  memory check k={k}: peak {res['peak_eval_mb']:.0f} MB, {res['seconds']:.2f} s", flush=True)
    tmp.cleanup()
    gflops = gemm_gflops(args.threads)
    flops_full = args.full_n * args.k * 2 * (20 * 400 + 400 * 784)  # decoder matmuls, the bulk of the work
    floor_s = flops_full / (gflops * 1e9)

    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} threads; "
             f"IWAE k={args.k}, default MLP 784-400-20 (Bernoulli), {args.images} {args.dataset} test images "
             f"timed, {args.repeats} repeats, each in a fresh process; load average at start "
             f"{info['loadavg_start'][0]:.2f}.", "",
             f"| path | chunk (samples) | seconds for {args.images} images, median (min–max) | extrapolated to "
             f"{args.full_n:,} images | bound (nats) | peak RSS during eval (rise over start) |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for v, b in configs:
        rs = [x for x in runs if x["variant"] == v and x["budget"] == b]
        d = describe([x["seconds"] for x in rs])
        ext = d["median"] * args.full_n / args.images
        peak = max(rs, key=lambda x: x["peak_eval_mb"] or 0)
        summary[f"{v}@{b}"] = {"seconds": d, "extrapolated_s": ext, "bound": rs[0]["bound"], "chunk": rs[0]["chunk"],
                               "peak_eval_mb": peak["peak_eval_mb"], "rise_mb": peak["peak_eval_mb"] - peak["rss_before_mb"]}
        lines.append(f"| {v} | {rs[0]['chunk']} | {d['median']:.2f} ({d['min']:.2f}–{d['max']:.2f}) | "
                     f"{ext:.0f} s ({ext / 60:.1f} min) | {rs[0]['bound']:.4f} | {peak['peak_eval_mb']:.0f} MB "
                     f"(+{peak['peak_eval_mb'] - peak['rss_before_mb']:.0f}) |")
    lines += ["", f"Memory against k ({variants[-1]} path, {args.images} images):", "",
              "| k | peak RSS during eval (rise over start) | whole-process ru_maxrss | seconds |", "|---|---|---|---|"]
    for m in mem:
        lines.append(f"| {m['k']} | {m['peak_eval_mb']:.0f} MB (+{m['peak_eval_mb'] - m['rss_before_mb']:.0f}) | "
                     f"{m['ru_maxrss_mb']:.0f} MB | {m['seconds']:.2f} |")
    lines += ["", f"Floor: the decoder matmuls alone are {flops_full:.2e} FLOPs for {args.full_n:,} images × k={args.k}; "
              f"this machine's float32 matmul of that shape runs at {gflops:.0f} GFLOP/s with {args.threads} threads, "
              f"so no exact float32 method can go below ~{floor_s:.0f} s here."]
    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"eval_speed_{args.dataset}_k{args.k}", {"machine": info, "args": vars(args), "runs": runs,
                "summary": summary, "memory": mem, "gemm_gflops": gflops, "floor_s": floor_s}, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
