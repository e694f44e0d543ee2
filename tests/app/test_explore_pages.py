"""AppTest of the Reconstructions, Latent space and Sample pages, and of every explorer page on
degenerate models.

The runs come from conftest's session fixture: "tiny" (digits 8x8, z=3), "tiny2d" (MNIST
28x28, z=2) and "tiny1d" (digits, z=1); ``broken_runs`` adds copies of "tiny" whose weights
are all zero, or whose decoder overflows to NaN. Pages keep a few typed session-state values
(recon_shown, sample_last, traverse_base; see pages/_ui/state.py) that these tests read
instead of decoding images.
"""
import base64
import json

import numpy as np
import pytest

from tests.conftest import page_app

PAGES = ["pages/reconstructions.py", "pages/latent_space.py", "pages/sample.py"]


RUNS = ["tiny", "tiny2d", "tiny1d"]


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def _image_urls(at) -> list[str]:
    # Media URLs are content hashes: equal URLs mean equal image bytes.
    return [img.url for el in at.get("image") for img in el.proto.imgs]


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _arr(v) -> np.ndarray:
    """A figure array as numpy: plotly sends numpy data as base64 typed arrays ({"bdata", "dtype"})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _test_labels(runs_dir, run: str) -> np.ndarray:
    """The run's test labels, loaded the way the app loads them."""
    from vae_core.data import load_dataset
    from vae_core.runs import rundir as rd

    tc = rd.read_config(runs_dir / run).train
    return load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed).y_test.numpy()


# --- every page ---------------------------------------------------------------------------
@pytest.mark.parametrize("page", [*PAGES, "pages/traverse.py", "pages/encode.py"])
def test_empty_state_offers_a_default_run(empty_runs, page):
    at = page_app(page).run()
    assert not at.exception
    assert any("No model yet" in i.value for i in at.info)
    assert any("Train a default model" in b.label for b in at.button)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("run", RUNS)
def test_pages_draw_every_trained_run(app_runs, page, run):
    at = page_app(page, run=run).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert f"Run **{run}**" in _captions(at)  # the snapshot caption
    n_images, n_charts = len(_image_urls(at)), len(at.get("plotly_chart"))
    if page == "pages/reconstructions.py":
        assert n_images == 3 * 10 + 2 * 2 * 8 and n_charts == 0
    elif page == "pages/latent_space.py":
        assert n_charts == 2  # the scatter and the KL bars
        assert n_images == (1 if run == "tiny2d" else 0)  # the manifold grid, for the 2-D model only
    else:
        assert n_images == 1 and n_charts == 0  # one grid of samples; the scatter is opt-in


# --- Reconstructions ----------------------------------------------------------------------
def test_reconstructions_show_inputs_means_samples_and_losses(app_runs):
    at = page_app("pages/reconstructions.py", run="tiny").run()
    shown = at.session_state["recon_shown"]
    assert shown.run == "tiny" and len(shown.indices) == 10
    labels = [m.value for m in at.markdown]
    assert {"**input**", "**mean**", "**sampled**", "**Worst**", "**Best**"} <= set(labels)
    losses = [c.value for c in at.caption if c.value.startswith("**") and c.value.endswith("**")]
    assert len(losses) == 10 + 16 and np.isfinite([float(v.strip("*")) for v in losses]).all()
    assert "reconstruction loss" in _captions(at) and "KL" in _captions(at)  # the plain-language explanation


def test_reconstructions_worst_are_worse_than_best(app_runs):
    at = page_app("pages/reconstructions.py", run="tiny").run()
    losses = [float(c.value.strip("*")) for c in at.caption if c.value.startswith("**") and c.value.endswith("**")]
    worst, best = losses[10:18], losses[18:26]
    assert worst == sorted(worst, reverse=True) and best == sorted(best)
    assert min(worst) >= max(best)


def test_reconstructions_by_class_shows_only_that_class(app_runs):
    at = page_app("pages/reconstructions.py", run="tiny").run()
    at.radio(key="recon_mode").set_value("by class").run()
    at.selectbox(key="recon_class").set_value("3").run()
    assert not at.exception
    ids = at.session_state["recon_shown"].indices
    y = _test_labels(app_runs, "tiny")
    assert ids and all(y[i] == 3 for i in ids)
    assert "test images of class **3**" in _captions(at)


def test_repick_draws_other_images_reproducibly(app_runs):
    at = page_app("pages/reconstructions.py", run="tiny").run()
    first = at.session_state["recon_shown"].indices
    at.button[0].click().run()  # Re-pick
    assert at.session_state["recon_seed"] == 1
    second = at.session_state["recon_shown"].indices
    assert second != first
    again = page_app("pages/reconstructions.py", run="tiny")
    again.session_state["recon_seed"] = 1
    assert again.run().session_state["recon_shown"].indices == second


