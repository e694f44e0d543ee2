"""Latent Explorer's VAE engine: datasets, models, objectives, the trainer worker, run
directories and the explorer functions the app calls. It never imports streamlit.

Process contract: ``trainer.train`` runs in its own process (``python -m vae_core train``);
everything else here runs in whichever process calls it (the app reads run directories).
"""
from .config import ModelConfig, RunConfig, TrainConfig
from .model import VAE, Posterior

__all__ = ["ModelConfig", "RunConfig", "TrainConfig", "VAE", "Posterior"]
__version__ = "0.1.0"
