"""Issue 12: do the defaults work on every dataset shape the app offers?

  python bench/defaults_matrix.py                    # the whole matrix (about 40 min on 2 busy cores)
  python bench/defaults_matrix.py --datasets faces --bodies conv --lrs 1e-3,5e-3

For each dataset x body cell, the CLI is run as a user would run it, at the defaults:
``python -m vae_core train --dataset D --body B <cap>`` (no other flag: the "auto" recipe of
``vae_core.engine.recipe`` picks the rest; <cap> is --epochs or --max-steps, see ``DATASETS``),
then once per learning rate of a small sweep with ``--lr X`` added (everything else the same). Each run is scored by
``python -m vae_core eval RUN --k 0 --json`` (the best-by-validation snapshot; test ELBO and active
units). "Tuned" is the best test ELBO of the default and the sweep. A sweep value equal to the
default's learning rate is the default run itself (same config, same seed), not run twice.

share = (ELBO_default - ELBO_0) / (ELBO_tuned - ELBO_0), with ELBO_0 the test ELBO of the
collapsed model: q(z|x) = p(z) (KL 0) and a decoder that outputs the training set's mean image,
whatever z. It is what a run whose latent space died converges to, so a collapsed default scores
about 0 and a default as good as the tuned run scores 1.

The 64x64 RGB folder is ``bench/make_faces.py``'s first --faces-n images (made here if missing,
under bench/out/, which git ignores). Results go to bench/results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401
import torch

from _env import ROOT, machine, save

# The length of every run of a dataset's row: the CLI's default (30 epochs) would take hours
# for the matrix's 24 runs on 2 shared CPU cores, so each row is capped with a flag a user would
# pass (--epochs, or --max-steps inside the first epoch of the large sets); the cosine schedule
# decays to 0 over whatever length is given, and the warm-up is min(100, a tenth of it).
DATASETS = {
    "faces": {"spec": None, "cap": ["--epochs", "2"], "flags": ["--image-size", "64", "--channels", "3"]},
    "shapes": {"spec": "shapes", "cap": ["--max-steps", "400"], "flags": []},
    "fashion-mnist": {"spec": "fashion-mnist", "cap": ["--max-steps", "400"], "flags": []},
    "mnist": {"spec": "mnist", "cap": ["--epochs", "5"], "flags": []},
}
BODIES = ("mlp", "conv")
SWEEP = (1e-3, 2e-3, 5e-3)
OLD_DEFAULT_LR = 5e-3  # every body's default before issue 12
TARGET_SHARE = 0.9
TARGET_ACTIVE = 5
# How each training run is started: the CLI, or (--output-bias-init) the CLI through
# ``cli_with_output_bias``; and flags added to every run (--seed).
TRAIN_PREFIX = [sys.executable, "-m", "vae_core"]
EXTRA_FLAGS: list[str] = []
SHIM = "--as-cli-with-output-bias"


def cli_with_output_bias(argv: list[str]) -> int:
    """An experiment, not the app: ``python -m vae_core`` with the conv decoder's output bias
    started at the logit of each channel's mean intensity over (2,000 of) the training images,
    on a fresh run. The conv decoder otherwise starts at p = 0.5 everywhere and spends its first
    steps learning the background, through a single bias per channel; meanwhile the KL term
    pushes every code to the prior (bench/RESULTS.md, "Defaults on every dataset (issue 12)")."""
    from vae_core.cli import main as cli_main
    from vae_core.runs import trainer

    init, make_feed, mean = trainer.TrainLoop.__init__, trainer.make_feed, {}

    def feed(x_train, *a, **k):
        ids = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:2000]
        mean["c"] = x_train[ids].mean((0, 2, 3))
        return make_feed(x_train, *a, **k)

    def loop_init(self, *a, **k):
        init(self, *a, **k)
        if self.step == 0 and self.config.model.body == "conv":
            with torch.no_grad():
                self.model.dec_convs[-1].bias.copy_(torch.logit(mean["c"].clamp(1e-3, 1 - 1e-3)))

    trainer.make_feed, trainer.TrainLoop.__init__ = feed, loop_init
    return cli_main(argv)


def make_faces(n: int) -> Path:
    """bench/out/faces-<n>: the first n images of make_faces' set (seed 0), written if missing."""
    sys.path.insert(0, str(ROOT / "bench"))
    import make_faces as mf

    out = ROOT / "bench" / "out" / (f"faces-{n // 1000}k" if n % 1000 == 0 else f"faces-{n}")
    if len(list(out.rglob("*.png"))) < n:
        for start in range(0, n, 1000):
            mf.write_range((str(out), start, min(start + 1000, n), 64, 0))
    return out


