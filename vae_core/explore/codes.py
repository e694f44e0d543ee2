"""Explorer functions on a model: encode, decode, reconstruct, sample, traverse, interpolate.

Every function takes a trained model behind ``engine.protocol.LatentModel`` (assumed already in eval mode; nothing here
switches modes), runs under ``torch.no_grad()`` and returns numpy arrays or small
frozen dataclasses, so the UI never touches tensors. Images come back as float32
in [0, 1], shaped (N, C, H, W), unless a docstring says otherwise.

Latent values are in units of the prior's standard deviation: p(z) = N(0, I), so a
value of 2 on a dimension means "two prior sigmas from the origin".

Formulas are reused, not re-derived: the ELBO from ``objectives.elbo_terms``, posterior
draws from ``objectives.sample_posterior``, per-dimension KL and the active-unit rule
from ``evaluate.posterior_stats``.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from ..engine.evaluate import ACTIVE_UNIT_THRESHOLD, posterior_stats
from ..data.imageset import ImageSet
from ..engine.objectives import elbo_terms, sample_posterior
from ..engine.protocol import device_of

BATCH = 1000  # examples per forward pass: bounds memory on large sets, fast enough on CPU

ArrayLike = np.ndarray | torch.Tensor


# --- Result types ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Codes:
    """Posterior parameters for a set of examples: mu and sigma of q(z|x), each (N, D)."""

    mu: np.ndarray
    sigma: np.ndarray


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Reconstructions and per-example ELBO terms (nats).

    mean: decoder mean at z = mu, (N, C, H, W) in [0, 1].
    sampled: a full stochastic reconstruction z ~ q(z|x), x ~ p(x|z), or None if not asked for.
    per_example_loss: the negative ELBO, -(log_likelihood - kl), (N,).
    log_likelihood: one-sample estimate of E_q[log p(x|z)], (N,).
    kl: analytic KL(q(z|x) || p(z)), (N,).
    """

    mean: np.ndarray
    sampled: np.ndarray | None
    per_example_loss: np.ndarray
    log_likelihood: np.ndarray
    kl: np.ndarray


@dataclass(frozen=True, eq=False)
class LatentSummary:
    """Per-dimension statistics of q(z|x) over a data set (see ``evaluate.posterior_stats``).

    kl_per_dim: mean KL per dim in nats, (D,).  active: (D,) bool.
    order: dims sorted by KL, largest first, (D,).  mean_variance: Var_x E_q[z_d], (D,).
    """

    kl_per_dim: np.ndarray
    active: np.ndarray
    order: np.ndarray
    mean_variance: np.ndarray

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    @classmethod
    def from_stats(cls, kl_per_dim: np.ndarray, mean_variance: np.ndarray) -> "LatentSummary":
        """From the per-dim KL and Var_x E_q[z_d]; the activity rule is ``evaluate.ACTIVE_UNIT_THRESHOLD``."""
        kl = np.asarray(kl_per_dim, np.float32)
        var = np.asarray(mean_variance, np.float32)
        return cls(kl, var > ACTIVE_UNIT_THRESHOLD, np.argsort(-kl, kind="stable"), var)


# --- Helpers --------------------------------------------------------------------------------
def _images_in(model, x: ArrayLike) -> torch.Tensor:
    """Data as a (N, C, H, W) tensor on the model's device; one (C, H, W) image gets a batch dim.

    uint8 input (an uploaded picture) is scaled to [0, 1]; float input is taken as is.
    """
    device, dtype = device_of(model)
    t = torch.as_tensor(x)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.to(device=device, dtype=dtype)
    if t.dim() == 3:
        t = t.unsqueeze(0)  # (1, C, H, W)
    return t


def _image_batches(model, x, batch_size: int):
    """x as float batches on the model's device: an ImageSet is read a batch at a time (it may
    be far larger than memory as floats); anything else goes through ``_images_in``."""
    if isinstance(x, ImageSet):
        device, dtype = device_of(model)
        for xb in x.batches(batch_size, device):
            yield xb.to(dtype)
        return
    t = _images_in(model, x)
    for i in range(0, len(t), batch_size):
        yield t[i : i + batch_size]


