"""The public API for notebooks and scripts: open a run directory and use its model.

    import vae_core as ve
    run = ve.open_run("runs/my-run")       # the best snapshot (by validation ELBO), on the CPU
    codes = run.encode(images)              # images (N, C, H, W) in [0, 1] -> Codes(mu, sigma)
    pictures = run.decode(codes.mu)         # (N, C, H, W) decoder means in [0, 1]
    z, samples = run.sample(16, seed=0)     # draws from the prior, decoded
    frames = run.traverse(dim=3)            # one latent dim swept from -3 to 3

Arrays come back as numpy. Everything here reads the run directory the trainer wrote and
calls the same explorer functions the app's pages call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import explore
from .data import Dataset, load_dataset
from .engine.config import RunConfig
from .engine.protocol import LatentModel
from .runs import rundir as rd


class Run:
    """One run directory and one of its weight snapshots (reload with ``refresh()``).

    snapshot: "best" (the best validation ELBO so far; the latest while there is none) or "latest".
    """

    def __init__(self, path: str | Path, snapshot: rd.SnapshotKind = "best"):
        if snapshot not in ("best", "latest"):
            raise ValueError(f"snapshot must be 'best' or 'latest', got {snapshot!r}")
        self.path = Path(path)
        self.which = snapshot
        self._snapshot = rd.load_snapshot(self.path, which=snapshot)

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, family={self.config.family!r}, latent_dim={self.latent_dim}, "
                f"snapshot={self.snapshot_kind!r}, step={self.step}, state={self.status.label!r})")

    # --- what the run is --------------------------------------------------------------------
    @property
    def model(self) -> LatentModel:
        return self._snapshot.model

    @property
    def config(self) -> RunConfig:
        return self._snapshot.config

    @property
    def step(self) -> int:
        return self._snapshot.step

    @property
    def snapshot_kind(self) -> str:
        """Which snapshot is loaded: "best" or "latest" (a run without a best one gives the latest)."""
        return self._snapshot.kind

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def status(self) -> rd.RunStatus:
        return rd.read_status(self.path)

    def refresh(self) -> "Run":
        """Load the newest version of this snapshot (a run that is still training publishes new ones)."""
        self._snapshot = rd.load_snapshot(self.path, which=self.which)
        return self

    def dataset(self) -> Dataset:
        """The dataset the run was trained on, with its train / test split."""
        tc = self.config.train
        return load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)

    # --- the model --------------------------------------------------------------------------
    def encode(self, x) -> explore.Codes:
        """q(z|x) for inputs x (N, C, H, W) or one (C, H, W): ``Codes`` with mu and sigma, (N, D) each."""
        return explore.encode(self.model, x)

    def decode(self, z) -> np.ndarray:
        """Decoder means for codes z (N, D) or one (D,): (N, C, H, W) in [0, 1]."""
        return explore.decode(self.model, z)

    def reconstruct(self, x) -> explore.Reconstruction:
        """Reconstructions of x and each example's ELBO terms."""
        return explore.reconstruct(self.model, x)

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(codes (n, D), decoded images (n, C, H, W)) for z ~ N(0, temperature² I)."""
        return explore.sample_prior(self.model, n, seed=seed, temperature=temperature)

    def traverse(self, dim: int | Sequence[int], values: Sequence[float] | None = None,
                 base: np.ndarray | None = None) -> np.ndarray:
        """Decoded images sweeping latent ``dim`` (or several dims, one row each) over ``values``
        (default 7 values from -3 to 3), every other dim at ``base`` (default the prior mean 0).
        One dim: (V, C, H, W); several: (R, V, C, H, W)."""
        dims = [int(dim)] if np.isscalar(dim) else [int(d) for d in dim]
        for d in dims:
            if not 0 <= d < self.latent_dim:
                raise ValueError(f"dim {d} is out of range: the model has latent dims 0..{self.latent_dim - 1}")
        vals = np.linspace(-3, 3, 7) if values is None else np.asarray(values, np.float32)
        z0 = np.zeros(self.latent_dim, np.float32) if base is None else np.asarray(base, np.float32)
        grid = explore.traversal_grid(self.model, z0, dims, vals)  # (R, V, C, H, W)
        return grid[0] if np.isscalar(dim) else grid

    def grid_image(self, images: np.ndarray, ncols: int | None = None, scale: int = 2) -> np.ndarray:
        """Images (N, C, H, W) or (R, V, C, H, W) tiled into one uint8 picture, e.g. for ``PIL.Image.fromarray``."""
        return explore.tile(images, ncols=ncols, scale=scale)


def open_run(path: str | Path, snapshot: rd.SnapshotKind = "best") -> Run:
    """Open a run directory (or a run name under ``$LATENT_EXPLORER_RUNS`` / ``./runs``) at its
    best snapshot, or at its latest with ``snapshot="latest"``."""
    p = Path(path)
    if not (p / rd.CONFIG).exists():
        from .runs.manager import default_runs_dir

        q = default_runs_dir() / str(path)
        if (q / rd.CONFIG).exists():
            p = q
    return Run(p, snapshot)
