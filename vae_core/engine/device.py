"""Device choice, in one place: cuda, then mps, then cpu, unless the config names one."""
from __future__ import annotations

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """The device to train on. An explicit request that is not available is an error, not a silent fallback."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was requested but CUDA is not available here; use device 'auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {requested!r} was requested but MPS is not available here; use 'auto' or 'cpu'")
    return dev