def _codes_in(model, z: ArrayLike) -> torch.Tensor:
    device, dtype = device_of(model)
    return torch.as_tensor(z).to(device=device, dtype=dtype)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _mean_images(model, z: torch.Tensor) -> torch.Tensor:
    """Decoder mean E[x|z] in [0, 1] for z of shape (..., D): (..., C, H, W)."""
    return model.decoder_mean(model.decode(z))


# --- Encode / decode / reconstruct ----------------------------------------------------------
@torch.no_grad()
def encode(model, x: ArrayLike, batch_size: int = BATCH) -> Codes:
    """mu and sigma of q(z|x) for images x (N, C, H, W) or an ImageSet, ``batch_size`` at a time."""
    mus, sigmas = [], []
    for xb in _image_batches(model, x, batch_size):
        post = model.encode(xb)
        mus.append(_np(post.mu))  # (B, D)
        sigmas.append(_np(post.sigma))  # (B, D)
    d = model.latent_dim
    mu = np.concatenate(mus) if mus else np.zeros((0, d), np.float32)
    sigma = np.concatenate(sigmas) if sigmas else np.zeros((0, d), np.float32)
    return Codes(mu=mu, sigma=sigma)


@torch.no_grad()
def decode(model, z: ArrayLike, batch_size: int = BATCH) -> np.ndarray:
    """Decoder-mean images for codes z (N, D): (N, C, H, W) in [0, 1]."""
    z = _codes_in(model, z)
    if z.dim() == 1:
        z = z.unsqueeze(0)  # (1, D)
    if len(z) == 0:
        return np.zeros((0, *model.input_spec.shape), np.float32)
    return np.concatenate([_np(_mean_images(model, z[i : i + batch_size])) for i in range(0, len(z), batch_size)])


@torch.no_grad()
def reconstruct(model, x: ArrayLike, sample: bool = False, seed: int = 0, batch_size: int = BATCH) -> Reconstruction:
    """Reconstruct x and score each example with the training objective.

    The loss terms come from ``objectives.elbo_terms`` (one posterior draw per example,
    analytic KL, generator seeded with ``seed``), so they match what training reports.
    With ``sample=True`` a separate generator, also seeded with ``seed``, draws
    z ~ q(z|x) and then x ~ p(x|z) for the "sampled" images.
    """
    device, _ = device_of(model)
    g_elbo = torch.Generator(device=device).manual_seed(seed)
    g_img = torch.Generator(device=device).manual_seed(seed)
    means, samples, lls, kls = [], [], [], []
    for xb in _image_batches(model, x, batch_size):  # (B, C, H, W)
        terms = elbo_terms(model, xb, samples=1, generator=g_elbo)
        lls.append(_np(terms.log_likelihood))  # (B,)
        kls.append(_np(terms.kl))  # (B,)
        post = model.encode(xb)
        means.append(_np(_mean_images(model, post.mu)))  # (B, C, H, W)
        if sample:
            z = sample_posterior(post, 1, g_img)[0]  # (B, D)
            samples.append(_np(model.sample_x(model.decode(z), generator=g_img)))  # (B, C, H, W)
    empty_img = np.zeros((0, *model.input_spec.shape), np.float32)
    ll = np.concatenate(lls) if lls else np.zeros(0, np.float32)
    kl = np.concatenate(kls) if kls else np.zeros(0, np.float32)
    return Reconstruction(
        mean=np.concatenate(means) if means else empty_img,
        sampled=(np.concatenate(samples) if samples else empty_img) if sample else None,
        per_example_loss=-(ll - kl),
        log_likelihood=ll,
        kl=kl,
    )


