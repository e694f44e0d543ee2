"""Helpers for the pages (this package is not a page): the selected run and its snapshot
(``runs``), caches (``cache``), the error guard (``guard``), typed session state
(``state``), pictures (``images``), plotly figure builders (``figures``) and the
live-traverse component (``live_traverse``). Pages import it as ``from pages import _ui``."""
from .cache import cached_result, per_snapshot, remember_result, result_on_request
from .guard import guard, guarded
from .images import display_scale, grid, picture, spread
from .runs import (
    DEFAULT_RUN,
    LIVE_REFRESH_S,
    dataset,
    encoded_test_set,
    flash,
    manager,
    page_context,
    refresh_every,
    require_snapshot,
    rerun_when_run_ends,
    run_dataset,
    select_run,
    selected_run,
    show_flash,
    snapshot,
    snapshot_caption,
    start_default_run,
)

__all__ = [
    "DEFAULT_RUN", "LIVE_REFRESH_S", "cached_result", "dataset", "display_scale", "encoded_test_set", "flash",
    "grid", "guard", "guarded", "manager", "page_context", "per_snapshot", "picture", "refresh_every",
    "remember_result", "require_snapshot", "rerun_when_run_ends", "result_on_request", "run_dataset",
    "select_run", "selected_run", "show_flash", "snapshot", "snapshot_caption", "spread", "start_default_run",
]
