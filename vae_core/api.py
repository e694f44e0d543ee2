"""The public API for notebooks and scripts: open a run directory and use its model.

    import vae_core as ve
    run = ve.open_run("runs/my-run")       # the best snapshot (by validation ELBO), on the CPU
    codes = run.encode(images)              # images (N, C, H, W) in [0, 1] -> Codes(mu, sigma)
    pictures = run.decode(codes.mu)         # (N, C, H, W) decoder means in [0, 1]
    z, samples = run.sample(16, seed=0)     # draws from the prior, decoded
    frames = run.traverse(dim=3)            # one latent dim swept from -3 to 3
    run.latent_space()                      # a plotly figure of the test set's posterior means

Arrays come back as numpy; images as ``notebook.Images``, numpy arrays that Jupyter shows as
pictures, and a ``Run`` shows itself as a small card. Everything here reads the run directory
the trainer wrote and calls the same explorer functions the app's pages call.
"""
from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from . import explore
from .data import Dataset, load_dataset
from .engine.config import RunConfig
from .engine.protocol import LatentModel
from .explore.projection import spread_indices
from .notebook import Images, NotebookCodes, as_images, grid_of, latent_figure, png_data_uri
from .runs import rundir as rd

CARD_SAMPLES = 8  # prior samples on a run's card
LATENT_SPACE_POINTS = 2000  # test codes on ``latent_space``'s scatter by default (evenly spread over the set)


