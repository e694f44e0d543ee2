"""The explorer's figure builders (pages/_ui/figures.py) on hand-made inputs, without Streamlit
running: what each figure holds (traces, names, axis titles, the global ids a click needs)."""
import numpy as np
import pytest

from pages._ui import figures as figs
from vae_core import explore

CLASSES = ["0", "1", "2"]


def xy_of(trace) -> np.ndarray:
    return np.column_stack([np.asarray(trace.x, float), np.asarray(trace.y, float)])


# --- names --------------------------------------------------------------------------------------
def test_loss_label_follows_the_objective():
    assert figs.loss_label("elbo", 1.0, 1) == "loss (−ELBO)"
    assert figs.loss_label("elbo", 4.0, 1) == "loss (−β-ELBO, β = 4)"
    iwae = figs.loss_label("iwae", 4.0, 5)
    assert iwae == "loss (−IWAE bound, k = 5)" and "β" not in iwae  # β plays no part in the IWAE bound


def test_class_names():
    assert figs.class_text(7, [str(k) for k in range(10)]) == "digit 7"
    assert figs.class_text(1, ["T-shirt", "Trouser"]) == "Trouser"
    assert figs.class_text(-1, CLASSES) == "" and figs.class_text(5, CLASSES) == ""
    assert [figs.group_name(y, ["a"]) for y in (0, 3, -1)] == ["a", "3", "test images"]


# --- Train ---------------------------------------------------------------------------------------
STEPS = [{"step": s, "loss": 100.0 - s, "log_likelihood": -90.0 + s, "kl": 10.0} for s in (5, 10, 15)]
EPOCHS = [{"epoch": 1, "test_elbo": -95.0}, {"epoch": 2, "test_elbo": -90.0}]


def test_training_curves_show_the_loss_terms_and_the_test_elbo():
    fig = figs.training_curves(STEPS, EPOCHS, figs.loss_label("iwae", 1.0, 5))
    assert [t.name for t in fig.data] == ["loss (−IWAE bound, k = 5)", "reconstruction (−log p(x|z))", "KL(q‖p)", "test ELBO"]
    assert list(fig.data[0].y) == [95.0, 90.0, 85.0]
    assert list(fig.data[1].y) == [85.0, 80.0, 75.0]  # −log p(x|z), positive nats
    assert list(fig.data[3].x) == [1, 2] and fig.data[3].xaxis == "x2"
    assert (fig.layout.xaxis.title.text, fig.layout.xaxis2.title.text) == ("step", "epoch")
    assert len(figs.training_curves(STEPS, [], "loss").data) == 3  # no epoch finished yet


# --- where points go -------------------------------------------------------------------------------
def test_strip_rows_are_the_classes_with_a_fixed_small_jitter():
    labels = np.array([0, 2, 2, -1, 1])
    y = figs.strip_y(labels)
    assert np.all(np.abs(y - np.maximum(labels, 0)) <= 0.3)
    np.testing.assert_array_equal(y, figs.strip_y(labels))  # the same picture on every refresh


@pytest.mark.parametrize("d, kind", [(1, "strip"), (2, "identity"), (3, "pca")])
def test_code_view_puts_test_codes_and_new_codes_on_the_same_axes(d, kind):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(50, d)).astype(np.float32) * np.arange(1, d + 1)
    labels = rng.integers(0, 3, 50)
    z = mu[:3]  # new codes equal to three test codes land exactly on them
    view = figs.code_view(mu, labels, explore.pca_fit(mu), z)
    assert view.kind == kind and view.xy.shape == (50, 2) and view.points.shape == (3, 2)
    if kind == "strip":
        np.testing.assert_array_equal(view.points[:, 1], figs.STRIP_ROW)
        np.testing.assert_array_equal(view.points[:, 0], z[:, 0])
    else:
        np.testing.assert_allclose(view.points, view.xy[:3], atol=1e-5)
    if kind == "pca":
        assert view.axes[0].startswith("PC1 (") and "of variance" in view.axes[0]
        assert view.xy[:, 0].var() > view.xy[:, 1].var()  # the first axis carries the most spread


