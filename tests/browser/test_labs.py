"""The four lab pages in a real browser, as a user drives them: press the lab's button, wait for
the result, then read the numbers back out of the Plotly figures and metrics the page drew and
check they show what the lab is about (reparameterisation beats the score function, the encoder
beats the prior as a proposal, a small β buys rate, MIG is the mean gap of the MI matrix).

The β sweep and the shapes run train on `fresh_server` (an empty runs folder), so the shared
`server` keeps exactly its three runs for the other browser tests."""
import re

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle

LONG = 120_000  # ms: this machine is small and shared

# Every trace of a Plotly figure as Plotly itself holds it (_fullData: typed arrays decoded).
TRACES = """(plot) => plot._fullData.map((t) => ({
  name: t.name, type: t.type, xaxis: t.xaxis,
  x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null,
  z: t.z ? Array.from(t.z, (row) => Array.from(row)) : null,
  text: t.text ? Array.from(t.text) : null,
}))"""


def plot_of(page, key: str):
    """The Plotly figure a page drew with st.plotly_chart(..., key=key), once Plotly has drawn it."""
    plot = page.locator(f".st-key-{key} .js-plotly-plot")
    expect(plot).to_be_visible(timeout=LONG)
    page.wait_for_function(f"() => {{ const p = document.querySelector('.st-key-{key} .js-plotly-plot');"
                           " return p && p._fullData && p._fullData.length > 0 }", timeout=LONG)
    return plot


def by_name(traces: list[dict], name: str, xaxis: str | None = None) -> dict:
    hits = [t for t in traces if t["name"] == name and (xaxis is None or t["xaxis"] == xaxis)]
    assert len(hits) == 1, (name, xaxis, [(t["name"], t["xaxis"]) for t in traces])
    return hits[0]


def metric(page, label: str):
    return page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").filter(
        has_text=re.compile(label)))


def metric_value(page, label: str, unit: str = "") -> float:
    """The number shown by the metric whose label matches ``label`` (e.g. "29.18 nats" -> 29.18)."""
    value = metric(page, label).get_by_test_id("stMetricValue")
    expect(value).to_be_visible(timeout=LONG)
    text = value.inner_text().strip()
    m = re.fullmatch(rf"(-?\d+(?:\.\d+)?){re.escape(unit)}", text)
    assert m, (label, text)
    return float(m.group(1))


# --- 1. gradient estimators -------------------------------------------------------------------
GRAD_LABELS = {"score": "score function (REINFORCE)", "baseline": "score function + baseline",
               "reparam": "reparameterisation"}


