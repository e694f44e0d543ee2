"""The browser's decoder inputs reproduce the server's decode exactly."""
import base64

import numpy as np
import torch

from vae_core import explore
from vae_core.engine.config import ModelConfig
from vae_core.engine.vae import VAE
from vae_core.explore.live_decode import (
    FRAME_VALUES,
    frames_payload,
    live_payload,
    mlp_decoder_payload,
)


def reference_decode(payload: dict, z: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The browser's MLP computation (pages/_ui/live_traverse.py) in numpy: (C, H, W) in [0, 1]."""
    def arr(key, *shp):
        return np.frombuffer(base64.b64decode(payload[key]), dtype="<f4").reshape(*shp)

    d = len(z)
    h = payload["hidden"]
    out = int(np.prod(shape))
    hidden = np.maximum(arr("w1", h, d) @ z + arr("b1", h), 0)
    logits = arr("w2", out, h) @ hidden + arr("b2", out)
    return (1 / (1 + np.exp(-logits))).reshape(shape)


def test_mlp_payload_reproduces_the_server_decode():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(1, 28, 28), latent_dim=5, hidden=32)).eval()
    payload = mlp_decoder_payload(model)
    z = np.random.default_rng(0).normal(size=5).astype(np.float32)
    ours = reference_decode(payload, z, (1, 28, 28))
    np.testing.assert_allclose(ours, explore.decode(model, z[None])[0], atol=1e-5)


def test_rgb_mlp_payload_keeps_channel_planes():
    torch.manual_seed(1)
    model = VAE(ModelConfig(input_shape=(3, 8, 8), latent_dim=2, hidden=8)).eval()
    z = np.array([0.5, -1.0], np.float32)
    np.testing.assert_allclose(reference_decode(live_payload(model, z, [0]), z, (3, 8, 8)),
                               explore.decode(model, z[None])[0], atol=1e-5)


def test_conv_decoders_get_frames_on_the_value_grid():
    torch.manual_seed(2)
    model = VAE(ModelConfig(input_shape=(1, 16, 16), body="conv", latent_dim=3, hidden=16, conv_channels=4)).eval()
    assert mlp_decoder_payload(model) is None
    z = np.array([0.3, 0.0, -0.4], np.float32)
    payload = live_payload(model, z, [2, 0])
    assert payload["kind"] == "frames" and payload["values"] == list(FRAME_VALUES)
    frames = np.frombuffer(base64.b64decode(payload["frames"]), np.uint8).reshape(2, len(FRAME_VALUES), 16, 16, 1)
    k = int(np.argmin(np.abs(FRAME_VALUES - 1.5)))
    expected = explore.decode(model, np.array([[0.3, 0.0, FRAME_VALUES[k]]], np.float32))[0, 0]
    np.testing.assert_allclose(frames[0, k, :, :, 0] / 255.0, expected, atol=1 / 255 + 1e-6)
    assert frames_payload(model, z, [1])["frames"] != payload["frames"]
