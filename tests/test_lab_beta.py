"""Lab 3 (β and the decoder): sweep configs, a real background sweep, the Gaussian decoder's
weighting, and both lab pages under AppTest."""
import time

import numpy as np
import pytest
import torch

from tests.conftest import page_app
from vae_core.labs import beta as lb
from vae_core.runs import rundir as rd
from vae_core.engine.config import ModelConfig
from vae_core.data import load_dataset
from vae_core.runs.manager import SWEEP_QUEUED, RunManager, new_run_config
from vae_core.engine.vae import VAE

FAST = {"batch_size": 64, "lr": 3e-3, "log_every_steps": 5, "snapshot_every_s": 0.5, "num_threads": 1}


def base_config(**train):
    return new_run_config("digits", model={"latent_dim": 4, "hidden": 64}, train={**FAST, "epochs": 3, **train})


def without(d: dict, section: str, key: str) -> dict:
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    d[section].pop(key)
    return d


# --- configs ------------------------------------------------------------------------------
def test_sweep_configs_vary_beta_only():
    base = base_config()
    pts = lb.sweep_configs(base, betas=[4, 0.25, 1, 0.5, 2])
    assert [p.label for p in pts] == ["beta0.25", "beta0.5", "beta1", "beta2", "beta4"]
    assert [p.config.train.beta for p in pts] == [0.25, 0.5, 1.0, 2.0, 4.0]
    rest = without(base.to_dict(), "train", "beta")
    assert all(without(p.config.to_dict(), "train", "beta") == rest for p in pts)
    assert base.train.beta == 1.0  # the base is copied, not modified


def test_sweep_configs_vary_the_decoder_only():
    base = base_config()
    pts = lb.sweep_configs(base, sigmas=[0.4, 0.05], learned_sigma=True, bernoulli=True)
    assert [p.label for p in pts] == ["sigma0.05", "sigma0.4", "sigma-learned", "bernoulli"]
    assert [p.config.model.likelihood for p in pts] == ["gaussian_fixed", "gaussian_fixed", "gaussian_learned", "bernoulli"]
    assert [p.config.model.decoder_sigma for p in pts[:2]] == [0.05, 0.4]
    rest = without(without(base.to_dict(), "model", "likelihood"), "model", "decoder_sigma")
    for p in pts:
        assert without(without(p.config.to_dict(), "model", "likelihood"), "model", "decoder_sigma") == rest
    with pytest.raises(ValueError):
        lb.sweep_configs(base, betas=[1], sigmas=[0.1])
    with pytest.raises(ValueError):
        lb.sweep_configs(base, sigmas=[])


# --- a real sweep in the background ------------------------------------------------------
@pytest.fixture(scope="module")
def digit_sweep(tmp_path_factory):
    """β = 0.25 and β = 4 on digits, started through the manager: one worker process, runs in turn."""
    root = tmp_path_factory.mktemp("sweep-runs")
    m = RunManager(root)
    names = lb.start_sweep(m, lb.sweep_configs(base_config(), betas=[0.25, 4]), "dig", "beta")
    sweep = lb.list_sweeps(root)[0]
    seen_queued = lb.sweep_states(m, sweep)[1].state == "queued"
    deadline = time.time() + 90
    while time.time() < deadline and lb.sweep_active(lb.sweep_states(m, sweep)):
        time.sleep(0.2)
    return m, names, sweep, seen_queued


def test_sweep_trains_its_runs_one_after_another_in_one_process(digit_sweep):
    m, names, sweep, seen_queued = digit_sweep
    assert names == ["dig-beta0.25", "dig-beta4"]
    assert sweep.id == "dig" and sweep.runs == tuple(names) and sweep.kind == "beta" and sweep.values == (0.25, 4.0)
    assert seen_queued  # the second run waited its turn
    statuses = [m.status(n) for n in names]
    assert [s.state for s in statuses] == ["finished", "finished"], [s.error for s in statuses]
    assert statuses[0].pid == statuses[1].pid  # the same worker trained both
    assert [s.state for s in lb.sweep_states(m, sweep)] == ["finished", "finished"]
    assert lb.sweep_of(m.root, "dig-beta4") == "dig"


