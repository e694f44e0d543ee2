"""What a dataset is: the loaded :class:`Dataset`, the unsplit :class:`RawData` a source builds
and the disk cache stores, and the deterministic train/test split that turns one into the other.

Images stay uint8 from the source to the batch: a :class:`Dataset`'s ``x_train`` and ``x_test``
are :class:`ImageSet` views of the cached arrays (memory-mapped when they come from the cache),
and become float32 in [0, 1] one batch at a time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .images import LUMA_WEIGHTS
from .imageset import ImageSet

# How a picture from outside is made to look like the dataset's images: "digit" follows MNIST's
# recipe (see vae_core.data.digit), "fit" centre-crops and resizes.
Preprocess = Literal["digit", "fit"]


class DatasetError(Exception):
    """Dataset missing or malformed. The message always names the fix."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == would raise
class Dataset:
    """A loaded dataset. Read-only: loads are memoised and shared.

    x_train, x_test: the images, uint8 underneath; ``x_test[ids]`` gives floats in [0, 1].
    y_train, y_test: int64 labels, -1 where unknown.
    """

    name: str
    x_train: ImageSet
    y_train: torch.Tensor
    x_test: ImageSet
    y_test: torch.Tensor
    class_names: tuple[str, ...] | None
    factor_names: tuple[str, ...] | None = None
    factors_train: torch.Tensor | None = None
    factors_test: torch.Tensor | None = None
    preprocess: Preprocess = "fit"
    notes: tuple[str, ...] = ()   # remarks from loading, e.g. how many files were skipped

    def __post_init__(self) -> None:
        for label, x in (("x_train", self.x_train), ("x_test", self.x_test)):
            if not isinstance(x, ImageSet):
                raise ValueError(f"{label} must be an ImageSet, got {type(x).__name__}")
        if self.x_train.image_shape != self.x_test.image_shape:
            raise ValueError("x_train and x_test must have the same image shape")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.x_train.image_shape

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


def held_out_count(n: int, test_size: int | float) -> int:
    """How many of n examples the split puts in the test set (``test_size``: a fraction or a count)."""
    if isinstance(test_size, float):
        return 0 if n < 2 else max(1, int(round(n * test_size)))
    return min(test_size, n - 1) if n > 1 else 0


def split_indices(y: np.ndarray, test_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split, stratified by label whenever the labels allow it.

    test_size: a fraction of the examples (float) or a count (int).
    """
    n = len(y)
    n_test = held_out_count(n, test_size)
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


# Mixed into the seed of the validation split so that it is not the train/test split's stream.
_VALIDATION_STREAM = 0x7A11D


def validation_split(y: np.ndarray | torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions into a training set with labels ``y`` (-1: unknown).

    Stratified: each label keeps round(fraction * its count) examples out (unknown labels form
    one group), so the validation ELBO weighs the classes as training does. Deterministic in
    (y, fraction, seed) alone, and numpy only: a worker starts without importing scikit-learn.
    Both arrays are sorted; together they are every position exactly once.
    """
    y = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    y = np.where(y < 0, -1, y).astype(np.int64)
    if fraction <= 0 or len(y) < 2:
        return np.arange(len(y)), np.arange(0)
    rng = np.random.default_rng([int(seed), _VALIDATION_STREAM])
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = min(len(members) - (len(members) > 1), int(round(fraction * len(members))))
        held.append(rng.permutation(members)[:take])
    val = np.sort(np.concatenate(held))
    if len(val) == 0 or len(val) == len(y):  # too few per class to hold any out: draw without strata
        val = np.sort(rng.permutation(len(y))[: max(1, min(len(y) - 1, int(round(fraction * len(y)))))])
    train = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    return train, val


def split_digest(indices: np.ndarray) -> str:
    """A short sha256 of a split's positions, to tell the same split from another."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def _resized(x: np.ndarray, scale: float, size: int | None, channels: int | None) -> np.ndarray:
    """Built-in datasets brought to a requested size / channel count, as uint8 on the 0..255
    scale (chunked, so memory stays bounded)."""
    n, c, h, w = x.shape
    out_c, out_h, out_w = channels or c, size or h, size or w
    out = np.empty((n, out_c, out_h, out_w), np.uint8)
    for i in range(0, n, 4096):
        chunk = torch.as_tensor(np.array(x[i : i + 4096], np.float32)) / scale  # a copy: never write into the source
        if size is not None and (h, w) != (size, size):
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False, antialias=True)
        if out_c == 3 and chunk.shape[1] == 1:
            chunk = chunk.repeat(1, 3, 1, 1)
        elif out_c == 1 and chunk.shape[1] == 3:
            chunk = (chunk * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out[i : i + 4096] = chunk.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).numpy()
    return out


def assemble(name: str, raw: RawData, *, seed: int, test_size: int | float, image_size: int | None = None,
             channels: int | None = None, split=None) -> Dataset:
    """Split ``raw`` (unless the source has its own test set) into a :class:`Dataset`.

    The split is two views of the same (possibly memory-mapped) array: nothing is copied.
    split: ``split(y, test_size, seed) -> (train, test)``, ``split_indices`` or a remembered copy of it.
    image_size/channels: when given and different from the source's, the images are resized /
    converted (into memory, on the 0..255 scale).
    """
    x, x_test, scale = raw.x, raw.x_test, raw.scale
    c, h, w = x.shape[1:]
    if (image_size is not None and (h, w) != (image_size, image_size)) or (channels is not None and channels != c):
        x = _resized(x, scale, image_size, channels)
        x_test = None if x_test is None else _resized(x_test, scale, image_size, channels)
        scale = 255.0
    if x_test is not None:
        tr_x, te_x = ImageSet(x, scale), ImageSet(x_test, scale)
        y_tr, y_te, f_tr, f_te = raw.y, raw.y_test, raw.factors, raw.factors_test
    else:
        tr, te = (split or split_indices)(raw.y, test_size, seed)
        tr_x, te_x = ImageSet(x, scale, tr), ImageSet(x, scale, te)
        y_tr, y_te = raw.y[tr], raw.y[te]
        f_tr = f_te = None
        if raw.factors is not None:
            f_tr, f_te = raw.factors[tr], raw.factors[te]
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    as_f32 = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Dataset(name=name, x_train=tr_x, y_train=as_long(y_tr), x_test=te_x, y_test=as_long(y_te),
                   class_names=raw.class_names, factor_names=raw.factor_names, factors_train=as_f32(f_tr),
                   factors_test=as_f32(f_te), preprocess=raw.preprocess, notes=raw.notes)  # type: ignore[arg-type]
