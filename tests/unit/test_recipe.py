"""The "auto" recipe: chosen from the data's shape and the body, applied by new_run_config for
whatever the caller leaves out, never over a value the caller gave."""
from dataclasses import fields
from types import SimpleNamespace

import pytest

from vae_core.engine.config import ModelConfig, RunConfig, TrainConfig
from vae_core.engine.recipe import CONV_LR, apply_recipe, auto_summary, recipe_for
from vae_core.runs.manager import new_run_config

SHAPES = [(1, 8, 8), (1, 28, 28), (1, 32, 32), (3, 32, 32), (3, 64, 64)]


def fake_data(shape):
    """All new_run_config reads of a dataset it is handed: its image shape."""
    return SimpleNamespace(image_shape=shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("body", ["mlp", "conv"])
def test_every_recipe_names_real_fields_with_a_reason_and_validates(shape, body):
    rec = recipe_for(shape, body)
    assert set(rec.model) <= {f.name for f in fields(ModelConfig)}
    assert set(rec.train) <= {f.name for f in fields(TrainConfig)}
    assert set(rec.why) == set(rec.model) | set(rec.train)  # one reason per choice
    assert all(len(reason) > 20 for reason in rec.why.values())
    RunConfig(model=ModelConfig(input_shape=shape, body=body, **rec.model), train=TrainConfig(**rec.train)).validate()


@pytest.mark.parametrize("shape", SHAPES)
def test_conv_gets_the_safe_learning_rate_on_every_shape(shape):
    assert CONV_LR == 1e-3
    assert recipe_for(shape, "conv").train["lr"] == CONV_LR
    cfg = new_run_config("folder:/x", image_size=shape[1], channels=shape[0], model={"body": "conv"},
                         data=fake_data(shape))
    assert cfg.train.lr == CONV_LR
    assert cfg.to_dict()["train"]["lr"] == CONV_LR  # config.json records the concrete value


def test_the_mlp_keeps_the_mnist_tuned_defaults():
    # the existing benchmarks (bench/RESULTS.md, "Test ELBO at equal wall-clock") depend on them
    for shape in SHAPES:
        cfg = new_run_config("mnist", data=fake_data(shape))
        assert cfg.model.body == "mlp"
        assert cfg.train.lr == TrainConfig.lr == 5e-3
        assert (cfg.train.lr_schedule, cfg.train.warmup_steps, cfg.train.batch_size) == ("cosine", 100, 64)
        assert cfg.model == ModelConfig(input_shape=shape)
        assert cfg.train == TrainConfig(dataset="mnist")


def test_values_the_caller_passes_always_win():
    cfg = new_run_config("x", model={"body": "conv", "hidden": 128}, train={"lr": 5e-3, "epochs": 2},
                         data=fake_data((3, 64, 64)))
    assert (cfg.train.lr, cfg.model.hidden, cfg.train.epochs) == (5e-3, 128, 2)
    model, train = apply_recipe((3, 64, 64), {"body": "conv"}, {"lr": 2e-4, "warmup_steps": 7})
    assert (model, train) == ({"body": "conv"}, {"lr": 2e-4, "warmup_steps": 7})


def test_none_means_auto_and_the_callers_dicts_are_not_changed():
    given_model, given_train = {"body": "conv"}, {"lr": None, "beta": 2.0}
    _, train = apply_recipe((1, 28, 28), given_model, given_train)
    assert train == {"lr": CONV_LR, "beta": 2.0}
    assert given_train == {"lr": None, "beta": 2.0} and given_model == {"body": "conv"}
    assert new_run_config("x", model={"body": "conv"}, train={"lr": None}, data=fake_data((1, 28, 28))).train.lr == CONV_LR
    assert apply_recipe((1, 28, 28), None, None) == ({}, {"lr": TrainConfig.lr})


def test_a_real_dataset_gets_the_recipe_through_new_run_config():
    assert new_run_config("digits", model={"body": "conv"}).train.lr == CONV_LR
    assert new_run_config("digits").train.lr == TrainConfig.lr


def test_bad_shapes_are_refused_and_the_summary_names_both_bodies():
    with pytest.raises(ValueError):
        recipe_for((28, 28), "conv")
    assert auto_summary("lr") == "5e-3 for the MLP, 1e-3 for conv"


def test_a_fresh_conv_run_starts_its_output_at_the_data_mean_and_a_resume_keeps_its_weights(tmp_path):
    import torch

    from tests.conftest import tiny_config
    from vae_core.data import load_dataset
    from vae_core.runs import rundir as rd
    from vae_core.runs.trainer import TrainLoop

    cfg = tiny_config(epochs=1, max_steps=1)
    cfg.model.body = "conv"
    loop = TrainLoop(cfg, tmp_path, {}, since=0.0)
    x = load_dataset("digits").x_train
    bias = loop.model.dec_convs[-1].bias.detach()
    assert torch.sigmoid(bias).item() < 0.4  # digits are mostly background: well below the 0.5 of a zero bias
    # The decoded mean of z = 0 is near the data's mean intensity, not 0.5.
    with torch.no_grad():
        start = loop.model.decoder_mean(loop.model.decode(torch.zeros(1, cfg.model.latent_dim))).mean().item()
    assert abs(start - x[:].mean().item()) < 0.1
    loop.run()
    trained = rd.load_snapshot(tmp_path).model.dec_convs[-1].bias.detach().clone()
    cfg.train.max_steps = 2
    again = TrainLoop(cfg, tmp_path, {}, since=0.0, resume=True)
    assert torch.equal(again.model.dec_convs[-1].bias.detach(), trained)  # not reset on resume
