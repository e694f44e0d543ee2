"""Helpers for the pages (this package is not a page): the selected run and its snapshot
(``runs``), caches (``cache``), the error guard (``guard``), typed session state
(``state``), pictures (``images``), plotly figure builders (``figures``, ``lab_figures``,
``exact_figures``), the marginal lab's exact-posterior tab (``exact_panel``), whether a
snapshot can be shown (``health``), the Traverse sliders (``sliders``) and the live-traverse
component (``live_traverse``). Pages import it as ``from pages import _ui``."""
from .cache import (
    cached_result,
    per_snapshot,
    pinned,
    progress_bar,
    remember_result,
    result_on_request,
)
from .guard import guard, guarded
from .health import health
from .images import display_scale, grid, picture, spread
from .runs import (
    DEFAULT_RUN,
    LIVE_REFRESH_S,
    dataset,
    dataset_peek,
    describe_snapshot,
    encoded_test_set,
    flash,
    live_snapshot,
    manager,
    page_context,
    refresh_every,
    require_snapshot,
    rerun_when_run_ends,
    run_config,
    run_dataset,
    say_health,
    select_run,
    selected_run,
    show_flash,
    snapshot,
    shown_kind,
    snapshot_caption,
    start_default_run,
    traverse_from,
)

__all__ = [
    "DEFAULT_RUN", "LIVE_REFRESH_S", "cached_result", "dataset", "dataset_peek", "describe_snapshot", "display_scale", "encoded_test_set", "flash",
    "grid", "guard", "guarded", "health", "live_snapshot", "manager", "page_context", "per_snapshot", "picture", "pinned", "progress_bar", "refresh_every",
    "remember_result", "require_snapshot", "rerun_when_run_ends", "result_on_request", "run_config", "run_dataset",
    "say_health", "select_run", "selected_run", "show_flash", "shown_kind", "snapshot", "snapshot_caption", "spread", "start_default_run", "traverse_from",
]