def mean_image_elbo(spec: str, image_size: int | None, channels: int | None) -> float:
    """ELBO_0: the test ELBO (nats per image) of the Bernoulli decoder that outputs the training
    set's mean image for every z, with q(z|x) = p(z) (KL 0)."""
    from vae_core.data import load_dataset
    from vae_core.engine.objectives import bernoulli_log_likelihood

    data = load_dataset(spec, image_size=image_size, channels=channels, seed=0)
    total, n = None, len(data.x_train)
    for i in range(0, n, 2000):
        s = data.x_train[i:i + 2000].double().sum(0)
        total = s if total is None else total + s
    logits = torch.logit((total / n).clamp(1e-6, 1 - 1e-6))
    ll, m = 0.0, len(data.x_test)
    for i in range(0, m, 2000):
        xb = data.x_test[i:i + 2000].double()
        ll += bernoulli_log_likelihood(xb, logits).flatten(1).sum(1).sum().item()
    return ll / m


def train_and_eval(spec: str, flags: list[str], body: str, cap: list[str], lr: float | None, run_dir: Path) -> dict:
    cmd = [*TRAIN_PREFIX, "train", "--dataset", spec, *flags, "--body", body, *cap, *EXTRA_FLAGS,
           *(["--lr", f"{lr:g}"] if lr is not None else []), "--run-dir", str(run_dir)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    ev = subprocess.run([sys.executable, "-m", "vae_core", "eval", str(run_dir), "--k", "0", "--json"],
                        cwd=str(ROOT), capture_output=True, text=True, check=True)
    res = json.loads(ev.stdout)
    cfg = json.loads((run_dir / "config.json").read_text())
    return {"cmd": " ".join(["python", "-m", "vae_core", *cmd[3:-2]]), "lr": cfg["train"]["lr"],
            "epochs": cfg["train"]["epochs"], "wall_s": round(wall, 1), "test_elbo": res["test_elbo"],
            "test_kl": res["test_kl"], "active_units": res["active_units"], "latent_dim": res["latent_dim"],
            "step": res["step"], "epoch": res["epoch"]}


def run_cell(name: str, ds: dict, body: str, sweep: tuple[float, ...], work: Path) -> dict:
    spec, flags, cap = ds["spec"], ds["flags"], ds["cap"]
    default = train_and_eval(spec, flags, body, cap, None, work / f"{name}-{body}-default")
    print(f"  {name} {body} default (lr {default['lr']:g}): ELBO {default['test_elbo']:.2f}, "
          f"KL {default['test_kl']:.2f}, active {default['active_units']}/{default['latent_dim']}, {default['wall_s']} s",
          flush=True)
    runs = {}
    for lr in sweep:
        if abs(lr - default["lr"]) < 1e-12:
            runs[lr] = {**default, "same_as_default": True}
            continue
        runs[lr] = train_and_eval(spec, flags, body, cap, lr, work / f"{name}-{body}-lr{lr:g}")
        r = runs[lr]
        print(f"  {name} {body} lr {lr:g}: ELBO {r['test_elbo']:.2f}, KL {r['test_kl']:.2f}, "
              f"active {r['active_units']}/{r['latent_dim']}, {r['wall_s']} s", flush=True)
    tuned = max([default, *runs.values()], key=lambda r: r["test_elbo"])
    return {"dataset": name, "body": body, "cap": cap, "default": default, "sweep": {f"{k:g}": v for k, v in runs.items()},
            "tuned": tuned}


def score(cell: dict, elbo0: float) -> dict:
    d, t = cell["default"], cell["tuned"]
    gap = t["test_elbo"] - elbo0
    share = (d["test_elbo"] - elbo0) / gap if gap > 0 else float("nan")
    old = cell["sweep"].get(f"{OLD_DEFAULT_LR:g}")
    old_share = (old["test_elbo"] - elbo0) / gap if old and gap > 0 else None
    return {"elbo0": elbo0, "share": share, "old_share": old_share,
            "meets": share >= TARGET_SHARE and d["active_units"] >= TARGET_ACTIVE}


def lr_text(lr: float) -> str:
    """1e-3 rather than 0.001."""
    mantissa, _, exp = f"{lr:.0e}".partition("e")
    return f"{mantissa}e{int(exp)}" if float(f"{lr:.0e}") == lr else f"{lr:g}"


def table(cells: list[dict]) -> str:
    head = ("| dataset (length) | body | default lr | default: test ELBO, KL, active | old default (lr 5e-3): "
            "ELBO, active | tuned: lr, ELBO | ELBO_0 (mean image) | share (old) | target met |\n"
            "|---|---|---|---|---|---|---|---|---|")
    rows = []
    for c in cells:
        d, t, s = c["default"], c["tuned"], c["score"]
        old = c["sweep"].get(f"{OLD_DEFAULT_LR:g}")
        old_txt = f"{old['test_elbo']:.1f}, {old['active_units']}/{old['latent_dim']}" if old else "–"
        old_share = f" ({s['old_share']:.2f})" if s["old_share"] is not None else ""
        rows.append(f"| {c['dataset']} (`{' '.join(c['cap'])}`) | {c['body']} | {lr_text(d['lr'])} | {d['test_elbo']:.1f}, "
                    f"{d['test_kl']:.1f}, {d['active_units']}/{d['latent_dim']} | {old_txt} | {lr_text(t['lr'])}, "
                    f"{t['test_elbo']:.1f} | {s['elbo0']:.1f} | {s['share']:.2f}{old_share} | "
                    f"{'**yes**' if s['meets'] else '**no**'} |")
    return "\n".join([head, *rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, from {', '.join(DATASETS)}")
    ap.add_argument("--cap", help="the same length for every row instead of DATASETS' (e.g. \"--max-steps 50\")")
    ap.add_argument("--bodies", default=",".join(BODIES))
    ap.add_argument("--lrs", default=",".join(f"{x:g}" for x in SWEEP), help="the learning-rate sweep")
    ap.add_argument("--faces-n", type=int, default=3000, help="images in the 64x64 RGB folder")
    ap.add_argument("--work", help="where the runs go (default: a temporary folder, deleted)")
    ap.add_argument("--seed", type=int, help="passed to every run (default: the CLI's, 0)")
    ap.add_argument("--output-bias-init", action="store_true",
                    help="experiment: train through cli_with_output_bias (see its docstring), not the plain CLI")
    ap.add_argument("--name", default="defaults_matrix")
    args = ap.parse_args(argv)
    if args.seed is not None:
        EXTRA_FLAGS.extend(["--seed", str(args.seed)])
    if args.output_bias_init:
        TRAIN_PREFIX[1:] = [str(Path(__file__).resolve()), SHIM]
    os.chdir(ROOT)  # dataset specs are relative to the repository root, as in the printed commands
    sweep = tuple(float(x) for x in args.lrs.split(","))
    datasets = {k: dict(DATASETS[k]) for k in args.datasets.split(",")}
    for ds in datasets.values():
        ds["cap"] = args.cap.split() if args.cap else ds["cap"]
    if "faces" in datasets:
        datasets["faces"]["spec"] = f"folder:{make_faces(args.faces_n).relative_to(ROOT)}"
    t_start = time.perf_counter()
    env = machine("cpu")  # the load average when the matrix starts
    cells = []
    with tempfile.TemporaryDirectory(prefix="defaults-matrix-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, ds in datasets.items():
            size = int(ds["flags"][1]) if ds["flags"] else None
            chans = int(ds["flags"][3]) if ds["flags"] else None
            elbo0 = mean_image_elbo(ds["spec"], size, chans)
            print(f"{name} ({ds['spec']}): ELBO_0 (mean image) {elbo0:.2f}", flush=True)
            for body in args.bodies.split(","):
                cell = run_cell(name, ds, body, sweep, work)
                cell["score"] = score(cell, elbo0)
                cells.append(cell)
    total = time.perf_counter() - t_start
    md = (f"Command: `python bench/defaults_matrix.py {shlex.join(argv if argv is not None else sys.argv[1:])}`"
          f" · {time.strftime('%Y-%m-%d')} · total {total / 60:.1f} min\n\n"
          f"Device: cpu — {env['cpu']} ({env['cores']} cores), torch {env['torch']}; load average at start "
          f"{env['loadavg_start'][0]:.2f}. Sweep: lr {', '.join(map(lr_text, sweep))}; seed 0; one run each.\n\n"
          + table(cells) + "\n")
    print(md)
    save(args.name, {"machine": env, "sweep": sweep, "cells": cells, "total_s": total,
                     "targets": {"share": TARGET_SHARE, "active_units": TARGET_ACTIVE}}, md)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [SHIM]:
        raise SystemExit(cli_with_output_bias(sys.argv[2:]))
    raise SystemExit(main())
