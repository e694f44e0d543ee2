"""Evaluation speed: the test-set IWAE bound with k = 5000 for the default MLP (784-400-20).

  python bench/eval_speed.py                         # 200 Fashion-MNIST test images, extrapolated to 10,000
  python bench/eval_speed.py --images 10000          # the whole test set (minutes on 2 cores)
  python bench/eval_speed.py --run runs/NAME         # a trained run's weights instead of a fresh init

Timing: ``vae_core.evaluate.evaluate_iwae`` on one batch of images at a time, the variants
taking turns batch by batch (order alternating), so a busy machine slows them alike; totals
over the images are extrapolated to the test set. Variants: "fast" is the code as it is;
"generic" forces the plain decode + log_likelihood path (the shortcut disabled), i.e. the
code before the speed-ups; a "+inference" suffix runs under torch.inference_mode().

The floor is measured in the same run, taking its turn with the variants: the decoder's
matmuls alone, i.e. for each chunk of samples (the plain path's chunk size) the
(chunk * batch, 20) x (20, 400) and (chunk * batch, 400) x (400, 784) products, on random
inputs, with as many threads. No exact float32 method does less than these matmuls, so each
variant's time over the floor's (median of the passes) is how near it gets.

Memory: each variant also runs in a fresh subprocess at two values of k, with VmHWM reset
(/proc/self/clear_refs) after the data and model are loaded, so the peak is the
evaluation's own high-water mark (ru_maxrss is not used: Linux carries the parent's peak
across fork + exec). Timing does not depend on the weights; with no --run a seeded fresh
model is used.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import _env  # noqa: F401
from _env import ROOT, describe, machine, save
from vae_core.engine import evaluate as _evaluate
from vae_core.engine import objectives as _objectives
from vae_core.engine.vae import VAE as _VAE

_FAST = _VAE.log_likelihood_at
_BUDGET = _evaluate.IWAE_CHUNK_FLOATS
_SHORTCUT_BUDGET = _evaluate.IWAE_SHORTCUT_CHUNK_FLOATS  # the chunk budget where the shortcut makes blocks


def chunk_budget(variant: str, budget: int) -> int:
    """The chunk budget evaluate_iwae uses for a variant (--budgets overrides it)."""
    return budget or (_BUDGET if variant.startswith("generic") else _SHORTCUT_BUDGET)

MODEL = dict(body="mlp", hidden=400, latent_dim=20, likelihood="bernoulli")


def child(spec: dict) -> dict:
    """Runs inside the subprocess: one evaluate_iwae call, timed, with its memory high-water mark."""
    import resource

    import torch

    from vae_core.engine import evaluate, objectives
    from vae_core.runs import rundir as rd
    from vae_core.engine.config import ModelConfig
    from vae_core.engine.vae import VAE

    torch.set_num_threads(spec["threads"])
    x = torch.load(spec["data_file"], weights_only=True)  # only the images timed: a small baseline RSS
    if spec["run"]:
        model = rd.load_snapshot(spec["run"]).model
    else:
        torch.manual_seed(0)
        model = VAE(ModelConfig(input_shape=tuple(x.shape[1:]), **MODEL))
    if spec["variant"].startswith("generic"):
        VAE.log_likelihood_at = lambda self, x, z: None  # every model takes the decode + log_likelihood path
    evaluate.IWAE_CHUNK_FLOATS = spec["budget"] or evaluate.IWAE_CHUNK_FLOATS
    evaluate.IWAE_SHORTCUT_CHUNK_FLOATS = spec["budget"] or evaluate.IWAE_SHORTCUT_CHUNK_FLOATS
    import gc

    gc.collect()
    hwm_reset = _reset_hwm()
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    mode = torch.inference_mode() if spec["variant"].endswith("+inference") else contextlib.nullcontext()
    with mode:
        bound = evaluate.evaluate_iwae(model, x, spec["k"], batch_size=spec["batch"], seed=0)
    secs = time.perf_counter() - t0
    return {**spec, "seconds": secs, "bound": bound, "rss_before_mb": base_kb / 1024,
            "peak_eval_mb": _status_kb("VmHWM") / 1024 if hwm_reset else None,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "chunk": objectives.auto_chunk_size(min(spec["batch"], len(x)), x[0].numel(),
                                                chunk_budget(spec["variant"], spec["budget"]))}


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


def matmul_floor(model, xb, k: int, budget: int, threads: int) -> float:
    """Seconds for the decoder's matmuls alone over one batch: whole-chunk products at the plain path's
    chunk size (10,200 rows for 100 images of 784 pixels: MKL is at its full rate there)."""
    import torch

    torch.set_num_threads(threads)
    first, last = model.dec[0], model.dec[2]
    w1, w2 = first.weight.detach(), last.weight.detach()
    chunk = min(k, _objectives.auto_chunk_size(len(xb), xb[0].numel(), budget or _BUDGET))
    sizes = [chunk] * (k // chunk) + ([k % chunk] if k % chunk else [])
    rows = chunk * len(xb)
    z, h = torch.randn(rows, w1.shape[1]), torch.rand(rows, w1.shape[0])
    o1, o2 = torch.empty(rows, w1.shape[0]), torch.empty(rows, w2.shape[0])
    t0 = time.perf_counter()
    for n in sizes:
        r = n * len(xb)
        torch.mm(z[:r], w1.t(), out=o1[:r])
        torch.mm(h[:r], w2.t(), out=o2[:r])
    return time.perf_counter() - t0


def set_variant(variant: str, budget: int):
    """Point vae_core at one variant in this process (undone by the next call)."""
    _VAE.log_likelihood_at = (lambda self, x, z: None) if variant.startswith("generic") else _FAST
    _evaluate.IWAE_CHUNK_FLOATS = budget or _BUDGET
    _evaluate.IWAE_SHORTCUT_CHUNK_FLOATS = budget or _SHORTCUT_BUDGET


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--images", type=int, default=200, help="test images to time (the rest is extrapolated)")
    p.add_argument("--full-n", type=int, default=10_000, help="test-set size to extrapolate to")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=100, help="images per batch (evaluate_iwae's default)")
    p.add_argument("--repeats", type=int, default=2, help="passes over the images")
    p.add_argument("--variants", default="generic,fast")
    p.add_argument("--budgets", default="0", help="comma list of chunk budgets in floats (evaluate.IWAE_CHUNK_FLOATS, "
                   "and IWAE_SHORTCUT_CHUNK_FLOATS for the fast path); "
                   "0 = the current default; 32000000 was the default before the speed-up")
    p.add_argument("--memory-ks", default="1000,5000", help="k values for the memory check (0 skips)")
    p.add_argument("--block-rows", type=int, default=0,
                   help="rows of a block in the fast path (vae_core.engine.workers.BLOCK_ROWS); 0 = the default")
    p.add_argument("--run", default=None)
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import tempfile

    import torch

    from vae_core.runs import rundir as rd
    from vae_core.engine.config import ModelConfig
    from vae_core.data import load_dataset
    from vae_core.engine import workers
    from vae_core.engine.evaluate import evaluate_iwae
    from vae_core.engine.vae import VAE

    info = machine(torch.device("cpu"))
    torch.set_num_threads(args.threads)
    if args.block_rows:
        workers.BLOCK_ROWS = args.block_rows
    x = load_dataset(args.dataset).x_test[: args.images].clone()
    if args.run:
        model = rd.load_snapshot(args.run).model
    else:
        torch.manual_seed(0)
        model = VAE(ModelConfig(input_shape=tuple(x.shape[1:]), **MODEL))
    print(f"# eval_speed: IWAE k={args.k}, {args.images} {args.dataset} test images, {args.threads} threads, "
          f"{info['cpu']}, torch {info['torch']}", flush=True)
    configs = [(v, int(b)) for v in args.variants.split(",") for b in args.budgets.split(",")]
    floor_c = ("floor", 0)  # the decoder's matmuls alone, taking its turn with the variants
    times = {c: [0.0] * args.repeats for c in [floor_c, *configs]}
    sums = {c: 0.0 for c in configs}
    n_batches = (len(x) + args.batch - 1) // args.batch
    for r in range(args.repeats):
        for i in range(n_batches):
            xb = x[i * args.batch : (i + 1) * args.batch]
            turn = [floor_c, *configs]
            for c in (turn if (r + i) % 2 == 0 else turn[::-1]):
                if c == floor_c:
                    times[c][r] += matmul_floor(model, xb, args.k, 0, args.threads)
                    continue
                set_variant(*c)
                with torch.inference_mode() if c[0].endswith("+inference") else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    # seed i: every variant sees the same draws for the same batch
                    bound = evaluate_iwae(model, xb, args.k, batch_size=args.batch, seed=i)
                    times[c][r] += time.perf_counter() - t0
                if r == 0:
                    sums[c] += bound * len(xb)
            print(f"  pass {r + 1} batch {i + 1}/{n_batches}: " + ", ".join(
                f"{v}{'@' + str(b) if b else ''} {times[(v, b)][r]:.1f} s" for v, b in [floor_c, *configs]) +
                f" (load {os.getloadavg()[0]:.2f})", flush=True)
    set_variant("fast", 0)

    mem = []
    ks = [int(k) for k in args.memory_ks.split(",") if int(k) > 0]
    if ks:
        tmp = tempfile.TemporaryDirectory()
        data_file = os.path.join(tmp.name, "x.pt")
        torch.save(x[: args.batch].clone(), data_file)
        for v, b in configs:
            for k in ks:
                res = measure(dict(dataset=args.dataset, images=min(args.batch, len(x)), threads=args.threads,
                                   batch=args.batch, run=args.run, data_file=data_file, variant=v, budget=b, k=k))
                mem.append(res)
                print(f"  memory {v}@{res['chunk']} k={k}: peak {res['peak_eval_mb']:.0f} MB "
                      f"(+{res['peak_eval_mb'] - res['rss_before_mb']:.0f})", flush=True)
        tmp.cleanup()

    flops_full = args.full_n * args.k * 2 * (20 * 400 + 400 * 784)  # the decoder's matmuls: the bulk of the work
    fl = describe(times[floor_c])
    floor_s = fl["median"] * args.full_n / len(x)
    gflops = flops_full / floor_s / 1e9
    lines = [f"Device: cpu — {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} threads; "
             f"IWAE k={args.k}, default MLP 784-400-20 (Bernoulli); {len(x)} {args.dataset} test images timed in "
             f"batches of {args.batch}, the variants and the matmul floor taking turns batch by batch, "
             f"{args.repeats} passes; load average at start {info['loadavg_start'][0]:.2f}, at end "
             f"{os.getloadavg()[0]:.2f}.", "",
             f"| path | chunk (samples) | seconds per {len(x)} images, median (min–max) of {args.repeats} passes | "
             f"extrapolated to {args.full_n:,} images | vs generic | vs the matmul floor, median (min–max) of the "
             f"passes | bound (nats/image) |", "|---|---|---|---|---|---|---|",
             f"| matmul floor | {_objectives.auto_chunk_size(min(args.batch, len(x)), x[0].numel(), _BUDGET)} | "
             f"{fl['median']:.1f} ({fl['min']:.1f}–{fl['max']:.1f}) | {floor_s:.0f} s ({floor_s / 60:.1f} min) | | "
             f"1.00× | |"]
    summary = {"floor": {"seconds": fl, "extrapolated_s": floor_s, "gflops": gflops}}
    base = describe(times[configs[0]])["median"]
    for c in configs:
        d = describe(times[c])
        ratio = describe([t / f for t, f in zip(times[c], times[floor_c]) if f > 0])
        ext = d["median"] * args.full_n / len(x)
        chunk = _objectives.auto_chunk_size(min(args.batch, len(x)), x[0].numel(), chunk_budget(*c))
        summary[f"{c[0]}@{c[1]}"] = {"seconds": d, "extrapolated_s": ext, "bound": sums[c] / len(x), "chunk": chunk,
                                     "vs_floor": ratio}
        lines.append(f"| {c[0]} | {chunk} | {d['median']:.1f} ({d['min']:.1f}–{d['max']:.1f}) | {ext:.0f} s "
                     f"({ext / 60:.1f} min) | {base / d['median']:.2f}× | **{ratio['median']:.2f}×** "
                     f"({ratio['min']:.2f}–{ratio['max']:.2f}) | {sums[c] / len(x):.4f} |")
    set_variant("fast", 0)
    if mem:
        lines += ["", f"Peak resident memory of the evaluation ({min(args.batch, len(x))} images, fresh process each):", "",
                  "| path | chunk | k | peak RSS during eval | rise over the loaded process |", "|---|---|---|---|---|"]
        for m in mem:
            lines.append(f"| {m['variant']} | {m['chunk']} | {m['k']} | {m['peak_eval_mb']:.0f} MB | "
                         f"+{m['peak_eval_mb'] - m['rss_before_mb']:.0f} MB |")
    lines += ["", f"Floor: the decoder's matmuls alone, {flops_full:.2e} FLOPs for {args.full_n:,} images × "
              f"k={args.k}, timed in the same run as whole-chunk products at the plain path's chunk size: "
              f"{floor_s:.0f} s extrapolated "
              f"({gflops:.0f} GFLOP/s with {args.threads} threads); no exact float32 method gets below it here."]
    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"eval_speed_{args.dataset}_k{args.k}",
                {"machine": info, "args": vars(args), "times": {f"{v}@{b}": t for (v, b), t in times.items()},
                 "summary": summary, "memory": mem, "floor_s": floor_s, "floor_gflops": gflops}, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
