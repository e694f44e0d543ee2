"""One error guard for the pages: an engine error becomes one plain sentence on the page,
the rest of the page keeps working, and the traceback goes to the server log.

    with guard("Could not encode the test set") as g:
        codes = explore.encode(model, x)
    if g.failed:
        return

or, for a whole section, ``@guarded("Could not draw the traversal grid")``. Streamlit's own
control flow (st.stop, st.rerun) is not an ``Exception`` and passes through untouched.
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from vae_core.data import DatasetError
from vae_core.data.images import ImageImportError
from vae_core.engine.config import ConfigError
from vae_core.runs.rundir import RunError

log = logging.getLogger("latent_explorer.pages")
# Errors the engine words for a person (a bad dataset path, run name, config or image file):
# shown as they are, without the section's "Could not …" in front.
FOR_PEOPLE = (ConfigError, DatasetError, ImageImportError, RunError)


@dataclass
class Outcome:
    failed: bool = False
    error: BaseException | None = None


def explain(e: BaseException) -> str:
    """The error as a sentence a user can act on (its message, or its kind when it has none)."""
    if isinstance(e, MemoryError):
        return "not enough memory for this; try fewer images or a smaller model"
    return str(e).strip() or type(e).__name__


@contextmanager
def guard(what: str, *, show: bool = True):
    """Run the block; on an exception, say ``what: <reason>`` with st.error and set ``failed``
    (and ``error``). ``show=False`` only logs it, for a caller that says something else."""
    outcome = Outcome()
    try:
        yield outcome
    except Exception as e:  # the one place a page turns an engine error into words
        outcome.failed, outcome.error = True, e
        log.warning("%s", what, exc_info=True)
        if show:
            st.error(str(e) if isinstance(e, FOR_PEOPLE) else f"{what}: {explain(e)}")


def guarded(what: str):
    """Decorator form of ``guard`` for a section function; it returns None when it failed."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with guard(what):
                return fn(*args, **kwargs)
            return None

        return wrapper

    return decorate
