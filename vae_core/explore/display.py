"""Images laid out for display: upscaled uint8 pictures and grids of them (pure numpy)."""
from __future__ import annotations

import math

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


# --- Display grids --------------------------------------------------------------------------
def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def upscale(img: ArrayLike, scale: int = 1) -> np.ndarray:
    """One image (C, H, W) in [0, 1] -> uint8 (H*s, W*s, 3) for RGB or (H*s, W*s) for grey, nearest neighbour."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {a.shape}")
    s = max(1, int(scale))
    a = a.repeat(s, axis=1).repeat(s, axis=2)  # (C, H*s, W*s)
    return _to_uint8(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))


def tile(
    images: ArrayLike, ncols: int | None = None, pad: int = 1, pad_value: float = 1.0, scale: int = 1
) -> np.ndarray:
    """Lay images out in a grid for display: uint8 (H', W', 3) for RGB, (H', W') for grey.

    images: (R, Cc, C, H, W) keeps its rows and columns; (N, C, H, W) fills ``ncols``
    columns (default ceil(sqrt(N))) row by row, empty cells taking ``pad_value``.
    Each image is upscaled by ``scale`` (nearest neighbour); ``pad`` pixels (not scaled)
    separate cells and frame the grid, so H' = rows * (H*scale + pad) + pad and
    W' = cols * (W*scale + pad) + pad.
    """
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 4:
        n = len(a)
        cols = max(1, int(ncols) if ncols else math.ceil(math.sqrt(max(n, 1))))
        rows = max(1, math.ceil(n / cols))
        filled = np.full((rows * cols, *a.shape[1:]), pad_value, np.float32)  # (R*Cc, C, H, W)
        filled[:n] = a
        a = filled.reshape(rows, cols, *a.shape[1:])  # (R, Cc, C, H, W)
    elif a.ndim != 5:
        raise ValueError(f"expected (N, C, H, W) or (R, Cc, C, H, W), got shape {a.shape}")
    rows, cols, c, h, w = a.shape
    s, p = max(1, int(scale)), max(0, int(pad))
    a = a.repeat(s, axis=3).repeat(s, axis=4)  # (R, Cc, C, H*s, W*s)
    hs, ws = h * s, w * s
    canvas = np.full((c, rows * (hs + p) + p, cols * (ws + p) + p), pad_value, np.float32)  # (C, H', W')
    for r in range(rows):
        for k in range(cols):
            y, x = p + r * (hs + p), p + k * (ws + p)
            canvas[:, y : y + hs, x : x + ws] = a[r, k]
    return _to_uint8(canvas[0] if c == 1 else canvas.transpose(1, 2, 0))
