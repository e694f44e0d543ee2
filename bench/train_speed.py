"""Training speed: the project's trainer against a plain pytorch/examples-style VAE.

Same data, device, machine and process; same 784-400-20 MLP, batch 128, Adam 1e-3.

  python bench/train_speed.py                      # Fashion-MNIST, CPU, threads 1 and 2
  python bench/train_speed.py --dataset mnist --repeats 5 --seconds 8
  python bench/train_speed.py --device cuda        # GPU figures (not yet taken)

Throughput (samples/s): each implementation trains for --seconds per repeat; the first
~20-25 steps are warm-up and not counted. For the project the rate is taken from its own
log records, leaving out the stretches that hold an end-of-epoch test evaluation (the plain
loop does not evaluate either). Repeats alternate the order of the runs. Samples per
CPU-second (process CPU time) are reported too: at 1 thread they barely move when other
processes share the cores, while wall-clock rates do (at 2 threads CPU time includes the
OpenMP threads' spinning, so read the wall figures there). The matmul floor (``run_floor``:
the step's 14 matrix products alone, at the same threads, in the same alternation, up to 3 s
per repeat) is reported too, with each implementation's share of it.

Time to quality (at the worker's default threads unless --ttq-threads): the plain VAE trains
--ttq-epochs epochs; its test loss (negative ELBO per example from
``vae_core.evaluate.evaluate_elbo``, its weights loaded into a vae_core VAE) is the target.
Then the project's trainer trains until its own end-of-epoch test loss, from the same
function and evaluation seed, is at or below the target. Reported: wall and CPU seconds of
training; the plain loop's evaluation is outside its clocks, while the project's per-epoch
evaluation and snapshots are inside its clocks (charged against the project).

Results are printed as markdown and saved to bench/results/train_speed_<dataset>_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401  (puts the repo root on sys.path)
import torch

from _env import describe, machine, save
from reference_vae import to_project_vae, train_plain
from vae_core.runs import rundir as rd
from vae_core.data import load_dataset
from vae_core.engine.device import pick_device
from vae_core.engine.evaluate import evaluate_elbo
from vae_core.runs.manager import new_run_config
from vae_core.runs.trainer import train

BATCH, LR, SEED = 128, 1e-3, 0
MODEL = dict(body="mlp", hidden=400, latent_dim=20, likelihood="bernoulli")


def project_config(dataset, device, threads, epochs, seed=SEED, **train_extra):
    # The plain loop's hyperparameters exactly (constant lr too): this compares the engines, not the recipes.
    t = dict(batch_size=BATCH, lr=LR, lr_schedule="constant", epochs=epochs, num_threads=threads, device=str(device),
             seed=seed)
    t.update(train_extra)
    return new_run_config(dataset, model=MODEL, train=t)


def run_project(dataset, device, threads, *, seconds=None, epochs=10_000, stop_at_loss=None, seed=SEED, **extra):
    """Train with ``vae_core.trainer.train`` in a temporary run dir; stop after ``seconds`` of
    stepping or once the end-of-epoch test loss reaches ``stop_at_loss`` (via the control file,
    as the UI would). Returns the post-warm-up step rate per wall and per CPU second, and the
    epoch records with the process CPU seconds used since ``train`` was called."""
    cfg = project_config(dataset, device, threads, epochs, seed, **extra)
    marks: list[tuple[float, float, dict]] = []
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"

        def on_log(rec):
            marks.append((time.perf_counter(), time.process_time() - cpu0, rec))
            if seconds is not None and rec["kind"] == "step" and marks[-1][0] - marks[0][0] >= seconds:
                rd.request(run, "stop")
            if stop_at_loss is not None and rec["kind"] == "epoch" and -rec["test_elbo"] <= stop_at_loss:
                rd.request(run, "stop")

        cpu0 = time.process_time()
        st = train(cfg, run, on_log=on_log)
    if st.state not in ("finished", "stopped"):
        raise RuntimeError(f"project run {st.state}: {st.error}")
    # Rate over consecutive step records that hold no end-of-epoch evaluation between them;
    # the first record (step 25) closes the warm-up.
    n_samples, n_s, n_cpu, prev = 0, 0.0, 0.0, None
    for t, c, rec in marks:
        if rec["kind"] == "epoch":
            prev = None
        elif rec["kind"] == "step":
            if prev is not None:
                n_samples += (rec["step"] - prev[2]) * BATCH
                n_s += t - prev[0]
                n_cpu += c - prev[1]
            prev = (t, c, rec["step"])
    epochs_recs = [{**r, "cpu_s": c} for _, c, r in marks if r["kind"] == "epoch"]
    return {"samples_per_s": n_samples / n_s if n_s else float("nan"),
            "samples_per_cpu_s": n_samples / n_cpu if n_cpu else float("nan"), "steps": st.step, "epochs": epochs_recs}


def run_plain(data, device, threads, **kw):
    torch.set_num_threads(threads)
    x, y = data.x_train[:], data.y_train  # the plain reference trains on float tensors, as pytorch/examples does
    return train_plain(x, y, device, **kw)


def run_floor(device, threads, seconds, d_in=784, hidden=MODEL["hidden"], latent=MODEL["latent_dim"]):
    """The matmul floor: only the 14 matrix products of one training step of the 784-400-20 MLP
    at batch 128 (forward: 5 addmm; backward: 4 products for the inputs' gradients, 5 for the
    weights'), on random tensors, timed like a training run. No implementation of this
    architecture can step faster without faster matrix products."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.rand(*shape, generator=g).to(device)

    layers = [(d_in, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, d_in)]
    ws = [(r(o, i), r(o), r(BATCH, i), r(BATCH, o)) for i, o in layers]  # weight, bias, input, output grad

    def step():
        for k, (w, b, x, gy) in enumerate(ws):
            torch.addmm(b, x, w.t())  # forward
            torch.mm(gy.t(), x)  # weight gradient
            if k:  # the first layer's input (the data) needs no gradient
                torch.mm(gy, w)

    for _ in range(20):
        step()
    _sync(device)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step()
        _sync(device)
        n += 10
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"samples_per_s": n * BATCH / wall, "samples_per_cpu_s": n * BATCH / cpu}


