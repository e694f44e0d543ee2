"""A run, readable by TensorBoard: ``<run>/tensorboard/`` when ``TrainConfig.tensorboard`` is on.

The run directory stays the record (metrics.jsonl, summary.safetensors); this is a second view of
the same numbers for people who already live in TensorBoard:
  Scalars    every metrics.jsonl log window's loss terms (``train/...``) and learning rate (``lr``),
             each epoch's test and validation ELBO (``test/...``, ``validation/...``), against the
             global step
  Projector  the test set's posterior means at every published summary, with each point's label
             and its image (one sprite), for up to ``PROJECTOR_POINTS`` test images

The labels (``projector/labels.tsv``) and the sprite (``projector/sprite.png``) are written once
per run and every snapshot's embedding points at them; each embedding is one small TSV of
means. ``projector_config.pbtxt`` is TensorBoard's own ``ProjectorConfig`` proto, replaced
atomically.

Only rank 0 writes (the trainer makes one ``TensorBoardLog`` there). A resumed run appends a new
event file; events an earlier worker logged after the step the run resumes from (it died
between snapshots) are hidden by TensorBoard's purge marker, and their embeddings are dropped.

tensorboard is an optional extra: this module imports it only when a ``TensorBoardLog`` is made,
so importing vae_core never needs it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import rundir as rd

LOG_DIR = "tensorboard"  # under the run directory
PROJECTOR_DIR = "projector"  # under LOG_DIR: labels, sprite and one TSV of means per embedding
LABELS = "labels.tsv"
SPRITE = "sprite.png"
# The Embedding Projector draws a few thousand points smoothly and its t-SNE stays interactive;
# beyond that each embedding's TSV and the sprite grow for little gain. Evenly spaced through the
# test set rather than its first images, so a test set stored class by class still shows every class.
PROJECTOR_POINTS = 5000
# TensorBoard's projector refuses sprites wider or taller than this (in pixels).
MAX_SPRITE_PX = 8192
MISSING = ("TensorBoard logging needs the optional tensorboard package: "
           "pip install latent-explorer[tensorboard]")

# metrics.jsonl record kind -> {field: TensorBoard tag}
TAGS = {
    "step": {"loss": "train/loss", "elbo": "train/elbo", "log_likelihood": "train/log_likelihood", "kl": "train/kl",
             "lr": "lr"},
    "epoch": {"test_elbo": "test/elbo", "test_log_likelihood": "test/log_likelihood", "test_kl": "test/kl",
              "val_elbo": "validation/elbo"},
}
_TENSOR_FILE = re.compile(r"mu-step(\d+)\.tsv$")


class TensorBoardMissing(RuntimeError):
    """``tensorboard`` was asked for but the package is not installed."""


def scalars_of(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one metrics.jsonl record ({} for kinds that have none)."""
    tags = TAGS.get(record.get("kind"), {})
    return {tag: float(record[name]) for name, tag in tags.items() if record.get(name) is not None}


def label_names(y: torch.Tensor | np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    """One label per example for the projector: its class name where the dataset has names,
    else the class number; "?" where unknown (-1)."""
    names = list(class_names or ())
    out = []
    for c in np.asarray(y).tolist():
        text = "?" if c < 0 else names[c] if c < len(names) else str(c)
        out.append(" ".join(text.split()) or "?")  # no tab or newline may break the TSV
    return out


def projector_ids(n: int, image_hw: tuple[int, int]) -> np.ndarray:
    """The test-set positions shown in the projector: all of them, or ``PROJECTOR_POINTS`` evenly
    spaced, fewer when the sprite of that many images would exceed ``MAX_SPRITE_PX``."""
    per_side = MAX_SPRITE_PX // max(image_hw)
    k = min(n, PROJECTOR_POINTS, per_side * per_side)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)) if k < n else np.arange(n)


def sprite_of(images: torch.Tensor) -> np.ndarray:
    """The sprite: (n, C, H, W) floats in [0, 1] tiled row by row on a square grid of
    ceil(sqrt(n)) images a side, as uint8 (g·H, g·W) or (g·H, g·W, 3); empty cells black."""
    n, c, h, w = images.shape
    g = max(1, math.ceil(math.sqrt(n)))
    tiles = torch.zeros(g * g, c, h, w, dtype=torch.uint8)
    tiles[:n] = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    grid = tiles.reshape(g, g, c, h, w).permute(0, 3, 1, 4, 2).reshape(g * h, g * w, c).numpy()
    return grid[..., 0] if c == 1 else grid


