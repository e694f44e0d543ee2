"""Command line: ``python -m vae_core {train,eval,datasets,sweep}``.

``train`` and ``sweep`` only parse flags and call ``trainer.train`` / ``sweeps.run``, the
entry points the app's RunManager starts in a subprocess. Errors print one clear line and
exit 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .engine.config import ConfigError, RunConfig, TrainConfig
from .runs import rundir as rd

if TYPE_CHECKING:
    from .data import Dataset


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", help="run directory (default runs/<dataset>-<body>-z<D>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last snapshot")
    p.add_argument("--dataset", help="dataset spec: mnist, digits, fashion-mnist, shapes, shapes:64, idx:DIR, folder:PATH")
    p.add_argument("--image-size", type=int, help="image size for folder: datasets")
    p.add_argument("--channels", type=int, choices=(1, 3), help="channels for folder: datasets")
    p.add_argument("--body", choices=("mlp", "conv"))
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian_fixed", "gaussian_learned"))
    p.add_argument("--decoder-sigma", type=float)
    p.add_argument("--beta", type=float)
    p.add_argument("--objective", choices=("elbo", "iwae"))
    p.add_argument("--samples", type=int, help="z samples per example (k for iwae)")
    p.add_argument("--kl-estimator", choices=("analytic", "monte_carlo"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-3)")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"),
                   help="cosine (default): linear warm-up, then decay to 0 over the run; constant: lr throughout")
    p.add_argument("--warmup-steps", type=int, help="steps of linear warm-up for the cosine schedule (default 100)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--num-threads", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--validation-fraction", type=float,
                   help="share of the training set held out to pick the best snapshot and stop early "
                        "(default 0.1; 0 holds nothing out, which turns early stopping off)")
    p.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better validation ELBO (default 10; 0: never)")
    p.add_argument("--data-placement", choices=("auto", "device", "stream"),
                   help="auto (default): the training images stay on the training device when they fit, else "
                        "batches stream from the dataset cache; device or stream forces one")
    p.add_argument("--nproc", type=int,
                   help="training processes on this machine (DDP under torchrun: gloo on CPU, one GPU each on "
                        "CUDA); batch size and learning rate stay the global ones. With --resume it overrides "
                        "the run's own number")


_MODEL_FLAGS = {"body": "body", "latent_dim": "latent_dim", "hidden": "hidden", "likelihood": "likelihood",
                "decoder_sigma": "decoder_sigma"}
_TRAIN_FLAGS = ("beta", "objective", "samples", "kl_estimator", "epochs", "batch_size", "lr", "lr_schedule",
                "warmup_steps", "seed", "device",
                "num_threads", "max_steps", "data_placement", "nproc", "validation_fraction", "patience")


class _BuildProgress:
    """Progress of decoding a dataset into the cache: a tqdm bar on a terminal, otherwise (a log
    file) a line every ``every_s`` seconds and one at the end, none for a shorter build. Called as
    ``progress(done, total)``; close() ends it."""

    def __init__(self, desc: str, every_s: float = 5.0, stream=None, clock=time.monotonic):
        self.desc, self.every_s, self.clock = desc, every_s, clock
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self.last = 0.0
        self.started: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
            if self.stream.isatty():
                try:
                    from tqdm import tqdm

                    self.bar = tqdm(total=total, desc=self.desc, unit="img", dynamic_ncols=True, file=self.stream)
                except ImportError:
                    pass
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        elif min(now - self.started, now - self.last) >= self.every_s or (done >= total and self.last):
            self.last = now   # quiet for a build shorter than every_s
            pct = f" ({100 * done / total:.0f}%)" if total else ""
            print(f"{self.desc}: {done:,} of {total:,}{pct}, {now - self.started:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _config_from_flags(args) -> tuple[RunConfig, Dataset]:
    """The run's config from the flags, and its dataset (loaded, with a progress bar on a first
    decode, to read the image shape; the trainer then uses it rather than looking it up again)."""
    from .data import load_dataset
    from .runs.manager import new_run_config

    model = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    train = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    dataset = args.dataset or "mnist"
    progress = _BuildProgress(f"decoding {dataset}")
    try:
        data = load_dataset(dataset, image_size=args.image_size, channels=args.channels,
                            seed=train.get("seed", TrainConfig.seed), progress=progress)
    finally:
        progress.close()
    config = new_run_config(dataset, image_size=args.image_size, channels=args.channels, model=model, train=train,
                            data=data)
    return config, data


def cmd_train(args) -> int:
    from .runs import distributed as dd
    from .runs.trainer import AlreadyRunning, train

    in_torchrun = dd.under_torchrun()
    data = None  # the dataset, when building the config from flags loaded it
    follower = in_torchrun and (dd.DistContext.from_env() or dd.DistContext(0, 1, 0, 1)).rank != 0
    flags_given = any(getattr(args, k) is not None for k in (*_MODEL_FLAGS, *_TRAIN_FLAGS, "dataset"))
    if follower and flags_given and not args.resume:
        # Rank > 0 of a run started by torchrun with flags: rank 0 may already have written the
        # config; build the same one from the same flags (it never writes).
        config, data = _config_from_flags(args)
        run_dir = Path(args.run_dir) if args.run_dir else Path(".")
    elif args.run_dir and (Path(args.run_dir) / rd.CONFIG).exists():
        only_nproc = args.nproc is not None and not any(
            getattr(args, k) is not None for k in (*_MODEL_FLAGS, *_TRAIN_FLAGS, "dataset") if k != "nproc")
        if flags_given and not args.resume and not (only_nproc and not in_torchrun):
            raise ConfigError(f"{args.run_dir} already has a config; pass --resume to continue it, or choose a new --run-dir")
        config = rd.read_config(Path(args.run_dir))
        run_dir = Path(args.run_dir)
        if args.nproc is not None and args.nproc != config.train.nproc and not in_torchrun:
            import dataclasses

            config = dataclasses.replace(config, train=dataclasses.replace(config.train, nproc=args.nproc)).validate()
            rd.write_config(run_dir, config)
    else:
        if args.resume:
            raise ConfigError(f"nothing to resume: {args.run_dir} has no config.json")
        config, data = _config_from_flags(args)
        if args.run_dir:
            run_dir = Path(args.run_dir)
        else:
            from .runs.manager import RunManager, default_run_name

            m = RunManager()
            run_dir = m.path(m.unique_name(default_run_name(config)))
    if config.train.nproc > 1 and not in_torchrun:
        # Several processes: torchrun starts them (each one runs this command again, as a rank).
        from .runs.trainer import _lock_run

        if config.train.batch_size % config.train.nproc:
            raise ConfigError(f"batch_size {config.train.batch_size} must be a multiple of nproc "
                              f"({config.train.nproc}): each process takes an equal share of every batch")

        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            _lock_run(run_dir).close()  # refuse now if a worker holds the run, before any status is touched
        except AlreadyRunning as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rd.write_config(run_dir, config)
        return dd.launch(config.train.nproc, run_dir, resume=args.resume)
    bar = None if follower else _progress_bar(f"training {run_dir.name}")

    def on_log(rec):
        if bar is None:
            return
        if rec["kind"] == "step":
            if bar.total is None:
                st = rd.read_status(run_dir)
                bar.total = st.total_steps
            bar.n = rec["step"]
            bar.set_postfix(loss=f"{rec['loss']:.2f}", kl=f"{rec['kl']:.2f}", rate=f"{rec['samples_per_s']:.0f}/s")
        elif rec["kind"] == "epoch":
            val = f", validation ELBO {rec['val_elbo']:.2f}" if "val_elbo" in rec else ""
            bar.write(f"epoch {rec['epoch']}: test ELBO {rec['test_elbo']:.2f} nats{val}")
        elif rec["kind"] == "early_stop":
            bar.write(f"stopping early: no better validation ELBO for {rec['patience']} epochs; "
                      f"the best snapshot is epoch {rec['best_epoch']}'s")

    try:
        status = train(config, run_dir, resume=args.resume, on_log=on_log, data=data)
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if not follower:
        early = status.extra.get("stopped_early_at_epoch")
        note = (f", stopped early after epoch {early}: best validation ELBO at epoch {status.extra.get('best_epoch')}"
                if early else "")
        print(f"{run_dir}: {status.state} at step {status.step}{note}" + (f" ({status.error})" if status.error else ""))
    return 0 if status.state in ("finished", "stopped") else 1


def cmd_sweep(args) -> int:
    from .runs import sweeps

    return sweeps.run([Path(d) for d in args.run_dirs])


def _progress_bar(desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    if not sys.stderr.isatty():
        return None  # a worker started by the app logs to a file: no bar
    return tqdm(total=None, desc=desc, unit="step", dynamic_ncols=True)


def _resolve_run(run: str) -> Path:
    p = Path(run)
    if (p / rd.CONFIG).exists():
        return p
    from .runs.manager import default_runs_dir

    q = default_runs_dir() / run
    if (q / rd.CONFIG).exists():
        return q
    raise rd.RunError(f"no run at {run!r} (looked for {p / rd.CONFIG} and {q / rd.CONFIG})")


def cmd_eval(args) -> int:
    import torch
    from tqdm import tqdm

    from .data import load_dataset
    from .engine.device import pick_device
    from .engine.evaluate import evaluate_elbo, evaluate_iwae, posterior_stats

    run_dir = _resolve_run(args.run)
    device = pick_device(args.device)
    snap = rd.load_snapshot(run_dir, device=str(device), which=args.snapshot)
    tc = snap.config.train
    data = load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)
    x = data.x_test.subset(slice(0, args.limit)) if args.limit else data.x_test  # read a batch at a time
    result = {"run": str(run_dir), "snapshot": snap.kind, "step": snap.step, "epoch": snap.epoch, "n_test": len(x),
              "device": str(device)}
    if snap.validation_elbo is not None:
        result["validation_elbo"] = snap.validation_elbo
    with torch.no_grad():
        result.update({f"test_{k}": v for k, v in evaluate_elbo(snap.model, x).items()})
        stats = posterior_stats(snap.model, x)
        result["active_units"] = int(stats["active"].sum())
        result["latent_dim"] = int(stats["active"].numel())
        if args.k > 0:
            with tqdm(total=len(x), desc=f"IWAE k={args.k}", unit="img", disable=not sys.stderr.isatty()) as bar:
                t0 = time.time()
                bound = evaluate_iwae(snap.model, x, args.k, progress=lambda done, n: bar.update(done - bar.n))
            result[f"test_iwae_k{args.k}"] = bound
            result["iwae_seconds"] = round(time.time() - t0, 2)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        which = (f"best snapshot (validation ELBO {snap.validation_elbo:.3f})" if snap.kind == "best"
                 else "latest snapshot")
        print(f"run {run_dir.name}, {which} at step {snap.step} (epoch {snap.epoch}), {len(x)} test images, {device}")
        print(f"  test ELBO            {result['test_elbo']:10.3f} nats  (log-likelihood {result['test_log_likelihood']:.3f}, KL {result['test_kl']:.3f})")
        if args.k > 0:
            print(f"  test IWAE bound k={args.k:<5} {bound:10.3f} nats  (NLL {-bound:.3f})")
        print(f"  active units         {result['active_units']} of {result['latent_dim']}")
    return 0


def cmd_datasets(args) -> int:
    from .data import list_datasets

    for ds in list_datasets():
        mark = "yes" if ds.available else "no "
        print(f"{mark}  {ds.name:<16} {ds.description}")
        if ds.detail:
            print(f"     {'':<16} {ds.detail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_core", description="Latent Explorer's VAE engine")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_train = sub.add_parser("train", help="train a VAE into a run directory")
    _add_train_flags(p_train)
    p_eval = sub.add_parser("eval", help="evaluate a run's best (or latest) snapshot on its test set")
    p_eval.add_argument("run", help="run directory, or a run name under runs/")
    p_eval.add_argument("--k", type=int, default=1000, help="importance samples for the IWAE bound (0 to skip)")
    p_eval.add_argument("--limit", type=int, default=0, help="evaluate only the first N test images")
    p_eval.add_argument("--device", default="auto")
    p_eval.add_argument("--snapshot", choices=("best", "latest"), default="best",
                        help="best (default): the weights with the best validation ELBO, or the latest weights "
                             "while the run has no best snapshot; latest: the newest weights")
    p_eval.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("datasets", help="list datasets and whether each is available here")
    p_sweep = sub.add_parser("sweep", help="train several prepared run directories one after another")
    p_sweep.add_argument("--run-dirs", nargs="+", required=True, help="run directories with a config.json each")
    args = parser.parse_args(argv)
    from .data import DatasetError

    try:
        return {"train": cmd_train, "eval": cmd_eval, "datasets": cmd_datasets, "sweep": cmd_sweep}[args.cmd](args)
    except (ConfigError, DatasetError, rd.RunError, RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