def test_position_in_every_projection():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(40, 3)).astype(np.float32)
    z = mu[7]
    dims = explore.project_2d(mu, "dims", dims=(2, 0))
    assert figs.position_in(dims, z, mu, dims.xy) == (pytest.approx(z[2]), pytest.approx(z[0]))
    pca = explore.project_2d(mu, "pca")
    np.testing.assert_allclose(figs.position_in(pca, z, mu, pca.xy), pca.xy[7], atol=1e-5)
    fake_tsne = explore.Projection(rng.normal(size=(40, 2)).astype(np.float32), "tsne", None, None)
    np.testing.assert_allclose(figs.position_in(fake_tsne, z, mu, fake_tsne.xy), fake_tsne.xy[7], atol=1e-5)
    strip = explore.project_2d(mu[:, :1], "auto")
    assert figs.position_in(strip, z[:1], mu[:, :1], strip.xy) == (pytest.approx(z[0]), figs.STRIP_ROW)
    with pytest.raises(ValueError, match="does not fit"):
        figs.position_in(pca, np.zeros(5), mu, pca.xy)  # an upload from a model of another size


# --- Latent space --------------------------------------------------------------------------------
def test_latent_scatter_carries_each_points_global_test_id():
    labels = np.array([0, 1, 1, 2, 0])
    ids = np.array([10, 20, 30, 40, 50])  # global test indices (the points are a spread subset)
    xy = np.arange(10, dtype=np.float32).reshape(5, 2)
    fig = figs.latent_scatter(xy, labels, ids, ["7", "Trouser", "Bag"], revision="r")
    assert [t.name for t in fig.data] == ["7", "Trouser", "Bag"]
    assert [list(map(list, t.customdata)) for t in fig.data] == [
        [[10, "digit 7"], [50, "digit 7"]], [[20, "Trouser"], [30, "Trouser"]], [[40, "Bag"]]]
    np.testing.assert_array_equal(xy_of(fig.data[1]), xy[[1, 2]])
    assert fig.layout.uirevision == "r" and fig.layout.clickmode == "event+select"


def test_latent_scatter_extras():
    labels = np.full(4, -1)  # unlabelled data: one trace
    xy = np.zeros((4, 2), np.float32)
    codes = explore.Codes(np.zeros((4, 2), np.float32), np.ones((4, 2), np.float32))
    ellipses = explore.sigma_ellipses(codes, [0, 1, 2])
    fig = figs.latent_scatter(xy, labels, np.arange(4), [], selected=(0.0, 0.0), star=((1.0, 2.0), "your image"),
                              ellipses=ellipses, square=(-1.5, 1.5), axes=("z0", "z1"), equal_axes=True)
    assert fig.data[0].name == "test images" and len(fig.data[0].customdata) == 4
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 3 and [t.showlegend for t in lines] == [True, False, False]
    assert [t.name for t in fig.data[4:]] == ["selected", "your image"]
    assert fig.data[-1].marker.symbol == "star" and (fig.data[-1].x, fig.data[-1].y) == ((1.0,), (2.0,))
    assert fig.layout.shapes[0].type == "rect" and (fig.layout.shapes[0].x0, fig.layout.shapes[0].x1) == (-1.5, 1.5)
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("z0", "z1")
    assert fig.layout.yaxis.scaleanchor == "x"


def test_latent_scatter_strip_labels_its_rows_with_the_classes():
    fig = figs.latent_scatter(np.zeros((3, 2)), np.array([0, 1, 2]), np.arange(3), CLASSES, strip=True,
                              axes=("μ (latent dim z0)", "class"))
    assert list(fig.layout.yaxis.tickvals) == [0, 1, 2] and list(fig.layout.yaxis.ticktext) == CLASSES
    assert fig.layout.yaxis.scaleanchor is None


