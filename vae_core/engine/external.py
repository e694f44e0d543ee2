"""The external family: a user's own VAE, trained elsewhere, behind the model protocol.

The user's code is a factory, ``package.module:function``, called with no arguments, that
returns a ``torch.nn.Module`` with

    encode(x) -> (mu, logvar)   or an object with ``mu`` and ``logvar``, or a ``torch.distributions.Normal``
    decode(z) -> the decoder's output: Bernoulli logits, or the Gaussian mean

for x of shape (B, C, H, W) in the model's own value range. ``ExternalVAE`` wraps it so every
page and lab sees a ``LatentModel``: images in [0, 1] go in, and are mapped onto the model's
range; decoder means come back in [0, 1] for display. log p(x|z) is measured in the model's own
value range (the nats the user's own training printed), with the project's one formula per
likelihood from ``objectives``.

``check_model`` runs the protocol on a real batch at import and turns every way a model can
break it into one ``ExternalModelError`` that names the part and what was expected.

Importing a factory executes the user's code, so ``load_factory`` is only ever called with a
factory named by the CLI (``import-model``) or by a run directory the CLI signed on this
machine (``runs.external_source``); nothing the web UI receives reaches it.
"""
from __future__ import annotations

import importlib
import math
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from .config import ExternalModelConfig
from .objectives import elbo_terms, image_log_likelihood
from .protocol import InputSpec, Posterior

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class ExternalModelError(Exception):
    """A user's model does not keep the protocol; the message names the part and what was expected."""

    def __init__(self, part: str, message: str):
        super().__init__(f"{part}: {message}")
        self.part = part


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# --- the factory ---------------------------------------------------------------------------
@contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on sys.path while a factory is imported (the folder it was named from)."""
    if not folder or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass


def parse_factory(spec: str) -> tuple[str, str]:
    """("package.module", "function") from "package.module:function"."""
    if not isinstance(spec, str) or not _FACTORY_RE.match(spec.strip()):
        raise ExternalModelError("factory", f"{spec!r} is not of the form package.module:function "
                                            "(for example examples.own_vae.model:load)")
    module, func = spec.strip().split(":")
    return module, func


def load_factory(spec: str, python_path: str | None = None) -> Callable[[], nn.Module]:
    """The factory function named by ``spec``, imported with ``python_path`` first on sys.path."""
    module_name, func_name = parse_factory(spec)
    with _on_path(python_path):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            where = f" (looked in {python_path} and the installed packages)" if python_path else ""
            raise ExternalModelError("factory", f"cannot import module {module_name!r}: {e}{where}. "
                                                "Run the command from the folder that holds the package, or pass --path") from None
        except Exception as e:  # the user's module failed while being imported
            raise ExternalModelError("factory", f"importing {module_name!r} raised {_one_line(e)}") from None
    fn = getattr(module, func_name, None)
    if fn is None:
        raise ExternalModelError("factory", f"module {module_name!r} has no {func_name!r}")
    if not callable(fn):
        raise ExternalModelError("factory", f"{spec} is a {type(fn).__name__}, not a function")
    return fn


def build_inner(spec: str, python_path: str | None = None) -> nn.Module:
    """Call the factory and check it gave a module with ``encode`` and ``decode``."""
    fn = load_factory(spec, python_path)
    try:
        module = fn()
    except Exception as e:
        raise ExternalModelError("factory", f"{spec}() raised {_one_line(e)}") from None
    if not isinstance(module, nn.Module):
        raise ExternalModelError("factory", f"{spec}() returned a {type(module).__name__}; expected a torch.nn.Module")
    for method in ("encode", "decode"):
        if not callable(getattr(module, method, None)):
            raise ExternalModelError(method, f"the module {type(module).__name__} has no {method}() method")
    return module


def to_cpu_float(module: nn.Module, device: str | torch.device = "cpu") -> tuple[nn.Module, list[str]]:
    """The module on ``device`` in float32, and notes on what was moved or converted."""
    notes = []
    params = list(module.parameters()) + list(module.buffers())
    devices = sorted({str(p.device) for p in params})
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in params if p.is_floating_point()})
    if any(p.is_meta for p in params):
        raise ExternalModelError("weights", "the factory returned a module on the meta device (no values): "
                                            "build it on a real device, or load its weights in the factory")
    if devices and devices != [str(torch.device(device))]:
        notes.append(f"moved from {', '.join(devices)} to {device}")
    if dtypes and dtypes != ["float32"]:
        notes.append(f"converted from {', '.join(dtypes)} to float32")
    try:
        module = module.to(device=device, dtype=torch.float32)
    except Exception as e:
        raise ExternalModelError("weights", f"moving the module to {device} float32 raised {_one_line(e)}") from None
    return module.eval(), notes


# --- the adapter ---------------------------------------------------------------------------
def _posterior_from(out, batch: int) -> Posterior:
    """A ``Posterior`` from what a user's ``encode`` returned."""
    if isinstance(out, torch.distributions.Independent):
        out = out.base_dist
    if isinstance(out, torch.distributions.Normal):
        mu, logvar = out.loc, 2 * torch.log(out.scale)
    elif isinstance(out, dict) and {"mu", "logvar"} <= set(out):
        mu, logvar = out["mu"], out["logvar"]
    elif hasattr(out, "mu") and hasattr(out, "logvar"):
        mu, logvar = out.mu, out.logvar
    elif isinstance(out, (tuple, list)) and len(out) >= 2:
        mu, logvar = out[0], out[1]
    else:
        raise ExternalModelError("encode", f"returned a {type(out).__name__}; expected (mu, logvar), an object "
                                           "with .mu and .logvar, or a torch.distributions.Normal")
    for name, t in (("mu", mu), ("logvar", logvar)):
        if not isinstance(t, torch.Tensor):
            raise ExternalModelError("encode", f"{name} is a {type(t).__name__}; expected a tensor")
        if not t.is_floating_point():
            raise ExternalModelError("encode", f"{name} has dtype {t.dtype}; expected floating point")
    if mu.dim() != 2 or mu.shape[0] != batch or logvar.shape != mu.shape:
        raise ExternalModelError(
            "encode", f"must give one (mu, logvar) pair per image, each (B, D): for a batch of {batch} it gave "
                      f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}")
    return Posterior(mu.float(), logvar.float())


