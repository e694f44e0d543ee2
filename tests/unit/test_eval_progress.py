"""``python -m vae_core eval`` says what it is doing: progress with the time left when nobody
watches a terminal, k chosen for a time budget, and a partial bound, flagged, when stopped early."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from vae_core.cli import main
from vae_core.engine.config import ModelConfig
from vae_core.engine.evaluate import IwaeCost, choose_iwae_k, probe_iwae_cost
from vae_core.engine.vae import VAE
from vae_core.progress import EVERY_ENV, Progress, format_seconds
from vae_core.runs.trainer import SHARE_CPU_ENV

pytestmark = pytest.mark.unit


class Log(io.StringIO):
    def isatty(self):
        return False


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_every_few_seconds_with_the_time_left_and_none_for_a_short_job():
    log = Log()
    clock = iter([0.0, 2.0, 12.0, 14.0, 24.0, 30.0])
    p = Progress("IWAE k=1000", unit="test images", every_s=10, stream=log, clock=lambda: next(clock))
    p.start(10_000)
    for done in (300, 3_000, 3_300, 6_000, 10_000):
        p(done, 10_000)
    p.close()
    assert log.getvalue().splitlines() == [
        "IWAE k=1000: 3,000 of 10,000 test images (30%), 12 s, about 28 s left",
        "IWAE k=1000: 6,000 of 10,000 test images (60%), 24 s, about 16 s left",
        "IWAE k=1000: 10,000 of 10,000 test images (100%), 30 s"]
    quiet = Log()
    with Progress("IWAE k=10", stream=quiet, every_s=5, clock=lambda: 1.0) as short:
        short(50, 100)
        short(100, 100)
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_bar_and_the_durations_read_naturally():
    tty = Tty()
    with Progress("IWAE k=50", unit="test images", stream=tty) as p:
        p(10, 40)
        assert p.bar is not None and p.bar.n == 10
        p(40, 40)
    assert "IWAE k=50" in tty.getvalue() and "40/40" in tty.getvalue()
    assert [format_seconds(s) for s in (0.4, 12, 89, 360, 5400, 7325)] == \
        ["0 s", "12 s", "89 s", "6 min", "1 h 30 min", "2 h 02 min"]


def test_auto_k_is_the_largest_on_the_ladder_that_fits():
    cost = IwaeCost(fixed_s=0.001, per_sample_s=1e-5)  # 10,000 images: 10 s + 0.1 s per sample
    assert choose_iwae_k(cost, 10_000, 61) == (500, pytest.approx(60.0), True)
    assert choose_iwae_k(cost, 10_000, 1000)[0] == 5000
    k, est, fits = choose_iwae_k(cost, 10_000, 5)
    assert (k, fits) == (10, False) and est == pytest.approx(11.0)


class SlowDecoder(VAE):
    """The same MLP, slower: 1 ms of extra work per sample decoded (and no shortcut)."""

    def decode(self, z):
        time.sleep(1e-3 * z.shape[0] if z.dim() == 3 else 0)
        return super().decode(z)


def test_auto_k_picks_a_smaller_k_for_a_slower_model():
    cfg = ModelConfig(input_shape=(1, 8, 8), body="mlp", hidden=32, latent_dim=4)
    torch.manual_seed(0)
    fast = VAE(cfg).eval()
    slow = SlowDecoder(cfg).eval()
    slow.load_state_dict(fast.state_dict())
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fast_cost, slow_cost = probe_iwae_cost(fast, x), probe_iwae_cost(slow, x)
    assert slow_cost.per_sample_s > 2 * fast_cost.per_sample_s
    budget = 0.1  # a tiny budget: 0.1 s for 40 images, i.e. k <= 100 for the slow one on its sleep alone
    k_fast, _, _ = choose_iwae_k(fast_cost, len(x), budget)
    k_slow, _, _ = choose_iwae_k(slow_cost, len(x), budget)
    assert k_slow < k_fast, (fast_cost, slow_cost)
    assert k_slow <= 100


# --- the command line, as a user runs it -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    r = cli("train", "--dataset", "digits", "--max-steps", "3", "--latent-dim", "2", "--hidden", "32", "--run-dir", run)
    assert r.returncode == 0, r.stderr
    return run


def cli_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != SHARE_CPU_ENV}
    env.update(extra)
    return env


def cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "vae_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=cli_env(**env), check=False)


def test_eval_prints_progress_lines_when_nobody_watches_a_terminal(tiny_run):
    r = cli("eval", tiny_run, "--k", "4000", "--json", **{EVERY_ENV: "0.05"})  # 2 batches, seconds
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)  # stdout stays the JSON alone
    n = res["n_test"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("IWAE k=4000: ")]
    assert lines and lines[-1].startswith(f"IWAE k=4000: {n:,} of {n:,} test images (100%), ")
    assert lines[:-1] and all(ln.endswith(" left") for ln in lines[:-1]), lines
    assert "Traceback" not in r.stderr
    assert (res["iwae_k"], res["iwae_images"], res["iwae_partial"]) == (4000, n, False)
    for key in ("test_elbo", "test_log_likelihood", "test_kl", "active_units", "latent_dim", "step", "epoch",
                "n_test", "device", "test_iwae_k4000", "iwae_seconds"):
        assert key in res, key



def test_a_short_eval_prints_no_progress(tiny_run, capsys):
    rc, out, err = eval_in_process(capsys, tiny_run, "--k", "20", "--json")
    assert rc == 0 and "IWAE" not in err and json.loads(out)["test_iwae_k20"] < 0


def eval_in_process(capsys, *args):
    """``python -m vae_core eval ...`` in this process (stderr is pytest's capture: not a terminal)."""
    capsys.readouterr()
    rc = main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_eval_auto_k_says_what_it_chose_and_keeps_to_a_tiny_budget(tiny_run, capsys):
    rc, out, err = eval_in_process(capsys, tiny_run, "--budget-s", "0.001", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["iwae_k_auto"] is True and res["iwae_k"] == 10 and "iwae_estimate_s" in res
    assert "IWAE: k=10" in err and "--budget-s" in err
    # even k=10 is estimated over 1 ms: it is held to the budget and the bound is partial, flagged
    assert res["iwae_partial"] is True and res["iwae_stopped"] == "budget" and "--budget-s" in err
    rc, out, err = eval_in_process(capsys, tiny_run, "--budget-s", "3600", "--limit", "10", "--json")
    assert json.loads(out)["iwae_k"] == 5000 and "IWAE: k=5000" in err
    rc, out, err = eval_in_process(capsys, tiny_run, "--k", "30", "--budget-s", "0.001", "--json")
    res = json.loads(out)  # an explicit --k overrides the budget
    assert res["iwae_k"] == 30 and not res["iwae_partial"] and "iwae_k_auto" not in res
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--budget-s" in capsys.readouterr().out


def test_eval_max_seconds_reports_the_partial_bound_flagged(tiny_run, capsys):
    rc, out, err = eval_in_process(capsys, tiny_run, "--k", "50000", "--max-seconds", "0.3", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["iwae_partial"] is True and res["iwae_stopped"] == "max_seconds"
    assert res["iwae_images"] < res["n_test"] and "test_iwae_k50000" in res
    assert "stopped early" in err
    rc, out, err = eval_in_process(capsys, tiny_run, "--k", "50000", "--max-seconds", "0.3")
    assert rc == 0 and "IWAE bound k=50000" in out and "--max-seconds" in out


def test_ctrl_c_during_iwae_reports_the_partial_bound_without_a_traceback(tiny_run):
    p = subprocess.Popen([sys.executable, "-m", "vae_core", "eval", str(tiny_run), "--k", "50000", "--json"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=cli_env(**{EVERY_ENV: "0.01"}))
    try:
        for _ in range(50):  # until the first progress line: the IWAE stage is under way
            line = p.stderr.readline()
            if not line or line.startswith("IWAE k=50000: "):
                break
        assert line.startswith("IWAE k=50000: "), line
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    res = json.loads(out)
    assert res["iwae_partial"] is True and res["iwae_stopped"] == "interrupted"
    assert "Traceback" not in err and "interrupted" in err
