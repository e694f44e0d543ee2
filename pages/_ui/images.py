"""Pictures for the pages: evenly spread picks, crisp upscaled images and grids of them."""
from __future__ import annotations

import numpy as np

from vae_core import explore


def spread(n_total: int, k: int) -> np.ndarray:
    """k indices evenly spread over a data set (datasets are often sorted by class)."""
    return np.unique(np.linspace(0, max(0, n_total - 1), num=min(k, n_total)).round().astype(int))


def display_scale(image_shape: tuple[int, int, int], target_px: int = 112) -> int:
    """Integer nearest-neighbour scale so a small image shows at about target_px."""
    return max(1, round(target_px / max(image_shape[1:])))


def grid(images: np.ndarray, ncols: int | None = None, target_px: int = 84) -> np.ndarray:
    """(N, C, H, W) or (R, K, C, H, W) floats in [0, 1] -> one uint8 picture, upscaled."""
    shape = images.shape[-3:]
    return explore.tile(images, ncols=ncols, scale=display_scale(shape, target_px))


def picture(image: np.ndarray, target_px: int = 168) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8, upscaled with nearest neighbour so pixels stay crisp."""
    return explore.upscale(image, display_scale(image.shape, target_px))