class TensorBoardLog:
    """TensorBoard event files and projector assets for one run (rank 0 only)."""

    def __init__(self, run_dir: Path, first_step: int = 0):
        """first_step: the step this worker starts from; anything an earlier worker logged after
        it is hidden (events) or dropped (embeddings)."""
        try:
            from tensorboard.plugins import projector
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TensorBoardMissing(MISSING) from None
        self._projector = projector
        self.dir = Path(run_dir) / LOG_DIR
        (self.dir / PROJECTOR_DIR).mkdir(parents=True, exist_ok=True)
        # purge_step: TensorBoard hides events at or after it from earlier files (a resume
        # appends a new event file). A larger queue and a few seconds between flushes keep the
        # writes off the training loop's path; close() flushes the rest.
        self.writer = SummaryWriter(str(self.dir), purge_step=first_step + 1, max_queue=1000, flush_secs=10)
        self.config = self._read_config()
        kept = [e for e in self.config.embeddings if _step_of(e) is not None and _step_of(e) <= first_step]
        if len(kept) != len(self.config.embeddings):
            self._write_config(kept)

    # --- scalars ------------------------------------------------------------------------------
    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    # --- the Embedding Projector --------------------------------------------------------------
    def embedding(self, step: int, mu: np.ndarray | torch.Tensor, labels: Sequence[str], images) -> None:
        """The test set's posterior means at ``step`` for the projector. ``labels`` (one per test
        example) and ``images`` (anything ``images[ids]`` gives (n, C, H, W) floats in [0, 1]
        from, e.g. an ImageSet) are read only for the run's first embedding: the sprite and the
        labels are the same test images every time."""
        mu = np.asarray(mu.detach().cpu() if isinstance(mu, torch.Tensor) else mu, dtype=np.float32)
        first = images[np.arange(1)]
        ids = projector_ids(len(mu), tuple(first.shape[-2:]))
        assets = self.dir / PROJECTOR_DIR
        if not (assets / SPRITE).exists() or not (assets / LABELS).exists():
            self._write_assets(ids, labels, images)
        name = f"mu-step{step:09d}.tsv"
        rows = mu[ids]
        line = "\t".join(["%.6g"] * rows.shape[1]) + "\n"
        rd.atomic_write_bytes(assets / name, ((line * len(rows)) % tuple(rows.ravel().tolist())).encode())

        e = self._projector.EmbeddingInfo(tensor_name=f"test set mu, step {step}",
                                          tensor_path=f"{PROJECTOR_DIR}/{name}",
                                          metadata_path=f"{PROJECTOR_DIR}/{LABELS}")
        e.tensor_shape.extend(rows.shape)
        e.sprite.image_path = f"{PROJECTOR_DIR}/{SPRITE}"
        e.sprite.single_image_dim.extend([first.shape[-1], first.shape[-2]])  # width, height
        self._write_config([*(old for old in self.config.embeddings if _step_of(old) != step), e])

    def _write_assets(self, ids: np.ndarray, labels: Sequence[str], images) -> None:
        from PIL import Image

        if len(labels) <= ids[-1]:
            raise ValueError(f"{len(labels)} labels for a test set of at least {ids[-1] + 1} images")
        # A single column: the projector reads it without a header line.
        text = "".join(f"{labels[i]}\n" for i in ids.tolist())
        rd.atomic_write_bytes(self.dir / PROJECTOR_DIR / LABELS, text.encode())
        sprite = Image.fromarray(sprite_of(images[ids]))
        tmp = self.dir / PROJECTOR_DIR / f".{SPRITE}.tmp"
        sprite.save(tmp, format="PNG", compress_level=1)  # half zlib's default time, a file 8 % larger
        tmp.replace(self.dir / PROJECTOR_DIR / SPRITE)

    def _read_config(self):
        from google.protobuf import text_format

        config = self._projector.ProjectorConfig()
        path = self.dir / self._projector.metadata.PROJECTOR_FILENAME
        if path.exists():
            try:
                text_format.Parse(path.read_text(), config)
            except (text_format.ParseError, UnicodeDecodeError):
                config = self._projector.ProjectorConfig()  # unreadable: start the list again
        return config

    def _write_config(self, embeddings: list) -> None:
        from google.protobuf import text_format

        config = self._projector.ProjectorConfig()
        config.embeddings.extend(embeddings)
        rd.atomic_write_bytes(self.dir / self._projector.metadata.PROJECTOR_FILENAME,
                              text_format.MessageToString(config).encode())
        named = {Path(e.tensor_path).name for e in embeddings}
        for old in self.config.embeddings:  # the TSVs of dropped embeddings go with them
            if Path(old.tensor_path).name not in named and _TENSOR_FILE.search(old.tensor_path):
                (self.dir / PROJECTOR_DIR / Path(old.tensor_path).name).unlink(missing_ok=True)
        self.config = config

    def close(self) -> None:
        self.writer.close()


def _step_of(embedding) -> int | None:
    """The step of one of our embeddings, from its tensor file's name (None for anything else)."""
    m = _TENSOR_FILE.search(embedding.tensor_path)
    return int(m.group(1)) if m else None
