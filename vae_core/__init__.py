"""Latent Explorer's engine: datasets, model families, objectives, the training worker, run
directories, and the explorer and lab functions the app calls. It never imports streamlit.

Packages, each importing only those listed before it:
  data/     dataset sources, the cache, guarded image decoding
  engine/   configs, the model-family protocol and registry, objectives, evaluation
  runs/     run directories, the training worker, the run manager, sweeps
  explore/  explorer functions; labs/  one module per lab

Process contract: ``runs.trainer.train`` runs in its own process (``python -m vae_core
train``); everything else runs in whichever process calls it.

The public API for notebooks (see ``api``)::

    import vae_core as ve
    run = ve.open_run("runs/my-run")
    run.encode(images); run.decode(z); run.sample(16); run.traverse(dim=3)
"""
from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["Run", "open_run", "__version__"]


def __getattr__(name: str):
    # Loaded on first use, so `import vae_core` (and the CLI's start-up) stays light.
    if name in ("Run", "open_run"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vae_core' has no attribute {name!r}")
