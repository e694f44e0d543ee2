"""The model-family seam: the image VAE satisfies the protocol, config.json names its family,
and loading goes through the registry."""
import json

import pytest
import torch

from vae_core.engine.config import FORMAT_VERSION, ConfigError, ModelConfig, RunConfig
from vae_core.engine.families import FAMILIES, build_model
from vae_core.engine.linear_gaussian import LinearGaussian
from vae_core.engine.protocol import InputSpec, LatentModel, Posterior
from vae_core.engine.vae import VAE


@pytest.mark.parametrize("body", ["mlp", "conv"])
def test_the_image_vae_satisfies_the_protocol(body):
    model = build_model(RunConfig(model=ModelConfig(input_shape=(3, 16, 16), body=body, latent_dim=4, hidden=32,
                                                    conv_channels=4)))
    assert isinstance(model, VAE) and isinstance(model, LatentModel)
    assert model.latent_dim == 4
    assert model.input_spec == InputSpec("image", (3, 16, 16), (0.0, 1.0)) and model.input_spec.size == 768
    x = torch.rand(5, 3, 16, 16)
    post = model.encode(x)
    assert isinstance(post, Posterior) and post.mu.shape == post.logvar.shape == (5, 4)
    decoded = model.decode(torch.randn(2, 5, 4))  # leading sample dimension kept
    assert decoded.shape == (2, 5, 3, 16, 16)
    assert model.log_likelihood(x, decoded).shape == (2, 5)
    mean = model.decoder_mean(decoded)
    assert mean.shape == decoded.shape and 0 <= mean.min() and mean.max() <= 1
    draw = model.sample_x(decoded, torch.Generator().manual_seed(0))
    assert set(draw.unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws are binary


def test_the_linear_gaussian_model_is_not_a_full_family_member():
    # It has the probabilistic core (encode, decode, log_likelihood) that the objectives need,
    # but nothing to show a person: the registry would refuse to hand it to the pages.
    assert not isinstance(LinearGaussian(x_dim=4, z_dim=2), LatentModel)


def test_config_names_its_family_and_round_trips():
    cfg = RunConfig(model=ModelConfig(latent_dim=7))
    d = json.loads(cfg.to_json())
    assert d["family"] == "image_vae" and d["format_version"] == FORMAT_VERSION
    back = RunConfig.from_json(cfg.to_json())
    assert back.family == "image_vae" and back.model == cfg.model
    assert set(FAMILIES) == {"image_vae", "external", "prodlda", "lda"}


def test_unknown_family_or_format_is_refused_with_a_sentence():
    d = RunConfig().to_dict()
    with pytest.raises(ConfigError, match="unknown model family 'hmm_topics'"):
        RunConfig.from_dict({**d, "family": "hmm_topics"})
    with pytest.raises(ConfigError, match="format version 7 is not supported"):
        RunConfig.from_dict({**d, "format_version": 7})
    with pytest.raises(ConfigError, match="family must be one of"):
        RunConfig(family="nope").validate()


def test_a_format_1_config_reads_as_the_image_vae():
    d = RunConfig(model=ModelConfig(latent_dim=3)).to_dict()
    del d["family"]
    d["format_version"] = 1
    cfg = RunConfig.from_dict(d)
    assert cfg.family == "image_vae" and cfg.model.latent_dim == 3 and cfg.format_version == FORMAT_VERSION
    assert isinstance(build_model(cfg), VAE)


def test_a_format_2_run_resumes_without_a_validation_split():
    """A run written before early stopping trained on its whole training set: it goes on that way."""
    d = RunConfig().to_dict()
    for key in ("validation_fraction", "patience", "validation_split_sha256"):
        del d["train"][key]
    d["format_version"] = 2
    cfg = RunConfig.from_dict(d)
    assert cfg.train.validation_fraction == 0.0 and cfg.train.patience == 0
    assert cfg.format_version == FORMAT_VERSION
    fresh = RunConfig.from_dict(RunConfig().to_dict())  # today's configs keep their own values
    assert fresh.train.validation_fraction == 0.1 and fresh.train.patience == 5
