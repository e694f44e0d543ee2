"""What a dataset is: the loaded :class:`Dataset`, the unsplit :class:`RawData` a source builds
and the disk cache stores, and the deterministic train/test split that turns one into the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .images import LUMA_WEIGHTS

# How a picture from outside is made to look like the dataset's images: "digit" follows MNIST's
# recipe (see vae_core.data.digit), "fit" centre-crops and resizes.
Preprocess = Literal["digit", "fit"]


class DatasetError(Exception):
    """Dataset missing or malformed. The message always names the fix."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == would raise
class Dataset:
    """A loaded dataset. Treat the tensors as read-only: loads are memoised and shared."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...] | None
    factor_names: tuple[str, ...] | None = None
    factors_train: torch.Tensor | None = None
    factors_test: torch.Tensor | None = None
    preprocess: Preprocess = "fit"
    notes: tuple[str, ...] = ()   # remarks from loading, e.g. how many files were skipped

    def __post_init__(self) -> None:
        for label, t in (("x_train", self.x_train), ("x_test", self.x_test)):
            if t.ndim != 4 or t.dtype != torch.float32:
                raise ValueError(f"{label} must be a (N, C, H, W) float32 tensor, got {tuple(t.shape)} {t.dtype}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError("x_train and x_test must have the same image shape")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def __repr__(self) -> str:  # the default repr would print whole tensors
        classes = None if self.class_names is None else len(self.class_names)
        return (f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"image_shape={self.image_shape}, classes={classes})")


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    available: bool
    detail: str
    description: str
    needs_path: bool = False   # name is a template such as "idx:<folder>"


@dataclass
class RawData:
    """Decoded, unsplit arrays: what a source builds and the disk cache stores."""

    x: np.ndarray                      # (N, C, H, W) uint8 or float32, divided by `scale` on use
    y: np.ndarray                      # (N,) int64, -1 = unknown
    scale: float
    class_names: tuple[str, ...] | None
    preprocess: str
    x_test: np.ndarray | None = None   # present when the source has an official split
    y_test: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None
    factors: np.ndarray | None = None
    factors_test: np.ndarray | None = None
    notes: tuple[str, ...] = ()


def split_indices(y: np.ndarray, test_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split, stratified by label whenever the labels allow it.

    test_size: a fraction of the examples (float) or a count (int).
    """
    n = len(y)
    if isinstance(test_size, float):
        n_test = 0 if n < 2 else max(1, int(round(n * test_size)))
    else:
        n_test = min(test_size, n - 1) if n > 1 else 0
    if n_test == 0:
        return np.arange(n), np.arange(0)
    if (y >= 0).all():
        counts = np.bincount(y)
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.min() >= 2 and len(counts) <= n_test <= n - len(counts):
            from sklearn.model_selection import train_test_split

            tr, te = train_test_split(np.arange(n), test_size=n_test, stratify=y, random_state=seed)
            return np.sort(tr), np.sort(te)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _to_tensor(a: np.ndarray, scale: float) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(torch.float32).div_(scale).contiguous()   # builders guarantee 0..scale


def _resize(x: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """Bring built-in datasets to a requested size/channel count (chunked to bound memory)."""
    out = []
    for chunk in x.split(4096):
        if size is not None and chunk.shape[-1] != size:
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False, antialias=True)
        if channels == 3 and chunk.shape[1] == 1:
            chunk = chunk.expand(-1, 3, -1, -1)
        elif channels == 1 and chunk.shape[1] == 3:
            chunk = (chunk * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out.append(chunk.clamp(0.0, 1.0))
    return torch.cat(out).contiguous() if out else x.new_zeros((0, channels or x.shape[1], size or x.shape[2],
                                                                 size or x.shape[3]))


def assemble(name: str, raw: RawData, *, seed: int, test_size: int | float, image_size: int | None = None,
             channels: int | None = None) -> Dataset:
    """Split ``raw`` (unless the source has its own test set) into a :class:`Dataset` of floats in [0, 1].

    image_size/channels: when given, images are resized / converted to them.
    """
    if raw.x_test is not None:
        x_tr, y_tr, f_tr = raw.x, raw.y, raw.factors
        x_te, y_te, f_te = raw.x_test, raw.y_test, raw.factors_test
    else:
        tr, te = split_indices(raw.y, test_size, seed)
        x_tr, y_tr, x_te, y_te = raw.x[tr], raw.y[tr], raw.x[te], raw.y[te]
        f_tr = f_te = None
        if raw.factors is not None:
            f_tr, f_te = raw.factors[tr], raw.factors[te]
    xt_tr, xt_te = _to_tensor(x_tr, raw.scale), _to_tensor(x_te, raw.scale)
    if image_size is not None or channels is not None:
        xt_tr, xt_te = _resize(xt_tr, image_size, channels), _resize(xt_te, image_size, channels)
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    as_f32 = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Dataset(name=name, x_train=xt_tr, y_train=as_long(y_tr), x_test=xt_te, y_test=as_long(y_te),
                   class_names=raw.class_names, factor_names=raw.factor_names, factors_train=as_f32(f_tr),
                   factors_test=as_f32(f_te), preprocess=raw.preprocess, notes=raw.notes)  # type: ignore[arg-type]