# --- Latent space -------------------------------------------------------------------------
def test_latent_space_switches_between_pca_tsne_and_two_dims(app_runs):
    at = page_app("pages/latent_space.py", run="tiny").run()
    assert "**PCA** of the 3-dim codes" in _captions(at)
    at.radio(key="ls_method").set_value("t-SNE").run()
    assert not at.exception
    assert "**t-SNE** of the 3-dim codes" in _captions(at) and "**PCA**" not in _captions(at)
    at.radio(key="ls_method").set_value("two latent dims").run()
    at.selectbox(key="ls_dim_x").set_value(2).run()
    at.selectbox(key="ls_dim_y").set_value(0).run()
    assert "**Two latent dims**: z2 across, z0 up" in _captions(at)
    assert _image_urls(at)  # the manifold over the two chosen dims


def test_latent_space_scatter_carries_global_ids_and_class_names(app_runs):
    at = page_app("pages/latent_space.py", run="tiny").run()
    scatter, kl = _figures(at)[:2]
    classes = [t for t in scatter["data"] if t.get("mode") == "markers" and t.get("customdata")]
    assert sorted(t["name"] for t in classes) == [str(k) for k in range(10)]
    y = _test_labels(app_runs, "tiny")
    for t in classes:  # customdata holds the global test index, whatever the trace
        assert all(str(y[cd[0]]) == t["name"] for cd in t["customdata"])
    assert sum(len(_arr(t["y"])) for t in kl["data"]) == 3  # one KL bar per latent dim
    assert any("active" in h.value and "of 3" in h.value for h in at.subheader)


def test_latent_space_2d_has_manifold_and_sigma_ellipses(app_runs):
    at = page_app("pages/latent_space.py", run="tiny2d").run()
    assert "**The codes themselves**" in _captions(at)
    assert "decoded manifold" in _captions(at) and _image_urls(at)
    at.checkbox(key="ls_ellipses").check().run()
    lines = [t for t in _figures(at)[0]["data"] if t.get("mode") == "lines"]
    assert len(lines) == 60


def test_latent_space_1d_is_a_strip(app_runs):
    at = page_app("pages/latent_space.py", run="tiny1d").run()
    assert "**Strip**" in _captions(at)
    assert not at.get("radio")  # nothing to choose for one dim


def test_selected_point_shows_details_and_sets_the_traverse_base(app_runs):
    at = page_app("pages/latent_space.py", run="tiny")
    at.session_state["selected_point"] = {"run": "tiny", "index": 5}
    at.run()
    assert not at.exception
    assert len(_image_urls(at)) == 2  # the image and its reconstruction
    assert len(_figures(at)) == 3  # scatter, code bars, KL bars
    button = next(b for b in at.button if b.label == "Traverse from here")
    button.click().run()
    assert not at.exception
    base = at.session_state["traverse_base"]
    assert base.run == "tiny" and len(base.z) == 3 and "#5" in base.label
    assert np.asarray(base.image).shape == (1, 8, 8)


def test_selected_point_of_another_run_is_ignored(app_runs):
    at = page_app("pages/latent_space.py", run="tiny")
    at.session_state["selected_point"] = {"run": "tiny2d", "index": 5}
    at.run()
    assert any("Click a dot" in i.value for i in at.info)