def test_gradient_lab_shows_reparameterisation_has_lower_variance(page, server):
    page.goto(f"{server.url}/lab_gradients?run=tiny")
    wait_app_idle(page, LONG)
    expect(page.get_by_text("Run tiny · snapshot at step")).to_be_visible(timeout=LONG)

    # The 1-D toy draws without a button: q = N(μ, σ²), f(z) = (z − c)², defaults μ = 1.5, σ = 0.5, c = 0.
    toy = plot_of(page, "toy").evaluate(TRACES)
    assert by_name(toy, "exact gradient", "x")["y"] == [3, 3]  # ∂/∂μ = 2(μ − c)
    assert by_name(toy, "exact gradient", "x2")["y"] == [0.5, 0.5]  # ∂/∂log σ = 2σ²
    score, reparam = (by_name(toy, GRAD_LABELS[e], "x3") for e in ("score", "reparam"))
    assert score["x"] == reparam["x"] == [1, 4, 16, 64, 256]
    assert all(s > 5 * r for s, r in zip(score["y"], reparam["y"])), (score["y"], reparam["y"])

    # Moving μ one step (keyboard on the slider) redraws the toy with the new exact gradient 2 × 1.75.
    mu = page.get_by_role("slider", name="μ")
    mu.focus()
    mu.press("ArrowRight")
    page.wait_for_function(
        "() => { const p = document.querySelector('.st-key-toy .js-plotly-plot');"
        " return p && p._fullData && p._fullData.some((t) => t.name === 'exact gradient' && t.xaxis === 'x'"
        " && t.y[0] === 3.5) }", timeout=LONG)
    expect(page.get_by_text("∂/∂μ = 2(μ − c) = 3.5")).to_be_visible(timeout=LONG)
    wait_app_idle(page, LONG)

    # The model part waits for the button. (Results are remembered server-wide per run, step and settings:
    # this holds while no other test on the shared server runs this lab on "tiny" with the defaults.)
    prompt = page.get_by_text("to measure the three estimators on this run's current weights")
    expect(prompt).to_be_visible(timeout=LONG)
    expect(page.locator(".st-key-grad-variance")).to_have_count(0)
    page.get_by_role("button", name="Run the gradient lab").click()
    traces = plot_of(page, "grad-variance").evaluate(TRACES)
    wait_app_idle(page, LONG)
    expect(prompt).to_have_count(0)

    assert sorted(t["name"] for t in traces) == sorted(GRAD_LABELS.values())
    score, base, reparam = (by_name(traces, GRAD_LABELS[e]) for e in ("score", "baseline", "reparam"))
    assert score["x"] == reparam["x"] == [1, 4, 16, 64, 256]  # the default largest L is 256
    # The lab's point: at every L one reparameterised estimate is far less noisy than a score-function one,
    # and the baseline helps the score function (from L = 4: leave-one-out needs two draws) without
    # reaching reparameterisation.
    assert all(r < s / 10 for r, s in zip(reparam["y"], score["y"])), (reparam["y"], score["y"])
    assert base["y"][0] is None  # no point at L = 1
    assert all(b < s for b, s in zip(base["y"][1:], score["y"][1:])), (base["y"], score["y"])
    assert reparam["y"][1] < base["y"][1], (reparam["y"], base["y"])
    # Each variance falls with L (about 1/L).
    assert all(a > b for a, b in zip(score["y"], score["y"][1:])), score["y"]
    assert all(a > b for a, b in zip(reparam["y"], reparam["y"][1:])), reparam["y"]
    # The text quotes the same ratio the plot shows at L = 1.
    ratio = score["y"][0] / reparam["y"][0]
    expect(page.get_by_text(f"one score-function gradient has {ratio:,.0f}× the variance")).to_be_visible()
    plot_of(page, "grad-distance")
    expect(metric(page, "A · Monte Carlo KL")).to_be_visible()
    expect(metric(page, "B · analytic KL")).to_be_visible()
    assert_no_exception(page)


# --- 2. marginal likelihood --------------------------------------------------------------------
def test_marginal_likelihood_lab_convergence_plot_and_test_set_nll(page, server):
    page.goto(f"{server.url}/lab_marginal_likelihood?run=tiny2d")
    wait_app_idle(page, LONG)
    expect(page.get_by_text("to run both importance samplers on this image")).to_be_visible(timeout=LONG)
    page.get_by_role("button", name="Estimate log p(x)").click()
    fig = plot_of(page, "ml-estimates")
    traces = fig.evaluate(TRACES)
    iwae_line = fig.evaluate("(p) => p._fullLayout.shapes.map((s) => s.y0)")
    wait_app_idle(page, LONG)

    prior, post = by_name(traces, "z from the prior N(0, I)"), by_name(traces, "z from the encoder q(z|x)")
    assert prior["x"] == post["x"] and prior["x"][0] == 1 and prior["x"][-1] == 5000  # default largest K
    # The bands (mean ± 1 s.d. over the repeats) are drawn just before each mean line: x out and back.
    i_prior, i_post = traces.index(prior), traces.index(post)
    n = len(prior["x"])
    band_prior, band_post = traces[i_prior - 1]["y"], traces[i_post - 1]["y"]
    width_prior, width_post = band_prior[n - 1] - band_prior[n], band_post[n - 1] - band_post[n]
    # At K = 5,000 the encoder's estimate is higher (the prior's is still biased low) and far less spread.
    assert post["y"][-1] > prior["y"][-1] + 1, (post["y"][-1], prior["y"][-1])
    assert width_post < width_prior / 5, (width_post, width_prior)
    # The dotted IWAE line is the encoder curve's end point.
    assert min(abs(y - post["y"][-1]) for y in iwae_line) < 1e-3, (iwae_line, post["y"][-1])
    plot_of(page, "ml-ess")
    plot_of(page, "ml-weights")
    assert_no_exception(page)

    # The test-set NLL, on 100 test images to keep it quick.
    images = page.get_by_label("Test images", exact=True)
    images.fill("100")
    images.press("Enter")
    wait_app_idle(page, LONG)
    page.get_by_role("button", name="Compute the test-set NLL").click()
    nll = metric_value(page, r"^IWAE NLL \(k = 1,000\)$", " nats")
    neg_elbo = metric_value(page, "^−ELBO$", " nats")
    gap = metric_value(page, "^gap", " nats")
    expect(page.get_by_text("Mean over the first 100 test images")).to_be_visible()
    assert 50 < nll < 2000, nll  # MNIST, 784 pixels: hundreds of nats
    assert nll <= neg_elbo, (nll, neg_elbo)  # the IWAE bound is tighter than the ELBO
    assert abs(gap - (neg_elbo - nll)) < 0.011, (gap, neg_elbo, nll)
    wait_app_idle(page, LONG)
    assert_no_exception(page)


