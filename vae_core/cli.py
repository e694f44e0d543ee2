"""Command line: ``python -m vae_core {train,eval,datasets,sweep,import-model}``.

``train`` and ``sweep`` only parse flags and call ``trainer.train`` / ``sweeps.run``, the
entry points the app's RunManager starts in a subprocess. Errors print one clear line and
exit 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .engine.config import TEXT_FAMILIES, ConfigError, RunConfig, TrainConfig
from .progress import Progress, format_seconds
from .runs import rundir as rd

if TYPE_CHECKING:
    from .data import Dataset


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", help="run directory (default runs/<dataset>-<body>-z<D>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last snapshot")
    p.add_argument("--dataset", help="dataset spec: mnist, digits, fashion-mnist, shapes, shapes:64, idx:DIR, folder:PATH; "
                                     "text: 20newsgroups, text:DIR (one .txt per document), text:FILE.jsonl|.csv")
    p.add_argument("--model", choices=("vae", "prodlda", "lda"),
                   help="vae (images; the default), prodlda (a topic-model VAE; the default on text) or lda "
                        "(classical LDA by online variational Bayes)")
    p.add_argument("--topics", type=int, help="topic models: K, the number of topics (default 20)")
    p.add_argument("--alpha", type=float, help="topic models: the Dirichlet prior's concentration on topic "
                                               "proportions (ProdLDA default 1; LDA default 1/K)")
    p.add_argument("--vocab-size", type=int, help="topic models: the most frequent words kept (default 2000)")
    p.add_argument("--dropout", type=float, help="ProdLDA: dropout on the encoder and on theta (default 0.2)")
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
    p.add_argument("--lr", type=float, help="peak learning rate (default: chosen from the data and the body, "
                                           "5e-3 for the MLP, 1e-3 for conv; see vae_core/engine/recipe.py)")
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
                   help="after this many epochs without a better validation ELBO, anneal the learning rate to 0 "
                        "over twice as many epochs and stop (default 5; 0: train every planned epoch)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files under <run-dir>/tensorboard (scalars and the test set's "
                        "codes for the Embedding Projector); needs pip install latent-explorer[tensorboard]")
    p.add_argument("--data-placement", choices=("auto", "device", "stream"),
                   help="auto (default): the training images stay on the training device when they fit, else "
                        "batches stream from the dataset cache; device or stream forces one")
    p.add_argument("--nproc", type=int,
                   help="training processes on this machine (DDP under torchrun: gloo on CPU, one GPU each on "
                        "CUDA); batch size and learning rate stay the global ones. With --resume it overrides "
                        "the run's own number")


_MODEL_FLAGS = {"body": "body", "latent_dim": "latent_dim", "hidden": "hidden", "likelihood": "likelihood",
                "decoder_sigma": "decoder_sigma", "topics": "topics", "alpha": "alpha", "vocab_size": "vocab_size",
                "dropout": "dropout"}
_FAMILY_OF_MODEL = {"vae": "image_vae", "prodlda": "prodlda", "lda": "lda"}
_TRAIN_FLAGS = ("beta", "objective", "samples", "kl_estimator", "epochs", "batch_size", "lr", "lr_schedule",
                "warmup_steps", "seed", "device",
                "num_threads", "max_steps", "data_placement", "nproc", "validation_fraction", "patience", "tensorboard")


# The dataset-decode progress (a bar on a terminal, otherwise a line every few seconds with the time left).
_BuildProgress = Progress


def _config_from_flags(args) -> tuple[RunConfig, Dataset]:
    """The run's config from the flags, and its dataset (loaded, with a progress bar on a first
    decode, to read the image shape; the trainer then uses it rather than looking it up again)."""
    from .data import load_dataset
    from .runs.manager import new_run_config

    from .data.text import is_text_spec, load_text_dataset

    model = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    train = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    dataset = args.dataset or "mnist"
    family = _FAMILY_OF_MODEL[args.model] if args.model else ("prodlda" if is_text_spec(dataset) else "image_vae")
    if family in TEXT_FAMILIES:
        if not is_text_spec(dataset):
            raise ConfigError(f"--model {args.model} models text: use --dataset 20newsgroups or text:PATH")
        data = load_text_dataset(dataset, vocab_size=model.get("vocab_size", 2000), seed=train.get("seed", 0))
        return new_run_config(dataset, model=model, train=train, data=data, family=family), data
    if is_text_spec(dataset):
        raise ConfigError(f"{dataset} is text: train a topic model on it (--model prodlda or --model lda)")
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
    flags_given = any(getattr(args, k) is not None for k in (*_MODEL_FLAGS, *_TRAIN_FLAGS, "dataset", "model"))
    if follower and flags_given and not args.resume:
        # Rank > 0 of a run started by torchrun with flags: rank 0 may already have written the
        # config; build the same one from the same flags (it never writes).
        config, data = _config_from_flags(args)
        run_dir = Path(args.run_dir) if args.run_dir else Path(".")
    elif args.run_dir and (Path(args.run_dir) / rd.CONFIG).exists():
        only_nproc = args.nproc is not None and not any(
            getattr(args, k) is not None for k in (*_MODEL_FLAGS, *_TRAIN_FLAGS, "dataset", "model") if k != "nproc")
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
            if "loss" in rec:
                bar.set_postfix(loss=f"{rec['loss']:.2f}", kl=f"{rec['kl']:.2f}", rate=f"{rec['samples_per_s']:.0f}/s")
            else:  # LDA: the bound of the last mini-batch
                bar.set_postfix(bound=f"{rec['elbo']:.1f}", rate=f"{rec['samples_per_s']:.0f}/s")
        elif rec["kind"] == "epoch":
            val = f", validation ELBO {rec['val_elbo']:.2f}" if "val_elbo" in rec else ""
            ppl = f", perplexity {rec['test_perplexity']:.0f}" if "test_perplexity" in rec else ""
            bar.write(f"epoch {rec['epoch']}: test ELBO {rec['test_elbo']:.2f} nats{ppl}{val}")
        elif rec["kind"] == "cooldown":
            bar.write(f"no better validation ELBO since epoch {rec['best_epoch']}: annealing the learning rate to 0 "
                      f"over {rec['patience']} epochs, then stopping")
        elif rec["kind"] == "early_stop":
            bar.write(f"stopped early after epoch {rec['epoch']}; the best snapshot is epoch {rec['best_epoch']}'s")

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

    from .data import load_dataset
    from .engine.device import pick_device
    from .engine.evaluate import evaluate_elbo, posterior_stats

    run_dir = _resolve_run(args.run)
    device = pick_device(args.device)
    snap = rd.load_snapshot(run_dir, device=str(device), which=args.snapshot)
    if args.exact:
        from .labs.exact import NeedsLowDimension, check_dim

        try:
            check_dim(snap.model)
        except NeedsLowDimension as e:
            print(f"error: --exact on {run_dir.name}: {e}", file=sys.stderr)
            return 2
        args.k = 0 if args.k is None else args.k  # the exact value stands in for the IWAE bound unless --k asks
    if snap.config.is_text:
        return _eval_topics(run_dir, snap, args)
    tc = snap.config.train
    with Progress(f"decoding {tc.dataset}") as decoding:
        data = load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed,
                            progress=decoding)
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
        if args.exact:
            _eval_exact(snap.model, x, result)
        iwae = _eval_iwae(snap.model, x, args, result)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        which = (f"best snapshot (validation ELBO {snap.validation_elbo:.3f})" if snap.kind == "best"
                 else "latest snapshot")
        print(f"run {run_dir.name}, {which} at step {snap.step} (epoch {snap.epoch}), {len(x)} test images, {device}")
        print(f"  test ELBO            {result['test_elbo']:10.3f} nats  (log-likelihood {result['test_log_likelihood']:.3f}, KL {result['test_kl']:.3f})")
        if args.exact:
            print(f"  test log p(x) exact  {result['test_log_px_exact']:10.3f} nats  (quadrature, "
                  f"{result['exact_grid']} points per axis; ELBO by quadrature {result['test_elbo_quadrature']:.3f}, "
                  f"mean KL(q || p(z|x)) {result['test_kl_q_posterior']:.3f})"
                  + ("" if result["exact_converged"] else "  NOT CONVERGED to 0.01 nats"))
        if iwae is not None and iwae.bound is not None:
            print(f"  test IWAE bound k={iwae.k:<5} {iwae.bound:10.3f} nats  (NLL {-iwae.bound:.3f})"
                  + (f"  PARTIAL: {_iwae_partial_note(iwae)}" if iwae.partial else ""))
        elif iwae is not None:
            print(f"  test IWAE bound k={iwae.k:<5} none: {_iwae_partial_note(iwae)}")
        print(f"  active units         {result['active_units']} of {result['latent_dim']}")
    return 130 if iwae is not None and iwae.stopped == "interrupted" else 0


def _eval_topics(run_dir: Path, snap, args) -> int:
    """``eval`` of a topic model: NPMI, diversity, perplexity (naming its bound) and the topics."""
    from .labs.topics import iwae_perplexity, topic_report
    from .runs.run_data import load_run_data

    if args.exact:
        print(f"error: --exact on {run_dir.name}: the exact posterior is for VAEs with a 1-D or 2-D latent space; "
              "this is a topic model", file=sys.stderr)
        return 2
    data = load_run_data(snap.config, run_dir)
    x = data.x_test.subset(slice(0, args.limit)) if args.limit else data.x_test
    report = topic_report(snap.model, data.vocab, x)
    result = {"run": str(run_dir), "family": snap.config.family, "snapshot": snap.kind, "step": snap.step,
              "epoch": snap.epoch, "n_test": len(x), "topics_k": snap.config.model.topics,
              "vocab_size": snap.config.model.vocab_size, **report.record()}
    if args.k and snap.config.family == "prodlda":
        result[f"perplexity_iwae_k{args.k}"] = iwae_perplexity(snap.model, x, k=args.k)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"run {run_dir.name} ({snap.config.model.label()}), step {snap.step}, {len(x)} test documents")
    print(f"  NPMI (top {len(report.top_words[0])} words)  {report.npmi:8.4f}")
    print(f"  topic diversity       {report.diversity:8.3f}")
    print(f"  perplexity            {report.perplexity:8.1f}  ({report.perplexity_bound})")
    for key, value in result.items():
        if key.startswith("perplexity_iwae"):
            print(f"  perplexity, IWAE k={args.k} {value:8.1f}")
    for k, (words, score) in enumerate(zip(report.top_words, report.npmi_per_topic)):
        print(f"  topic {k + 1:2d}  {score:+.3f}  {' '.join(words)}")
    return 0


def _eval_exact(model, x, result: dict) -> None:
    """The --exact stage of ``eval``: quadrature log p(x) per test image, with progress on stderr."""
    from .labs.exact import exact_test_set

    with Progress("exact log p(x)", unit="test images") as progress:
        progress.start(len(x))
        ex = exact_test_set(model, x, progress=progress)
    result.update(test_log_px_exact=float(ex.log_px.mean()), exact_grid=ex.points_per_axis,
                  test_elbo_quadrature=float(ex.elbo.mean()), test_kl_q_posterior=float(ex.kl_q_posterior.mean()),
                  exact_converged=bool(ex.converged), exact_seconds=round(ex.seconds, 2))


def _iwae_partial_note(iwae) -> str:
    why = {"max_seconds": "stopped at --max-seconds", "budget": "stopped at --budget-s",
           "interrupted": "interrupted"}.get(iwae.stopped, "stopped")
    return f"over {iwae.images:,} of {iwae.total:,} test images ({why})"


def _eval_iwae(model, x, args, result: dict):
    """The IWAE stage of ``eval``: k chosen for --budget-s unless given, progress on stderr, and a
    partial bound (flagged) at --max-seconds or Ctrl-C. Fills ``result``; returns the IwaeResult,
    or None when skipped (--k 0)."""
    import dataclasses

    from .engine.evaluate import (
        IwaeResult,
        choose_iwae_k,
        evaluate_iwae_result,
        probe_iwae_cost,
    )

    k, max_seconds, held_to_budget = args.k, args.max_seconds, False
    if k == 0 or len(x) == 0:
        return None
    if k is None:  # auto
        try:
            cost = probe_iwae_cost(model, x)
        except KeyboardInterrupt:  # Ctrl-C while timing the probe: no bound at all, said so
            res = IwaeResult(k=0, bound=None, images=0, total=len(x), seconds=0.0, stopped="interrupted")
            result.update(iwae_images=0, iwae_partial=True, iwae_stopped="interrupted")
            return res
        k, estimate, fits = choose_iwae_k(cost, len(x), args.budget_s)
        about = f"{estimate:.2g} s" if estimate < 10 else format_seconds(estimate)
        result.update(iwae_k_auto=True, iwae_budget_s=args.budget_s, iwae_estimate_s=round(estimate, 3))
        if fits:
            print(f"IWAE: k={k}, the largest that fits --budget-s {args.budget_s:g} (estimated {about} for "
                  f"{len(x):,} test images here; --k overrides)", file=sys.stderr)
        else:
            held_to_budget = max_seconds is None or args.budget_s < max_seconds
            max_seconds = args.budget_s if held_to_budget else max_seconds
            print(f"IWAE: k={k}, the smallest on the ladder, is estimated at {about} for "
                  f"{len(x):,} test images, over --budget-s {args.budget_s:g}: it stops at the budget with a "
                  f"partial bound (--k overrides)", file=sys.stderr)
    with Progress(f"IWAE k={k}", unit="test images") as progress:
        progress.start(len(x))
        res = evaluate_iwae_result(model, x, k, progress=progress, max_seconds=max_seconds, interruptible=True,
                                   progress_within_batch=True)
        if res.stopped == "max_seconds" and held_to_budget:
            res = dataclasses.replace(res, stopped="budget")
        if res.partial:
            progress.write(f"IWAE k={k}: stopped early, bound {_iwae_partial_note(res)}")
    result[f"test_iwae_k{k}"] = res.bound
    result.update(iwae_seconds=round(res.seconds, 2), iwae_k=k, iwae_images=res.images, iwae_partial=res.partial)
    if res.partial:
        result["iwae_stopped"] = res.stopped
    return res


def _k_or_auto(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    try:
        k = int(value)
    except ValueError:
        k = -1
    if k < 0:
        raise argparse.ArgumentTypeError("k must be 0 (skip), a positive number or auto")
    return k


def _pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0,1 or -1,1, got {text!r}") from None
    return lo, hi


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W like 1,28,28, got {text!r}") from None
    return c, h, w


def _sigma(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'learned', got {text!r}") from None


def cmd_import_model(args) -> int:
    from .engine.external import ExternalModelError
    from .runs.importer import import_model
    from .runs.manager import default_runs_dir

    if args.likelihood == "gaussian" and args.sigma is _UNSET:
        print("error: a Gaussian likelihood needs --sigma VALUE (fixed, in the model's value range) or "
              "--sigma learned (log sigma read from the module's parameter --sigma-param)", file=sys.stderr)
        return 2
    sigma = None if args.sigma is _UNSET else args.sigma
    name = args.name or args.factory.split(":")[0].rsplit(".", 1)[-1].replace("_", "-")
    runs_root = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    try:
        with Progress(f"decoding {args.dataset}") as decoding:
            result = import_model(
                factory=args.factory, weights=Path(args.weights) if args.weights else None, dataset=args.dataset,
                name=name, runs_root=runs_root, likelihood=args.likelihood, value_range=args.value_range,
                input_shape=args.input_shape, sigma=sigma, sigma_param=args.sigma_param,
                python_path=str(Path(args.path).resolve()), seed=args.seed,
                say=lambda line: print(line, file=sys.stderr), progress=decoding)
    except ExternalModelError as e:
        print(f"error: the model does not fit Latent Explorer's protocol: {e}", file=sys.stderr)
        return 2
    cfg = result.config.model
    print(f"imported {cfg.factory} as run {result.run_dir.name} ({result.run_dir})")
    print(f"  {cfg.latent_dim} latent dims, input {','.join(map(str, cfg.input_shape))} in "
          f"[{cfg.value_range[0]:g}, {cfg.value_range[1]:g}], {cfg.likelihood} likelihood"
          + ("" if cfg.likelihood == "bernoulli" else f", sigma {'learned' if cfg.sigma is None else cfg.sigma}"))
    print(f"  test ELBO {result.test_elbo:.3f} nats per image over {result.n_test:,} test images "
          "(in the model's own value range)")
    print("  explore it: streamlit run app.py, then pick the run in the sidebar")
    return 0


_UNSET = object()


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
    p_eval.add_argument("--k", type=_k_or_auto, default=None, metavar="K|auto",
                        help="importance samples for the IWAE bound; 0 skips it. Default auto: the largest k of "
                             "5000, 2000, 1000, 500, 200, 100, 50, 20, 10 whose time, estimated by a short timed "
                             "probe, fits --budget-s. An explicit --k overrides the budget")
    p_eval.add_argument("--budget-s", type=float, default=60.0, metavar="S",
                        help="seconds the IWAE stage may take when --k is auto (default 60); when even k=10 is "
                             "estimated over it, k=10 runs and stops at the budget with a partial bound")
    p_eval.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="stop the IWAE stage after about S seconds and report the bound over the test images "
                             "done so far, flagged partial (Ctrl-C does the same)")
    p_eval.add_argument("--limit", type=int, default=0, help="evaluate only the first N test images")
    p_eval.add_argument("--device", default="auto")
    p_eval.add_argument("--snapshot", choices=("best", "latest"), default="best",
                        help="best (default): the weights with the best validation ELBO, or the latest weights "
                             "while the run has no best snapshot; latest: the newest weights")
    p_eval.add_argument("--exact", action="store_true",
                        help="for a run with a 1-D or 2-D latent space: log p(x) of each test image by quadrature "
                             "on an adaptive grid (to 0.01 nats), beside the ELBO; the IWAE bound then runs only "
                             "when --k is given")
    p_eval.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("datasets", help="list datasets and whether each is available here")
    p_imp = sub.add_parser("import-model", help="make a run from a VAE trained elsewhere (your factory and weights)",
                           description="Import a VAE trained elsewhere. The factory is called with no arguments and "
                                       "must return a torch.nn.Module with encode(x) -> (mu, logvar) and decode(z); "
                                       "the model is checked on a real batch of --dataset before the run is written.")
    p_imp.add_argument("--factory", required=True, metavar="PKG.MODULE:FUNCTION",
                       help="importable function returning your nn.Module, e.g. examples.own_vae.model:load")
    p_imp.add_argument("--weights", metavar="FILE",
                       help="weights: a .safetensors file (copied) or a state-dict .pt/.pth (read by torch's "
                            "weights-only loader, never unpickled); without it the module's own weights are kept")
    p_imp.add_argument("--dataset", required=True, help="dataset spec whose test set the model is explored on")
    p_imp.add_argument("--likelihood", required=True, choices=("bernoulli", "gaussian"),
                       help="bernoulli: decode returns logits; gaussian: decode returns the mean")
    p_imp.add_argument("--sigma", type=_sigma, default=_UNSET, metavar="VALUE|learned",
                       help="the Gaussian decoder's sigma in the model's value range, or 'learned' to read "
                            "log sigma from the module's parameter --sigma-param")
    p_imp.add_argument("--sigma-param", default="log_sigma", help="the parameter holding log sigma (default log_sigma)")
    p_imp.add_argument("--value-range", type=_pair, default=(0.0, 1.0), metavar="LO,HI",
                       help="the range the model's inputs live in: 0,1 (default) or -1,1 (write --value-range=-1,1)")
    p_imp.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                       help="the model's input shape (default: the dataset's image shape)")
    p_imp.add_argument("--name", help="run name (default: the factory's module name)")
    p_imp.add_argument("--path", default=".", help="folder the factory's package is imported from (default: here)")
    p_imp.add_argument("--runs-dir", help="folder of runs (default $LATENT_EXPLORER_RUNS or ./runs)")
    p_imp.add_argument("--seed", type=int, default=0, help="the dataset's train/test split seed, where it has none")
    p_sweep = sub.add_parser("sweep", help="train several prepared run directories one after another")
    p_sweep.add_argument("--run-dirs", nargs="+", required=True, help="run directories with a config.json each")
    args = parser.parse_args(argv)
    from .data import DatasetError

    try:
        return {"train": cmd_train, "eval": cmd_eval, "datasets": cmd_datasets, "sweep": cmd_sweep,
                "import-model": cmd_import_model}[args.cmd](args)
    except (ConfigError, DatasetError, rd.RunError, RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
