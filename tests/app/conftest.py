"""Degenerate runs for the page tests: copies of the session's tiny runs with broken weights."""
import shutil
from pathlib import Path

import pytest


def rewrite_weights(run: Path, change, keep_best: bool = False) -> None:
    """Replace the run's latest weights by ``change(name, tensor)``, keeping the snapshot's
    metadata; the worker's summary of the old weights goes, and so does the best snapshot unless
    ``keep_best`` (the pages show the best one by default: without it they show these weights)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = run / "weights.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: change(k, f.get_tensor(k)) for k in f.keys()}
    save_file(tensors, str(path), metadata={"step": meta["step"], "epoch": meta["epoch"]})
    (run / "summary.safetensors").unlink(missing_ok=True)
    if not keep_best:
        (run / "best.safetensors").unlink(missing_ok=True)


def zeroed_copy(run: Path, dest: Path) -> Path:
    """A copy of ``run`` whose weights are all zero: every image gets the same code q(z|x) = N(0, I)
    and the decoder's output is the same for every z."""
    import torch

    shutil.copytree(run, dest)
    rewrite_weights(dest, lambda name, t: torch.zeros_like(t))
    return dest


def _huge(name, t):
    """Decoder weights of ±3e38: finite, but every product overflows and the output is NaN."""
    import torch

    if not name.startswith("dec"):
        return t
    return (torch.randint(0, 2, t.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).float() * 3e38


@pytest.fixture(scope="session")
def broken_copies(trained_runs, tmp_path_factory):
    """"zero": tiny with every weight 0 (every image gets the same code, every code the same image);
    "diverged": tiny whose decoder returns NaN; "tiny1d": the one-dimensional run, as it is."""
    root = tmp_path_factory.mktemp("broken-runs")
    zeroed_copy(trained_runs / "tiny", root / "zero")
    shutil.copytree(trained_runs / "tiny", root / "diverged")
    rewrite_weights(root / "diverged", _huge)
    shutil.copytree(trained_runs / "tiny1d", root / "tiny1d")
    return root


@pytest.fixture
def broken_runs(app_runs, broken_copies, monkeypatch):
    """The app on ``broken_copies`` (app_runs has cleared the caches; no page has run yet)."""
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(broken_copies))
    return broken_copies
