"""``external.json``: which code builds an imported model, signed so only this machine's CLI can name it.

Importing a factory runs the user's code. The web UI must never be the one to choose that code,
so an external run's factory is trusted only when its ``external.json`` carries an HMAC made
with a key that lives outside every run directory, in the user's own config folder (mode 0600):

    ~/.config/latent-explorer/import.key      (or the file named by $LATENT_EXPLORER_KEY_FILE)

``python -m vae_core import-model`` creates the key on first use and signs the file. An uploaded
zip cannot carry a valid signature (it never sees the key), and the upload path refuses any run
that names the external family before anything is read from it (``manager``). A run directory
copied from another machine is refused with a sentence saying to import it again there.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from ..engine.families import ExternalSource
from .files import RunError, atomic_write_json, read_json

EXTERNAL = "external.json"
KEY_ENV = "LATENT_EXPLORER_KEY_FILE"
_SIGNED_FIELDS = ("factory", "python_path", "weights_sha256", "imported_at")


def key_path() -> Path:
    override = os.environ.get(KEY_ENV)
    return Path(override) if override else Path.home() / ".config" / "latent-explorer" / "import.key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except OSError:
        pass
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


def _signature(key: bytes, record: dict) -> str:
    body = json.dumps({k: record.get(k) for k in _SIGNED_FIELDS}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def write_external(run_dir: Path, source: ExternalSource, weights_sha256: str) -> None:
    """Record and sign the factory of the run in ``run_dir`` (the CLI's ``import-model`` only)."""
    record = {"factory": source.factory, "python_path": source.python_path, "weights_sha256": weights_sha256,
              "imported_at": time.time()}
    record["signature"] = _signature(_key(create=True), record)
    atomic_write_json(Path(run_dir) / EXTERNAL, record)


def trusted_source(run_dir: Path) -> ExternalSource:
    """The factory of an imported run, if this machine's CLI signed it; otherwise a ``RunError``."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / EXTERNAL)
    again = ("Import it again on this machine: python -m vae_core import-model --factory … "
             "(see README, 'Explore your own VAE')")
    if not isinstance(record, dict) or not isinstance(record.get("signature"), str):
        raise RunError(f"{run_dir.name} is an imported model without a valid {EXTERNAL}, so its code is not "
                          f"loaded. {again}")
    key = _key(create=False)
    if key is None or not hmac.compare_digest(record["signature"], _signature(key, record)):
        raise RunError(f"{run_dir.name} names a model factory that was not imported by this machine's "
                          f"Latent Explorer, so its code is not loaded. {again}")
    factory, path = record.get("factory"), record.get("python_path")
    if not isinstance(factory, str) or not (path is None or isinstance(path, str)):
        raise RunError(f"{run_dir.name}: {EXTERNAL} is malformed. {again}")
    return ExternalSource(factory, path)
