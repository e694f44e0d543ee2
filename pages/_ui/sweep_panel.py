"""The sweep machinery of the β / decoder lab: choosing a sweep, its budget form, starting
it, and the live fragment that shows its runs' progress and redraws the lab's view of them."""
from __future__ import annotations

import streamlit as st

from vae_core.data import list_datasets
from vae_core.labs import beta as lb
from vae_core.runs.manager import new_run_config

from . import lab_figures as figs
from .cache import per_snapshot
from .guard import guard
from .runs import (
    LIVE_REFRESH_S,
    manager,
    run_dataset,
    select_run,
    selected_run,
    snapshot,
)


@st.cache_data(ttl=60, show_spinner=False)
def _datasets() -> list[str]:
    return [d.name for d in list_datasets(modality="image") if d.available and not d.needs_path]


panel = per_snapshot(max_entries=48, spinner="Measuring the sweep's runs…")(lb.run_panel)


def measured(states: list[lb.SweepRunState]) -> list[figs.SweepPoint]:
    """The sweep's runs that have a snapshot, each with what the lab measures on it."""
    out = []
    for s in states:
        snap = snapshot(s.name) if s.exists else None
        data = run_dataset(snap) if snap is not None else None
        with guard(f"Could not measure {s.label}"):
            if data is not None:
                out.append((s, panel(snap, x_test=data.x_test)))
    return out


def budget(key: str) -> tuple[str, int, int]:
    """Dataset, epochs and latent size for a new sweep (default: the selected run's dataset, or MNIST)."""
    names = _datasets()
    cfg = next((r.config for r in manager().list_runs() if r.name == selected_run() and r.config), None)
    default = cfg.train.dataset if cfg and cfg.train.dataset in names else "mnist"
    c1, c2, c3 = st.columns(3)
    ds = c1.selectbox("Dataset", names, index=names.index(default) if default in names else 0, key=f"{key}-ds")
    epochs = c2.number_input("Epochs per run", 1, 200, lb.DEFAULT_BUDGET["epochs"], key=f"{key}-ep")
    z = c3.number_input("Latent dimensions", 1, 64, lb.DEFAULT_BUDGET["latent_dim"], key=f"{key}-z")
    return ds, int(epochs), int(z)


def launch(kind: str, ds: str, epochs: int, z: int, **axis) -> None:
    with guard("Could not start the sweep"):
        base = new_run_config(ds, model={"body": lb.DEFAULT_BUDGET["body"], "latent_dim": z}, train={"epochs": epochs})
        names = lb.start_sweep(manager(), lb.sweep_configs(base, **axis), lb.sweep_name_prefix(ds), kind)
        select_run(names[0])
        st.rerun()


def pick_sweep(kind: str) -> lb.Sweep | None:
    sweeps = {s.id: s for s in lb.list_sweeps(manager().root, kind)}  # newest first
    if not sweeps:
        return None
    # Keyed by the newest sweep, so the picker moves to a sweep as soon as it starts.
    choice = st.selectbox("Sweep", list(sweeps), key=f"pick-{kind}-{next(iter(sweeps))}",
                          format_func=lambda i: f"{i} · {len(sweeps[i].runs)} run{'s' * (len(sweeps[i].runs) != 1)}")
    return sweeps[choice]


def live(kind: str, sweep: lb.Sweep, body) -> None:
    """Draw the sweep's progress and ``body(sweep, measured runs)`` in a fragment that refreshes
    every 2 s while the sweep trains or waits."""
    m = manager()
    active = lb.sweep_active(lb.sweep_states(m, sweep))

    def frag() -> None:
        states = lb.sweep_states(m, sweep)
        if active and not lb.sweep_active(states):
            st.rerun()  # the sweep just ended: a full rerun turns the refresh off
        for col, s in zip(st.columns(len(states)), states):
            col.progress(s.progress, text=f"**{s.label}** · {s.state}")
            if s.note and s.state in ("failed", "not trained", "stopped"):
                col.caption(s.note)
        if lb.sweep_active(states):
            st.button("Stop the sweep", key=f"stop-{kind}", on_click=lb.stop_sweep, args=(m, sweep),
                      help="Stops the run in training; the runs still waiting are not trained.")
        if got := measured(states):
            body(sweep, got)
        else:
            st.info("The first run's snapshot appears a few seconds after it starts; points are added as runs train.")

    st.fragment(frag, run_every=LIVE_REFRESH_S if active else None)()
