"""What a source will build, known before building it, so the build can be cached by key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..dataset import RawData


@dataclass
class Plan:
    kind: str
    key: dict                          # JSON-able; everything the built arrays depend on
    build: Callable[[], RawData]
    test_size: int | float = 0.1       # for sources without their own test set
    post_resize: bool = True           # apply image_size/channels after building


def file_fingerprint(path: Path) -> list:
    """Where a file is and which version of it: an edited file gets a new cache key."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]
