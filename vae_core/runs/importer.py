"""``import-model``: make a run directory from a VAE trained elsewhere.

The user's factory builds their module; their weights (safetensors, or a state-dict ``.pt``
read with ``torch.load(weights_only=True)``) go into it with strict key matching; the model is
checked against the protocol on a real batch of the dataset (``engine.external.check_model``);
then the run directory is written the way the trainer writes one, so every explorer page and
every lab that needs no training reads it unchanged:

    config.json          family "external": the declared facts (shape, value range, likelihood)
    external.json        the factory, signed with this machine's key (``external_source``)
    weights.safetensors  the user's weights, under their own names
    summary.safetensors  the test set's codes, as the trainer publishes them
    metrics.jsonl        one "epoch" record with the test ELBO
    status.json          state "finished", saying where the model came from

Everything is written into a staging folder and renamed into place, so a failed import leaves
no run behind.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..engine.config import ExternalModelConfig, RunConfig, TrainConfig
from ..engine.evaluate import evaluate_test_set
from ..engine.external import CheckReport, ExternalModelError, ExternalVAE, build_inner, check_model, to_cpu_float
from ..engine.families import ExternalSource
from . import rundir as rd
from .external_source import write_external
from .summary import summary_of_codes, write_summary

CHECK_BATCH = 16
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    config: RunConfig
    check: CheckReport
    test_elbo: float
    n_test: int


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a ``.safetensors`` file, or from a state-dict file read with
    ``torch.load(weights_only=True)`` (never a full unpickle)."""
    path = Path(path)
    if not path.is_file():
        raise ExternalModelError("weights", f"{path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ExternalModelError("weights", f"{path.name} is not a readable safetensors file ({e})") from None
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise ExternalModelError("weights", f"{path.name}: expected a .safetensors file or a state dict saved with "
                                            f"torch.save(model.state_dict(), …) as {', '.join(STATE_DICT_SUFFIXES)}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise ExternalModelError("weights", f"{path.name} could not be read as a state dict with weights_only=True "
                                            f"({str(e).splitlines()[0][:200]}). Save model.state_dict(), not the "
                                            "model object, or save it as .safetensors") from None
    # A training checkpoint often nests the state dict under one well-known key.
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise ExternalModelError("weights", f"{path.name} does not hold a state dict (a mapping of names to "
                                            "tensors); save it with torch.save(model.state_dict(), path)")
    return obj


def load_weights_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Load ``tensors`` into the user's module with strict key matching, or say what differs."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}" + (" …" if len(missing) > 4 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}" + (" …" if len(unexpected) > 4 else ""))
        if wrong:
            k = wrong[0]
            parts.append(f"{k} is {tuple(tensors[k].shape)} in the file but {tuple(expected[k].shape)} in the module")
        raise ExternalModelError("weights", f"{name} does not match the module the factory built: " + "; ".join(parts))
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ExternalModelError("weights", f"{name} holds NaN or infinite values in {', '.join(bad[:3])}")
    ref = next(iter(expected.values()), None)
    module.load_state_dict({k: v.to(device=ref.device if ref is not None else "cpu",
                                    dtype=expected[k].dtype) for k, v in tensors.items()})


def import_model(*, factory: str, dataset: str, name: str, runs_root: Path, likelihood: str,
                 value_range: tuple[float, float], input_shape: tuple[int, int, int] | None = None, weights: Path | None = None,
                 sigma: float | None = None, sigma_param: str = "log_sigma", python_path: str | None = None,
                 seed: int = 0, say: Callable[[str], None] = lambda _: None,
                 progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Check the user's model on a real batch and write its run directory (see the module docstring).

    Raises ``ExternalModelError`` (the model breaks the protocol), ``rd.RunError`` (the name is
    taken or not allowed) or ``DatasetError``; in every case nothing is left on disk.
    """
    from ..data import load_dataset

    name = rd.validate_run_name(name)
    runs_root = Path(runs_root)
    final = runs_root / name
    if final.exists():
        raise rd.RunError(f"A run named {name!r} already exists in {runs_root}; choose another --name.")
    folder_like = dataset.split(":", 1)[0] in ("folder", "zip", "npz")
    c, h = (input_shape[0], input_shape[1]) if input_shape and folder_like else (None, None)
    data = load_dataset(dataset, image_size=h, channels=c, seed=seed, progress=progress)
    declared = ExternalModelConfig(input_shape=tuple(input_shape or data.x_test.image_shape),
                                   value_range=tuple(value_range), likelihood=likelihood, sigma=sigma,
                                   sigma_param=sigma_param, factory=factory)
    declared.validate()
    if tuple(data.x_test.image_shape) != declared.input_shape:
        raise ExternalModelError("input shape", f"{dataset}'s images are {tuple(data.x_test.image_shape)}, but the "
                                                f"model was declared with --input-shape {','.join(map(str, declared.input_shape))}")
    x = data.x_test[slice(0, CHECK_BATCH)]

    say(f"building the model: {factory}()")
    inner = build_inner(factory, python_path)
    if weights is not None:
        load_weights_into(inner, read_state_dict(weights), Path(weights).name)
    inner, notes = to_cpu_float(inner)
    for note in notes:
        say(f"note: the model's weights were {note}")
    probe = ExternalVAE(inner, declared)
    with torch.no_grad():
        try:
            declared.latent_dim = int(probe.encode(x).mu.shape[1])
        except Exception:
            pass  # check_model runs encode again and reports what is wrong, naming the part
    model = ExternalVAE(inner, declared)
    report = check_model(model, x, tuple(notes))
    say(f"protocol checks passed on {report.batch} test images: {report.latent_dim} latent dims, decoder output "
        f"{report.output_range[0]:.3g} to {report.output_range[1]:.3g}, ELBO {report.elbo:.2f} nats")

    config = RunConfig(model=declared, family="external",
                       train=TrainConfig(dataset=dataset, seed=seed, epochs=1, validation_fraction=0.0, patience=0,
                                         image_size=h, channels=c)).validate()
    runs_root.mkdir(parents=True, exist_ok=True)
    staging = runs_root / f".import-{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        rd.write_config(staging, config)
        rd.save_snapshot(staging, model, step=0, epoch=0)
        digest = hashlib.sha256((staging / rd.WEIGHTS).read_bytes()).hexdigest()
        write_external(staging, ExternalSource(factory, python_path), digest)
        say(f"encoding the {len(data.x_test):,} test images")
        with torch.no_grad():
            ev = evaluate_test_set(model, data.x_test, seed=seed)
        write_summary(staging, summary_of_codes(ev.mu, ev.logvar, 0))
        now = time.time()
        rd.append_metrics(staging, {"kind": "epoch", "step": 0, "epoch": 0, "test_elbo": ev.elbo,
                                    "test_log_likelihood": ev.log_likelihood, "test_kl": ev.kl, "wall_s": 0.0})
        rd.write_status(staging, state="finished", step=0, epoch=0, heartbeat=now, test_elbo=ev.elbo,
                        message=f"imported from {factory}: trained elsewhere, explored here")
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(final, config, report, ev.elbo, len(data.x_test))
