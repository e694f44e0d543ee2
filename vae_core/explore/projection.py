"""Codes placed in 2-D for a scatter plot (PCA, t-SNE, two raw dims), nearest neighbours in
code space, and the outlines of q(z|x). Pure numpy / scikit-learn on arrays of codes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from ..engine.evaluate import principal_axes
from .codes import Codes

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class Projection:
    """A 2-D view of latent codes.

    xy: (N, 2) plot coordinates.
    method: what was actually done: "identity", "strip", "dims", "pca" or "tsne".
    explained_variance: PCA's explained-variance ratio per axis, else None.
    dims: the raw latent dims shown ("identity", "dims", "strip"), else None.
    note: a sentence for the UI when the view is not what was asked for (empty otherwise).
    """

    xy: np.ndarray
    method: str
    explained_variance: tuple[float, ...] | None
    dims: tuple[int, ...] | None
    note: str = ""



# --- 2-D projections of the codes -----------------------------------------------------------
class PcaAxes:
    """The first two principal axes of a set of codes; ``transform`` places any codes on them.

    Fitted once on the test codes (or read from the worker's per-snapshot summary) so that
    new points (prior samples, an uploaded image) land in the same picture. Always returns
    (M, 2); missing axes (D or N < 2) are 0.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, explained: np.ndarray):
        self.mean = np.asarray(mean, np.float64)  # (D,)
        self.components = np.asarray(components, np.float64)  # (k, D), k <= 2
        self.latent_dim = len(self.mean)
        ev = [float(v) for v in np.nan_to_num(np.asarray(explained, np.float64))][:2]
        self.explained_variance: tuple[float, ...] = tuple(ev + [0.0] * (2 - len(ev)))

    @classmethod
    def fit(cls, mu: ArrayLike) -> "PcaAxes":
        return cls(*principal_axes(np.asarray(mu, dtype=np.float64), k=2))

    def transform(self, z: ArrayLike) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.latent_dim)  # (M, D)
        out = np.zeros((len(z), 2), np.float32)  # (M, 2)
        k = len(self.components)
        if k and len(z):
            out[:, :k] = (z - self.mean) @ self.components.T  # (M, k)
        return out


def pca_fit(mu: ArrayLike) -> PcaAxes:
    """Fit the 2-D PCA view on codes mu (N, D); use ``.transform(z)`` for new points."""
    return PcaAxes.fit(mu)


def has_spread(mu: np.ndarray, rel: float = 1e-6) -> bool:
    """Whether codes (N, D) differ by more than rounding: False for a collapsed encoder that
    maps every input to (nearly) the same code."""
    m = np.asarray(mu, dtype=np.float64)
    if len(m) < 2:
        return False
    scale = max(1.0, float(np.abs(m).max()))
    return float(m.std(0).max()) > rel * scale


TSNE_MAX_POINTS = 2500  # codes t-SNE is fitted on (about 10 s on two CPU cores); more are placed, not fitted


def spread_indices(n_total: int, k: int) -> np.ndarray:
    """At most k indices evenly spread over 0..n_total-1, ascending (data sets are often sorted by class)."""
    return np.unique(np.linspace(0, max(0, n_total - 1), num=max(0, min(k, n_total))).round().astype(np.int64))