def test_smaller_beta_buys_a_higher_rate(digit_sweep):
    m, names, _, _ = digit_sweep
    x = load_dataset("digits").x_test
    small, large = (lb.rate_distortion(rd.load_snapshot(m.path(n)), x) for n in names)
    assert small.rate > large.rate + 1.0
    assert small.distortion < large.distortion
    # The numbers are the trainer's own test terms: -ELBO = rate + distortion, as logged.
    logged = [r for r in rd.read_metrics(m.path(names[0])) if r["kind"] == "epoch"][-1]
    assert small.elbo == pytest.approx(logged["test_elbo"], abs=1e-4)


def test_stopping_a_sweep_stops_its_run_and_leaves_the_rest_untrained(tmp_path):
    m = RunManager(tmp_path / "runs")
    names = lb.start_sweep(m, lb.sweep_configs(base_config(epochs=500), betas=[1, 2]), "long", "beta")
    sweep = lb.list_sweeps(m.root)[0]
    deadline = time.time() + 60
    while time.time() < deadline and m.status(names[0]).step == 0:
        time.sleep(0.1)
    lb.stop_sweep(m, sweep)
    deadline = time.time() + 30
    while time.time() < deadline and (lb.sweep_active(lb.sweep_states(m, sweep)) or m.status(names[1]).message == SWEEP_QUEUED):
        time.sleep(0.1)
    first, second = m.status(names[0]), m.status(names[1])
    assert first.state == "stopped" and 0 < first.step < first.total_steps
    assert second.state == "stopped" and second.message == "not trained: the sweep was stopped"
    assert [s.state for s in lb.sweep_states(m, sweep)] == ["stopped", "stopped"]


def test_stopping_a_sweep_before_it_trains_trains_nothing(tmp_path):
    m = RunManager(tmp_path / "runs")
    names = lb.start_sweep(m, lb.sweep_configs(base_config(epochs=500), betas=[1, 2]), "early", "beta")
    sweep = lb.list_sweeps(m.root)[0]
    lb.stop_sweep(m, sweep)  # the worker is still starting up
    deadline = time.time() + 60
    while time.time() < deadline and (lb.sweep_active(lb.sweep_states(m, sweep)) or lb._alive(sweep.pid)):
        time.sleep(0.2)
    states = [m.status(n) for n in names]
    assert [s.state for s in states] == ["stopped", "stopped"], [s.error for s in states]
    assert all(s.message == "not trained: the sweep was stopped" for s in states)
    assert not lb._alive(sweep.pid)


def test_sweep_worker_skips_runs_taken_over_or_stopped(tmp_path):
    """In-process: a queued run with a stop request is not trained; the sweep goes on."""
    from vae_core.cli import main

    dirs = []
    for i, beta in enumerate((1.0, 2.0, 4.0)):
        d = tmp_path / f"r{i}"
        d.mkdir()
        rd.write_config(d, base_config(epochs=1, beta=beta))
        rd.write_status(d, state="starting" if i == 0 else "stopped", message=None if i == 0 else SWEEP_QUEUED,
                        heartbeat=time.time(), step=0, epoch=0)
        dirs.append(d)
    rd.request(dirs[1], "stop")
    rd.write_status(dirs[2], state="finished", step=7, epoch=1, heartbeat=time.time())  # trained elsewhere
    assert main(["sweep", "--run-dirs", *map(str, dirs)]) == 0
    assert rd.read_status(dirs[0]).state == "finished"
    st1 = rd.read_status(dirs[1])
    assert st1.state == "stopped" and "not trained" in st1.message
    assert rd.read_status(dirs[2]).step == 7  # left alone


# --- σ: the Gaussian decoder's balance ----------------------------------------------------
def gaussian(sigma: float) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=8, likelihood="gaussian_fixed",
                           decoder_sigma=sigma))


def test_larger_sigma_weighs_the_reconstruction_less():
    decoded = torch.randn(4, 1, 8, 8)  # the same decoder output for both models
    x = torch.rand(4, 1, 8, 8)
    grads = {}
    for s in (0.1, 0.4):
        xs = x.clone().requires_grad_(True)
        gaussian(s).log_likelihood(xs, decoded).sum().backward()
        grads[s] = xs.grad.abs()
    assert (grads[0.4] < grads[0.1]).all()
    # d log p / dx = -(x - f) / σ²: the ratio is exactly (σ_small / σ_large)², the weight 1/(2σ²) per σ
    torch.testing.assert_close(grads[0.4] / grads[0.1], torch.full_like(x, (0.1 / 0.4) ** 2))
    assert lb.gaussian_balance(0.1).weight / lb.gaussian_balance(0.4).weight == pytest.approx(16.0)
    assert lb.gaussian_balance(0.4).kl_weight_vs_sq_error > lb.gaussian_balance(0.1).kl_weight_vs_sq_error


