"""``shapes`` and ``shapes:<size>``: procedural sprites (square, ellipse, heart) rendered on a
full grid of known factors (shape, scale, rotation, x, y), for disentanglement studies."""

from __future__ import annotations

import math

import numpy as np

from ..dataset import DatasetError, RawData
from .plan import BuildOutput, Plan

SHAPE_NAMES = ("square", "ellipse", "heart")
SHAPE_FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
SHAPE_SCALES = tuple(np.linspace(0.5, 1.0, 6).tolist())
SHAPE_ROTATIONS = tuple((np.arange(10) * (2 * math.pi / 10)).tolist())
SHAPE_POSITIONS = tuple(np.linspace(0.0, 1.0, 12).tolist())
SHAPES_COUNT = len(SHAPE_NAMES) * len(SHAPE_SCALES) * len(SHAPE_ROTATIONS) * len(SHAPE_POSITIONS) ** 2
SHAPES_MIN_SIZE, SHAPES_MAX_SIZE = 16, 128
_SUPERSAMPLE = 4

_heart_cache: tuple[float, float] | None = None


def _heart_geometry() -> tuple[float, float]:
    """Centroid height and bounding radius of the implicit heart, so it can be centred and sized."""
    global _heart_cache
    if _heart_cache is None:
        g = np.linspace(-1.6, 1.6, 1601)
        xx, yy = np.meshgrid(g, g)
        inside = (xx**2 + yy**2 - 1) ** 3 - xx**2 * yy**3 <= 0
        cy = float(yy[inside].mean())
        radius = float(np.sqrt(xx[inside] ** 2 + (yy[inside] - cy) ** 2).max())
        _heart_cache = (cy, radius)
    return _heart_cache


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Point-in-shape for unit shapes (bounding radius 1); u right, v down."""
    if shape == 0:   # square
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:   # ellipse, 2:1 so its rotation is visible
        return u**2 + (v / 0.5) ** 2 <= 1
    cy, radius = _heart_geometry()
    x, y = u * radius, -v * radius + cy
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def _render_shapes(size: int, out: BuildOutput | None = None) -> RawData:
    out = out or BuildOutput()
    ss = _SUPERSAMPLE
    n_pos = len(SHAPE_POSITIONS)
    # Centres sit on a 1/ss pixel grid, so only a few sub-pixel phases exist and each
    # sprite is rasterised once per phase, then pasted (translation is exact).
    step_ss = max(1, round(1.5 * size / 32 * ss))
    margin_ss = (size * ss - (n_pos - 1) * step_ss) // 2
    centres = (margin_ss + np.arange(n_pos) * step_ss) / ss          # pixel coords, pixel i spans [i, i+1)
    r_max = margin_ss / ss - 1.0                                      # keeps a 1-pixel empty border
    half = math.ceil(r_max) + 1
    patch = 2 * half + 1
    radii = np.asarray(SHAPE_SCALES) * r_max
    rots = np.asarray(SHAPE_ROTATIONS)
    cos = np.cos(rots)[None, :, None, None]
    sin = np.sin(rots)[None, :, None, None]
    rad = radii[:, None, None, None]
    grid = (np.arange(patch * ss) + 0.5) / ss

    patches: dict[tuple[float, float], np.ndarray] = {}

    def sprites(fx: float, fy: float) -> np.ndarray:
        if (fx, fy) not in patches:
            dx = (grid - (half + fx))[None, None, None, :]
            dy = (grid - (half + fy))[None, None, :, None]
            u = (cos * dx + sin * dy) / rad                           # (scales, rots, rows, cols)
            v = (-sin * dx + cos * dy) / rad
            sheet = np.empty((len(SHAPE_NAMES), len(radii), len(rots), patch, patch), np.uint8)
            for s in range(len(SHAPE_NAMES)):
                cover = _inside(s, u, v).reshape(len(radii), len(rots), patch, ss, patch, ss).mean(axis=(3, 5))
                sheet[s] = np.rint(cover * 255)
            patches[fx, fy] = sheet
        return patches[fx, fy]

    # Written straight into the output (a file when caching), one position at a time.
    x = out.array("x", (SHAPES_COUNT, 1, size, size))
    imgs = x.reshape(len(SHAPE_NAMES), len(radii), len(rots), n_pos, n_pos, size, size)
    per_position = SHAPES_COUNT // n_pos**2
    out.progress(0, SHAPES_COUNT)
    for xi, cx in enumerate(centres):
        for yi, cy in enumerate(centres):
            ox, oy = math.floor(cx) - half, math.floor(cy) - half
            sp = sprites(cx - math.floor(cx), cy - math.floor(cy))
            r0, r1, c0, c1 = max(oy, 0), min(oy + patch, size), max(ox, 0), min(ox + patch, size)
            imgs[:, :, :, xi, yi, r0:r1, c0:c1] = sp[..., r0 - oy:r1 - oy, c0 - ox:c1 - ox]
            out.progress((xi * n_pos + yi + 1) * per_position, SHAPES_COUNT)

    grids = np.meshgrid(np.arange(len(SHAPE_NAMES)), radii / r_max, rots, SHAPE_POSITIONS, SHAPE_POSITIONS,
                        indexing="ij")
    factors = np.stack([g.ravel() for g in grids], axis=1).astype(np.float32)
    return RawData(x=x, y=factors[:, 0].astype(np.int64), scale=255.0,
                class_names=SHAPE_NAMES, preprocess="fit", factor_names=SHAPE_FACTOR_NAMES, factors=factors)


def plan_shapes(arg, image_size, channels) -> Plan:
    if arg is None:
        size = image_size or 32
    elif arg.isdigit():
        size = int(arg)
    else:
        raise DatasetError(f"shapes:{arg} is not a size: use e.g. shapes:64")
    if not SHAPES_MIN_SIZE <= size <= SHAPES_MAX_SIZE:
        raise DatasetError(f"shapes size {size} is out of range: use shapes:<size> with "
                           f"{SHAPES_MIN_SIZE} <= size <= {SHAPES_MAX_SIZE}")
    return Plan("shapes", {"size": size}, lambda out: _render_shapes(size, out), test_size=0.1)
