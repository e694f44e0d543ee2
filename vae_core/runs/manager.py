"""RunManager: starts, controls, lists and moves runs under one runs folder.

Runs in the web app's process (one instance, cached by the UI) or in any script. It never
trains: each run's worker is a separate ``python -m vae_core train`` process, so the app's
cores and GIL stay free and a crash there cannot take the app down. The manager only writes
config and control files and spawns or signals processes; all state lives on disk, so a
reloaded page or a restarted server re-attaches by reading the run directories. Sweeps
(several runs trained in turn by one worker) are built on it in ``sweeps``.

Thread- and process-safe: ``start`` holds a lock (threading + an flock on the runs folder)
while it checks for an active run and creates the new one, so two sessions pressing Start
at once produce one run.

Moving runs: ``export_zip`` packs a run's files; ``import_zip`` takes such a zip back and
``import_run`` a separate config.json and weights.safetensors. Uploads are read in memory
(never extracted, never unpickled) and written only once every file checks out.
"""
from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..data.text import Vocabulary, save_vocabulary
from ..engine.config import (
    MODEL_CONFIGS,
    TEXT_FAMILIES,
    ConfigError,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ..engine.recipe import apply_recipe
from . import rundir as rd
from .external_source import EXTERNAL
from .run_data import VOCAB
from .trainer import SHARE_CPU_ENV

DEFAULT_RUNS_DIR = "runs"
RUNS_ENV = "LATENT_EXPLORER_RUNS"
# What a run's zip holds, and the limits an upload is held to. Weights are the only large
# file; a zip bomb is refused by its declared sizes and by its compression ratio (a run's
# files compress a few times at most, a bomb hundreds of times) before anything is inflated.
ARCHIVE_FILES = (rd.CONFIG, rd.WEIGHTS, rd.BEST, rd.METRICS, rd.STATUS, VOCAB)
MAX_IMPORT_BYTES = 256 * 1024 * 1024
MAX_FILE_BYTES = {rd.CONFIG: 1_000_000, rd.WEIGHTS: MAX_IMPORT_BYTES, rd.BEST: MAX_IMPORT_BYTES,
                  rd.METRICS: 64 * 1024 * 1024, rd.STATUS: 1_000_000, VOCAB: 32 * 1024 * 1024}
MAX_ZIP_MEMBERS = 8
MAX_ZIP_RATIO = 100
# Workers run as `python -m vae_core` from the folder that holds the package.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: rd.RunStatus
    config: RunConfig | None
    modified: float


@dataclass(frozen=True)
class StartResult:
    name: str
    created: bool
    message: str


def new_run_config(dataset: str = "mnist", *, image_size: int | None = None, channels: int | None = None,
                   model: dict | None = None, train: dict | None = None,
                   progress: Callable[[int, int], None] | None = None, data=None,
                   family: str | None = None) -> RunConfig:
    """A validated RunConfig whose model input shape is read from the dataset itself.

    Settings the caller leaves out (or passes as None) that the recipe for this data shape and
    body decides are filled from ``engine.recipe.recipe_for`` (e.g. a lower peak learning rate
    for the conv body); a value the caller passes always wins. The config holds the concrete values.
    progress: ``progress(done, total)`` while the dataset is first decoded into the disk cache.
    data: the dataset, when the caller has loaded it already (only its image shape is read).
    """
    from ..data import load_dataset
    from ..data.text import is_text_spec

    if family is None:
        family = "prodlda" if is_text_spec(dataset) else "image_vae"
    if family in TEXT_FAMILIES:
        return new_topic_run_config(dataset, family, model=model, train=train, data=data)
    if data is None:
        data = load_dataset(dataset, image_size=image_size, channels=channels, progress=progress)
    shape = tuple(data.image_shape)
    model, train = apply_recipe(shape, model, train)
    mc = ModelConfig(input_shape=shape, **model)
    tc = TrainConfig(dataset=dataset, image_size=image_size, channels=channels, **train)
    return RunConfig(model=mc, train=tc).validate()


# What a topic run trains with unless told otherwise (bench/RESULTS.md, "Topic models"): ProdLDA
# as Srivastava & Sutton (2017) train it (Adam at 2e-3 with beta1 0.99) but in batches of 64, not
# 200, with the cosine schedule: on 20 Newsgroups (K = 20, 100 epochs) the smaller batches' extra
# steps gave NPMI 0.248 against 0.214 and perplexity 1,071 against 1,141, in about 3 minutes on
# 2 cores. LDA as scikit-learn's online VB defaults. Neither holds out a
# validation split: on 20 Newsgroups ProdLDA's validation ELBO peaked at epoch 6 while its test
# ELBO and its topics went on improving to epoch 15 and beyond, so early stopping on it would end
# the run with worse topics (and LDA has no gradient training to stop).
TOPIC_TRAIN_DEFAULTS = {
    "prodlda": {"epochs": 100, "batch_size": 64, "lr": 2e-3, "warmup_steps": 0, "validation_fraction": 0.0,
                "patience": 0},
    "lda": {"epochs": 10, "batch_size": 128, "validation_fraction": 0.0, "patience": 0},
}


def new_topic_run_config(dataset: str, family: str, *, model: dict | None = None, train: dict | None = None,
                         data=None) -> RunConfig:
    """A validated config of a topic model (``prodlda`` or ``lda``) on the text corpus ``dataset``:
    its vocabulary size is the one the corpus gives (at most ``model["vocab_size"]``, default
    2,000), and a corpus with fewer documents than topics is refused."""
    from ..data.text import DEFAULT_VOCAB_SIZE, check_corpus, load_text_dataset

    model = {k: v for k, v in (model or {}).items() if v is not None}
    train = {**TOPIC_TRAIN_DEFAULTS[family], **{k: v for k, v in (train or {}).items() if v is not None}}
    klass = MODEL_CONFIGS[family]
    unknown = set(model) - {f.name for f in dataclasses.fields(klass)}
    if unknown:
        raise ConfigError(f"{family} has no setting {', '.join(sorted(unknown))}")
    vocab_size = int(model.pop("vocab_size", DEFAULT_VOCAB_SIZE))
    mc = klass(vocab_size=2, **model).validate()  # the settings are checked before the corpus is read
    if data is None:
        data = load_text_dataset(dataset, vocab_size=vocab_size, seed=int(train.get("seed", 0)))
    check_corpus(data, mc.topics)
    mc.vocab_size = len(data.vocabulary)
    return RunConfig(model=mc, train=TrainConfig(dataset=dataset, **train), family=family).validate()


def _uploaded_vocabulary(config: RunConfig, data: bytes | None):
    """A topic run's uploaded vocabulary, checked against its config (None for an image run)."""
    if not config.is_text:
        return None
    if data is None:
        raise rd.RunError("This is a topic model: its vocab.json must come with it. Upload the run's .zip "
                          "(Download on the Train page), which carries it.")
    if len(data) > MAX_FILE_BYTES[VOCAB]:
        raise rd.RunError("vocab.json is too large to be a Latent Explorer vocabulary.")
    try:
        vocab = Vocabulary.from_record(json.loads(data.decode("utf-8")), "vocab.json")
    except (UnicodeDecodeError, ValueError) as e:  # DatasetError is a ValueError
        raise rd.RunError(f"vocab.json cannot be read: {e}") from None
    if len(vocab) != config.model.vocab_size:
        raise rd.RunError(f"vocab.json has {len(vocab):,} words but the model has {config.model.vocab_size:,}")
    return vocab


def default_run_name(config: RunConfig) -> str:
    """A readable name such as ``mnist-mlp-z16-20240101-120000`` (before ``unique_name``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if config.is_text:
        return f"{config.train.dataset.split(':')[0]}-{config.family}-k{config.model.topics}-{stamp}"
    return f"{config.train.dataset.split(':')[0]}-{config.model.body}-z{config.model.latent_dim}-{stamp}"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV, DEFAULT_RUNS_DIR)).resolve()


def _worker_env() -> dict[str, str]:
    # Workers started here train beside the web app: unbuffered logs, and a core left to the app.
    return {**os.environ, "PYTHONUNBUFFERED": "1", SHARE_CPU_ENV: "1"}


class RunManager:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root is not None else default_runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}

    # --- paths -------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / rd.validate_run_name(name)

    def exists(self, name: str) -> bool:
        try:
            return (self.path(name) / rd.CONFIG).exists()
        except rd.RunError:
            return False

    @contextmanager
    def locked(self):
        """Hold the runs folder: a thread lock for this process, an flock for other server processes."""
        with self._lock, open(self.root / ".manager.lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # --- listing -----------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        """Every run directory, newest first. Unreadable configs are listed with config None."""
        self._reap()
        out = []
        for p in self.root.iterdir():
            if not p.is_dir() or p.name.startswith(".") or not (p / rd.CONFIG).exists():
                continue
            try:
                cfg = rd.read_config(p)
            except rd.RunError:
                cfg = None
            out.append(RunInfo(p.name, p, rd.read_status(p), cfg, _mtime(p)))
        return sorted(out, key=lambda r: r.modified, reverse=True)

    def status(self, name: str) -> rd.RunStatus:
        self._reap()
        return rd.read_status(self.path(name))

    def active_run(self) -> str | None:
        for r in self.list_runs():
            if r.status.active:
                return r.name
        return None

    def unique_name(self, base: str) -> str:
        """``base`` made a valid run name no run has yet (a "-2", "-3", ... suffix if taken)."""
        base = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "._-" else "-" for ch in base)
        while ".." in base:
            base = base.replace("..", ".")
        base = base[:48].lstrip("._-").rstrip(".-") or "run"
        name, i = base, 2
        while (self.root / name).exists():
            name, i = f"{base}-{i}", i + 1
        return name

    def _existing(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_dir():
            raise rd.RunError(f"There is no run named {name!r}.")
        return path

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, config: RunConfig, name: str | None = None, exclusive: bool = True) -> StartResult:
        """Create a run and spawn its worker. With ``exclusive`` (the app's default), if a run is
        already active the caller is attached to it instead: the machine trains one at a time."""
        config.validate()
        if config.family == "external":
            raise rd.RunError(IMPORTED_NOT_TRAINED)
        with self.locked():
            if exclusive:
                active = self.active_run()
                if active is not None:
                    return StartResult(active, False, f"Run {active} is already training; showing it.")
            if name is None:
                name = self.unique_name(default_run_name(config))
            path = self.path(name)
            try:
                path.mkdir()
            except FileExistsError:
                raise rd.RunError(f"A run named {name!r} already exists; choose another name.") from None
            rd.write_config(path, config)
            now = time.time()
            rd.write_status(path, state="starting", heartbeat=now, launched_at=now, step=0, epoch=0)
            self._spawn(name, resume=False)
            return StartResult(name, True, f"Started {name}.")

    def resume(self, name: str) -> StartResult:
        if (self.path(name) / EXTERNAL).exists():  # only import-model writes it
            raise rd.RunError(IMPORTED_NOT_TRAINED)
        with self.locked():
            st = self.status(name)
            if st.active:
                if st.state == "paused":
                    rd.request(self.path(name), "resume")
                    return StartResult(name, False, f"Resumed {name}.")
                return StartResult(name, False, f"{name} is already running.")
            other = self.active_run()
            if other is not None:
                return StartResult(other, False, f"Run {other} is training; stop it before resuming {name}.")
            now = time.time()
            rd.write_status(self.path(name), **{**_status_dict(st), "state": "starting", "heartbeat": now,
                                                "launched_at": now, "error": None})
            self._spawn(name, resume=True)
            return StartResult(name, True, f"Resuming {name} from step {st.step}.")

    def pause(self, name: str) -> None:
        rd.request(self.path(name), "pause")

    def stop(self, name: str, wait: float = 0.0) -> rd.RunStatus:
        """Ask the worker to stop (control file and SIGTERM); optionally wait for it to say so."""
        path = self.path(name)
        rd.request(path, "stop")
        st = rd.read_status(path)
        if st.pid and st.active:
            try:
                os.kill(st.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + wait
        while time.time() < deadline and rd.read_status(path).active:
            time.sleep(0.05)
        self._reap()
        return rd.read_status(path)

    def delete(self, name: str) -> None:
        with self.locked():
            path = self._existing(name)
            if self.status(name).active:
                raise rd.RunError(f"{name} is training; stop it before deleting it.")
            shutil.rmtree(path)

    def rename(self, old: str, new: str) -> None:
        with self.locked():
            src, dst = self._existing(old), self.path(new)
            if self.status(old).active:
                raise rd.RunError(f"{old} is training; stop it before renaming it.")
            if dst.exists():
                raise rd.RunError(f"A run named {new!r} already exists.")
            os.rename(src, dst)

    # --- moving runs -------------------------------------------------------------------
    def export_zip(self, name: str) -> bytes:
        """The run as a zip of ``<name>/<file>`` for each of ``ARCHIVE_FILES`` it has (no logs,
        locks, optimiser state or temp files); ``import_zip`` takes it back."""
        path = self._existing(name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for fname in ARCHIVE_FILES:
                if (path / fname).exists():
                    z.write(path / fname, f"{name}/{fname}")
        return buf.getvalue()

    def import_zip(self, data: bytes, name: str | None = None) -> str:
        """Add a run from a zip made by ``export_zip``; returns its name.

        name: the new run's name; None takes the folder name inside the zip, made unique.
        The config must be valid and the weights must load into the model it describes;
        metrics.jsonl is kept without its torn lines; the status is a fresh "stopped"
        ("imported"). Anything else, including a zip that is not one run's files, is refused
        with a ``RunError`` and nothing is written.
        """
        if name is not None:
            rd.validate_run_name(name)
        folder, files = read_run_zip(data)
        for needed in (rd.CONFIG, rd.WEIGHTS):
            if needed not in files:
                raise rd.RunError(f"The zip has no {needed}, so it is not a Latent Explorer run; "
                                  "download the run again and upload that zip.")
        metrics = None
        if rd.METRICS in files:
            metrics = rd.parse_metrics(files[rd.METRICS].decode("utf-8", errors="replace"))
        return self._import(name, files[rd.CONFIG], files[rd.WEIGHTS], metrics, default_name=folder or "imported",
                            best_bytes=files.get(rd.BEST), vocab_bytes=files.get(VOCAB))

    def import_run(self, name: str, config_bytes: bytes, weights_bytes: bytes) -> str:
        """Add a run from an uploaded config.json and weights.safetensors, after checking that the
        weights load into the model the config describes. Nothing is written unless both are valid."""
        rd.validate_run_name(name)
        return self._import(name, config_bytes, weights_bytes, None)

    def _import(self, name: str | None, config_bytes: bytes, weights_bytes: bytes, metrics: list[dict] | None,
                default_name: str = "imported", best_bytes: bytes | None = None,
                vocab_bytes: bytes | None = None) -> str:
        """best_bytes: the run's best snapshot, when it has one; it must load like the weights.
        vocab_bytes: a topic run's vocab.json, which it needs (read as JSON, its size checked)."""
        if (len(config_bytes) > MAX_FILE_BYTES[rd.CONFIG] or len(weights_bytes) > MAX_FILE_BYTES[rd.WEIGHTS]
                or len(best_bytes or b"") > MAX_FILE_BYTES[rd.BEST]):
            raise rd.RunError("The uploaded files are too large to be a Latent Explorer run.")
        try:
            config = RunConfig.from_json(config_bytes.decode("utf-8"))
        except UnicodeDecodeError:
            raise rd.RunError("config.json is not text.") from None
        except Exception as e:  # hostile values can trip more than ConfigError on their way in
            raise rd.RunError(f"config.json is not a valid run config: {e}") from None
        if config.family == "external":
            raise rd.RunError(UPLOADED_FACTORY_REFUSED)
        vocab = _uploaded_vocabulary(config, vocab_bytes)
        with self.locked():
            name = self.unique_name(default_name) if name is None else name
            final = self.path(name)
            if final.exists():
                raise rd.RunError(f"A run named {name!r} already exists.")
            staging = self.root / f".import-{name}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                (staging / rd.WEIGHTS).write_bytes(weights_bytes)
                snap = rd.load_weights_file(staging / rd.WEIGHTS, config)
                if best_bytes is not None:
                    (staging / rd.BEST).write_bytes(best_bytes)
                    rd.load_weights_file(staging / rd.BEST, config)  # refused like the weights if broken
                rd.write_config(staging, config)
                if vocab is not None:
                    save_vocabulary(staging / VOCAB, vocab)
                if metrics:
                    rd.atomic_write_bytes(staging / rd.METRICS, "".join(json.dumps(r) + "\n" for r in metrics).encode())
                rd.write_status(staging, state="stopped", step=snap.step, epoch=snap.epoch, heartbeat=time.time(),
                                message="imported")
                os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return name

    # --- processes ---------------------------------------------------------------------
    def _spawn(self, name: str, resume: bool) -> None:
        path = self.path(name)
        args = ["train", "--run-dir", str(path), *(["--resume"] if resume else [])]
        self.launch(args, log=path / "worker.log", runs=[name])

    def launch(self, args: Sequence[str], log: Path, runs: Sequence[str]) -> subprocess.Popen:
        """Start ``python -m vae_core <args>`` as a worker, its output appended to ``log``. The
        manager reaps it; if it dies leaving one of ``runs`` active, that run is marked failed.

        Own session: the worker outlives a restarted web server, which re-attaches from files.
        """
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "vae_core", *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=str(_SOURCE_ROOT), env=_worker_env(),
                                    start_new_session=True)
        for name in runs:
            self._procs[name] = proc
        return proc

    def _reap(self) -> None:
        """Collect finished child processes (no zombies) and mark ones that died silently."""
        for name, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[name]
            path = self.root / name
            st = rd.read_status(path)
            if st.state in rd.ACTIVE_STATES:  # died without writing a final state (killed, crashed at import)
                rd.write_status(path, **{**_status_dict(st), "state": "failed",
                                         "error": f"the worker exited with code {code}; see worker.log"})


def _status_dict(st: rd.RunStatus) -> dict:
    d = {k: getattr(st, k) for k in ("state", "error", "pid", "heartbeat", "step", "epoch", "total_steps",
                                      "samples_per_s", "eta_s", "device", "message")}
    d.update(st.extra)
    return d


def _mtime(p: Path) -> float:
    try:
        return max((p / f).stat().st_mtime for f in (rd.CONFIG, rd.STATUS) if (p / f).exists())
    except (OSError, ValueError):
        return 0.0


IMPORTED_NOT_TRAINED = ("This model was trained elsewhere and imported, so Latent Explorer explores it but does "
                        "not train it: train it with its own code and import the new weights.")

# An upload never names code to run: an imported model's factory is trusted only from the CLI.
UPLOADED_FACTORY_REFUSED = (
    "This run is a model imported from outside Latent Explorer: it names a model factory, which is code. "
    "Uploads never import or run code, so it is refused. On a machine that has the model's code, import it "
    "with: python -m vae_core import-model --factory package.module:function --weights … "
    "(README, 'Explore your own VAE').")


def read_run_zip(data: bytes) -> tuple[str | None, dict[str, bytes]]:
    """The files of a run's zip, read in memory: (the folder they sit in, or None; {file name: bytes}).

    Accepts ``ARCHIVE_FILES`` only, all in one folder (as ``export_zip`` writes them) or all at
    the top. Every check on names, counts, sizes, ratios and encryption runs on the zip's
    directory before a byte is inflated; inflating then stops at each declared size.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise rd.RunError(f"The zip is {_mb(len(data))}, over the {_mb(MAX_IMPORT_BYTES)} limit for a run.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            folder = _check_members(infos)
            return folder, {i.filename.rsplit("/", 1)[-1]: z.read(i) for i in infos if not i.is_dir()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            zlib.error) as e:
        raise rd.RunError(f"The upload is not a readable zip archive ({e}).") from None


def _check_members(infos: list[zipfile.ZipInfo]) -> str | None:
    """The one folder the members sit in (None for the top), or a RunError saying what is wrong."""
    expected = ", ".join(ARCHIVE_FILES)
    if len(infos) > MAX_ZIP_MEMBERS:
        raise rd.RunError(f"The zip has {len(infos)} entries; a run's zip holds only {expected}.")
    folders, seen = set(), set()
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
            raise rd.RunError(f"The zip contains the unsafe path {name!r}; refusing it.")
        if info.is_dir():
            if len(parts) != 1:
                raise rd.RunError(f"The zip contains the folder {name!r}; a run's files sit in one folder.")
            folders.add(parts[0])
            continue
        if parts[-1] == EXTERNAL:
            raise rd.RunError(UPLOADED_FACTORY_REFUSED)
        if len(parts) > 2 or parts[-1] not in ARCHIVE_FILES:
            raise rd.RunError(f"The zip contains {name!r}, which is not part of a run; "
                              f"a run's zip holds only {expected}.")
        if parts[-1] in seen:
            raise rd.RunError(f"The zip contains {parts[-1]} twice.")
        seen.add(parts[-1])
        folders.add(parts[0] if len(parts) == 2 else None)
        if info.flag_bits & 0x1:
            raise rd.RunError(f"{name} in the zip is encrypted; upload the zip as Latent Explorer wrote it.")
        if info.file_size > MAX_FILE_BYTES[parts[-1]]:
            raise rd.RunError(f"{name} in the zip unpacks to {_mb(info.file_size)}, over the "
                              f"{_mb(MAX_FILE_BYTES[parts[-1]])} limit.")
        # Only a large member can be a bomb; a small one may pack well without harm.
        if info.file_size > 1_000_000 and info.file_size > MAX_ZIP_RATIO * info.compress_size:
            raise rd.RunError(f"{name} in the zip unpacks to {info.file_size // max(1, info.compress_size)} times its "
                              "packed size, far more than a run's files do (a zip bomb?); refusing it.")
    total = sum(i.file_size for i in infos)
    if total > MAX_IMPORT_BYTES:
        raise rd.RunError(f"The zip unpacks to {_mb(total)}, over the {_mb(MAX_IMPORT_BYTES)} limit for a run.")
    if len(folders) > 1:
        raise rd.RunError("The zip's files are not all in one folder; upload the zip as Latent Explorer wrote it.")
    return next(iter(folders), None)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MB"