def throughput(data, args, device, threads_list):
    rows, cpu_rows = {}, {}
    configs = [(impl, th) for th in threads_list for impl in ("plain", "project", "floor")]
    for r in range(args.repeats):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate so neither side always goes first
        for impl, th in order:
            if impl == "plain":
                res = run_plain(data, device, th, seconds=args.seconds)
            elif impl == "floor":
                res = run_floor(device, th, min(args.seconds, 3.0))
            else:
                res = run_project(args.dataset, device, th, seconds=args.seconds)
            rows.setdefault((impl, th), []).append(res["samples_per_s"])
            cpu_rows.setdefault((impl, th), []).append(res["samples_per_cpu_s"])
            print(f"  repeat {r + 1}: {impl:7s} threads={th}: {res['samples_per_s']:9.0f} samples/s, "
                  f"{res['samples_per_cpu_s']:9.0f} per CPU-s  (load {os.getloadavg()[0]:.2f})", flush=True)
    return rows, cpu_rows


def time_to_quality(data, args, device, threads, seed=SEED):
    x_test = data.x_test.to(device)
    curve = []

    def on_epoch(epoch, train_s, model, cpu_s):
        # seed=seed: the trainer evaluates with its training seed, so both see the same eval draws
        loss = -evaluate_elbo(to_project_vae(model, data.image_shape), x_test, seed=seed)["elbo"]
        curve.append({"epoch": epoch, "wall_s": train_s, "cpu_s": cpu_s, "test_loss": loss})
        print(f"  plain   epoch {epoch:3d}  {train_s:7.1f} s  {cpu_s:7.1f} CPU-s  test loss {loss:.3f}", flush=True)

    run_plain(data, device, threads, epochs=args.ttq_epochs, on_epoch=on_epoch, seed=seed)
    target = curve[-1]["test_loss"]
    plain_hit = next(c for c in curve if c["test_loss"] <= target)
    proj = run_project(args.dataset, device, threads, epochs=args.ttq_epochs * 2, stop_at_loss=target, seed=seed)
    pcurve = [{"epoch": e["epoch"], "wall_s": e["wall_s"], "cpu_s": e["cpu_s"], "test_loss": -e["test_elbo"]}
              for e in proj["epochs"]]
    for c in pcurve:
        print(f"  project epoch {c['epoch']:3d}  {c['wall_s']:7.1f} s  {c['cpu_s']:7.1f} CPU-s  "
              f"test loss {c['test_loss']:.3f}", flush=True)
    hit = next((c for c in pcurve if c["test_loss"] <= target), None)
    return {"threads": threads, "target_loss": target, "plain_curve": curve, "project_curve": pcurve,
            "plain": plain_hit, "project": hit}