class Run:
    """One run directory and one of its weight snapshots (reload with ``refresh()``).

    snapshot: "best" (the best validation ELBO so far; the latest while there is none) or "latest".
    A run whose trainer has not saved weights yet opens too: it says so (``has_weights``, its
    card), and what needs the model raises ``RunError`` until ``refresh()`` finds a snapshot.
    """

    def __init__(self, path: str | Path, snapshot: rd.SnapshotKind = "best"):
        if snapshot not in ("best", "latest"):
            raise ValueError(f"snapshot must be 'best' or 'latest', got {snapshot!r}")
        self.path = Path(path)
        self.which = snapshot
        self._config = rd.read_config(self.path)  # a RunError for a folder that is not a run
        self._snapshot = self._load()

    def _load(self) -> rd.Snapshot | None:
        """The snapshot, or None while the run has no weights yet (its trainer is starting)."""
        if not rd.snapshot_path(self.path, self.which).exists():
            return None
        return rd.load_snapshot(self.path, which=self.which)

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, family={self.config.family!r}, latent_dim={self.latent_dim}, "
                f"snapshot={self.snapshot_kind!r}, step={self.step}, state={self.status.label!r})")

    # --- what the run is --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name or self.path.resolve().name

    @property
    def has_weights(self) -> bool:
        """Whether a weight snapshot is loaded (False while a new run's trainer is starting)."""
        return self._snapshot is not None

    @property
    def model(self) -> LatentModel:
        return self._snap().model

    @property
    def config(self) -> RunConfig:
        return self._snapshot.config if self._snapshot is not None else self._config

    @property
    def step(self) -> int:
        """The loaded snapshot's training step (0 without one)."""
        return self._snapshot.step if self._snapshot is not None else 0

    @property
    def epoch(self) -> int:
        """Epochs the loaded snapshot had finished (0 without one)."""
        return self._snapshot.epoch if self._snapshot is not None else 0

    @property
    def snapshot_kind(self) -> str | None:
        """Which snapshot is loaded: "best" or "latest" (a run without a best one gives the latest);
        None while the run has no weights."""
        return self._snapshot.kind if self._snapshot is not None else None

    @property
    def latent_dim(self) -> int:
        if self._snapshot is not None:
            return self.model.latent_dim
        return int(self._config.model.latent_dim)

    @property
    def status(self) -> rd.RunStatus:
        return rd.read_status(self.path)

    def refresh(self) -> "Run":
        """Load the newest version of this snapshot (a run that is still training publishes new ones)."""
        self._config = rd.read_config(self.path)
        self._snapshot = self._load()
        return self

    def _snap(self) -> rd.Snapshot:
        if self._snapshot is None:
            raise rd.RunError(f"{self.name} has no weight snapshot yet: its trainer saves the first a few seconds "
                              "after it starts; run.refresh() loads it")
        return self._snapshot

    def dataset(self) -> Dataset:
        """The dataset the run was trained on, with its train / test split."""
        tc = self.config.train
        return load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed)

    # --- the model --------------------------------------------------------------------------
    def encode(self, x) -> explore.Codes:
        """q(z|x) for inputs x (N, C, H, W) or one (C, H, W): ``Codes`` with mu and sigma, (N, D) each."""
        c = explore.encode(self.model, x)
        return NotebookCodes(mu=c.mu, sigma=c.sigma)

    def decode(self, z) -> Images:
        """Decoder means for codes z (N, D) or one (D,): (N, C, H, W) in [0, 1]."""
        return Images(explore.decode(self.model, z))

    def reconstruct(self, x) -> explore.Reconstruction:
        """Reconstructions of x (``mean``, as ``Images``) and each example's ELBO terms."""
        rec = explore.reconstruct(self.model, x)
        return dataclasses.replace(rec, mean=Images(rec.mean), sampled=as_images(rec.sampled))

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> tuple[np.ndarray, Images]:
        """(codes (n, D), decoded images (n, C, H, W)) for z ~ N(0, temperature² I)."""
        z, images = explore.sample_prior(self.model, n, seed=seed, temperature=temperature)
        return z, Images(images)

    def traverse(self, dim: int | Sequence[int], values: Sequence[float] | None = None,
                 base: np.ndarray | None = None) -> Images:
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
        return Images(grid[0] if np.isscalar(dim) else grid)

    def grid_image(self, images: np.ndarray, ncols: int | None = None, scale: int = 2) -> np.ndarray:
        """Images (N, C, H, W) or (R, V, C, H, W) tiled into one uint8 picture, e.g. for ``PIL.Image.fromarray``."""
        return explore.tile(images, ncols=ncols, scale=scale)

    # --- figures ------------------------------------------------------------------------------
    def latent_space(self, method: Literal["auto", "pca", "tsne", "dims"] = "auto", dims: tuple[int, int] = (0, 1),
                     max_points: int = LATENT_SPACE_POINTS, seed: int = 0):
        """A plotly figure of the test set's posterior means mu, one colour per class.

        The codes of the whole test set come from the worker's per-snapshot summary when it has
        published one (else they are computed here); at most ``max_points`` of them, evenly spread
        over the set, are drawn. The 2-D view is ``explore.project_2d``'s: "auto" plots a 2-D
        latent directly and PCA above that; "tsne" (seeded, slower) and "dims" (two raw dims)
        as asked; a 1-D latent gets a strip, one row per class.
        """
        snap = self._snap()
        data = self.dataset()
        ets = explore.encoded_test_set(snap, data.x_test)
        mu = ets.codes.mu
        ids = spread_indices(len(mu), max(1, int(max_points)))
        proj = explore.project_2d(mu[ids], method, dims=dims, seed=seed)
        labels = np.asarray(data.y_test)[ids]
        ev = proj.explained_variance or (0.0, 0.0)
        axes = {"strip": ("z0", "class"), "identity": ("z0", "z1"),
                "pca": (f"PC1 ({ev[0]:.0%} of variance)", f"PC2 ({ev[1]:.0%})"),
                "tsne": ("t-SNE 1", "t-SNE 2")}.get(proj.method)
        if axes is None:  # "dims"
            axes = (f"z{proj.dims[0]}", f"z{proj.dims[1]}")
        shown = f"{len(ids):,} test images" + (f" of {len(mu):,}" if len(ids) < len(mu) else "")
        title = (f"{html.escape(self.name)}: posterior means of {shown} ({proj.method}, step {self.step:,})"
                 + (f"<br><sup>{html.escape(proj.note)}</sup>" if proj.note else ""))
        return latent_figure(proj.xy, labels, ids, data.class_names or (), axes, title,
                             equal_axes=proj.method in ("identity", "dims", "pca"), strip=proj.method == "strip")

    # --- Jupyter --------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        """A compact card: name, family, latent dim, snapshot, state, last test ELBO and a few
        prior samples. Never raises: what cannot be read is said instead."""
        try:
            return self._card()
        except Exception as e:  # a display hook must never break the cell
            return (f"<div><b>Run</b> <code>{html.escape(str(self.path))}</code> "
                    f"(could not describe it: {html.escape(repr(e))})</div>")

    def _card(self) -> str:
        def safe(fn, fallback: str = "unknown") -> str:
            try:
                return fn()
            except Exception as e:
                return f"{fallback} ({html.escape(str(e))})"

        def snapshot() -> str:
            if not self.has_weights:
                return ("<b>no weights yet</b>: the trainer saves the first a few seconds after it starts; "
                        "<code>run.refresh()</code> loads it")
            note = " (no best snapshot yet)" if self.which == "best" and self.snapshot_kind == "latest" else ""
            return f"{self.snapshot_kind}{note} · step {self.step:,} · epoch {self.epoch}"

        def state() -> str:
            st = self.status
            return html.escape(st.label + (f": {st.error}" if st.error else ""))

        def elbo() -> str:
            for r in reversed(rd.read_metrics(self.path)):
                v = r.get("test_elbo")
                if r.get("kind") == "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                    return f"{v:.2f} nats (epoch {html.escape(str(r.get('epoch', '?')))})"
            return "none yet"

        def samples() -> str:
            if not self.has_weights:
                return ""
            picture = grid_of(self.sample(CARD_SAMPLES, seed=0)[1], ncols=CARD_SAMPLES)
            return (f"<div style='margin-top:4px'><img src='{png_data_uri(picture)}' "
                    f"alt='{CARD_SAMPLES} samples from the prior' style='image-rendering:pixelated'>"
                    f"<br><small>{CARD_SAMPLES} samples from the prior (seed 0)</small></div>")

        rows = [
            ("family", safe(lambda: html.escape(self.config.family))),
            ("latent dim", safe(lambda: str(self.latent_dim))),
            ("model", safe(lambda: html.escape(self.config.model.label()))),
            ("dataset", safe(lambda: html.escape(self.config.train.dataset))),
            ("snapshot", safe(snapshot)),
            ("state", safe(state)),
            ("test ELBO", safe(elbo)),
        ]
        table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td style='text-align:left'>{v}"
                        "</td></tr>" for k, v in rows)
        return (f"<div style='border:1px solid #ccc;border-radius:6px;padding:8px;display:inline-block'>"
                f"<b>Run {html.escape(self.name)}</b> <small><code>{html.escape(str(self.path))}</code></small>"
                f"<table style='margin:4px 0'>{table}</table>{safe(samples, 'could not draw samples')}</div>")


def open_run(path: str | Path, snapshot: rd.SnapshotKind = "best") -> Run:
    """Open a run directory (or a run name under ``$LATENT_EXPLORER_RUNS`` / ``./runs``) at its
    best snapshot, or at its latest with ``snapshot="latest"``. ``"runs/<name>"`` also finds
    ``<name>`` under ``$LATENT_EXPLORER_RUNS`` when there is no such folder here."""
    p = Path(path)
    if not (p / rd.CONFIG).exists():
        from .runs.manager import default_runs_dir

        root = default_runs_dir()
        tries = [root / str(path)]
        if not p.is_absolute() and len(p.parts) == 2 and p.parts[0] == "runs":
            tries.append(root / p.parts[1])
        for q in tries:
            if (q / rd.CONFIG).exists():
                p = q
                break
    return Run(p, snapshot)
