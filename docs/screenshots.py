"""Screenshots of every page, taken from the real app in Chromium.

    python docs/screenshots.py            # trains the demo runs if needed, writes docs/screenshots/*.png

It trains two real MNIST models into docs/.runs (a 16-D and a 2-D one, a few minutes on two
CPU cores, reused on later calls), starts `streamlit run app.py` on a free port, starts a
third run so the Train page is caught mid-training, and visits each page.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402
from vae_core.runs import rundir as rd  # noqa: E402
from vae_core.runs.manager import RunManager, new_run_config  # noqa: E402
from vae_core.runs.trainer import train  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
RUNS = ROOT / "docs" / ".runs"
DEMO_RUNS = {
    "mnist-z16": ("mnist", {"latent_dim": 16}, {"epochs": 40}),
    "mnist-z2": ("mnist", {"latent_dim": 2}, {"epochs": 40}),
    "shapes-z8": ("shapes", {"latent_dim": 8}, {"epochs": 5, "beta": 4.0}),
}
BETAS = [0.25, 0.5, 1.0, 2.0, 4.0]
# (file name, URL path, run, button to press first or None, seconds to wait after)
SHOTS = [
    ("reconstructions", "reconstructions", "mnist-z16", None, 4),
    ("latent_space", "latent_space", "mnist-z2", None, 5),
    ("latent_space_pca", "latent_space", "mnist-z16", None, 5),
    ("sample", "sample", "mnist-z16", None, 4),
    ("traverse", "traverse", "mnist-z16", None, 5),
    ("encode", "encode", "mnist-z16", None, 4),
    ("lab_gradients", "lab_gradients", "mnist-z16", "Run the gradient lab", 40),
    ("lab_marginal_likelihood", "lab_marginal_likelihood", "mnist-z16", "Estimate log p(x)", 25),
    ("lab_beta", "lab_beta", "mnist-z16", None, 8),
    ("lab_disentanglement", "lab_disentanglement", "shapes-z8", None, 15),
]


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    """Until Streamlit has finished the script run (its header shows no running status)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.match(/Running|Stop/)",
        timeout=timeout_ms)


def photo_of_a_digit(path: Path) -> Path:
    """A phone-photo-like JPEG: a dark pen "3" on off-white paper with uneven light."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = 480, 360
    grad = Image.linear_gradient("L").resize((w, h)).point(lambda v: 200 + v // 6)
    img = Image.merge("RGB", (grad, grad, grad.point(lambda v: v - 12)))
    d = ImageDraw.Draw(img)
    d.arc((180, 70, 300, 170), start=200, end=90, fill=(40, 40, 55), width=14)
    d.arc((170, 160, 310, 290), start=270, end=160, fill=(40, 40, 55), width=14)
    img.filter(ImageFilter.GaussianBlur(1.2)).save(path, "JPEG", quality=88)
    return path


def ensure_demo_runs() -> None:
    for name, (ds, model, tr) in DEMO_RUNS.items():
        if rd.snapshot_meta(RUNS / name) is None or rd.read_status(RUNS / name).state != "finished":
            print(f"training {name} …", flush=True)
            st = train(new_run_config(ds, model=model, train=tr), RUNS / name)
            print(f"  {st.state}, test ELBO {st.extra.get('test_elbo')}", flush=True)
    from vae_core.labs import beta as lab_beta

    m = RunManager(RUNS)
    if not lab_beta.list_sweeps(RUNS, "beta"):
        print("training a β sweep …", flush=True)
        base = new_run_config("mnist", model={"latent_dim": 16}, train={"epochs": 8})
        lab_beta.start_sweep(m, lab_beta.sweep_configs(base, betas=BETAS), "mnist-sweep", "beta")
    deadline = time.time() + 900
    while time.time() < deadline and any(r.status.active or r.status.message == "queued" for r in m.list_runs()):
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="only these screenshots (file names without .png)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    RUNS.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_demo_runs()
    server = StreamlitServer(RUNS, RUNS / "server.log")
    live = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            if not args.only or "train" in args.only:
                m = RunManager(RUNS)
                live = m.start(new_run_config("mnist", model={"latent_dim": 16}, train={"epochs": 60}),
                               name=f"live-{int(time.time())}").name
                page.goto(f"{server.url}/?run={live}")
                page.wait_for_function(
                    "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data && p.data[0].x.length > 8 }",
                    timeout=120_000)
                time.sleep(2)
                page.screenshot(path=str(OUT / "train.png"), full_page=True)
                print("train.png", flush=True)
                m.stop(live, wait=10)
            for fname, path, run, button, wait in SHOTS:
                if args.only and fname not in args.only:
                    continue
                page.goto(f"{server.url}/{path}?run={run}")
                page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
                time.sleep(3)
                wait_idle(page)
                if button:
                    target = page.get_by_role("button", name=button, exact=True).first
                    target.wait_for(timeout=60_000)
                    target.click()
                    time.sleep(3)
                    wait_idle(page)
                if fname == "encode":
                    page.locator("input[type=file]").first.set_input_files(str(photo_of_a_digit(RUNS / "photo.jpg")))
                    page.get_by_text("Decoder mean at").first.wait_for(timeout=120_000)
                    wait_idle(page)
                time.sleep(wait / 4)
                page.mouse.move(5, 5)  # no hover tooltip in the picture
                time.sleep(0.5)
                if page.locator("[data-testid='stException']").count():
                    print(f"{fname}: the page shows an exception", flush=True)
                page.screenshot(path=str(OUT / f"{fname}.png"), full_page=True)
                print(f"{fname}.png", flush=True)
            browser.close()
    finally:
        server.close()
        if live:
            import shutil

            shutil.rmtree(RUNS / live, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
