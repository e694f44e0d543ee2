"""Disentanglement metrics for runs on data with known generative factors (the ``shapes`` set).

A code is *disentangled* when each ground-truth factor (shape, scale, rotation, x, y) is
carried by one latent dimension and each dimension carries at most one factor. Two
measures of that (``factor_report`` feeds MIG one posterior draw per image, DCI the means):

- MIG, the mutual information gap (Chen et al. 2018, "Isolating Sources of
  Disentanglement in VAEs", eq. 6): for each factor, the gap between the two dimensions
  that know most about it, in units of the factor's entropy.
- DCI disentanglement and completeness (Eastwood & Williams 2018, "A Framework for the
  Quantitative Evaluation of Disentangled Representations", section 3): how concentrated
  the importance matrix of a factor predictor is, per dimension (D) and per factor (C).

Mutual information uses the histogram estimator of Locatello et al. (2019, "Challenging
Common Assumptions in the Unsupervised Learning of Disentangled Representations"): each
code column is cut into equal-width bins and the factors, already discrete, are used as they are.

Pure numpy/scikit-learn plus the explorer functions; no streamlit. Runs in the web app's
process, so everything here is sized to take a few seconds at most on one CPU core.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import explore
from ..data.imageset import ImageSet

DEFAULT_BINS = 20  # Locatello et al. (2019) use 20 equal-width bins for MIG
DEFAULT_SAMPLES = 10_000  # codes used for the metrics: histogram bias ~ bins*values/(2N) stays small


# --- Discrete information theory -----------------------------------------------------------
def discretize(codes: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Each column cut into ``bins`` equal-width bins over its own range: (N, D) ints in [0, bins).

    A constant column (a collapsed latent) lands in a single bin, so it carries no information.
    """
    a = np.asarray(codes, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"codes must be (N, D), got shape {a.shape}")
    out = np.zeros(a.shape, dtype=np.int64)
    if len(a) == 0:
        return out
    for d in range(a.shape[1]):
        lo, hi = a[:, d].min(), a[:, d].max()
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            continue  # constant: every example in bin 0
        edges = np.linspace(lo, hi, bins + 1)[1:-1]  # interior edges: bins - 1 of them
        out[:, d] = np.searchsorted(edges, a[:, d], side="right")
    return out


def factor_labels(factors: np.ndarray | torch.Tensor) -> np.ndarray:
    """Factor values (N, K), possibly floats such as 0.6283 rad, as integer labels 0..n_k-1 per column."""
    f = np.asarray(factors)
    if f.ndim == 1:
        f = f[:, None]
    return np.stack([np.unique(f[:, k], return_inverse=True)[1].reshape(-1) for k in range(f.shape[1])], axis=1)


