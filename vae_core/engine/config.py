"""Configuration dataclasses: one per component, each round-tripping through JSON.

A run directory's ``config.json`` is ``RunConfig.to_dict()``; any reader can rebuild
the model from it alone: ``family`` names the model family and ``model`` holds that
family's own config (see ``families.build_model`` and ``runs.rundir.load_snapshot``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

# 2: adds ``family``. A version-1 config is read as the image VAE; one written before
# ``lr_schedule`` existed trained at a constant rate and resumes that way.
# 3: adds the validation split and early stopping; an older run trained on its whole training
# set without either, and resumes that way.
FORMAT_VERSION = 3

Family = Literal["image_vae", "external", "prodlda", "lda"]
ExternalLikelihood = Literal["bernoulli", "gaussian"]
Body = Literal["mlp", "conv"]
Likelihood = Literal["bernoulli", "gaussian_fixed", "gaussian_learned"]
Objective = Literal["elbo", "iwae"]
KLEstimator = Literal["analytic", "monte_carlo"]
LRSchedule = Literal["cosine", "constant"]
DataPlacement = Literal["auto", "device", "stream"]

# Hard limits that keep a typo in a form from allocating a huge model or diverging at once.
MAX_LATENT_DIM = 512
MAX_HIDDEN = 4096
MAX_BATCH = 65536


class ConfigError(ValueError):
    """A config value is out of range or unknown; the message says which and what is allowed."""


def _check_literal(name: str, value: Any, literal: Any) -> None:
    allowed = get_args(literal)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _check_range(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")


def _image_shape(shape: Any) -> tuple[int, int, int]:
    """An image's (C, H, W) as ints (JSON gives lists), checked: 1 or 3 channels, 4 to 256 pixels a side."""
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape must be (C, H, W), got {shape!r}") from None
    if len(shape) != 3:
        raise ConfigError(f"input_shape must be (C, H, W), got {shape!r}")
    c, h, w = shape
    if c not in (1, 3):
        raise ConfigError(f"images must have 1 or 3 channels, got {c}")
    for name, s in (("height", h), ("width", w)):
        _check_range(f"image {name}", s, 4, 256, integer=True)
    return shape