def _tsne(mu: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(mu)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    # One OpenMP thread: sklearn's libgomp otherwise fights torch's (still spinning) libgomp
    # threads for the cores, which made t-SNE 10-50x slower after any torch work.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(mu.astype(np.float64)).astype(np.float32)  # (N, 2)


def project_2d(
    mu: ArrayLike,
    method: Literal["auto", "identity", "pca", "tsne", "dims"] = "auto",
    dims: tuple[int, int] = (0, 1),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Projection:
    """Place codes mu (N, D) in 2-D for a scatter plot.

    "identity": the codes themselves (only for D == 2). "dims": two raw dims. "pca": the first
    two principal axes (deterministic, no seed needed). "tsne": scikit-learn t-SNE, seeded, init
    "pca", perplexity min(30, (N-1)/3), fitted on at most ``TSNE_MAX_POINTS`` evenly spread codes (the
    others placed among their nearest fitted neighbours, said in ``note``); ``progress(done, total)``
    is called before (0, 1) and after (1, 1) since t-SNE offers no finer callback. "auto": identity for D == 2, else PCA.
    A 1-dim model always gets a strip (x = mu, y = 0), said in ``note``.
    """
    m = np.asarray(mu, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected codes (N, D), got shape {m.shape}")
    n, d = m.shape
    if method not in ("auto", "identity", "pca", "tsne", "dims"):
        raise ValueError(f"unknown projection method {method!r}")
    if not np.isfinite(m).all():
        raise ValueError("some codes are NaN or infinite: the encoder produced non-finite values, "
                         "so there is nothing sensible to plot")
    if d == 1:
        xy = np.stack([m[:, 0], np.zeros(n, np.float32)], axis=1)  # (N, 2)
        return Projection(xy, "strip", None, (0,), "The model has one latent dim: x is its value, y is 0.")
    if method == "auto":
        method = "identity" if d == 2 else "pca"
    if method == "identity":
        if d != 2:
            raise ValueError(f"identity projection needs 2 latent dims, the codes have {d}; use pca, tsne or dims")
        return Projection(m.copy(), "identity", None, (0, 1))
    if method == "dims":
        a, b = int(dims[0]), int(dims[1])
        if not (0 <= a < d and 0 <= b < d):
            raise ValueError(f"dims must be in 0..{d - 1}, got {dims}")
        return Projection(m[:, [a, b]].copy(), "dims", None, (a, b))
    if method == "tsne":
        if n < 4:  # perplexity (N-1)/3 would be below 1: t-SNE is meaningless here
            axes = pca_fit(m)
            return Projection(axes.transform(m), "pca", axes.explained_variance, None, "Too few points for t-SNE; showing PCA.")
        if not has_spread(m):
            # scikit-learn's t-SNE divides by the spread of its PCA start and then crashes the
            # whole process (a segfault in its Barnes-Hut tree) when every code is the same.
            axes = pca_fit(m)
            return Projection(axes.transform(m), "pca", axes.explained_variance, None,
                              "Every code is the same point, so t-SNE has nothing to arrange; showing PCA.")
        if progress:
            progress(0, 1)
        if n > TSNE_MAX_POINTS:
            # t-SNE's cost grows faster than N and it is only a picture: fit an evenly spread
            # sample, and place every other code among its nearest fitted neighbours.
            fit = spread_indices(n, TSNE_MAX_POINTS)
            xy = np.empty((n, 2), np.float32)
            xy[fit] = _tsne(m[fit], seed)
            rest = np.setdiff1d(np.arange(n), fit)
            xy[rest] = place_new_points_tsne(m[fit], xy[fit], m[rest])
            note = (f"t-SNE was fitted on {len(fit):,} evenly spread codes; the other {len(rest):,} are placed "
                    "among their nearest fitted neighbours.")
        else:
            xy, note = _tsne(m, seed), ""
        if progress:
            progress(1, 1)
        return Projection(xy, "tsne", None, None, note)
    axes = pca_fit(m)
    return Projection(axes.transform(m), "pca", axes.explained_variance, None)


def place_new_points_tsne(train_mu: ArrayLike, train_xy: ArrayLike, new_mu: ArrayLike, k: int = 5) -> np.ndarray:
    """Approximate t-SNE positions for new codes: (M, 2).

    t-SNE has no map for unseen points, so each new code goes to the inverse-distance
    weighted mean of the embedding positions of its k nearest training codes (in mu space).
    A new code equal to a training code lands exactly on it. An approximation for display only.
    """
    tm = np.asarray(train_mu, dtype=np.float64)  # (N, D)
    txy = np.asarray(train_xy, dtype=np.float64)  # (N, 2)
    nm = np.asarray(new_mu, dtype=np.float64).reshape(-1, tm.shape[1])  # (M, D)
    k = max(1, min(k, len(tm)))
    out = np.zeros((len(nm), 2), np.float32)
    for i, z in enumerate(nm):
        idx, dist = nearest_neighbours(tm, z, k)
        exact = dist == 0
        w = exact.astype(np.float64) if exact.any() else 1.0 / dist  # exact hits take all the weight
        out[i] = (w[:, None] * txy[idx]).sum(0) / w.sum()
    return out


def sigma_ellipses(
    codes: Codes, idx: int | Sequence[int], n_std: float = 1.0, points: int = 40, dims: tuple[int, int] = (0, 1)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Outline of the n_std-sigma ellipse of q(z|x) for each selected example, for plotting.

    q is a diagonal Gaussian, so the ellipse is axis-aligned with half-axes n_std * sigma on
    the two plotted dims (the raw latent axes: meant for 2-D latents or the "dims" view).
    Each outline is (xs (points,), ys (points,)), closed (first point == last).
    """
    ids = [int(idx)] if np.isscalar(idx) else [int(i) for i in idx]
    a, b = dims
    theta = np.linspace(0.0, 2 * np.pi, points)  # (P,)
    out = []
    for i in ids:
        mx, my = codes.mu[i, a], codes.mu[i, b]
        sx, sy = codes.sigma[i, a], codes.sigma[i, b]
        out.append((mx + n_std * sx * np.cos(theta), my + n_std * sy * np.sin(theta)))
    return out


# --- Nearest neighbours over any number of codes ------------------------------------------
NN_CHUNK_BYTES = 2 << 20  # float64 differences per chunk: 2 MB, so a search costs a few MB at most


def nearest_neighbours(train_mu: ArrayLike, z: ArrayLike, k: int = 8, chunk_rows: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The k codes of train_mu (N, D) closest to z (D,): (indices (k,) int64, distances (k,) float64),
    nearest first, ties broken by the lower index: exactly the brute-force answer
    ``lexsort((arange(N), dist))[:k]``.

    The codes are read ``chunk_rows`` at a time (default: ``NN_CHUNK_BYTES`` of float64 per chunk)
    and only the best k (with any ties at the k-th distance) of each chunk are kept, so memory is
    bounded whatever N (train_mu may be a memory map). Distances are direct differences in float64,
    so an exact match is exactly 0.
    """
    tm = train_mu.detach().cpu().numpy() if isinstance(train_mu, torch.Tensor) else np.asarray(train_mu)
    if tm.ndim != 2:
        raise ValueError(f"expected codes (N, D), got shape {tm.shape}")
    n, d = tm.shape
    q = np.asarray(z, dtype=np.float64).reshape(-1)  # (D,)
    if len(q) != d:
        raise ValueError(f"the query has {len(q)} dims, the codes have {d}")
    k = max(0, min(int(k), n))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    rows = int(chunk_rows) if chunk_rows else max(1, NN_CHUNK_BYTES // (8 * max(d, 1)))
    best_i, best_d = np.zeros(0, np.int64), np.zeros(0)
    for start in range(0, n, rows):
        diff = np.array(tm[start : start + rows], dtype=np.float64)  # (R, D): a copy, the chunk's only buffer
        diff -= q
        np.square(diff, out=diff)
        dist = np.sqrt(diff.sum(1))  # (R,)
        if len(dist) > k:  # keep the k smallest and every tie of the k-th
            kth = np.partition(dist, k - 1)[k - 1]
            local = np.arange(len(dist)) if np.isnan(kth) else np.flatnonzero(dist <= kth)  # NaN sorts last
        else:
            local = np.arange(len(dist))
        ids = np.concatenate([best_i, local + start])
        ds = np.concatenate([best_d, dist[local]])
        order = np.lexsort((ids, ds))[:k]  # by distance, ties by index
        best_i, best_d = ids[order], ds[order]
    return best_i.astype(np.int64), best_d