def adam_compare(device, threads, steps=200, repeats=3):
    """One full training step (forward, backward, Adam) of the project's model on a fixed batch,
    with each Adam implementation; milliseconds per step."""
    from vae_core.engine.config import ModelConfig
    from vae_core.engine.vae import VAE
    from vae_core.engine.objectives import elbo_terms

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    x = torch.rand(BATCH, 1, 28, 28, device=device).round()
    out = {}
    kinds = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
    for r in range(repeats):
        for name, kw in (kinds.items() if r % 2 == 0 else list(kinds.items())[::-1]):
            model = VAE(ModelConfig(**MODEL)).to(device)
            try:
                opt = torch.optim.Adam(model.parameters(), lr=LR, **kw)
            except (RuntimeError, TypeError) as e:
                out[name] = str(e)
                continue

            def step():
                loss = elbo_terms(model, x).loss()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for _ in range(20):
                step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            t_step = (time.perf_counter() - t0) / steps * 1e3
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            _sync(device)
            t_opt = (time.perf_counter() - t0) / steps * 1e3
            out.setdefault(name, {"step_ms": [], "optimizer_step_ms": []})
            out[name]["step_ms"].append(t_step)
            out[name]["optimizer_step_ms"].append(t_opt)
    return {k: ({m: describe(v) for m, v in d.items()} if isinstance(d, dict) else d) for k, d in out.items()}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def fmt_range(d, digits=0):
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}–{d['max']:.{digits}f}, n={d['n']})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="training seconds per throughput run")
    p.add_argument("--threads", default=None, help="comma list of torch thread counts (default: 1..cores on CPU)")
    p.add_argument("--ttq-epochs", type=int, default=10, help="epochs of the plain VAE that set the target (0 skips)")
    p.add_argument("--ttq-threads", type=int, default=None,
                   help="threads for time to quality (default: the worker's, cores - 1, where CPU time is meaningful)")
    p.add_argument("--no-adam", action="store_true", help="skip the fused/foreach/for-loop Adam comparison")
    p.add_argument("--no-throughput", action="store_true", help="skip the samples/s runs")
    p.add_argument("--ttq-repeats", type=int, default=1)
    p.add_argument("--name", default=None, help="results file name (default train_speed_<dataset>_<device>)")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    cores = os.cpu_count() or 1
    if args.threads:
        threads_list = [int(t) for t in args.threads.split(",")]
    else:
        threads_list = sorted({1, cores}) if device.type == "cpu" else [cores]
    info = machine(device)
    data = load_dataset(args.dataset)
    print(f"# train_speed: {args.dataset} ({len(data.x_train)} train / {len(data.x_test)} test), {device}, "
          f"{info['cpu']}, torch {info['torch']}, threads {threads_list}", flush=True)

    rates, cpu_rates = ({}, {}) if args.no_throughput else throughput(data, args, device, threads_list)
    thr = {f"{impl}@{th}": {"wall": describe(v), "cpu": describe(cpu_rates[(impl, th)])} for (impl, th), v in rates.items()}
    worker_default = max(1, cores - 1)

    lines = [f"Device: {device} — {info['cpu']} ({cores} cores), torch {info['torch']}; dataset {args.dataset} "
             f"({len(data.x_train)} train); batch {BATCH}; load average at start {info['loadavg_start'][0]:.2f}."]
    if rates:
        lines += [f"Throughput: {args.seconds:g} s per run, {args.repeats} repeats, alternating order.", "",
                  "| implementation | torch threads | samples/s median (min–max, n) | project / plain | "
                  "samples per CPU-second, median | project / plain | share of the matmul floor |",
                  "|---|---|---|---|---|---|---|"]
    for th in (threads_list if rates else []):
        pl, pr = describe(rates[("plain", th)]), describe(rates[("project", th)])
        cpl, cpr = describe(cpu_rates[("plain", th)]), describe(cpu_rates[("project", th)])
        fl, cfl = describe(rates[("floor", th)]), describe(cpu_rates[("floor", th)])
        lines.append(f"| plain (pytorch/examples style) | {th} | {fmt_range(pl)} | | {cpl['median']:.0f} | | "
                     f"{pl['median'] / fl['median']:.0%} |")
        note = " (the app's worker default)" if th == worker_default else ""
        lines.append(f"| project trainer{note} | {th} | {fmt_range(pr)} | **{pr['median'] / pl['median']:.2f}×** | "
                     f"{cpr['median']:.0f} | {cpr['median'] / cpl['median']:.2f}× | {pr['median'] / fl['median']:.0%} |")
        lines.append(f"| matmul floor (the step's 14 matrix products alone) | {th} | {fmt_range(fl)} | | "
                     f"{cfl['median']:.0f} | | 100% |")
    result = {"machine": info, "args": vars(args), "throughput": thr, "worker_default_threads": worker_default}

    if not args.no_adam:
        th = max(threads_list)
        print(f"# Adam implementations, {th} threads", flush=True)
        adam = adam_compare(device, th)
        result["adam"] = {"threads": th, **adam}
        lines += ["", f"Adam implementation, one full step of the project's model (batch {BATCH}, {th} threads), ms:", "",
                  "| Adam | full step ms | optimizer.step() ms |", "|---|---|---|"]
        for name, d in adam.items():
            if isinstance(d, dict):
                lines.append(f"| {name} | {fmt_range(d['step_ms'], 2)} | {fmt_range(d['optimizer_step_ms'], 2)} |")
            else:
                lines.append(f"| {name} | unavailable: {d} | |")

    if args.ttq_epochs > 0:
        th = args.ttq_threads or (worker_default if device.type == "cpu" else torch.get_num_threads())
        print(f"# time to quality, {th} threads", flush=True)
        lines += ["", f"Time to quality ({th} threads): target = the plain VAE's own test loss after {args.ttq_epochs} "
                  f"epochs (−ELBO per example, evaluate_elbo seeded with the run's seed {SEED} + repeat); each repeat sets its own target.", "",
                  "| repeat | target (nats) | plain: wall s (CPU s) to target | project: wall s (CPU s) to target | "
                  "speed-up, wall | speed-up, CPU |", "|---|---|---|---|---|---|"]
        result["time_to_quality"] = []
        for r in range(args.ttq_repeats):
            ttq = time_to_quality(data, args, device, th, seed=SEED + r)
            result["time_to_quality"].append(ttq)
            a, b = ttq["plain"], ttq["project"]
            proj = f"{b['wall_s']:.1f} ({b['cpu_s']:.1f}), epoch {b['epoch']}" if b else "not reached"
            speed = f"{a['wall_s'] / b['wall_s']:.2f}× | {a['cpu_s'] / b['cpu_s']:.2f}×" if b else "— | —"
            lines.append(f"| {r + 1} | {ttq['target_loss']:.3f} | {a['wall_s']:.1f} ({a['cpu_s']:.1f}), epoch {a['epoch']} | "
                         f"{proj} | {speed} |")

    md = "\n".join(lines) + "\n"
    print()
    print(md)
    path = save(args.name or f"train_speed_{args.dataset}_{device.type}", result, md)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