def test_encoded_upload_is_drawn_as_a_star(app_runs):
    at = page_app("pages/latent_space.py", run="tiny")
    at.session_state["encoded_upload"] = {"run": "tiny", "z": [0.1, -0.2, 0.3], "label": "your image"}
    at.run()
    stars = [t for t in _figures(at)[0]["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert len(stars) == 1 and stars[0]["name"] == "your image"


# --- Sample -------------------------------------------------------------------------------
def test_same_seed_same_samples_other_seed_other_samples(app_runs):
    at = page_app("pages/sample.py", run="tiny").run()
    z0, img0 = at.session_state["sample_last"].z, _image_urls(at)
    assert np.asarray(z0).shape == (36, 3)
    at.number_input(key="sample_seed").set_value(7).run()
    assert at.session_state["sample_last"].z != z0 and _image_urls(at) != img0
    at.number_input(key="sample_seed").set_value(0).run()
    assert at.session_state["sample_last"].z == z0 and _image_urls(at) == img0


def test_resample_temperature_and_grid(app_runs):
    at = page_app("pages/sample.py", run="tiny2d").run()
    at.button[0].click().run()  # Re-sample
    assert at.session_state["sample_last"].seed == 1
    at.slider(key="sample_temp").set_value(0.0).run()
    assert not np.any(at.session_state["sample_last"].z)  # T = 0: every code is the prior mean
    at.select_slider(key="sample_grid").set_value("3×3").run()
    assert len(at.session_state["sample_last"].z) == 9


@pytest.mark.parametrize("run,dims", [("tiny", 3), ("tiny2d", 2), ("tiny1d", 1)])
def test_samples_placed_on_the_latent_scatter(app_runs, run, dims):
    at = page_app("pages/sample.py", run=run).run()
    at.checkbox(key="sample_place").check().run()
    assert not at.exception and not at.error
    fig = _figures(at)[0]
    samples = next(t for t in fig["data"] if t["name"] == "samples")
    assert len(_arr(samples["x"])) == 36 and samples["marker"]["symbol"] == "x"
    if dims == 2:  # 2-D: the samples sit at their own codes
        np.testing.assert_allclose(np.column_stack([_arr(samples["x"]), _arr(samples["y"])]),
                                   np.asarray(at.session_state["sample_last"].z), rtol=1e-5)


def test_engine_errors_become_messages(app_runs, monkeypatch):
    from vae_core import explore

    def broken(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(explore, "sample_prior", broken)
    monkeypatch.setattr(explore, "reconstruct", broken)
    for page in ("pages/sample.py", "pages/reconstructions.py"):
        at = page_app(page, run="tiny").run()
        assert not at.exception
        assert any("decoder exploded" in e.value for e in at.error)


# --- degenerate models ---------------------------------------------------------------------------
def _texts(at, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def assert_up(at) -> None:
    """The page ran to the end of its script with no exception and no error box."""
    assert not at.exception, at.exception
    assert not at.error, _texts(at, "error")


SAME_CODE = "Every test image gets the same code"


@pytest.mark.parametrize("page", ["pages/train.py", *PAGES])
def test_every_page_stays_up_on_a_zero_weights_run(broken_runs, page):
    at = page_app(page, run="zero", timeout=60).run()
    assert_up(at)
    if page == "pages/train.py":
        assert at.get("plotly_chart")  # the curves, and the (grey) reconstructions
        assert any(m.value.startswith("**Reconstructions**") for m in at.markdown)
        assert any(SAME_CODE in w for w in _texts(at, "warning"))
    elif page == "pages/sample.py":  # no test set here: the decoder is what the page can judge
        assert any("Every code decodes to the same image" in w for w in _texts(at, "warning"))
        assert len(_image_urls(at)) == 1
    else:
        assert any(SAME_CODE in w for w in _texts(at, "warning")), _texts(at, "warning")
        assert "Run **zero**" in _captions(at)


def test_latent_space_views_on_a_zero_weights_run(broken_runs):
    """Every view draws one point and says why; t-SNE (which segfaults scikit-learn on identical
    codes, taking the whole server down) is replaced by PCA with a note."""
    at = page_app("pages/latent_space.py", run="zero", timeout=60).run()
    assert "**PCA** of the 3-dim codes" in _captions(at)
    at.radio(key="ls_method").set_value("t-SNE").run()
    assert_up(at)
    assert "Every code is the same point, so t-SNE has nothing to arrange; showing PCA." in _captions(at)
    at.radio(key="ls_method").set_value("two latent dims").run()
    at.checkbox(key="ls_ellipses").check().run()
    assert_up(at)
    assert "**Two latent dims**" in _captions(at) and _image_urls(at)  # the (uniform) manifold still decodes
    scatter = _figures(at)[0]
    assert len([t for t in scatter["data"] if t.get("mode") == "lines"]) == 60
    xs = np.concatenate([_arr(t["x"]) for t in scatter["data"] if t.get("customdata")])
    assert np.ptp(xs) == 0  # one point
    assert any("0 of 3 active" in h.value for h in at.subheader)


@pytest.mark.parametrize("run", ["zero", "tiny1d"])
def test_samples_on_the_scatter_of_degenerate_runs(broken_runs, run):
    at = page_app("pages/sample.py", run=run, timeout=60).run()
    at.checkbox(key="sample_place").check().run()
    assert_up(at)
    samples = next(t for t in _figures(at)[0]["data"] if t["name"] == "samples")
    assert len(_arr(samples["x"])) == 36


@pytest.mark.parametrize("page", PAGES + ["pages/train.py"])
def test_one_dimensional_run_on_every_page(broken_runs, page):
    at = page_app(page, run="tiny1d", timeout=60).run()
    assert_up(at)
    if page == "pages/latent_space.py":
        assert "**Strip**" in _captions(at)
        at.session_state["encoded_upload"] = {"run": "tiny1d", "z": [0.5], "label": "your image"}
        at.run()
        assert_up(at)
        star = next(t for t in _figures(at)[0]["data"] if t.get("marker", {}).get("symbol") == "star")
        assert list(_arr(star["y"])) == [-1.0]  # the strip's own row


@pytest.mark.parametrize("page", PAGES)
def test_a_decoder_returning_nan_is_said_in_words(broken_runs, page):
    at = page_app(page, run="diverged", timeout=60).run()
    assert not at.exception, at.exception
    errors = _texts(at, "error")
    assert len(errors) == 1 and "returns NaN or infinite values" in errors[0], errors
    assert not at.get("plotly_chart") and not _image_urls(at)  # no noise passed off as pictures


def test_train_page_on_a_diverged_run_keeps_its_curves_and_says_why_there_are_no_pictures(broken_runs):
    at = page_app("pages/train.py", run="diverged", timeout=60).run()
    assert_up(at)
    assert any("returns NaN or infinite values" in w for w in _texts(at, "warning"))
    assert at.get("plotly_chart")
    assert not any(m.value.startswith("**Reconstructions**") for m in at.markdown)
