"""Run-file primitives every module of ``runs`` writes and reads with: whole-file atomic
replacement (temp file, fsync, ``os.replace``) and tolerant JSON reads, and the one error type
whose message is for the user. A leaf, so ``rundir`` and ``external_source`` can both use it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunError(Exception):
    """A run directory is missing, malformed or refused; the message is for the user."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole: a reader never sees half a file, and a failed write
    leaves the previous version."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