class ExternalVAE(nn.Module):
    """A user's module as a ``LatentModel``: images in [0, 1] outside, the model's range inside."""

    def __init__(self, inner: nn.Module, config: ExternalModelConfig):
        super().__init__()
        self.inner = inner
        self.config = config
        lo, hi = config.value_range
        self._lo, self._width = float(lo), float(hi - lo)
        if config.sigma is not None:
            self.register_buffer("_fixed_log_sigma", torch.tensor(math.log(config.sigma)), persistent=False)

    # The user's weights are the inner module's, under their own names: a state dict (the run's
    # weights file) holds exactly what the user's module holds.
    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("image", tuple(self.config.input_shape), (0.0, 1.0))

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._width == 1.0 and self._lo == 0.0 else x * self._width + self._lo

    def encode(self, x: torch.Tensor) -> Posterior:
        return _posterior_from(self.inner.encode(self.to_model_range(x)), x.shape[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.inner.decode(z.reshape(-1, z.shape[-1]))
        if not isinstance(out, torch.Tensor):
            raise ExternalModelError("decode", f"returned a {type(out).__name__}; expected one tensor "
                                               f"(the {self._output_name()})")
        return out.float().reshape(*lead, *self.config.input_shape)

    def _output_name(self) -> str:
        return "Bernoulli logits" if self.config.likelihood == "bernoulli" else "Gaussian mean"

    @property
    def log_sigma(self) -> torch.Tensor:
        """The Gaussian decoder's log sigma, in the model's value range."""
        if self.config.sigma is not None:
            return self._fixed_log_sigma
        return getattr(self.inner, self.config.sigma_param)

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over pixels, in the model's own value range: (...)."""
        if self.config.likelihood == "bernoulli":
            return image_log_likelihood(x, decoded, "bernoulli")
        return image_log_likelihood(self.to_model_range(x), decoded, "gaussian", self.log_sigma)

    def _mean_in_model_range(self, decoded: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(decoded) if self.config.likelihood == "bernoulli" else decoded

    def decoder_mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] brought into [0, 1] for display."""
        return ((self._mean_in_model_range(decoded) - self._lo) / self._width).clamp(0, 1)

    def sample_x(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z), in [0, 1] for display (a Gaussian draw is clipped to the range)."""
        mean = self._mean_in_model_range(decoded)
        if self.config.likelihood == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return ((mean + self.sigma * noise - self._lo) / self._width).clamp(0, 1)


# --- the protocol check ----------------------------------------------------------------------
@dataclass(frozen=True)
class CheckReport:
    """What ``check_model`` measured on the real batch."""

    batch: int
    latent_dim: int
    output_range: tuple[float, float]
    elbo: float
    notes: tuple[str, ...] = ()


def _check_tensor(part: str, name: str, t: torch.Tensor, device: torch.device) -> None:
    if t.device != device:
        raise ExternalModelError(part, f"{name} is on {t.device}, but the input was on {device}: the model must "
                                       "compute on the device of its input (no hard-coded .cuda() or device=...)")
    bad = ~torch.isfinite(t)
    if bad.any():
        kinds = [k for k, m in (("NaN", torch.isnan(t)), ("infinite values", torch.isinf(t))) if m.any()]
        raise ExternalModelError(part, f"{name} contains {' and '.join(kinds)} ({int(bad.sum())} of {t.numel()} "
                                       "entries); expected finite numbers")


def _call(part: str, fn, *args):
    try:
        return fn(*args)
    except ExternalModelError:
        raise
    except Exception as e:
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        raise ExternalModelError(part, f"raised {_one_line(e)} on input of shape {shapes}") from None


@torch.no_grad()
def check_model(model: ExternalVAE, x: torch.Tensor, notes: tuple[str, ...] = ()) -> CheckReport:
    """Run the protocol on a real batch ``x`` (B, C, H, W) in [0, 1] and check every part of it.

    Raises ``ExternalModelError`` naming the broken part: encode (raises, wrong type, shapes,
    device, NaNs), decode (raises, shapes, NaNs), the likelihood (the output range does not fit
    it, a learned sigma that is missing) and the ELBO (not finite).
    """
    cfg = model.config
    device = x.device
    if tuple(x.shape[1:]) != tuple(cfg.input_shape):
        raise ExternalModelError("input shape", f"the dataset's images are {tuple(x.shape[1:])}, but the model "
                                                f"was declared with --input-shape {','.join(map(str, cfg.input_shape))}")
    b = x.shape[0]
    post = _call("encode", model.encode, x)
    for name, t in (("mu", post.mu), ("logvar", post.logvar)):
        _check_tensor("encode", name, t, device)
    d = post.mu.shape[1]
    if d != cfg.latent_dim:
        raise ExternalModelError("encode", f"gave {d} latent dimensions, but {cfg.latent_dim} were expected")

    raw = _call("decode", model.inner.decode, post.mu)
    if not isinstance(raw, torch.Tensor):
        raise ExternalModelError("decode", f"returned a {type(raw).__name__}; expected one tensor (the "
                                           f"{model._output_name()})")
    if tuple(raw.shape) != tuple(x.shape):
        raise ExternalModelError("decode", f"decode(encode(x).mu) must have the input's shape {tuple(x.shape)}, "
                                           f"got {tuple(raw.shape)}")
    _check_tensor("decode", "its output", raw, device)
    lo_out, hi_out = float(raw.min()), float(raw.max())

    lo, hi = cfg.value_range
    if cfg.likelihood == "bernoulli":
        if 0.0 <= lo_out and hi_out <= 1.0:
            raise ExternalModelError(
                "likelihood", f"decode's outputs all lie in [0, 1] ({lo_out:.3g} to {hi_out:.3g}), which looks like "
                              "probabilities; the Bernoulli likelihood expects logits (the values before the sigmoid)")
    else:
        margin = 0.1 * (hi - lo)
        if lo_out < lo - margin or hi_out > hi + margin:
            raise ExternalModelError(
                "likelihood", f"decode's outputs run from {lo_out:.3g} to {hi_out:.3g}, outside the declared value "
                              f"range [{lo:g}, {hi:g}]: a Gaussian decoder returns the mean in the data's range "
                              "(declare --value-range to match, or --likelihood bernoulli if these are logits)")
        if cfg.sigma is None:
            log_sigma = getattr(model.inner, cfg.sigma_param, None)
            if not isinstance(log_sigma, torch.Tensor):
                have = [n for n, _ in model.inner.named_parameters() if "." not in n]
                raise ExternalModelError(
                    "likelihood", f"--sigma learned reads log sigma from the module's parameter {cfg.sigma_param!r}, "
                                  f"which {type(model.inner).__name__} does not have"
                                  + (f" (its own parameters: {', '.join(have[:6])})" if have else "")
                                  + "; pass --sigma-param NAME or a fixed --sigma VALUE")
            try:
                torch.broadcast_shapes(tuple(log_sigma.shape), tuple(x.shape[1:]))
            except RuntimeError:
                raise ExternalModelError("likelihood", f"{cfg.sigma_param} has shape {tuple(log_sigma.shape)}, which "
                                                       f"does not broadcast to an image {tuple(x.shape[1:])}") from None
            _check_tensor("likelihood", cfg.sigma_param, log_sigma.detach(), device)

    terms = _call("ELBO", elbo_terms, model, x)
    elbo = float(terms.elbo.mean())
    if not math.isfinite(elbo):
        raise ExternalModelError("ELBO", f"is {elbo} on the check batch; expected a finite number")
    return CheckReport(b, d, (lo_out, hi_out), elbo, tuple(notes))