def test_kl_bars_colour_active_and_collapsed_dims():
    fig = figs.kl_bars(np.array([3.0, 0.01, 1.5, 0.0]), np.array([True, False, True, False]))
    active, inactive = fig.data
    assert (active.name, active.marker.color, list(active.x)) == ("active", figs.ACTIVE, ["z0", "z2"])
    assert (inactive.name, inactive.marker.color, list(inactive.x)) == ("inactive", figs.INACTIVE, ["z1", "z3"])
    assert list(active.y) == [3.0, 1.5]
    assert list(fig.layout.xaxis.categoryarray) == ["z0", "z1", "z2", "z3"]  # dim order, whatever the colour
    assert fig.layout.yaxis.title.text == "KL (nats)"
    assert [t.name for t in figs.kl_bars(np.zeros(2), np.zeros(2, bool)).data] == ["inactive"]  # a collapsed model


def test_code_bars_in_kl_order_with_the_prior_band():
    mu, sigma = np.array([0.5, -1.0, 2.0]), np.array([0.1, 1.0, 0.2])
    fig = figs.code_bars(mu, sigma, "code", order=[2, 0, 1], active=np.array([True, False, True]), prior_band=True)
    bar = fig.data[0]
    assert list(bar.x) == ["z2", "z0", "z1"] and list(bar.y) == [2.0, 0.5, -1.0]
    assert list(bar.error_y.array) == [0.2, 0.1, 1.0]
    assert list(bar.marker.color) == [figs.ACTIVE, figs.ACTIVE, figs.INACTIVE]  # z1 has collapsed
    assert (fig.layout.shapes[0].y0, fig.layout.shapes[0].y1) == (-1, 1)
    plain = figs.code_bars(mu, sigma, "code")
    assert list(plain.data[0].x) == ["z0", "z1", "z2"] and not plain.layout.shapes


# --- Sample and Encode --------------------------------------------------------------------------
def test_codes_with_points_draws_the_test_codes_by_class_and_the_points_on_top():
    rng = np.random.default_rng(2)
    mu, labels = rng.normal(size=(30, 2)).astype(np.float32), np.repeat([0, 1, 2], 10)
    view = figs.code_view(mu, labels, explore.pca_fit(mu), np.array([[0.5, -0.5]]))
    fig = figs.codes_with_points(view, labels, CLASSES, name="your image", marker=dict(symbol="star"),
                                 errors=(0.3, 0.4))
    assert [t.name for t in fig.data] == ["0", "1", "2", "your image"]
    assert len({t.marker.color for t in fig.data[:3]}) == 3
    star = fig.data[-1]
    assert star.marker.symbol == "star" and xy_of(star).tolist() == [[0.5, -0.5]]
    assert (list(star.error_x.array), list(star.error_y.array)) == ([0.3], [0.4])
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("z0", "z1")
    assert fig.layout.yaxis.scaleanchor == "x"


def test_codes_with_points_on_a_strip_gives_the_points_their_own_row():
    mu, labels = np.linspace(-2, 2, 6, dtype=np.float32)[:, None], np.array([0, 0, 1, 1, 2, 2])
    view = figs.code_view(mu, labels, explore.pca_fit(mu), np.zeros((4, 1)))
    fig = figs.codes_with_points(view, labels, CLASSES, name="samples", marker=dict(symbol="x"), row_label="samples")
    assert list(fig.layout.yaxis.tickvals) == [figs.STRIP_ROW, 0, 1, 2]
    assert list(fig.layout.yaxis.ticktext) == ["samples", *CLASSES]
    assert np.all(np.asarray(fig.data[-1].y) == figs.STRIP_ROW) and fig.data[-1].error_x.array is None


def test_identical_codes_still_give_figures():
    """An all-zero model: every code the same. The figures draw one point; the pages say why."""
    mu, labels = np.zeros((20, 3), np.float32), np.arange(20) % 3
    view = figs.code_view(mu, labels, explore.pca_fit(mu), np.zeros((2, 3)))
    assert np.isfinite(view.xy).all() and np.ptp(view.xy) == 0
    assert "0%" in view.axes[0]
    fig = figs.latent_scatter(view.xy, labels, np.arange(20), CLASSES)
    assert sum(len(t.x) for t in fig.data) == 20
