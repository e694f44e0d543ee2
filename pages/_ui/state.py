"""Typed accessors for session state. Every key a page reads or writes through session state
is declared here once, with its type; pages never index ``st.session_state`` by string. A
widget's slot gives the page its key (``key=SAMPLE_SEED.key``) and lets a callback or a
default write its value; a widget only read through its return value keeps its key inline.

Hand-offs between pages (each belongs to one run, and is ignored on another run's pages):
  SELECTED_POINT   the test image clicked on Latent space
  TRAVERSE_BASE    the code Traverse starts from, set by Latent space or Encode
  ENCODED_UPLOAD   the user's image as Encode placed it, drawn on Latent space as a star
What a page shows, for tests and for the next rerun: RECON_SHOWN, SAMPLE_LAST, TRAVERSE_IMAGE.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Generic, TypeVar

import numpy as np
import streamlit as st

T = TypeVar("T")


class Slot(Generic[T]):
    """One session-state entry holding a ``kind`` (a dataclass or a plain type), or nothing."""

    def __init__(self, key: str, kind: type | tuple[type, ...]):
        self.key, self.kind = key, kind

    def get(self) -> T | None:
        value = st.session_state.get(self.key)
        if isinstance(value, dict) and hasattr(self.kind, "__dataclass_fields__"):
            value = _from_dict(self.kind, value)  # a dict written by a test or an older session
            if value is not None:
                self.set(value)  # kept as converted, so the value's identity holds across reruns
        return value if isinstance(value, self.kind) else None

    def set(self, value: T) -> None:
        st.session_state[self.key] = value

    def pop(self) -> T | None:
        value = self.get()
        st.session_state.pop(self.key, None)
        return value

    def setdefault(self, value: T) -> T:
        """The value, after storing ``value`` when there is none (a widget's first render)."""
        current = self.get()
        if current is None:
            self.set(value)
            return value
        return current

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


def _token() -> str:
    return uuid.uuid4().hex


# --- hand-offs -------------------------------------------------------------------------------
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
    # Each press of a "Traverse from …" button is a new base, even for the same code again.
    token: str = field(default_factory=_token)


@dataclass(frozen=True)
class EncodedUpload:
    run: str
    z: list[float]
    sigma: list[float] = field(default_factory=list)  # the Latent space star needs only z
    label: str = "your image"


# --- what a page shows -------------------------------------------------------------------------
@dataclass(frozen=True)
class ShownImages:
    run: str
    indices: list[int]  # global test indices


@dataclass(frozen=True)
class SampleDraw:
    run: str
    step: int
    seed: int
    temperature: float
    z: list[list[float]]  # the codes behind the grid on screen, (N, D)


@dataclass(frozen=True)
class Pinned:
    """A slow result kept across snapshots while a run trains: which snapshot it came from."""

    run: str
    step: int
    epoch: int
    value: Any


@dataclass(frozen=True)
class Memo:
    """The last result for one input, named by ``key`` (a content hash, say)."""

    key: tuple
    value: Any


SELECTED_RUN: Slot[str] = Slot("run", str)
FLASH: Slot[str] = Slot("_flash", str)  # a message to toast after the next rerun
LIVE_RUN: Slot[str] = Slot("_live_run", str)  # the run the live fragments last saw training
SNAPSHOT_KIND: Slot[str] = Slot("snapshot_kind", str)  # "best" or "latest": which snapshot the pages show

SELECTED_POINT: Slot[SelectedPoint] = Slot("selected_point", SelectedPoint)
TRAVERSE_BASE: Slot[TraverseBase] = Slot("traverse_base", TraverseBase)
ENCODED_UPLOAD: Slot[EncodedUpload] = Slot("encoded_upload", EncodedUpload)

# Reconstructions
RECON_SEED: Slot[int] = Slot("recon_seed", int)  # the seed of the random pick; Re-pick adds 1
RECON_SHOWN: Slot[ShownImages] = Slot("recon_shown", ShownImages)
RECON_RANKED: Slot[Pinned] = Slot("_recon_ranked", Pinned)  # worst/best, re-scored per epoch while training

# Latent space
LS_DIM_X: Slot[int] = Slot("ls_dim_x", int)
LS_DIM_Y: Slot[int] = Slot("ls_dim_y", int)
LS_SCATTER: Slot[dict] = Slot("ls_scatter", dict)  # the scatter's selection, as Streamlit reports it
LS_TSNE: Slot[Pinned] = Slot("_ls_tsne", Pinned)  # value: (Projection, the codes it was computed from)

# Sample
SAMPLE_SEED: Slot[int] = Slot("sample_seed", int)
SAMPLE_LAST: Slot[SampleDraw] = Slot("sample_last", SampleDraw)

# Traverse
TRAVERSE_IMAGE: Slot[np.ndarray] = Slot("traverse_image", np.ndarray)  # the last decoded slider image (C, H, W)
TRAVERSE_KIND: Slot[str] = Slot("traverse_base_kind", str)  # the base-code radio
TRAVERSE_SEED: Slot[int] = Slot("traverse_seed", int)  # which random test image is the base
TRAVERSE_CHOSEN_SEEN: Slot[str] = Slot("_traverse_chosen_seen", str)  # token of the last base selected
TRAVERSE_SIG: Slot[tuple] = Slot("_traverse_sig", tuple)  # the base code the sliders were last reset to
TRAVERSE_RESETS: Slot[int] = Slot("_traverse_resets", int)  # presses of Reset, so the live widget resets too
TRAVERSE_GRID_K: Slot[int] = Slot("traverse_grid_k", int)
TRAVERSE_PAIR_SEED: Slot[int] = Slot("traverse_pair_seed", int)
TRAVERSE_A: Slot[int] = Slot("traverse_a", int)
TRAVERSE_B: Slot[int] = Slot("traverse_b", int)


def traverse_z(d: int) -> Slot[float]:
    """The slider of latent dim ``d`` (the raw dim index, not its KL rank)."""
    return Slot(f"traverse_z{d}", (float, int))


def encode_memo(source: str) -> Slot[Memo]:
    """The last image Encode imported from ``source`` ("upload" or "draw")."""
    return Slot(f"_encode_memo_{source}", Memo)


def bump(slot: Slot[int]) -> int:
    """Add one to a counter slot (a seed, say) and return the new value."""
    value = (slot.get() or 0) + 1
    slot.set(value)
    return value


def as_dict(value) -> dict:
    """A hand-off value as a plain dict (for display or tests)."""
    return asdict(value)
