"""A synthetic, CelebA-sized folder of face-like RGB images, for the scale benchmarks.

    python bench/make_faces.py --n 200000 --size 64 --out bench/out/faces-200k

Each image is drawn procedurally (PIL): a skin-toned face ellipse on a coloured background,
with eyes, brows, a nose and a mouth whose positions, sizes, colours and expression vary,
and a little noise, so the images are all different and compress like photos rather than
flat shapes. Written as PNGs in sub-folders of 1,000 (one folder of 200,000 files is slow to
list on most filesystems); the sub-folders are not classes. Deterministic for a given seed.
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PER_FOLDER = 1000


def face(rng: np.random.Generator, size: int) -> Image.Image:
    s = size / 64.0
    bg = tuple(int(v) for v in rng.integers(30, 225, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    skin = np.sort([rng.uniform(150, 245), rng.uniform(100, 200), rng.uniform(70, 170)])[::-1]  # R >= G >= B
    cx, cy = size / 2 + rng.normal(0, 3 * s), size / 2 + rng.normal(0, 3 * s)
    rx, ry = rng.uniform(15, 21) * s, rng.uniform(19, 26) * s
    hair = tuple(int(v) for v in rng.integers(10, 120, 3))
    d.ellipse([cx - rx - 2 * s, cy - ry - 4 * s, cx + rx + 2 * s, cy + ry * 0.3], fill=hair)  # hair behind the face
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in skin))
    eye_y = cy - ry * rng.uniform(0.15, 0.3)
    gap = rx * rng.uniform(0.35, 0.5)
    eye_r = rng.uniform(1.8, 3.2) * s
    iris = tuple(int(v) for v in rng.integers(20, 140, 3))
    for side in (-1, 1):
        ex = cx + side * gap
        d.ellipse([ex - eye_r * 1.6, eye_y - eye_r, ex + eye_r * 1.6, eye_y + eye_r], fill=(240, 240, 240))
        d.ellipse([ex - eye_r * 0.8, eye_y - eye_r * 0.8, ex + eye_r * 0.8, eye_y + eye_r * 0.8], fill=iris)
        brow_y = eye_y - eye_r * rng.uniform(1.8, 2.6)
        d.line([ex - eye_r * 1.8, brow_y + side * rng.normal(0, 0.6 * s), ex + eye_r * 1.8, brow_y], fill=hair,
               width=max(1, round(1.5 * s)))
    nose = tuple(int(v) for v in (skin * 0.8))
    d.line([cx, eye_y + 2 * s, cx + rng.normal(0, 1.5 * s), cy + ry * 0.25], fill=nose, width=max(1, round(s)))
    mouth_y = cy + ry * rng.uniform(0.45, 0.6)
    mw = rx * rng.uniform(0.3, 0.55)
    smile = rng.uniform(-3, 5) * s
    lips = tuple(int(v) for v in rng.integers(120, 200, 1).tolist() + rng.integers(40, 90, 2).tolist())
    d.arc([cx - mw, mouth_y - abs(smile) - 1, cx + mw, mouth_y + abs(smile) + 1],
          0 if smile > 0 else 180, 180 if smile > 0 else 360, fill=lips, width=max(1, round(1.5 * s)))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9) * s))
    a = np.asarray(img, np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def write_range(args: tuple[str, int, int, int, int]) -> int:
    out, start, stop, size, seed = args
    for i in range(start, stop):
        folder = Path(out) / f"{i // PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:07d}.png"
        if not path.exists():
            face(np.random.default_rng([seed, i]), size).save(path, optimize=False, compress_level=1)
    return stop - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default="bench/out/faces-200k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    step = 2000
    jobs = [(args.out, a, min(a + step, args.n), args.size, args.seed) for a in range(0, args.n, step)]
    done = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for k in pool.map(write_range, jobs):
            done += k
            print(f"\r{done:,} of {args.n:,} images ({time.perf_counter() - t0:.0f} s)", end="", flush=True)
    print(f"\nwrote {args.n:,} {args.size}x{args.size} RGB PNGs to {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
