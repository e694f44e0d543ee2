"""What the browser needs to decode while a traversal slider is being dragged.

``st.slider`` reports only on release, so live dragging decodes in the browser. For an MLP
decoder the browser gets the decoder's weights (two small matrices) and runs the same
computation as ``VAE.decode`` + ``decoder_mean``; for any other decoder (conv) it gets
precomputed frames: for each shown dimension, the decoded image at a grid of values with
the other dimensions held at the current code. Either way the server stays the source of
truth: on release the page decodes on the server and the two agree (tests check this).
"""
from __future__ import annotations

import base64

import numpy as np

from ..engine.protocol import LatentModel
from ..engine.vae import VAE
from .codes import traversal_grid

FRAME_VALUES = np.round(np.linspace(-3.0, 3.0, 61), 2)  # 0.1 prior-sigma steps


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def mlp_decoder_payload(model: LatentModel) -> dict | None:
    """The MLP decoder's weights as little-endian float32 (base64), or None for other bodies.

    Layout matches torch.nn.Linear: W is (out, in) row-major, y = W x + b; the hidden layer
    uses ReLU and the output is the Bernoulli logit / Gaussian pre-sigmoid mean.
    """
    if not isinstance(model, VAE) or model.config.body != "mlp":  # only this family's MLP has this form
        return None
    first, last = model.dec[0], model.dec[2]
    arrays = {
        "w1": first.weight.detach().cpu().numpy().astype("<f4"),  # (hidden, D)
        "b1": first.bias.detach().cpu().numpy().astype("<f4"),  # (hidden,)
        "w2": last.weight.detach().cpu().numpy().astype("<f4"),  # (C*H*W, hidden)
        "b2": last.bias.detach().cpu().numpy().astype("<f4"),  # (C*H*W,)
    }
    return {"kind": "mlp", "hidden": int(arrays["b1"].shape[0]), **{k: _b64(v) for k, v in arrays.items()}}


def frames_payload(model: LatentModel, z: np.ndarray, dims: list[int], values: np.ndarray = FRAME_VALUES) -> dict:
    """Decoded frames for each dim in ``dims`` at each value, other dims fixed at ``z``: uint8 (dims, values, H, W, C)."""
    images = traversal_grid(model, np.asarray(z, np.float32), list(dims), values)  # (R, V, C, H, W)
    frames = (np.clip(np.nan_to_num(images), 0, 1) * 255).round().astype(np.uint8).transpose(0, 1, 3, 4, 2)
    return {"kind": "frames", "values": [float(v) for v in values], "frames": _b64(frames)}


def live_payload(model: LatentModel, z: np.ndarray, dims: list[int]) -> dict:
    """Browser decoding where the architecture allows it, frames otherwise."""
    return mlp_decoder_payload(model) or frames_payload(model, z, dims)
