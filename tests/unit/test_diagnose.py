"""The posterior-collapse warning, on synthetic metrics records."""
from vae_core.runs.diagnose import COLLAPSE_EPOCHS, COLLAPSE_KL_NATS, posterior_collapse


def epochs(*kls, step_kl=0.0):
    """metrics.jsonl records as the trainer writes them: a start, step windows and epoch records."""
    out = [{"kind": "start", "step": 0}]
    for i, kl in enumerate(kls):
        out.append({"kind": "step", "step": 25 * (2 * i + 1), "kl": step_kl, "loss": 100.0})
        out.append({"kind": "epoch", "step": 50 * (i + 1), "epoch": i + 1, "test_elbo": -8400.0,
                    "test_log_likelihood": -8400.0 + kl, "test_kl": kl})
    return out


def test_three_epochs_under_the_threshold_warn_with_what_to_try():
    msg = posterior_collapse(epochs(0.02, 0.01, 0.01))
    assert msg is not None
    assert "collapse" in msg.lower() and "0.01" in msg and "learning rate" in msg
    assert "β" not in msg  # β = 1: lowering it is not advice
    assert "more epochs" not in msg  # the run is still going
    msg = posterior_collapse(epochs(0.02, 0.01, 0.01), lr=5e-3, finished=True)
    assert "this run's peak was 5e-3" in msg and "more epochs" in msg


def test_a_healthy_run_says_nothing():
    assert posterior_collapse(epochs(18.0, 22.5, 24.1, 25.0)) is None
    assert posterior_collapse([]) is None
    assert posterior_collapse([{"kind": "start", "step": 0}], finished=True) is None


def test_fewer_epochs_than_needed_wait_unless_the_run_has_ended():
    assert COLLAPSE_EPOCHS == 3
    assert posterior_collapse(epochs(0.01, 0.01)) is None  # may still be warming up
    assert posterior_collapse(epochs(0.01)) is None
    msg = posterior_collapse(epochs(0.016), finished=True)  # issue 12's one-epoch faces run
    assert msg is not None and "after 1 epoch " in msg


def test_only_the_latest_epochs_count():
    assert posterior_collapse(epochs(0.01, 0.01, 0.01, 3.0)) is None  # it recovered
    assert posterior_collapse(epochs(20.0, 0.3, 0.2, 0.1)) is not None  # it collapsed late
    assert posterior_collapse(epochs(0.1, 0.2, COLLAPSE_KL_NATS)) is None  # the threshold itself is not under it
    assert posterior_collapse(epochs(9.0, 0.1), finished=True) is not None


def test_step_records_do_not_decide():
    # A fresh model's KL is ~0 for its first steps whatever happens next: step windows never warn.
    assert posterior_collapse(epochs(12.0, 15.0, 16.0, step_kl=0.0)) is None
    assert posterior_collapse(epochs(0.0, 0.0, 0.0, step_kl=30.0)) is not None


def test_beta_above_one_is_named_and_odd_records_are_ignored():
    msg = posterior_collapse(epochs(0.1, 0.1, 0.1), beta=4.0)
    assert "β" in msg and "4" in msg
    junk = [None, "x", {"kind": "epoch"}, {"kind": "epoch", "test_kl": "nan"}, {"kind": "epoch", "test_kl": float("nan")},
            {"kind": "epoch", "test_kl": True}]
    assert posterior_collapse(junk + epochs(0.1, 0.1, 0.1)) is not None
    assert posterior_collapse(junk, finished=True) is None


def test_threshold_and_window_are_parameters():
    assert posterior_collapse(epochs(1.0, 1.0), epochs=2, threshold=2.0) is not None
    assert posterior_collapse(epochs(1.0, 1.0), epochs=2) is None