# --- 3. β sweep ----------------------------------------------------------------------------------
# Remembers every label the sweep's progress bars show, so a state that lasts a second is not missed.
RECORD_PROGRESS = """() => {
  window.__progress = new Set();
  const rec = () => document.querySelectorAll("[data-testid='stProgress']").forEach((p) => {
    const t = p.innerText.trim(); if (t) window.__progress.add(t); });
  new MutationObserver(rec).observe(document.body, {subtree: true, childList: true, characterData: true});
  rec();
}"""


def test_beta_sweep_trains_in_the_background_and_draws_rate_distortion(page, fresh_server):
    page.goto(f"{fresh_server.url}/lab_beta")
    wait_app_idle(page, LONG)
    expect(page.get_by_text("No β sweep yet")).to_be_visible(timeout=LONG)
    panel = page.get_by_role("tabpanel")  # the β tab (the σ tab's panel is not rendered)

    # A small sweep that still draws the trade-off: β = 0.25 and 4, two epochs each (about 45 steps), on
    # the 8x8 digits. (After one epoch both rates are still under half a nat.)
    for beta in ("0.5", "1.0", "2.0"):
        panel.get_by_role("button", name=f"Remove {beta}", exact=True).click()
        expect(panel.get_by_role("button", name=f"Remove {beta}", exact=True)).to_have_count(0, timeout=LONG)
        wait_app_idle(page, LONG)
    tags = panel.get_by_test_id("stMultiSelect").get_by_role("group", name="Selected values")
    expect(tags).to_have_text("0.254.0")
    combo = panel.get_by_role("combobox", name="Dataset")
    combo.click()
    page.get_by_role("option", name="digits", exact=True).click()
    expect(combo).to_have_value("digits", timeout=LONG)
    wait_app_idle(page, LONG)
    epochs = panel.get_by_label("Epochs per run")
    epochs.fill("2")
    epochs.press("Enter")
    wait_app_idle(page, LONG)
    expect(epochs).to_have_value("2")

    page.evaluate(RECORD_PROGRESS)
    panel.get_by_role("button", name="Start β sweep").click()

    # One progress bar per β, live, until both runs finish (the fragment refreshes every 2 s).
    bars = panel.get_by_test_id("stProgress")
    expect(bars).to_have_count(2, timeout=LONG)
    expect(bars.filter(has_text=re.compile(r"^beta0\.25 · "))).to_have_count(1)
    expect(bars.filter(has_text="beta4 · finished")).to_have_count(1, timeout=150_000)
    expect(bars.filter(has_text="beta0.25 · finished")).to_have_count(1, timeout=LONG)
    seen = page.evaluate("() => Array.from(window.__progress)")
    assert "beta4 · queued" in seen, seen  # the second run waited for the first
    expect(panel.get_by_role("combobox", name="Sweep")).to_have_value(re.compile(r"^digits-.* · 2 runs$"))

    # The rate–distortion plot: one point per β, both finished (a point in training says so).
    page.wait_for_function(
        "() => { const p = document.querySelector(\"[class*='st-key-rd-'] .js-plotly-plot\");"
        " return p && p._fullData && p._fullData[0].text.join() === 'β=0.25,β=4' }", timeout=LONG)
    wait_app_idle(page, LONG)
    traces = page.locator("[class*='st-key-rd-'] .js-plotly-plot").evaluate(TRACES)
    assert [t["name"] for t in traces] == ["runs"]  # no β = 1 run, so no equal-ELBO line
    (runs,) = traces
    assert len(runs["x"]) == len(runs["y"]) == 2
    (rate_small, rate_large), (dist_small, dist_large) = runs["x"], runs["y"]
    # A small β buys rate and pays less distortion.
    assert rate_small > rate_large + 1, runs
    assert dist_small < dist_large, runs
    expect(panel.get_by_text(re.compile(r"^β = 0\.25$"))).to_have_count(1)
    expect(panel.get_by_role("button", name="Stop the sweep")).to_have_count(0)
    assert_no_exception(page)


