"""Lab: β and the decoder's likelihood. Starts background sweeps (one worker trains the runs in
turn) and draws what ``vae_core.labs.beta`` measures on their latest snapshots."""
import streamlit as st

from pages import _ui
from pages._ui import lab_figures as figs
from pages._ui import lab_text as text
from vae_core.data import list_datasets
from vae_core.labs import beta as lb
from vae_core.runs.manager import new_run_config

m = _ui.manager()
st.title("β and the decoder")
st.caption("The notes: *“There's a trade off between how accurate our network can be and how close its latent "
           "variable can match the unit gaussian”* and *“P(X|z) = N(f(z), σ²I), but where is σ?”* "
           "Both are answered here by training a few small models that differ in one setting, in the background.")


# --- shared pieces ------------------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _datasets() -> list[str]:
    return [d.name for d in list_datasets() if d.available and not d.needs_path]


panel = _ui.per_snapshot(max_entries=48, spinner="Measuring the sweep's runs…")(lb.run_panel)


def measured(states: list[lb.SweepRunState]) -> list[figs.SweepPoint]:
    """The sweep's runs that have a snapshot, each with what the lab measures on it."""
    out = []
    for s in states:
        snap = _ui.snapshot(s.name) if s.exists else None
        data = _ui.run_dataset(snap) if snap is not None else None
        with _ui.guard(f"Could not measure {s.label}"):
            if data is not None:
                out.append((s, panel(snap, x_test=data.x_test)))
    return out


def budget(key: str) -> tuple[str, int, int]:
    """Dataset, epochs and latent size for a new sweep (default: the selected run's dataset, or MNIST)."""
    names = _datasets()
    cfg = next((r.config for r in m.list_runs() if r.name == _ui.selected_run() and r.config), None)
    default = cfg.train.dataset if cfg and cfg.train.dataset in names else "mnist"
    c1, c2, c3 = st.columns(3)
    ds = c1.selectbox("Dataset", names, index=names.index(default) if default in names else 0, key=f"{key}-ds")
    epochs = c2.number_input("Epochs per run", 1, 200, lb.DEFAULT_BUDGET["epochs"], key=f"{key}-ep")
    z = c3.number_input("Latent dimensions", 1, 64, lb.DEFAULT_BUDGET["latent_dim"], key=f"{key}-z")
    return ds, int(epochs), int(z)


def launch(kind: str, ds: str, epochs: int, z: int, **axis) -> None:
    with _ui.guard("Could not start the sweep"):
        base = new_run_config(ds, model={"body": lb.DEFAULT_BUDGET["body"], "latent_dim": z}, train={"epochs": epochs})
        names = lb.start_sweep(m, lb.sweep_configs(base, **axis), lb.sweep_name_prefix(ds), kind)
        _ui.select_run(names[0])
        st.rerun()


def pick_sweep(kind: str) -> lb.Sweep | None:
    sweeps = {s.id: s for s in lb.list_sweeps(m.root, kind)}  # newest first
    if not sweeps:
        return None
    # Keyed by the newest sweep, so the picker moves to a sweep as soon as it starts.
    choice = st.selectbox("Sweep", list(sweeps), key=f"pick-{kind}-{next(iter(sweeps))}",
                          format_func=lambda i: f"{i} · {len(sweeps[i].runs)} runs")
    return sweeps[choice]


def live(kind: str, sweep: lb.Sweep, body) -> None:
    """Draw the sweep's progress and ``body(sweep, measured runs)`` in a fragment that refreshes
    every 2 s while the sweep trains or waits."""
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

    st.fragment(frag, run_every=_ui.LIVE_REFRESH_S if active else None)()


def strip(images):
    """A row of small images as one picture."""
    return _ui.grid(images, ncols=len(images), target_px=56)


