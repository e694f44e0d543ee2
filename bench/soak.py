"""Soak: drive the app for a long session while a run trains, and watch memory.

    python bench/soak.py --minutes 30 [--warmup 5] [--out bench/out/soak.json]

A real `streamlit run app.py` and Chromium (Playwright) cycle through page switches,
live-slider drags and image uploads, while a worker trains MNIST in the background. Every
`--every` seconds it records the resident memory (VmRSS from /proc) of the server and of the
worker. Growth is measured from the end of the warm-up to the end: the target is < 10 %.
Not a test: the figures go in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402
from vae_core.runs import rundir as rd  # noqa: E402
from vae_core.runs.manager import RunManager, new_run_config  # noqa: E402
from vae_core.runs.trainer import train  # noqa: E402

OUT = ROOT / "bench" / "out"
PAGES = ["", "reconstructions", "latent_space", "sample", "traverse", "encode"]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def upload_file(i: int) -> Path:
    rng = np.random.default_rng(i)
    img = Image.new("RGB", (320, 240), (235, 232, 225))
    d = ImageDraw.Draw(img)
    d.line([tuple(int(v) for v in p) for p in rng.integers(60, 200, size=(4, 2))], fill=(30, 30, 40), width=14)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    path = OUT / f"soak-upload-{i % 5}.jpg"
    path.write_bytes(buf.getvalue())
    return path


def one_round(page, url: str, i: int) -> None:
    name = PAGES[i % len(PAGES)]
    page.goto(f"{url}/{name}?run=explore")
    page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
    page.wait_for_timeout(1500)
    if name == "traverse":
        slider = page.locator(".le-root input[type=range]").first
        slider.wait_for(timeout=60_000)
        box = slider.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        page.mouse.down()
        for k in range(30):
            page.mouse.move(box["x"] + box["width"] * (0.1 + 0.8 * k / 30), y)
        page.mouse.up()
        page.wait_for_timeout(1000)
    elif name == "encode":
        page.locator("input[type=file]").first.set_input_files(str(upload_file(i)))
        page.get_by_text("Decoder mean at").first.wait_for(timeout=60_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5, help="minutes excluded from the growth figure")
    ap.add_argument("--every", type=float, default=15, help="seconds between memory samples")
    ap.add_argument("--out", default=str(OUT / "soak.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    runs = OUT / "soak-runs"
    runs.mkdir(parents=True, exist_ok=True)
    if rd.read_status(runs / "explore").state != "finished":
        train(new_run_config("mnist", model={"latent_dim": 16}, train={"epochs": 10}), runs / "explore")
    server = StreamlitServer(runs, OUT / "soak-server.log")
    m = RunManager(runs)
    busy = m.start(new_run_config("mnist", model={"latent_dim": 16}, train={"epochs": 100_000}),
                   name=f"busy-{int(time.time())}").name
    samples, rounds, errors = [], 0, []
    t_start = time.time()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            next_sample = 0.0
            while (elapsed := time.time() - t_start) < args.minutes * 60:
                if elapsed >= next_sample:
                    worker = m.status(busy).pid
                    samples.append({"t_s": round(elapsed, 1), "server_mb": rss_mb(server.proc.pid),
                                    "worker_mb": rss_mb(worker) if worker else None, "rounds": rounds})
                    print(samples[-1], flush=True)
                    next_sample += args.every
                try:
                    one_round(page, server.url, rounds)
                except Exception as e:  # record and go on: a soak measures memory, not one timeout
                    errors.append(f"round {rounds}: {type(e).__name__}: {str(e)[:200]}")
                if page.locator("[data-testid='stException']").count():
                    errors.append(f"round {rounds}: the page shows an exception")
                rounds += 1
            browser.close()
    finally:
        m.stop(busy, wait=10)
        server.close()
        import shutil

        shutil.rmtree(runs / busy, ignore_errors=True)

    def growth(key: str) -> float | None:
        after = [s[key] for s in samples if s["t_s"] >= args.warmup * 60 and s[key]]
        if len(after) < 2:
            return None
        return (after[-1] - after[0]) / after[0]

    result = {"minutes": args.minutes, "warmup_minutes": args.warmup, "rounds": rounds, "errors": errors,
              "server_growth": growth("server_mb"), "worker_growth": growth("worker_mb"), "samples": samples,
              "command": " ".join(["python"] + sys.argv), "cpus": os.cpu_count()}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
