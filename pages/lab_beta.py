"""Lab: β and the decoder's likelihood. Starts background sweeps (one worker trains the runs in
turn) and draws what ``vae_core.lab_beta`` measures on their latest snapshots."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages import _ui
from vae_core.labs import beta as lb
from vae_core.runs import rundir as rd
from vae_core.engine.config import ConfigError
from vae_core.data import DatasetError, list_datasets
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


@st.cache_resource(max_entries=48, show_spinner=False)
def _panel(name: str, step: int, mtime: float) -> lb.RunPanel | None:
    snap = _ui.snapshot(name)  # keyed by step and mtime, like the snapshot cache
    data = _ui.run_dataset(snap) if snap else None
    return lb.run_panel(snap, data.x_test) if data is not None else None


def panel(name: str) -> lb.RunPanel | None:
    meta = rd.snapshot_meta(m.path(name))
    return _panel(name, meta[0], meta[2]) if meta else None


def budget(key: str) -> tuple[str, int, int]:
    """Dataset, epochs and latent size for a new sweep (default: the selected run's dataset, or MNIST)."""
    names = _datasets()
    sel = _ui.selected_run()
    cfg = next((r.config for r in m.list_runs() if r.name == sel and r.config), None)
    default = cfg.train.dataset if cfg and cfg.train.dataset in names else "mnist"
    c1, c2, c3 = st.columns(3)
    ds = c1.selectbox("Dataset", names, index=names.index(default) if default in names else 0, key=f"{key}-ds")
    epochs = c2.number_input("Epochs per run", 1, 200, lb.DEFAULT_BUDGET["epochs"], key=f"{key}-ep")
    z = c3.number_input("Latent dimensions", 1, 64, lb.DEFAULT_BUDGET["latent_dim"], key=f"{key}-z")
    return ds, int(epochs), int(z)


def launch(kind: str, ds: str, epochs: int, z: int, **axis) -> None:
    try:
        base = new_run_config(ds, model={"body": lb.DEFAULT_BUDGET["body"], "latent_dim": z}, train={"epochs": epochs})
        names = lb.start_sweep(m, lb.sweep_configs(base, **axis), lb.sweep_name_prefix(ds), kind)
        st.session_state[f"sweep-{kind}"] = lb.sweep_of(m.root, names[0])
        _ui.select_run(names[0])
        st.rerun()
    except (ConfigError, DatasetError, rd.RunError, ValueError) as e:
        st.error(str(e))


def pick_sweep(kind: str) -> lb.Sweep | None:
    sweeps = lb.list_sweeps(m.root, kind)
    if not sweeps:
        return None
    ids = [s.id for s in sweeps]
    if (pending := st.session_state.pop(f"sweep-{kind}", None)) in ids:  # a sweep just started: show it
        st.session_state[f"pick-{kind}"] = pending
    choice = st.selectbox("Sweep", ids, key=f"pick-{kind}",
                          format_func=lambda i: f"{i} · {len(sweeps[ids.index(i)].runs)} runs")
    return sweeps[ids.index(choice)]


def progress(states: list[lb.SweepRunState]) -> None:
    cols = st.columns(len(states))
    for col, s in zip(cols, states):
        col.progress(s.progress, text=f"**{s.label}** · {s.state}")
        if s.note and s.state in ("failed", "not trained", "stopped"):
            col.caption(s.note)


def live(kind: str, sweep: lb.Sweep, body) -> None:
    """Run ``body`` in a fragment that refreshes every 2 s while the sweep trains or waits."""
    states = lb.sweep_states(m, sweep)
    active = lb.sweep_active(states)

    def frag() -> None:
        now = lb.sweep_states(m, sweep)
        if not lb.sweep_active(now) and st.session_state.get(f"_live-{kind}") == sweep.id:
            st.session_state.pop(f"_live-{kind}")
            st.rerun()  # the sweep just ended: a full rerun turns the refresh off
        if lb.sweep_active(now):
            st.session_state[f"_live-{kind}"] = sweep.id
        progress(now)
        if lb.sweep_active(now):
            st.button("Stop the sweep", key=f"stop-{kind}", on_click=lb.stop_sweep, args=(m, sweep),
                      help="Stops the run in training; the runs still waiting are not trained.")
        body(sweep, now)

    st.fragment(frag, run_every=_ui.LIVE_REFRESH_S if active else None)()


def ready(states) -> list[tuple[lb.SweepRunState, lb.RunPanel]]:
    out = []
    for s in states:
        p = panel(s.name) if s.exists else None
        if p is not None:
            out.append((s, p))
    return out


# --- β ----------------------------------------------------------------------------------
def beta_view(sweep: lb.Sweep, states) -> None:
    got = ready(states)
    if not got:
        st.info("The first run's snapshot appears a few seconds after it starts; points are added as runs train.")
        return
    got.sort(key=lambda sp: sp[0].value)
    left, right = st.columns([3, 2])
    fig = go.Figure()
    fig.add_scatter(x=[p.rd.rate for _, p in got], y=[p.rd.distortion for _, p in got], mode="lines+markers+text",
                    text=[f"β={s.value:g}" + ("" if s.state == "finished" else f" ({'training' if s.active else s.state})")
                          for s, _ in got],
                    textposition="top right", marker=dict(size=11), name="runs")
    one = next((p for s, p in got if s.value == 1.0), None)
    if one is not None:  # R + D = -ELBO: the β = 1 run's line of equal ELBO
        r = np.array([0.0, max(p.rd.rate for _, p in got) * 1.1])
        fig.add_scatter(x=r, y=-one.rd.elbo - r, mode="lines", line=dict(dash="dot", color="grey"),
                        name="same ELBO as β=1 (R + D = const)")
    fig.update_layout(xaxis_title="rate: KL(q(z|x) ‖ p(z)), nats", yaxis_title="distortion: −E log p(x|z), nats",
                      height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      title=f"Rate–distortion on the test set ({sweep.id})")
    left.plotly_chart(fig, width="stretch", key=f"rd-{sweep.id}")
    right.markdown(
        "**What you see.** Each point is one model, trained with the loss "
        "*distortion + β × rate*. **Rate** is how many nats the code carries about an image (the KL term, "
        "how far q(z|x) is from the unit Gaussian). **Distortion** is how many nats the decoder still "
        "needs to rebuild it.\n\n"
        "A small β makes the code cheap to use: high rate, sharp reconstructions, but codes that wander away "
        "from N(0, I), so prior samples look worse. A large β squeezes the code towards the prior: low rate, "
        "blurry reconstructions, fewer active dimensions. β = 1 is the ELBO; the dotted line joins the points "
        "with the same ELBO (−ELBO = rate + distortion). (Higgins et al. 2017; Alemi et al. 2018.)")
    rows = [{"β": s.value, "state": s.state, "step": p.step, "rate (nats)": round(p.rd.rate, 2),
             "distortion (nats)": round(p.rd.distortion, 2), "ELBO": round(p.rd.elbo, 2),
             "active dims": f"{p.n_active}/{p.latent_dim}"} for s, p in got]
    st.dataframe(rows, hide_index=True, width="stretch")
    st.markdown("**Prior samples** (decoder means of z ~ N(0, I), same z for every β) and a **traversal** of each "
                "model's most used dimension (largest KL) from −3 to 3, other dimensions at 0.")
    for s, p in got:
        a, b, c = st.columns([1, 4, 4], vertical_alignment="center")
        a.markdown(f"**β = {s.value:g}**  \nrate {p.rd.rate:.1f}")
        b.image(_ui.grid(p.samples, ncols=len(p.samples), target_px=56))
        c.image(_ui.grid(p.traversal, ncols=len(p.traversal), target_px=56),
                caption=f"z{p.top_dim} ({p.top_kl:.1f} nats)")


# --- σ ----------------------------------------------------------------------------------
def sigma_view(sweep: lb.Sweep, states) -> None:
    got = ready(states)
    if not got:
        st.info("The first run's snapshot appears a few seconds after it starts.")
        return
    order = {"bernoulli": 2, "gaussian_learned": 1}
    got.sort(key=lambda sp: (order.get(sp[1].likelihood, 0), sp[0].value or 0))

    def tag(s, p) -> str:
        if p.likelihood == "bernoulli":
            return "Bernoulli"
        return f"learned σ={p.sigma:.3f}" if p.likelihood == "gaussian_learned" else f"σ={s.value:g}"

    left, right = st.columns([3, 2])
    fig = go.Figure()
    fig.add_scatter(x=[p.rd.rate for _, p in got], y=[p.sq_error for _, p in got], mode="markers+text",
                    text=[tag(s, p) for s, p in got], textposition="top center", marker=dict(size=11))
    fig.update_xaxes(range=[0, max(p.rd.rate for _, p in got) * 1.15])  # room for the labels
    fig.update_layout(xaxis_title="rate: KL(q‖p), nats", yaxis_title="squared error ‖x − f(z)‖² per image",
                      height=360, margin=dict(l=10, r=10, t=30, b=10), title="What each decoder keeps")
    left.plotly_chart(fig, width="stretch", key=f"sig-{sweep.id}")
    right.markdown("**Where is σ?** In the Gaussian decoder's log-likelihood, per image of D pixels:")
    right.latex(r"\log p(x|z) = -D\log\sigma - \frac{\lVert x-f(z)\rVert^2}{2\sigma^2} - \tfrac{D}{2}\log 2\pi")
    right.markdown(
        "σ only scales the squared error. Multiply the loss by 2σ² and it becomes *squared error + 2σ²β × KL*: "
        "**a large σ is a large β** (fewer nats in the code, blurrier means), a small σ a small β. Nats of "
        "different σ are not comparable (the −D log σ term shifts them), so the plot uses squared error. "
        "A learned σ settles near √(squared error / D), the σ that fits the decoder's own errors "
        "(Rybkin et al. 2021). Bernoulli has no σ at all: its per-pixel weight is fixed by the data.")
    rows = []
    for s, p in got:
        row = {"decoder": tag(s, p), "rate (nats)": round(p.rd.rate, 2), "squared error": round(p.sq_error, 2)}
        if p.sigma is not None:
            bal = lb.gaussian_balance(p.sigma, p.beta)
            row |= {"1/(2σ²)": round(bal.weight, 1), "KL weight vs squared error (2σ²β)": round(bal.kl_weight_vs_sq_error, 4)}
        if p.likelihood == "gaussian_learned":
            row["σ* = √(sq. error / D)"] = round(lb.calibrated_sigma(p.sq_error, p.recon[0].size), 3)
        rows.append(row)
    st.dataframe(rows, hide_index=True, width="stretch")
    for s, p in got:
        if p.likelihood == "gaussian_learned":
            target = lb.calibrated_sigma(p.sq_error, p.recon[0].size)
            if abs(p.sigma - target) > 0.1 * target:
                st.caption(f"The learned σ ({p.sigma:.3f}) is still on its way to σ* ({target:.3f}): it starts at the "
                           "configured σ and Adam moves log σ by at most about the learning rate per step. "
                           "More epochs close the gap.")
    st.markdown("Per decoder: **reconstructions** (means, test images), **samples** (means of z ~ N(0, I)) and "
                "**full draws x ~ p(x|z)** of the same z: the Gaussian adds pixel noise of size σ, Bernoulli flips coins.")
    for s, p in got:
        a, b, c, d = st.columns([1, 3, 3, 3], vertical_alignment="center")
        a.markdown(f"**{tag(s, p)}**")
        b.image(_ui.grid(p.recon, ncols=len(p.recon), target_px=56))
        c.image(_ui.grid(p.samples, ncols=len(p.samples), target_px=56))
        d.image(_ui.grid(p.noisy_samples, ncols=len(p.noisy_samples), target_px=56))


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
        st.caption(f"Runs: Gaussian decoders with σ = {', '.join(f'{s:g}' for s in sigmas)}"
                   + (", a learned σ" if learned else "") + (", a Bernoulli decoder" if bern else "") + "; β = 1.")
        if st.button("Start decoder sweep", type="primary"):
            launch("sigma", ds, epochs, z, sigmas=sigmas, learned_sigma=learned, bernoulli=bern)
    if sweep is None:
        st.info("No decoder sweep yet: start one above to see how σ sets the blur.")
    else:
        live("sigma", sweep, sigma_view)