@dataclass
class ModelConfig:
    """The VAE's architecture and likelihood.

    input_shape: (C, H, W) of the data; 1 or 3 channels, 8x8 up to 64x64.
    body: "mlp" (one hidden layer each way, as in Kingma & Welling's experiments) or "conv".
    latent_dim: size of z; any value >= 1.
    hidden: MLP hidden width, or the conv body's fully connected width.
    likelihood: decoder p(x|z): Bernoulli on logits, or Gaussian with fixed or learned sigma.
    decoder_sigma: Gaussian decoder sigma (fixed value, or the learned one's initial value).
    conv_channels: channels of the first conv layer; doubled at each stride-2 layer.
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    body: Body = "mlp"
    latent_dim: int = 20
    hidden: int = 400
    likelihood: Likelihood = "bernoulli"
    decoder_sigma: float = 0.1
    conv_channels: int = 32

    def validate(self) -> "ModelConfig":
        self.input_shape = _image_shape(self.input_shape)
        _check_literal("body", self.body, Body)
        _check_literal("likelihood", self.likelihood, Likelihood)
        _check_range("latent_dim", self.latent_dim, 1, MAX_LATENT_DIM, integer=True)
        _check_range("hidden", self.hidden, 1, MAX_HIDDEN, integer=True)
        _check_range("conv_channels", self.conv_channels, 1, 512, integer=True)
        _check_range("decoder_sigma", self.decoder_sigma, 1e-3, 10.0)
        return self

    def label(self) -> str:
        """The model in a few words, for lists and captions."""
        return f"{self.body} · z={self.latent_dim} · {self.likelihood}"


@dataclass
class TrainConfig:
    """How to train.

    dataset: a dataset spec understood by ``vae_core.data.load_dataset`` ("mnist", "shapes:64", "idx:/dir", ...).
    image_size, channels: only for user folders; None keeps the dataset's own.
    beta: weight of the KL term; 1 is the ELBO, other values give the beta-VAE objective.
    objective: "elbo" (SGVB) or "iwae" (importance-weighted bound with ``samples`` samples).
    samples: L, the number of z samples per example (Monte Carlo average for "elbo", k for "iwae").
    kl_estimator: "analytic" (Kingma & Welling estimator B) or "monte_carlo" (estimator A).
    lr_schedule: "cosine" decays the learning rate to 0 over the run after a linear warm-up of
        ``warmup_steps``; "constant" keeps ``lr`` throughout. The defaults (cosine, lr 5e-3,
        batch 64) reach a better test ELBO in the same wall clock than Adam 1e-3 at batch 128
        (bench/RESULTS.md, "Test ELBO at equal wall-clock"). ``runs.manager.new_run_config``
        fills ``lr`` from ``engine.recipe`` when none is given: 1e-3 for the conv body.
    device: "auto" picks cuda, then mps, then cpu.
    snapshot_every_s: weights are published within an epoch at most this often; an epoch's end
        publishes too unless a snapshot went out less than min(this, 2 s) ago.
    log_every_steps: a metrics line (and the only host sync) every this many steps.
    data_placement: "device" keeps the training images (as uint8) on the training device for the
        whole run; "stream" reads each batch from the dataset cache, the next one while the
        current one trains; "auto" streams only what does not fit (``data.feed.choose_placement``).
    num_threads: CPU threads for the worker; None takes every core, or all but one when the
        web app launched the worker (``vae_core.trainer.worker_threads``).
    max_steps: stop after this many optimiser steps (for quick checks); None trains all epochs.
    validation_fraction: share of the training set held out as a validation split (stratified by
        label, drawn with ``seed``: ``data.validation_split``). Its ELBO, evaluated at each
        epoch's end, picks the best snapshot and drives early stopping; 0 holds nothing out.
    patience: after this many epochs in a row without a better validation ELBO, the learning
        rate is annealed to 0 over twice as many epochs and the run ends there (unless its planned
        epochs end first); the best snapshot is kept beside the latest. 0 trains every planned
        epoch on the planned schedule. 5 lets a 150-epoch MNIST run end at least as well as the
        30-epoch default, in about 35 epochs (bench/RESULTS.md, "Early stopping").
    validation_split_sha256: written by the trainer when the run starts: a digest of the
        validation indices, so a resume that would draw a different split (the dataset
        changed) is refused rather than leaking validation images into training.
    tensorboard: also write TensorBoard event files under ``<run>/tensorboard/`` (scalars, and
        the test set's posterior means for the Embedding Projector); needs the optional
        ``tensorboard`` package (``pip install latent-explorer[tensorboard]``).
    nproc: training processes on this machine (DDP launched by torchrun, one per GPU on cuda,
        gloo processes on CPU); 1 trains in one process. ``batch_size`` and ``lr`` stay the
        global ones whatever the number of processes.
    """

    dataset: str = "mnist"
    image_size: int | None = None
    channels: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-3
    lr_schedule: LRSchedule = "cosine"
    warmup_steps: int = 100
    beta: float = 1.0
    objective: Objective = "elbo"
    samples: int = 1
    kl_estimator: KLEstimator = "analytic"
    seed: int = 0
    device: str = "auto"
    snapshot_every_s: float = 5.0
    log_every_steps: int = 25
    num_threads: int | None = None
    max_steps: int | None = None
    data_placement: DataPlacement = "auto"
    nproc: int = 1
    validation_fraction: float = 0.1
    patience: int = 5
    validation_split_sha256: str | None = None
    tensorboard: bool = False

    def validate(self) -> "TrainConfig":
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError("dataset must be a non-empty dataset name")
        _check_range("epochs", self.epochs, 1, 100_000, integer=True)
        _check_range("batch_size", self.batch_size, 1, MAX_BATCH, integer=True)
        _check_range("learning rate", self.lr, 1e-7, 1.0)
        _check_literal("lr_schedule", self.lr_schedule, LRSchedule)
        _check_range("warmup_steps", self.warmup_steps, 0, 10**9, integer=True)
        _check_range("beta", self.beta, 0.0, 1000.0)
        _check_literal("objective", self.objective, Objective)
        _check_literal("kl_estimator", self.kl_estimator, KLEstimator)
        _check_range("samples", self.samples, 1, 5000, integer=True)
        _check_range("seed", self.seed, 0, 2**63 - 1, integer=True)
        if self.device not in ("auto", "cpu", "mps") and not str(self.device).startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")
        _check_range("snapshot_every_s", self.snapshot_every_s, 0.0, 86_400.0)
        _check_range("log_every_steps", self.log_every_steps, 1, 1_000_000, integer=True)
        _check_literal("data_placement", self.data_placement, DataPlacement)
        _check_range("nproc", self.nproc, 1, 64, integer=True)
        _check_range("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_range("patience", self.patience, 0, 100_000, integer=True)
        if self.validation_split_sha256 is not None and not (
                isinstance(self.validation_split_sha256, str) and len(self.validation_split_sha256) <= 128):
            raise ConfigError("validation_split_sha256 must be a short hex string")
        if not isinstance(self.tensorboard, bool):
            raise ConfigError(f"tensorboard must be true or false, got {self.tensorboard!r}")
        if self.num_threads is not None:
            _check_range("num_threads", self.num_threads, 1, 1024, integer=True)
        if self.max_steps is not None:
            _check_range("max_steps", self.max_steps, 1, 10**9, integer=True)
        for name in ("image_size", "channels"):
            v = getattr(self, name)
            if v is not None:
                _check_range(name, v, 1 if name == "channels" else 4, 256, integer=True)
        return self


@dataclass
class ExternalModelConfig:
    """What the user declared about a VAE trained elsewhere (``python -m vae_core import-model``).

    The code that builds the model is named in the run's ``external.json``, which only the CLI
    writes and signs; this config holds facts only, so reading it imports nothing.

    input_shape: (C, H, W) of one image, as the model's ``encode`` takes it.
    value_range: the interval the model's inputs live in: (0, 1) or (-1, 1). Dataset images in
        [0, 1] are mapped onto it before ``encode``, and decoder means mapped back for display.
    likelihood: "bernoulli" (``decode`` returns logits) or "gaussian" (``decode`` returns the mean).
    sigma: the Gaussian decoder's fixed sigma, in the model's value range; None when it is learned
        and read from the module's parameter ``sigma_param`` (holding log sigma).
    latent_dim: D, measured from ``encode`` when the model is imported.
    factory: the ``package.module:function`` it came from, for people to read.
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    value_range: tuple[float, float] = (0.0, 1.0)
    likelihood: ExternalLikelihood = "bernoulli"
    sigma: float | None = None
    sigma_param: str = "log_sigma"
    latent_dim: int = 2
    factory: str = ""

    def validate(self) -> "ExternalModelConfig":
        self.input_shape = _image_shape(self.input_shape)
        self.value_range = tuple(float(v) for v in self.value_range)
        if self.value_range not in ((0.0, 1.0), (-1.0, 1.0)):
            raise ConfigError(f"value_range must be 0,1 or -1,1, got {self.value_range!r}")
        _check_literal("likelihood", self.likelihood, ExternalLikelihood)
        if self.likelihood == "bernoulli" and self.value_range != (0.0, 1.0):
            raise ConfigError("a Bernoulli likelihood models values in [0, 1]: declare --value-range 0,1")
        if self.sigma is not None:
            _check_range("sigma", self.sigma, 1e-6, 1e3)
        if not (isinstance(self.sigma_param, str) and self.sigma_param.isidentifier()):
            raise ConfigError(f"sigma_param must be a parameter name, got {self.sigma_param!r}")
        _check_range("latent_dim", self.latent_dim, 1, MAX_LATENT_DIM, integer=True)
        if not isinstance(self.factory, str) or len(self.factory) > 300:
            raise ConfigError("factory must be a short 'package.module:function' text")
        return self

    def label(self) -> str:
        """The model in a few words, for lists and captions."""
        lo, hi = self.value_range
        return f"imported {self.factory} · z={self.latent_dim} · {self.likelihood} in [{lo:g}, {hi:g}]"


MAX_VOCAB = 200_000


@dataclass
class TopicModelConfig:
    """A neural topic model over bag-of-words count vectors (ProdLDA, ``engine.prodlda``).

    vocab_size: V, the number of words in the vocabulary (the data's; one count per word).
    topics: K, the number of topics and the size of z (theta = softmax(z)); at least 2.
    alpha: the Dirichlet prior's concentration on the topic proportions: a float for the
        symmetric Dirichlet(alpha, ..., alpha), or one positive value per topic. The model's
        Gaussian prior is its Laplace approximation (``objectives.dirichlet_laplace_prior``).
    hidden: the width of the encoder's two softplus layers (100 in Srivastava & Sutton 2017).
    dropout: the dropout rate on the encoder's last hidden layer and on theta, in [0, 0.95].
    """

    vocab_size: int = 2000
    topics: int = 20
    alpha: float | tuple[float, ...] = 1.0
    hidden: int = 100
    dropout: float = 0.2

    def validate(self) -> "TopicModelConfig":
        _check_range("vocab_size", self.vocab_size, 2, MAX_VOCAB, integer=True)
        _check_range("topics", self.topics, 2, MAX_LATENT_DIM, integer=True)
        if isinstance(self.alpha, (list, tuple)):  # JSON gives lists
            if len(self.alpha) != self.topics:
                raise ConfigError(f"alpha must be one number, or one per topic ({self.topics}), "
                                  f"got {len(self.alpha)} values")
            for i, a in enumerate(self.alpha):
                _check_range(f"alpha[{i}]", a, 1e-3, 1e3)
            self.alpha = tuple(float(a) for a in self.alpha)
        else:
            _check_range("alpha (the Dirichlet concentration)", self.alpha, 1e-3, 1e3)
        _check_range("hidden", self.hidden, 1, MAX_HIDDEN, integer=True)
        _check_range("dropout", self.dropout, 0.0, 0.95)
        return self

    def alphas(self) -> tuple[float, ...]:
        """alpha as one value per topic."""
        if isinstance(self.alpha, (list, tuple)):
            return tuple(float(a) for a in self.alpha)
        return (float(self.alpha),) * int(self.topics)

    def label(self) -> str:
        """The model in a few words, for lists and captions."""
        alpha = f"{self.alpha:g}" if not isinstance(self.alpha, (list, tuple)) else "per-topic"
        return f"ProdLDA · K={self.topics} topics · V={self.vocab_size} words · alpha={alpha}"


@dataclass
class LdaConfig:
    """Classical LDA (Blei, Ng & Jordan 2003) fitted by online variational Bayes (Hoffman, Blei &
    Bach 2010) through scikit-learn's ``LatentDirichletAllocation`` (``engine.lda``).

    vocab_size, topics: V and K, as for ProdLDA.
    alpha: the Dirichlet prior on each document's topic proportions; None takes 1/K
        (scikit-learn's default).
    eta: the Dirichlet prior on each topic's word distribution; None takes 1/K.
    learning_offset, learning_decay: the online step size rho_t = (offset + t)^-decay over the
        mini-batch updates t; decay in (0.5, 1] guarantees convergence (Hoffman et al. 2010).
    """

    vocab_size: int = 2000
    topics: int = 20
    alpha: float | None = None
    eta: float | None = None
    learning_offset: float = 10.0
    learning_decay: float = 0.7

    def validate(self) -> "LdaConfig":
        _check_range("vocab_size", self.vocab_size, 2, MAX_VOCAB, integer=True)
        _check_range("topics", self.topics, 2, MAX_LATENT_DIM, integer=True)
        for name in ("alpha", "eta"):
            if getattr(self, name) is not None:
                _check_range(name, getattr(self, name), 1e-4, 1e3)
        _check_range("learning_offset", self.learning_offset, 1.0, 1e6)
        _check_range("learning_decay", self.learning_decay, 0.5, 1.0)
        return self

    def prior_alpha(self) -> float:
        return 1.0 / self.topics if self.alpha is None else float(self.alpha)

    def prior_eta(self) -> float:
        return 1.0 / self.topics if self.eta is None else float(self.eta)

    def label(self) -> str:
        """The model in a few words, for lists and captions."""
        return f"LDA · K={self.topics} topics · V={self.vocab_size} words · alpha={self.prior_alpha():g}"


# Each family's model config class, by the name ``config.json`` gives it.
MODEL_CONFIGS: dict[str, type] = {"image_vae": ModelConfig, "external": ExternalModelConfig,
                                  "prodlda": TopicModelConfig, "lda": LdaConfig}
# The families whose data is text (a bag-of-words corpus; ``data.text``).
TEXT_FAMILIES = frozenset({"prodlda", "lda"})


@dataclass
class RunConfig:
    """Everything that defines a run; written once to ``runs/<name>/config.json``.

    family: the model family (``families.FAMILIES``); ``model`` is that family's config.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    family: Family = "image_vae"
    format_version: int = FORMAT_VERSION

    @property
    def is_text(self) -> bool:
        """Whether the run models text (word counts) rather than images."""
        return self.family in TEXT_FAMILIES

    def validate(self) -> "RunConfig":
        _check_literal("family", self.family, Family)
        if not isinstance(self.model, MODEL_CONFIGS[self.family]):
            raise ConfigError(f"the {self.family} family needs a {MODEL_CONFIGS[self.family].__name__}")
        self.model.validate()
        self.train.validate()
        if self.family == "lda" and self.train.nproc > 1:
            raise ConfigError("LDA trains in one process (scikit-learn's online variational Bayes): set nproc to 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name, value in d["model"].items():  # JSON has lists, not tuples
            if isinstance(value, tuple):
                d["model"][name] = list(value)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        version = d.get("format_version")
        if version == 1:
            d = _migrate_v1(d)
        if version in (1, 2):
            d = _migrate_v2(d)
        elif version != FORMAT_VERSION:
            raise ConfigError(f"config format version {version!r} is not supported (this build reads 1 to {FORMAT_VERSION})")
        family = d.get("family")
        if family not in MODEL_CONFIGS:
            raise ConfigError(f"unknown model family {family!r}: this build knows {', '.join(MODEL_CONFIGS)}")
        model = _from_fields(MODEL_CONFIGS[family], d.get("model", {}), "model")
        train = _from_fields(TrainConfig, d.get("train", {}), "train")
        return cls(model=model, train=train, family=family).validate()

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(d)


def _migrate_v1(d: dict) -> dict:
    """A version-1 config as version 2: the image VAE family; a run written before the
    schedule existed trained at a constant rate, and a resumed one must go on that way
    rather than jump onto the cosine default's curve."""
    train = d.get("train", {})
    if isinstance(train, dict) and "lr_schedule" not in train:
        train = {**train, "lr_schedule": "constant"}
    return {**d, "train": train, "family": "image_vae", "format_version": 2}


def _migrate_v2(d: dict) -> dict:
    """A version-2 config as version 3: the run trained on its whole training set with no early
    stopping, and a resumed one goes on that way."""
    train = d.get("train", {})
    if isinstance(train, dict):
        train = {"validation_fraction": 0.0, "patience": 0, **train}
    return {**d, "train": train, "format_version": FORMAT_VERSION}


def _from_fields(klass: type, d: Any, section: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"config section {section!r} must be an object")
    known = {f.name for f in fields(klass)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown {section} setting(s): {', '.join(sorted(unknown))}")
    return klass(**d)