# --- 4. disentanglement --------------------------------------------------------------------------
def test_disentanglement_lab_explains_it_needs_a_shapes_run(page, server):
    page.goto(f"{server.url}/lab_disentanglement?run=tiny")
    wait_app_idle(page, LONG)
    info = page.get_by_test_id("stAlertContentInfo").filter(has_text="was not trained on shapes")
    expect(info).to_be_visible(timeout=LONG)
    expect(info).to_contain_text("tiny was not trained on shapes")
    expect(info).to_contain_text("Disentanglement can only be measured where the factors are known")
    expect(page.get_by_role("button", name=re.compile(r"^Train a shapes model"))).to_be_visible()
    expect(metric(page, "^MIG$")).to_have_count(0)
    expect(page.locator(".st-key-mi")).to_have_count(0)
    assert_no_exception(page)


def test_disentanglement_lab_measures_a_shapes_run(page, fresh_server):
    from vae_core.runs.manager import RunManager, new_run_config

    page.goto(f"{fresh_server.url}/lab_disentanglement")
    wait_app_idle(page, LONG)
    expect(page.get_by_text("No model yet. This lab needs a run on the shapes dataset")).to_be_visible(timeout=LONG)

    res = RunManager(fresh_server.runs_dir).start(new_run_config(
        "shapes", model={"latent_dim": 4, "hidden": 64}, train={"epochs": 1, "max_steps": 30, "num_threads": 1}))
    assert res.created, res.message
    page.goto(f"{fresh_server.url}/lab_disentanglement?run={res.name}")
    # The sidebar follows the run live; when it ends the page reruns on the final snapshot.
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(re.compile(r"^finished · step 30 of 30"))).to_be_visible(timeout=LONG)
    expect(page.get_by_text(re.compile(rf"^Run {res.name} · snapshot at step 30 "))).to_be_visible(timeout=LONG)
    wait_app_idle(page, LONG)
    expect(page.get_by_text("The run is still training")).to_have_count(0)

    mig = metric_value(page, "^MIG$")
    assert 0 <= mig <= 1, mig
    for name in ("DCI disentanglement", "DCI completeness", "DCI informativeness"):
        assert 0 <= metric_value(page, f"^{name}$") <= 1, name

    # The factor × dimension matrix of normalised mutual information.
    (heat,) = plot_of(page, "mi").evaluate(TRACES)
    assert heat["type"] == "heatmap"
    assert heat["y"] == ["shape", "scale", "rotation", "x", "y"]
    assert [x.split("<br>")[0] for x in heat["x"]] == ["z0", "z1", "z2", "z3"]
    z = heat["z"]
    assert len(z) == 5 and all(len(row) == 4 for row in z)
    assert all(0 <= v <= 1 for row in z for v in row), z
    # MIG is the mean over factors of the gap between a factor's two best dimensions.
    gaps = [sorted(row)[-1] - sorted(row)[-2] for row in z]
    assert abs(mig - sum(gaps) / len(gaps)) < 0.006, (mig, gaps)
    # One traversal row per factor.
    expect(page.get_by_text("Which dimension moves each factor")).to_be_visible()
    for fname in heat["y"]:
        expect(page.get_by_text(re.compile(rf"^{fname} → (z\d|no dimension)"))).to_have_count(1)
    assert_no_exception(page)