def test_calibrated_sigma_maximises_the_gaussian_likelihood():
    decoded = torch.zeros(1, 1, 8, 8)  # mean sigmoid(0) = 0.5
    x = 0.5 + 0.1 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sse = float(((x - 0.5) ** 2).sum())
    grid = np.exp(np.linspace(np.log(0.02), np.log(0.5), 400))
    model, ll = gaussian(0.1), []
    with torch.no_grad():
        for s in grid:  # the same model's formula at each σ
            model.log_sigma.fill_(float(np.log(s)))
            ll.append(float(model.log_likelihood(x, decoded)))
    assert grid[int(np.argmax(ll))] == pytest.approx(lb.calibrated_sigma(sse, 64), rel=0.02)


# --- pages --------------------------------------------------------------------------------
def test_beta_page_empty_state(app_runs):
    at = page_app("pages/lab_beta.py", run="tiny").run()
    assert not at.exception
    assert any("No β sweep yet" in i.value for i in at.info)
    assert any("No decoder sweep yet" in i.value for i in at.info)
    assert any(b.label == "Start β sweep" for b in at.button)


def test_beta_page_start_button_launches_one_sweep(app_runs, monkeypatch):
    calls = []

    def fake_start_sweep(self, configs, prefix, labels=None, meta=None, exclusive=True):
        calls.append((configs, labels, meta))
        return [f"{prefix}-{lab}" for lab in labels]

    monkeypatch.setattr(RunManager, "start_sweep", fake_start_sweep)
    at = page_app("pages/lab_beta.py", run="tiny").run()
    at.multiselect[0].set_value([0.25, 4.0])
    at.number_input(key="beta-ep").set_value(2)
    [b for b in at.button if b.label == "Start β sweep"][0].click().run()
    assert not at.exception
    assert len(calls) == 1
    configs, labels, meta = calls[0]
    assert labels == ["beta0.25", "beta4"] and meta["kind"] == "beta"
    assert [c.train.dataset for c in configs] == ["digits", "digits"]  # the selected run's dataset
    assert [c.train.epochs for c in configs] == [2, 2]


def test_beta_page_draws_a_finished_sweep(digit_sweep, monkeypatch):
    import streamlit as st

    m, names, _, _ = digit_sweep
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(m.root))
    st.cache_resource.clear()
    at = page_app("pages/lab_beta.py", run=names[0]).run()
    assert not at.exception
    assert at.get("plotly_chart")  # the rate-distortion plot
    table = at.dataframe[0].value
    assert list(table["β"]) == [0.25, 4.0] and list(table["state"]) == ["finished", "finished"]
    assert table["rate (nats)"][0] > table["rate (nats)"][1]
    st.cache_resource.clear()


def test_disentanglement_page_explains_other_datasets(app_runs):
    at = page_app("pages/lab_disentanglement.py", run="tiny").run()
    assert not at.exception
    assert any("not trained on `shapes`" in i.value for i in at.info)
    assert any("Train a shapes model" in b.label for b in at.button)


def test_disentanglement_page_empty_state(empty_runs):
    at = page_app("pages/lab_disentanglement.py").run()
    assert not at.exception
    assert any("No model yet" in i.value for i in at.info)
    assert any("Train a shapes model" in b.label for b in at.button)


def test_disentanglement_page_measures_a_shapes_run(tmp_path, monkeypatch):
    import streamlit as st

    from vae_core.runs.trainer import train

    root = tmp_path / "runs"
    cfg = new_run_config("shapes", model={"latent_dim": 4, "hidden": 64},
                         train={"epochs": 1, "max_steps": 30, "num_threads": 1, "beta": 4.0})
    assert train(cfg, root / "shapes-tiny").state == "finished"
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(root))
    st.cache_resource.clear()
    at = page_app("pages/lab_disentanglement.py", run="shapes-tiny", timeout=60).run()
    assert not at.exception
    labels = [mt.label for mt in at.metric]
    assert labels == ["MIG", "DCI disentanglement", "DCI completeness", "DCI informativeness"]
    assert 0.0 <= float(at.metric[0].value) <= 1.0
    assert len(at.get("plotly_chart")) == 2  # MI heatmap and the DCI importance matrix
    st.cache_resource.clear()
