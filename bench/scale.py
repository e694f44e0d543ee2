"""The cost curve of dataset size: cache build, start-up, memory and speed of the trainer, and
the first visit to the explorer pages, for folders of N synthetic 64x64 RGB faces.

    python bench/make_faces.py --n 200000 --out bench/out/faces-200k     # once, ~4 min
    python bench/scale.py --sizes 5000 20000 60000 200000

For each N it uses the folder ``bench/out/faces-<N>`` (made from the first N images of the
200k set, by hard links, when missing), a fresh dataset cache, and runs the real CLI:

1. ``python -m vae_core train --dataset folder:<dir> --image-size 64 --channels 3 --body conv
   --max-steps S`` with an empty cache: the cold start (decoding every image into the cache);
2. the same again with the cache in place: time from launch to the first training step (the
   worker's status turning "running"), peak resident memory of the worker (VmHWM, sampled),
   and samples/s (median of the worker's logged rates after the first window);
3. the app on that run: the first visit to Latent space and to Encode in Chromium, each on a
   fresh server, from the click to the page's snapshot caption.

Not a test: the figures go in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401
from _env import ROOT, machine, save

OUT = ROOT / "bench" / "out"


def subset_folder(n: int, source: Path) -> Path:
    """bench/out/faces-<n>: the first n images of ``source`` as hard links (no copies)."""
    dest = OUT / f"faces-{n // 1000}k"
    if dest.resolve() == source.resolve() or (dest.exists() and sum(1 for _ in dest.rglob("*.png")) == n):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    files = sorted(source.rglob("*.png"))[:n]
    if len(files) < n:
        raise SystemExit(f"{source} has {len(files)} images; make more with bench/make_faces.py")
    for f in files:
        (dest / f.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(f, dest / f.parent.name / f.name)
    return dest


def hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_cli(folder: Path, run_dir: Path, cache: Path, steps: int, threads: int, device: str = "cpu") -> dict:
    """One CLI training run; returns launch-to-first-step seconds, peak RSS, samples/s, wall."""
    env = {**os.environ, "LATENT_EXPLORER_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env.pop("LATENT_EXPLORER_SHARE_CPU", None)
    cmd = [sys.executable, "-m", "vae_core", "train", "--dataset", f"folder:{folder}", "--image-size", "64",
           "--channels", "3", "--body", "conv", "--latent-dim", "32", "--epochs", "1", "--max-steps", str(steps),
           "--num-threads", str(threads), "--device", device, "--run-dir", str(run_dir)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_step, peak = None, 0.0
    while proc.poll() is None:
        peak = max(peak, hwm_mb(proc.pid) or 0.0)
        if first_step is None:
            st = _json(run_dir / "status.json")
            if st and st.get("state") == "running":
                first_step = st["heartbeat"] - t0
        time.sleep(0.2)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    st = _json(run_dir / "status.json") or {}
    rates = [r["samples_per_s"] for r in _metrics(run_dir) if r.get("kind") == "step"][1:]
    return {"first_step_s": first_step, "peak_rss_mb": peak, "samples_per_s": statistics.median(rates) if rates else None,
            "wall_s": wall, "placement": st.get("data_placement"), "data_mb": st.get("data_mb")}


def first_visits(runs: Path, run: str) -> dict:
    """Seconds from a sidebar click to Latent space's and Encode's content, each on a fresh server."""
    from playwright.sync_api import sync_playwright

    from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer

    out = {}
    for title in ("Latent space", "Encode your image"):
        server = StreamlitServer(runs, OUT / "scale-server.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{server.url}/?run={run}")
                page.get_by_text(re.compile(r"Reconstructions at step")).first.wait_for(timeout=600_000)
                page.wait_for_timeout(2000)
                t0 = time.perf_counter()
                page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                page.get_by_role("heading", name=title, exact=True, level=1).wait_for(timeout=600_000)
                page.get_by_text("snapshot at step").first.wait_for(timeout=600_000)
                out[title] = time.perf_counter() - t0
                browser.close()
        finally:
            server.close()
    return out


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics(run_dir: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 60000, 200000])
    ap.add_argument("--source", default=str(OUT / "faces-200k"))
    ap.add_argument("--steps", type=int, default=150, help="training steps per run (batch 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", help="the training device: cpu, cuda, cuda:N")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each N's cache and runs (bench/out/scale-<N>-*)")
    ap.add_argument("--name", default="scale")
    ap.add_argument("--pair-repeats", type=int, default=3,
                    help="cached runs of the smallest set that fits in memory and of the largest, alternated, "
                         "for the samples/s ratio (0 skips)")
    args = ap.parse_args(argv)
    info = machine(__import__("torch").device(args.device))
    rows, kept = {}, {}
    for n in args.sizes:
        folder = subset_folder(n, Path(args.source))
        work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=OUT))
        cache, runs = work / "cache", work / "runs"
        print(f"N = {n:,}: cold (building the cache) …", flush=True)
        cold = run_cli(folder, runs / "cold", cache, args.steps, args.threads, args.device)
        print(f"  {cold}", flush=True)
        print(f"N = {n:,}: cached …", flush=True)
        warm = run_cli(folder, runs / "faces", cache, args.steps, args.threads, args.device)
        print(f"  {warm}", flush=True)
        visits = {} if args.no_browser else first_visits(runs, "faces")
        print(f"  first visits: {visits}", flush=True)
        rows[n] = {"cold": cold, "cached": warm, "first_visit_s": visits}
        kept[n] = (folder, work)
    pair = {}
    resident = [n for n in rows if rows[n]["cached"]["placement"] == "device"]
    if args.pair_repeats and resident and max(rows) not in resident:
        small, large = max(resident), max(rows)  # the largest set that fits, the largest of all
        for r in range(args.pair_repeats):  # alternated, so drift in the machine's load hits both alike
            for n in (small, large):
                folder, work = kept[n]
                res = run_cli(folder, work / "runs" / f"pair-{r}", work / "cache", args.steps, args.threads, args.device)
                pair.setdefault(n, []).append(res["samples_per_s"])
                print(f"  pair {r}: N = {n:,} {res['placement']}: {res['samples_per_s']:.0f} samples/s", flush=True)
        ratios = [b / a for a, b in zip(pair[small], pair[large])]
        pair = {"small": small, "large": large, "small_samples_per_s": pair[small],
                "large_samples_per_s": pair[large], "ratios": ratios, "median_ratio": statistics.median(ratios)}
    for _, work in kept.values():
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    lines = [f"Device: {args.device} — {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} thread(s); "
             f"conv VAE (z = 32), 64x64 RGB, batch 64, {args.steps} steps per run.", "",
             "| N | cache build + first step, cold (s) | first step, cached (s) | peak RSS, cached (MB) | data | "
             "samples/s | first visit: Latent space / Encode (s) |", "|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        c, w, v = r["cold"], r["cached"], r["first_visit_s"]
        vis = " / ".join(f"{v[t]:.1f}" for t in ("Latent space", "Encode your image")) if v else "–"
        data = f"{w['data_mb']:.0f} MB, {w['placement']}" if w.get("data_mb") is not None else "float32, in memory"
        lines.append(f"| {n:,} | {c['first_step_s']:.1f} | {w['first_step_s']:.1f} | {w['peak_rss_mb']:.0f} | "
                     f"{data} | {w['samples_per_s']:.0f} | {vis} |")
    if pair:
        lines += ["", f"Streamed vs resident, cached runs alternated {args.pair_repeats}×: N = {pair['large']:,} "
                  f"(streamed) / N = {pair['small']:,} (in memory) samples/s = "
                  + ", ".join(f"{r:.2f}" for r in pair["ratios"]) + f"; median {pair['median_ratio']:.2f}."]
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    print(f"saved {save(args.name, {'machine': info, 'args': vars(args), 'rows': rows, 'pair': pair}, md)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
