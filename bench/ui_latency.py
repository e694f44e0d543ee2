"""UI latency in a real browser: the numbers a user feels.

    python bench/ui_latency.py [--repeats 10] [--out bench/out/ui_latency.json]

Drives Debian's Chromium (Playwright) against `streamlit run app.py` and reports median and
p95 of:
  (a) slider release -> the page agrees: live widget release -> server caption updated, and
      the fallback Streamlit slider (keyboard step) -> new image;
  (b) page switch (sidebar click) -> content visible;
  (c) upload -> reconstruction visible;
  (d) image updates per second while dragging a live slider (and the browser's decode time),
      for the default MLP and a conv model;
each idle and while a run trains on the same machine. Not a test: figures go in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402
from vae_core.runs import rundir as rd  # noqa: E402
from vae_core.runs.manager import RunManager, new_run_config  # noqa: E402
from vae_core.runs.trainer import train  # noqa: E402

OUT = ROOT / "bench" / "out"
MODELS = {  # the app's default MLP and a conv model, both on MNIST
    "mlp": ("mnist", {"body": "mlp", "latent_dim": 16}, {"epochs": 10}),
    "conv": ("mnist", {"body": "conv", "latent_dim": 16}, {"epochs": 3}),
}


def ensure_runs(runs: Path) -> None:
    for name, (ds, model, tr) in MODELS.items():
        if rd.read_status(runs / name).state != "finished":
            print(f"training {name} …", flush=True)
            train(new_run_config(ds, model=model, train=tr), runs / name)


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median": statistics.median(xs), "p95": xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))],
            "min": xs[0], "max": xs[-1]}


def digit_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("L", (200, 200), 0)
    d = ImageDraw.Draw(img)
    pts = [(int(x), int(y)) for x, y in rng.integers(40, 160, size=(4, 2))]
    d.line(pts, fill=255, width=18)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def wait_idle(page, timeout=60_000):
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.match(/Running|Stop/)",
        timeout=timeout)


def open_live_slider(page, url: str):
    """Open a Traverse page and return (y, box) of its first live slider, once the page is idle."""
    page.goto(url)
    slider = page.locator(".le-root input[type=range]").first
    slider.wait_for(timeout=60_000)
    wait_idle(page)
    box = slider.bounding_box()
    return box["y"] + box["height"] / 2, box


def measure_drag(page, url: str, seconds: float = 3.0) -> dict:
    y, box = open_live_slider(page, url)
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    f0, d0 = page.evaluate("[window.__leFrames || 0, window.__leDecodeMs || 0]")
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:  # move as fast as the browser accepts events
        i += 1
        page.mouse.move(box["x"] + box["width"] * (0.1 + 0.8 * ((i % 40) / 40)), y)
    elapsed = time.perf_counter() - t0
    f1, d1 = page.evaluate("[window.__leFrames, window.__leDecodeMs]")
    page.mouse.up()
    frames = f1 - f0
    return {"updates_per_s": frames / elapsed, "moves_per_s": i / elapsed, "decode_ms_mean": (d1 - d0) / max(1, frames)}


def measure_release(page, url: str, repeats: int) -> list[float]:
    """Live widget: mouse up -> the server's caption shows the new code."""
    y, box = open_live_slider(page, url)
    caption = page.get_by_text(re.compile(r"Moved from base:"))
    out = []
    for r in range(repeats):
        before = caption.inner_text()
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * (0.15 + 0.7 * ((r * 7 % 10) / 10)), y, steps=3)
        t0 = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("(b) => { const e = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
                               ".find(c => c.innerText.startsWith('Moved from base:')); return e && e.innerText !== b }",
                               arg=before, timeout=30_000)
        out.append(time.perf_counter() - t0)
    return out


def measure_server_slider(page, url: str, repeats: int) -> list[float]:
    """Fallback Streamlit slider: a keyboard step -> the decoded image changes."""
    page.goto(url)
    wait_idle(page)
    toggle = page.get_by_text("Live drag", exact=True)
    toggle.click()
    thumb = page.locator("[data-testid='stSlider'] input[type=range]").first
    thumb.wait_for(timeout=60_000)
    wait_idle(page)
    # The decoded image is the one captioned "Decoder mean at the slider code" (the base image comes first).
    decoded = ("() => { const e = [...document.querySelectorAll(\"[data-testid='stImage']\")]"
               ".find(x => x.innerText.includes('Decoder mean')); return e ? e.querySelector('img').src : null }")
    page.wait_for_function(decoded, timeout=60_000)
    out = []
    for r in range(repeats):
        src = page.evaluate(decoded)
        thumb.focus()  # react-aria's slider: a visually hidden range input takes the keys
        t0 = time.perf_counter()
        page.keyboard.press("ArrowRight" if r % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"(s) => {{ const now = ({decoded})(); return now && now !== s }}", arg=src, timeout=30_000)
        out.append(time.perf_counter() - t0)
    toggle.click()  # leave the session's default as it was
    return out


