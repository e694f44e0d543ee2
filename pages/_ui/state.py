"""Typed accessors for session state. Every key a page reads or writes outside its own
widgets is declared here once, with its type; pages never index ``st.session_state`` by
string for these.

Hand-offs between pages (each belongs to one run, and is ignored on another run's pages):
  SELECTED_POINT   the test image clicked on Latent space
  TRAVERSE_BASE    the code Traverse starts from, set by Latent space or Encode
  ENCODED_UPLOAD   the user's image as Encode placed it, drawn on Latent space as a star
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Generic, TypeVar

import streamlit as st

T = TypeVar("T")


class Slot(Generic[T]):
    """One session-state entry holding a ``kind`` (a dataclass or a plain type), or nothing."""

    def __init__(self, key: str, kind: type):
        self.key, self.kind = key, kind

    def get(self) -> T | None:
        value = st.session_state.get(self.key)
        if isinstance(value, dict) and hasattr(self.kind, "__dataclass_fields__"):
            value = _from_dict(self.kind, value)  # a dict written by a test or an older session
        return value if isinstance(value, self.kind) else None

    def set(self, value: T) -> None:
        st.session_state[self.key] = value

    def pop(self) -> T | None:
        value = self.get()
        st.session_state.pop(self.key, None)
        return value

    def for_run(self, run: str | None) -> T | None:
        """The value when it belongs to ``run``; a hand-off from another run is ignored."""
        value = self.get()
        return value if value is not None and getattr(value, "run", None) == run else None


def _from_dict(kind: type, d: dict) -> Any:
    names = {f.name for f in fields(kind)}
    try:
        return kind(**{k: v for k, v in d.items() if k in names})
    except TypeError:  # missing fields: not a value of this kind
        return None


@dataclass(frozen=True)
class SelectedPoint:
    run: str
    index: int  # global test-set index


@dataclass(frozen=True)
class TraverseBase:
    run: str
    z: list[float]
    label: str
    image: list | None = None  # (C, H, W) nested lists in [0, 1], when the base came from an image


@dataclass(frozen=True)
class EncodedUpload:
    run: str
    z: list[float]
    sigma: list[float]
    label: str = "your image"


SELECTED_RUN: Slot[str] = Slot("run", str)
SELECTED_POINT: Slot[SelectedPoint] = Slot("selected_point", SelectedPoint)
TRAVERSE_BASE: Slot[TraverseBase] = Slot("traverse_base", TraverseBase)
ENCODED_UPLOAD: Slot[EncodedUpload] = Slot("encoded_upload", EncodedUpload)
FLASH: Slot[str] = Slot("_flash", str)  # a message to toast after the next rerun
LIVE_RUN: Slot[str] = Slot("_live_run", str)  # the run the live fragments last saw training


def as_dict(value) -> dict:
    """A hand-off value as a plain dict (for display or tests)."""
    return asdict(value)