def entropy(labels: np.ndarray) -> float:
    """H(v) = -sum_v p(v) log p(v) in nats of a discrete variable given as integer labels (N,)."""
    counts = np.bincount(np.asarray(labels).reshape(-1))
    p = counts[counts > 0] / max(1, counts.sum())
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) = sum p(a,b) log p(a,b) / (p(a) p(b)) in nats, from the joint histogram of two label arrays."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    na, nb = int(a.max(initial=0)) + 1, int(b.max(initial=0)) + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)  # (na, nb) counts
    joint /= max(1.0, joint.sum())
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)  # (na, 1), (1, nb)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()))  # clip -0.0 rounding


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """I(z_d; v_k) in nats for every latent dimension d and factor k: (D, K), non-negative.

    ``codes`` (N, D) are continuous (posterior means) and get binned; ``factors`` (N, K) are discrete.
    """
    z = discretize(codes, bins)  # (N, D)
    v = factor_labels(factors)  # (N, K)
    if len(z) != len(v):
        raise ValueError(f"{len(z)} codes but {len(v)} factor rows")
    return np.array([[mutual_information(z[:, d], v[:, k]) for k in range(v.shape[1])] for d in range(z.shape[1])])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats for each factor column: (K,)."""
    v = factor_labels(factors)
    return np.array([entropy(v[:, k]) for k in range(v.shape[1])])


# --- MIG ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MigResult:
    """score: MIG, the mean over factors of ``gap``.
    gap: (K,) (I(z_top1; v_k) - I(z_top2; v_k)) / H(v_k).
    normalized_mi: (D, K) I(z_d; v_k) / H(v_k), in [0, 1] (up to estimator bias).
    top, second: (K,) the dimensions with the largest and second-largest MI for each factor.
    """

    score: float
    gap: np.ndarray
    normalized_mi: np.ndarray
    top: np.ndarray
    second: np.ndarray


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = DEFAULT_BINS) -> MigResult:
    """Mutual information gap (Chen et al. 2018, eq. 6):

        MIG = 1/K sum_k 1/H(v_k) * (I(z_j(k); v_k) - max_{j != j(k)} I(z_j; v_k)),  j(k) = argmax_j I(z_j; v_k).

    Near 1 when each factor lives in exactly one dimension; near 0 when no dimension knows a
    factor, or when two dimensions know it equally well (a redundant code is not disentangled).
    """
    mi = mutual_information_matrix(codes, factors, bins)  # (D, K)
    h = factor_entropies(factors)  # (K,)
    norm = mi / np.where(h > 0, h, 1.0)  # a constant factor (H = 0) has no information to share
    order = np.argsort(-mi, axis=0, kind="stable")  # (D, K), dims by MI, largest first
    top = order[0]
    if mi.shape[0] < 2:  # one latent: nothing to be second, the gap is the whole MI
        second = np.full_like(top, -1)
        gap = norm[0]
    else:
        second = order[1]
        k = np.arange(mi.shape[1])
        gap = norm[top, k] - norm[second, k]
    return MigResult(float(gap.mean()) if len(gap) else 0.0, gap, norm, top, second)


# --- DCI ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DciResult:
    """disentanglement: importance-weighted mean of ``per_dim`` (Eastwood & Williams' D).
    completeness: mean of ``per_factor`` (C).
    informativeness: mean held-out accuracy of the factor predictors (I), in [0, 1].
    importance: (D, K) relative importance of dimension d for predicting factor k (columns sum to 1).
    per_dim: (D,) 1 - H_K(P_d.), P_dk = R_dk / sum_k R_dk.  per_factor: (K,) 1 - H_D(R_.k).
    accuracy: (K,) held-out accuracy per factor.
    """

    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray
    per_dim: np.ndarray
    per_factor: np.ndarray
    accuracy: np.ndarray


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy of normalised rows/columns in log base ``base`` (so it is in [0, 1])."""
    p = np.clip(p, 1e-12, None)
    return -(p * np.log(p)).sum(axis) / np.log(base)


def dci(codes: np.ndarray, factors: np.ndarray, n_train: int = 3000, n_test: int = 2000, n_trees: int = 10,
        max_depth: int | None = 10, seed: int = 0) -> DciResult:
    """DCI (Eastwood & Williams 2018) with random-forest importances.

    For each factor k a small random forest predicts v_k from the codes; its impurity-based
    feature importances form column k of R (D, K). Then, per the paper's section 3:
      D_d = 1 - H_K(P_d.) with P_dk = R_dk / sum_k R_dk, and D = sum_d rho_d D_d with rho_d = sum_k R_dk / sum R;
      C_k = 1 - H_D(R_.k / sum_d R_dk), and C = mean_k C_k.
    Eastwood & Williams use lasso and random forests; a forest of a few trees on a few thousand
    codes (instead of disentanglement_lib's gradient boosting) keeps this to a second or two.
    Every split considers every dimension (max_features=None): with the usual random subset
    a useless dimension is often the only candidate, gets picked and earns importance, which
    blurs the importance matrix of even a perfectly disentangled code (measured: D 0.60 -> 1.0).
    Factors are classified (they are discrete), so informativeness is a held-out accuracy.
    """
    from sklearn.ensemble import RandomForestClassifier

    z = np.asarray(codes, dtype=np.float32)
    v = factor_labels(factors)
    n = len(z)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = min(n_test, n // 3)
    test, train = perm[:n_test], perm[n_test : n_test + n_train]
    d, k_count = z.shape[1], v.shape[1]
    imp = np.zeros((d, k_count))
    acc = np.zeros(k_count)
    for k in range(k_count):
        if len(np.unique(v[train, k])) < 2:
            continue  # a constant factor: nothing to predict, no importance
        rf = RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth, max_features=None,
                                    random_state=seed, n_jobs=1)
        rf.fit(z[train], v[train, k])
        imp[:, k] = rf.feature_importances_
        acc[k] = rf.score(z[test], v[test, k]) if len(test) else float("nan")
    total = imp.sum()
    if d < 2 or total <= 0:
        # One dimension is trivially "disentangled"; with no importance at all there is nothing to say.
        per_dim = np.ones(d) if d == 1 else np.zeros(d)
        per_factor = np.zeros(k_count)
        return DciResult(float(per_dim.mean()) if d else 0.0, 0.0, float(np.nanmean(acc)), imp, per_dim, per_factor, acc)
    row = imp.sum(1, keepdims=True)  # (D, 1)
    p_dim = imp / np.where(row > 0, row, 1.0)  # (D, K)
    per_dim = 1.0 - _entropy_base(p_dim, max(2, k_count), axis=1)  # (D,)
    per_dim[row[:, 0] <= 0] = 0.0
    rho = row[:, 0] / total  # (D,) dims that matter more count more
    col = imp.sum(0, keepdims=True)  # (1, K)
    p_fac = imp / np.where(col > 0, col, 1.0)  # (D, K)
    per_factor = 1.0 - _entropy_base(p_fac, d, axis=0)  # (K,)
    per_factor[col[0] <= 0] = 0.0
    return DciResult(float((rho * per_dim).sum()), float(per_factor.mean()), float(np.nanmean(acc)),
                     imp, per_dim, per_factor, acc)


# --- A trained model, end to end ------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FactorReport:
    """What the lab shows for one run.

    factor_names: (K,) names.  mig: on one posterior draw per image; dci: on the means; ``n`` training images.
    kl_per_dim: (D,) mean KL per dim (nats), to tell collapsed dims from used ones.
    traversals: (K, V, C, H, W) decoder means sweeping each factor's top dim over its range of mu.
    traversal_values: (K, V) the values of that dim in each row.
    """

    factor_names: tuple[str, ...]
    mig: MigResult
    dci: DciResult
    kl_per_dim: np.ndarray
    traversals: np.ndarray
    traversal_values: np.ndarray
    n: int


def factor_report(model, x, factors, factor_names, n: int = DEFAULT_SAMPLES, bins: int = DEFAULT_BINS,
                  steps: int = 9, seed: int = 0) -> FactorReport:
    """MIG, DCI and one traversal per factor for a model on a dataset with ground-truth factors.

    x (N, C, H, W) images and factors (N, K); a random subset of ``n`` is used. Each factor's
    traversal sweeps its top-MI dimension from the 2nd to the 98th percentile of mu_d (where the
    data actually puts its codes), with every other dimension held at a typical image's mu.
    """
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
    # An ImageSet stays uint8: a view of the n rows, encoded a batch at a time (n float images: 100s of MB).
    xs = x.subset(idx) if isinstance(x, ImageSet) else x[torch.as_tensor(idx)] if isinstance(x, torch.Tensor) else np.asarray(x)[idx]
    fs = np.asarray(factors)[idx]  # (n, K)
    codes = explore.encode(model, xs)
    mu = codes.mu  # (n, D)
    # MIG on one draw z = mu + sigma * eps per image, the code the decoder actually receives, as in
    # Chen et al.'s definition (their I(z_j; v_k) integrates q(z_j|x)). Binning mu instead lets a
    # collapsed dim (sigma ~ 1, KL ~ 0.02 nats) look informative: its tiny wiggles in mu, stretched
    # over 20 bins, reach I/H ~ 0.17 on a beta=16 shapes model, more than the dim's whole KL allows
    # (I(z_d; v) <= I(z_d; x) <= KL_d). On a draw those dims score ~0.01.
    eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(np.float32)
    m = mig(mu + codes.sigma * eps, fs, bins)
    dc = dci(mu, fs, seed=seed)  # DCI's predictors read the deterministic part of the code, as usual
    summary = explore.latent_summary(model, xs)
    # A typical real image's code (the one nearest the per-dim median): the other dims stay put
    # while one moves. The median itself can decode to almost nothing when factors are entangled.
    base = mu[int(explore.nearest_neighbours(mu, np.median(mu, axis=0), k=1)[0][0])]
    rows, vals = [], []
    for k in range(fs.shape[1]):
        d = int(m.top[k])
        lo, hi = np.quantile(mu[:, d], [0.02, 0.98])
        if hi - lo < 1e-3:  # a collapsed dim: show the prior's range so the row is not 9 equal images
            lo, hi = -2.0, 2.0
        v = np.linspace(lo, hi, steps, dtype=np.float32)
        rows.append(explore.traversal_grid(model, base, [d], v)[0])  # (V, C, H, W)
        vals.append(v)
    return FactorReport(tuple(factor_names), m, dc, summary.kl_per_dim, np.stack(rows), np.stack(vals), len(idx))