def measure_page_switch(page, base: str, repeats: int) -> list[tuple[str, float]]:
    titles = ["Reconstructions", "Sample", "Latent space", "Traverse", "Encode your image"]
    page.goto(f"{base}/?run=mlp")
    wait_idle(page)
    # The server's start-up (the first page's imports, loading the run's dataset) is not a page
    # switch: start once the Train page has drawn its snapshot's reconstructions and a person
    # would have had a moment to look at them.
    page.get_by_text(re.compile(r"Reconstructions at step")).first.wait_for(timeout=120_000)
    page.wait_for_timeout(2000)
    out = []
    for r in range(repeats):
        title = titles[r % len(titles)]
        link = page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True)
        t0 = time.perf_counter()
        link.click()
        # The old page stays on screen until the new one draws: wait for the new page's own
        # title, then its content (the snapshot caption under that title).
        page.get_by_role("heading", name=title, exact=True, level=1).wait_for(timeout=60_000)
        page.get_by_text("snapshot at step").first.wait_for(timeout=60_000)
        out.append((title, time.perf_counter() - t0))
    return out


def measure_upload(page, url: str, repeats: int) -> list[float]:
    page.goto(url)
    wait_idle(page)
    out = []
    for r in range(repeats):
        caption = page.get_by_text(re.compile(r"Decoder mean at μ · −ELBO"))
        before = caption.inner_text() if caption.count() else ""
        path = OUT / f"upload-{r}.png"
        path.write_bytes(digit_png(r))
        t0 = time.perf_counter()
        page.locator("input[type=file]").first.set_input_files(str(path))
        page.wait_for_function("(b) => { const e = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
                               ".find(c => c.innerText.startsWith('Decoder mean at')); return e && e.innerText !== b }",
                               arg=before, timeout=60_000)
        out.append(time.perf_counter() - t0)
    return out


def _safe(name: str, fn, *args):
    """One measurement; a failure is recorded in the results instead of ending the run."""
    try:
        return fn(*args)
    except Exception as e:
        print(f"  {name} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        return None


ONLY: set[str] = set()  # --only: measure just these (names as in the results)


def run_suite(page, url: str, repeats: int) -> dict:
    res = {}
    want = lambda name: not ONLY or name in ONLY  # noqa: E731
    for model in MODELS if want("drag") else []:
        res[f"drag_{model}"] = _safe("drag", measure_drag, page, f"{url}/traverse?run={model}")
        print(f"  drag {model}: {res[f'drag_{model}']}", flush=True)
    xs = None if not want("release_live") else _safe("release_live", measure_release, page, f"{url}/traverse?run=mlp", repeats)
    res["release_live"] = stats(xs) if xs else None
    print(f"  release (live widget): {res['release_live']}", flush=True)
    xs = None if not want("release_server_slider") else _safe("release_server_slider", measure_server_slider, page, f"{url}/traverse?run=mlp", repeats)
    res["release_server_slider"] = stats(xs) if xs else None
    print(f"  release (server slider): {res['release_server_slider']}", flush=True)
    visits = None if not want("page_switch") else _safe("page_switch", measure_page_switch, page, url, repeats)
    res["page_switch"] = stats([t for _, t in visits]) if visits else None
    if visits:  # per page, in visit order: the first visit of each page is the slow one
        res["page_switch_by_page"] = {title: [round(t, 3) for ti, t in visits if ti == title] for title, _ in visits}
    print(f"  page switch: {res['page_switch']}", flush=True)
    xs = None if not want("upload") else _safe("upload", measure_upload, page, f"{url}/encode?run=mlp", repeats)
    res["upload"] = stats(xs) if xs else None
    print(f"  upload: {res['upload']}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(OUT / "ui_latency.json"))
    ap.add_argument("--only", nargs="*", default=[], help="drag, release_live, release_server_slider, page_switch, upload")
    args = ap.parse_args()
    ONLY.update(args.only)
    from playwright.sync_api import sync_playwright

    runs = OUT / "ui-runs"
    runs.mkdir(parents=True, exist_ok=True)
    ensure_runs(runs)
    server = StreamlitServer(runs, OUT / "ui-server.log")
    result = {"device": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "torch": torch.__version__, "command": " ".join(["python"] + sys.argv)}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            print("idle:", flush=True)
            result["idle"] = run_suite(page, server.url, args.repeats)
            m = RunManager(runs)
            live = m.start(new_run_config("mnist", model={"latent_dim": 16}, train={"epochs": 500}), name=f"busy-{int(time.time())}").name
            deadline = time.time() + 60
            while m.status(live).state != "running" and time.time() < deadline:
                time.sleep(0.5)
            print("while training:", flush=True)
            try:
                result["training"] = run_suite(page, server.url, args.repeats)
                result["training"]["trainer_samples_per_s"] = m.status(live).samples_per_s
            finally:
                m.stop(live, wait=10)
                import shutil

                shutil.rmtree(runs / live, ignore_errors=True)
            browser.close()
    finally:
        server.close()
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
