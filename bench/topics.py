"""Topic models on 20 Newsgroups (issue 15): ProdLDA against classical LDA at K = 20 and K = 50.

  python bench/topics.py                      # K = 20 and 50, both models, the CLI's default settings
  python bench/topics.py --topics 20 --epochs 30

Each model trains as a user would train it, ``python -m vae_core train --dataset 20newsgroups
--model prodlda|lda --topics K`` in its own process, timed from start to exit (corpus loading
included; the vectorised corpus is cached by a first, untimed load). Then ``python -m vae_core
eval RUN --json`` on the 7,249 test posts with a vocabulary word gives:

- mean NPMI of each topic's top 10 words by test-document co-occurrence (and its spread over topics);
- topic diversity, the unique share of every topic's top 25 words;
- perplexity per word: for ProdLDA from the ELBO (20 samples per document) and the IWAE bound
  (k = 100); for LDA scikit-learn's variational bound. Each is an upper bound on the true one.

Goal (the issue): ProdLDA's mean NPMI above LDA's at both K, and a default ProdLDA run under 3
minutes on the 2-core CPU. Run it on an idle machine: wall times are the point.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401
from _env import ROOT, machine, save


def run(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t, out.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topics", type=int, nargs="+", default=[20, 50])
    p.add_argument("--models", nargs="+", default=["prodlda", "lda"], choices=["prodlda", "lda"])
    p.add_argument("--epochs", type=int, help="override the default epochs (both models)")
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument("--keep", help="folder to keep the runs in (default: a temporary one)")
    args = p.parse_args()

    import torch

    from vae_core.data.text import load_text_dataset

    load_text_dataset("20newsgroups")  # fill the vectorised cache: the timed runs all start equal
    env = machine(torch.device("cpu"))
    root = Path(args.keep or tempfile.mkdtemp(prefix="topics-bench-"))
    rows = []
    py = sys.executable
    for k in args.topics:
        for model in args.models:
            run_dir = root / f"{model}-k{k}"
            cmd = [py, "-m", "vae_core", "train", "--dataset", "20newsgroups", "--model", model, "--topics", str(k),
                   "--run-dir", str(run_dir)] + (["--epochs", str(args.epochs)] if args.epochs else [])
            wall, _ = run(cmd)
            eval_cmd = [py, "-m", "vae_core", "eval", str(run_dir), "--json"]
            if model == "prodlda":
                eval_cmd += ["--k", str(args.iwae_k)]
            _, out = run(eval_cmd)
            r = json.loads(out)
            per_topic = r["npmi_per_topic"]
            row = {"model": model, "topics": k, "wall_s": wall, "epochs": r["epoch"], "npmi": r["npmi"],
                   "npmi_min": min(per_topic), "npmi_max": max(per_topic), "diversity": r["diversity"],
                   "perplexity": r["perplexity"], "perplexity_bound": r["perplexity_bound"],
                   "perplexity_iwae": r.get(f"perplexity_iwae_k{args.iwae_k}"), "topics_words": r["topics"],
                   "command": " ".join(cmd[1:])}
            rows.append(row)
            print(f"K={k} {model}: NPMI {row['npmi']:.4f}, diversity {row['diversity']:.3f}, perplexity "
                  f"{row['perplexity']:.0f}, {wall:.0f} s", flush=True)

    lines = [f"Machine: {env['cpu']}, {env['cores']} cores, torch {env['torch']}; load average at start "
             f"{', '.join(f'{v:.1f}' for v in env['loadavg_start'])}, at end "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.", "",
             "| K | model | epochs | mean NPMI (min … max) | diversity | perplexity (bound) | wall time |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ppl = f"{r['perplexity']:.0f} (ELBO)" if r["model"] == "prodlda" else f"{r['perplexity']:.0f} (LDA's VB bound)"
        if r["perplexity_iwae"]:
            ppl += f", {r['perplexity_iwae']:.0f} (IWAE k={args.iwae_k})"
        lines.append(f"| {r['topics']} | {r['model']} | {r['epochs']} | {r['npmi']:.3f} ({r['npmi_min']:.2f} … "
                     f"{r['npmi_max']:.2f}) | {r['diversity']:.3f} | {ppl} | {r['wall_s']:.0f} s |")
    for k in args.topics:
        got = {r["model"]: r for r in rows if r["topics"] == k}
        if {"prodlda", "lda"} <= set(got):
            lines.append("")
            lines.append(f"K = {k}: ProdLDA's mean NPMI is {got['prodlda']['npmi'] - got['lda']['npmi']:+.3f} against "
                         "LDA's.")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    save("topics", {"machine": env, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