def best_and_worst(model, x: ArrayLike, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the n best (lowest negative ELBO, best first) and n worst (highest, worst first) examples.

    Scored a batch at a time without keeping images (``score_examples``: the same numbers as
    ``reconstruct``), so x may be an ImageSet of any size."""
    return rank_by_loss(score_examples(model, x, seed=seed).per_example_loss, n)


def rank_by_loss(per_example_loss: np.ndarray, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the n lowest losses (best first) and the n highest (worst first)."""
    order = np.argsort(per_example_loss, kind="stable")
    n = max(0, min(n, len(order)))
    return order[:n], order[::-1][:n]


# --- The prior ------------------------------------------------------------------------------
@torch.no_grad()
def sample_prior(model, n: int, seed: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n codes z ~ N(0, T^2 I) from a generator seeded with ``seed`` and their decoder means.

    Returns (z (n, D), images (n, C, H, W)); the same seed always gives the same output.
    """
    d = model.latent_dim
    g = torch.Generator().manual_seed(seed)  # CPU generator: same draws whatever the device
    z = temperature * torch.randn(n, d, generator=g)  # (n, D)
    return z.numpy().astype(np.float32), decode(model, z)


# --- Traversals -----------------------------------------------------------------------------
def traversal_codes(
    base_z: ArrayLike, dims: Sequence[int], values: ArrayLike = np.linspace(-3, 3, 7), relative: bool = False
) -> np.ndarray:
    """The codes a traversal grid decodes: (len(dims), len(values), D).

    Row r is ``base_z`` with dim ``dims[r]`` swept over ``values`` and every other dim unchanged.
    By default the value is *set* (absolute position in prior sigma units, so a row spans the
    same range of the prior whatever the base code is); ``relative=True`` adds it to the base
    code's own value instead (a walk around the base example).
    """
    base = np.asarray(base_z, dtype=np.float32).reshape(-1)  # (D,)
    vals = np.asarray(values, dtype=np.float32).reshape(-1)  # (V,)
    dims = [int(d) for d in dims]
    for d in dims:
        if not 0 <= d < len(base):
            raise ValueError(f"latent dim {d} is out of range for a {len(base)}-dim code")
    codes = np.broadcast_to(base, (len(dims), len(vals), len(base))).copy()  # (R, V, D)
    for r, d in enumerate(dims):
        codes[r, :, d] = vals + base[d] if relative else vals
    return codes


@torch.no_grad()
def traversal_grid(
    model, base_z: ArrayLike, dims: Sequence[int], values: ArrayLike = np.linspace(-3, 3, 7), relative: bool = False
) -> np.ndarray:
    """Decoder means along each chosen dim: (len(dims), len(values), C, H, W). See ``traversal_codes``."""
    codes = _codes_in(model, traversal_codes(base_z, dims, values, relative))  # (R, V, D)
    return _np(_mean_images(model, codes))  # (R, V, C, H, W)


@torch.no_grad()
def traverse_one(model, base_z: ArrayLike, dim: int, value: float, relative: bool = False) -> np.ndarray:
    """One image (C, H, W) with dim ``dim`` set to (or, if relative, moved by) ``value``: the slider path.

    Kept to a single small forward pass with no numpy round trips beyond the output.
    """
    z = _codes_in(model, base_z).reshape(1, -1).clone()  # (1, D)
    z[0, dim] = z[0, dim] + value if relative else value
    return _np(_mean_images(model, z)[0])  # (C, H, W)


# --- Interpolation --------------------------------------------------------------------------
def interpolate(
    z0: ArrayLike, z1: ArrayLike, steps: int, method: Literal["linear", "spherical"] = "linear"
) -> np.ndarray:
    """``steps`` codes from z0 to z1 inclusive: (steps, D).

    "spherical" is slerp: sin((1-t)W)/sin(W) z0 + sin(tW)/sin(W) z1 with W the angle between
    z0 and z1. It keeps the norm roughly constant, which matters because Gaussian mass lies
    near a shell (a straight line between two typical codes passes through atypical, short
    codes). When sin(W) is ~0 (parallel or antipodal codes, or a zero code) slerp is
    undefined or unstable, so it falls back to linear.
    """
    a = np.asarray(z0, dtype=np.float64).reshape(-1)  # (D,)
    b = np.asarray(z1, dtype=np.float64).reshape(-1)  # (D,)
    if a.shape != b.shape:
        raise ValueError(f"endpoints differ in size: {a.shape} vs {b.shape}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if method not in ("linear", "spherical"):
        raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (S, 1)
    linear = (1 - t) * a + t * b  # (S, D)
    if method == "linear":
        return linear.astype(np.float32)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return linear.astype(np.float32)
    omega = np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))
    so = np.sin(omega)
    if so < 1e-6:
        return linear.astype(np.float32)
    out = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / so  # (S, D)
    return out.astype(np.float32)


def interpolation_strip(
    model, x0: ArrayLike, x1: ArrayLike, steps: int = 8, method: Literal["linear", "spherical"] = "linear"
) -> np.ndarray:
    """Decoded path between the posterior means of two images: (steps, C, H, W)."""
    mu = encode(model, torch.cat([_images_in(model, x0), _images_in(model, x1)])).mu  # (2, D)
    return decode(model, interpolate(mu[0], mu[1], steps, method))


# --- The 2-D manifold (Kingma & Welling, figure 4) ------------------------------------------
def manifold_values(n: int = 15, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """Latent coordinates Phi^-1(q) for n evenly spaced quantiles q in [lo, hi] within (0, 1): (n,), ascending.

    Equal steps in probability rather than in z, so each cell covers the same prior mass.
    """
    if not 0.0 < lo < hi < 1.0:
        raise ValueError("quantiles must satisfy 0 < lo < hi < 1")
    return np.array([NormalDist().inv_cdf(q) for q in np.linspace(lo, hi, n)], np.float32)


def manifold_codes(
    latent_dim: int, n: int = 15, dims: tuple[int, int] = (0, 1), base_z: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes for the manifold grid: (codes (n, n, D), values (n,)).

    Column j sets dims[0] = values[j] (x grows to the right); row i sets
    dims[1] = values[n-1-i], so row 0 holds the highest value and the tiled image reads
    like a plot with y growing upwards. Other dims stay at base_z (default 0, the prior mean).
    """
    dx, dy = int(dims[0]), int(dims[1])
    if latent_dim < 2:
        raise ValueError("the manifold grid needs at least 2 latent dims; use a traversal for a 1-dim model")
    if dx == dy or not (0 <= dx < latent_dim and 0 <= dy < latent_dim):
        raise ValueError(f"dims must be two different dims in 0..{latent_dim - 1}, got {dims}")
    base = np.zeros(latent_dim, np.float32) if base_z is None else np.asarray(base_z, np.float32).reshape(-1)
    if len(base) != latent_dim:
        raise ValueError(f"base_z has {len(base)} dims, the model has {latent_dim}")
    vals = manifold_values(n)
    codes = np.broadcast_to(base, (n, n, latent_dim)).copy()  # (n, n, D)
    codes[:, :, dx] = vals[None, :]
    codes[:, :, dy] = vals[::-1, None]
    return codes, vals


@torch.no_grad()
def manifold_grid(
    model, n: int = 15, dims: tuple[int, int] = (0, 1), base_z: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded manifold: (images (n, n, C, H, W), values (n,) ascending). Layout in ``manifold_codes``."""
    codes, vals = manifold_codes(model.latent_dim, n, dims, base_z)
    return _np(_mean_images(model, _codes_in(model, codes))), vals  # (n, n, C, H, W)


# --- Statistics --------------------------------------------------------------
def latent_summary(model, x: ArrayLike, batch_size: int = BATCH) -> LatentSummary:
    """Per-dim KL, activity and spread of q(z|x) over x, from ``evaluate.posterior_stats``."""
    stats = posterior_stats(model, x if isinstance(x, ImageSet) else _images_in(model, x), batch_size=batch_size)
    return LatentSummary.from_stats(_np(stats["kl_per_dim"]), _np(stats["mean_variance"]))  # (D,) each


# --- Whole sets, a batch at a time (issue 11: datasets larger than memory) ------------------
# A page that ranks or searches a whole set needs one number or one code per example, never
# its images: these keep only those, so a set of any size costs (N,) or (N, D) floats plus
# one batch.
Progress = Callable[[int, int], None] | None  # progress(done, total)


def _n_examples(x) -> int:
    """How many examples x holds (one (C, H, W) image counts as one), without reading them."""
    if isinstance(x, ImageSet):
        return len(x)
    t = torch.as_tensor(x)
    return 1 if t.dim() == 3 else len(t)


@dataclass(frozen=True, eq=False)
class Scores:
    """Per-example ELBO terms (nats), without the images: the numbers of ``Reconstruction``.

    per_example_loss: the negative ELBO, (N,).  log_likelihood: one-sample E_q[log p(x|z)], (N,).
    kl: analytic KL(q(z|x) || p(z)), (N,).
    """

    per_example_loss: np.ndarray
    log_likelihood: np.ndarray
    kl: np.ndarray

    def __len__(self) -> int:
        return len(self.per_example_loss)


@torch.no_grad()
def score_examples(model, x: ArrayLike | ImageSet, seed: int = 0, batch_size: int = BATCH,
                   progress: Progress = None) -> Scores:
    """The ELBO terms of every example of x, ``batch_size`` at a time, keeping no images.

    The same numbers as ``reconstruct(model, x, seed=seed, batch_size=batch_size)`` (the same
    seeded generator draws the same posterior sample for each example), at the memory of one
    batch whatever len(x). ``progress(done, total)`` is called after each batch.
    """
    device, _ = device_of(model)
    g_elbo = torch.Generator(device=device).manual_seed(seed)
    total = _n_examples(x)
    lls, kls, done = [], [], 0
    for xb in _image_batches(model, x, batch_size):  # (B, C, H, W)
        terms = elbo_terms(model, xb, samples=1, generator=g_elbo)
        lls.append(_np(terms.log_likelihood))  # (B,)
        kls.append(_np(terms.kl))  # (B,)
        done += len(xb)
        if progress is not None:
            progress(done, total)
    ll = np.concatenate(lls) if lls else np.zeros(0, np.float32)
    kl = np.concatenate(kls) if kls else np.zeros(0, np.float32)
    return Scores(per_example_loss=-(ll - kl), log_likelihood=ll, kl=kl)


def worst_and_best(model, x: ArrayLike | ImageSet, n: int = 8, seed: int = 0, batch_size: int = BATCH,
                   progress: Progress = None) -> tuple[np.ndarray, Reconstruction]:
    """The n worst (highest loss, worst first) then the n best (lowest, best first) examples of x.

    Returns (indices (k,), their Reconstruction: decoder means at z = mu, ``sampled`` None, and the
    loss terms of the one scoring pass that ranked them, so the numbers shown agree with the order).
    Scores every example a batch at a time (``score_examples``, which calls ``progress``) and
    reads and decodes only the chosen ones: memory is one batch plus (N,) numbers.
    """
    s = score_examples(model, x, seed=seed, batch_size=batch_size, progress=progress)
    best, worst = rank_by_loss(s.per_example_loss, n)
    ids = np.concatenate([worst, best]).astype(np.int64)
    if isinstance(x, ImageSet):
        chosen = x[ids]  # (k, C, H, W) floats: only these rows are read
    else:
        chosen = _images_in(model, x)[torch.as_tensor(ids, dtype=torch.long)] if len(ids) else None
    mean = (reconstruct(model, chosen).mean if chosen is not None and len(ids)
            else np.zeros((0, *model.input_spec.shape), np.float32))
    return ids, Reconstruction(mean, None, s.per_example_loss[ids], s.log_likelihood[ids], s.kl[ids])


@torch.no_grad()
def posterior_means(model, x: ArrayLike | ImageSet, batch_size: int = BATCH, progress: Progress = None) -> np.ndarray:
    """mu of q(z|x) for every example of x: (N, D) float32, ``batch_size`` images at a time.

    ``encode(model, x).mu`` without the sigmas and with ``progress(done, total)`` after each batch:
    what a search over a large set (the nearest training images) keeps of it.
    """
    total = _n_examples(x)
    out = np.empty((total, model.latent_dim), np.float32)  # (N, D)
    done = 0
    for xb in _image_batches(model, x, batch_size):
        out[done : done + len(xb)] = _np(model.encode(xb).mu)
        done += len(xb)
        if progress is not None:
            progress(done, total)
    return out