# --- β ----------------------------------------------------------------------------------
def beta_view(sweep: lb.Sweep, got: list[figs.SweepPoint]) -> None:
    got = sorted(got, key=lambda sp: sp[0].value or 0.0)
    left, right = st.columns([3, 2])
    fig = figs.rate_distortion(got, f"Rate–distortion on the test set ({sweep.id})")
    left.plotly_chart(fig, width="stretch", key=f"rd-{sweep.id}")
    right.markdown(text.BETA_WHAT_YOU_SEE)
    for note in text.sweep_notes(got, "β"):
        st.info(note)
    st.dataframe(text.beta_rows(got), hide_index=True, width="stretch")
    st.markdown(text.BETA_IMAGES)
    for s, p in got:
        a, b, c = st.columns([1, 4, 4], vertical_alignment="center")
        a.markdown(f"**β = {s.value:g}**  \nrate {p.rd.rate:.1f}")
        b.image(strip(p.samples))
        c.image(strip(p.traversal), caption=f"z{p.top_dim} ({p.top_kl:.1f} nats)")


# --- σ ----------------------------------------------------------------------------------
def sigma_view(sweep: lb.Sweep, got: list[figs.SweepPoint]) -> None:
    got = figs.decoder_order(got)
    left, right = st.columns([3, 2])
    left.plotly_chart(figs.decoder_rate_error(got), width="stretch", key=f"sig-{sweep.id}")
    right.markdown("**Where is σ?** In the Gaussian decoder's log-likelihood, per image of D pixels:")
    right.latex(text.GAUSSIAN_LOG_LIKELIHOOD)
    right.markdown(text.SIGMA_WHERE)
    for note in text.sweep_notes(got, "σ"):
        st.info(note)
    st.dataframe(text.decoder_rows(got), hide_index=True, width="stretch")
    for note in text.learned_sigma_notes(got):
        st.caption(note)
    st.markdown(text.DECODER_IMAGES)
    for s, p in got:
        a, *cols = st.columns([1, 3, 3, 3], vertical_alignment="center")
        a.markdown(f"**{figs.decoder_tag(s, p)}**")
        for col, images in zip(cols, (p.recon, p.samples, p.noisy_samples)):
            col.image(strip(images))


# --- the page -----------------------------------------------------------------------------
beta_tab, sigma_tab = st.tabs(["β: rate vs distortion", "σ: the Gaussian decoder"])
with beta_tab:
    sweep = pick_sweep("beta")
    with st.expander("Start a β sweep", expanded=sweep is None):
        betas = st.multiselect("β values", lb.BETA_CHOICES, default=list(lb.DEFAULT_BETAS))
        ds, epochs, z = budget("beta")
        st.caption("One background worker trains the runs one after another (on a small machine that is faster "
                   "than in parallel, and leaves a core to this page). Runs are named after the sweep and β.")
        if st.button("Start β sweep", type="primary", disabled=not betas):
            launch("beta", ds, epochs, z, betas=betas)
    if sweep is None:
        st.info("No β sweep yet: start one above. With the defaults each run takes under a minute on a CPU.")
    else:
        live("beta", sweep, beta_view)

with sigma_tab:
    sweep = pick_sweep("sigma")
    with st.expander("Start a decoder sweep", expanded=sweep is None):
        lo, hi = st.select_slider("Fixed σ values from … to …", options=lb.SIGMA_LADDER,
                                  value=(min(lb.DEFAULT_SIGMAS), max(lb.DEFAULT_SIGMAS)))
        sigmas = [s for s in lb.SIGMA_LADDER if lo <= s <= hi]
        c1, c2 = st.columns(2)
        learned = c1.checkbox("Add a learned-σ run", value=True)
        bern = c2.checkbox("Add a Bernoulli run", value=True)
        ds, epochs, z = budget("sigma")
        st.caption(text.decoder_sweep_caption(sigmas, learned, bern))
        if st.button("Start decoder sweep", type="primary"):
            launch("sigma", ds, epochs, z, sigmas=sigmas, learned_sigma=learned, bernoulli=bern)
    if sweep is None:
        st.info("No decoder sweep yet: start one above to see how σ sets the blur.")
    else:
        live("sigma", sweep, sigma_view)
