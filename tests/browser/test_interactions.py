"""What a user does with the mouse, in a real browser: click a dot on the latent scatter and
traverse from it, upload real (and broken) image files, walk the sidebar to every page."""
import io
import random
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_app_idle

ERROR = "[data-testid='stAlertContentError']"

# Grey-level statistics of a loaded <img>, read back through a canvas (same origin: not tainted).
# Rows and columns that are white from edge to edge are left out: they are the padding lines
# between the cells of a grid, which would make a grid of blank cells look like a picture.
IMG_STATS = """(img) => {
  const c = document.createElement('canvas');
  const w = c.width = img.naturalWidth, h = c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, w, h).data;
  const v = (x, y) => { const i = 4 * (y * w + x); return (d[i] + d[i + 1] + d[i + 2]) / 3; };
  const padRow = [], padCol = [];
  for (let y = 0; y < h; y++) { let all = true; for (let x = 0; x < w && all; x++) all = v(x, y) >= 250; padRow.push(all); }
  for (let x = 0; x < w; x++) { let all = true; for (let y = 0; y < h && all; y++) all = v(x, y) >= 250; padCol.push(all); }
  let s = 0, s2 = 0, n = 0;
  for (let y = 0; y < h; y++) if (!padRow[y]) for (let x = 0; x < w; x++) if (!padCol[x]) { const a = v(x, y); s += a; s2 += a * a; n++; }
  const m = s / Math.max(n, 1);
  return {w, h, n, mean: m, std: Math.sqrt(Math.max(0, s2 / Math.max(n, 1) - m * m))};
}"""

# Screen position of every class point on the scatter, from Plotly's own axes: each point's
# test index (customdata[0]) and its pixel centre, plus its distance to the nearest other point.
SCATTER_POINTS = """(plot) => {
  const L = plot._fullLayout, xa = L.xaxis, ya = L.yaxis, r = plot.getBoundingClientRect();
  const pts = [];
  plot._fullData.forEach((t) => {
    if (!t.customdata || t.visible !== true) return;
    for (let i = 0; i < t.x.length; i++) {
      pts.push({index: t.customdata[i][0], x: r.left + xa._offset + xa.l2p(t.x[i]),
                y: r.top + ya._offset + ya.l2p(t.y[i])});
    }
  });
  const inside = (p) => p.x > r.left + xa._offset + 8 && p.x < r.left + xa._offset + xa._length - 8 &&
                        p.y > r.top + ya._offset + 8 && p.y < r.top + ya._offset + ya._length - 8;
  for (const p of pts) {
    p.gap = Infinity;
    for (const q of pts) if (q !== p) p.gap = Math.min(p.gap, Math.hypot(p.x - q.x, p.y - q.y));
    p.inside = inside(p);
  }
  return pts;
}"""


def img_stats(img_locator) -> dict:
    img_locator.wait_for(timeout=30_000)
    img_locator.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=img_locator.element_handle(),
                                       timeout=30_000)
    return img_locator.evaluate(IMG_STATS)


def assert_picture(img_locator, what: str) -> None:
    """The <img> loaded and is a picture, not a blank square."""
    s = img_stats(img_locator)
    assert s["w"] >= 28 and s["h"] >= 28, (what, s)
    assert s["std"] > 10, (what, s)  # grey levels 0..255: a uniform image has std 0


def image_after(page, heading: str):
    """The first image shown in the same column as a bold markdown heading (Encode page)."""
    col = page.locator("[data-testid='stColumn']").filter(has=page.get_by_text(heading, exact=True)).last
    return col.locator("[data-testid='stImage'] img").first, col


# --- 1. click a dot, then traverse from it ------------------------------------------------------------
def test_click_a_scatter_point_shows_it_and_traverses_from_it(page, server):
    page.goto(f"{server.url}/latent_space?run=tiny2d")
    wait_app_idle(page)
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Click a dot in the scatter").first).to_be_visible(timeout=30_000)
    page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                           " return p && p._fullLayout && p._fullData && p._fullData.length > 1 }", timeout=30_000)

    # The most isolated point well inside the axes, so the click cannot land on a neighbour.
    pts = [p for p in plot.evaluate(SCATTER_POINTS) if p["inside"]]
    assert len(pts) > 100, len(pts)
    target = max(pts, key=lambda p: p["gap"])
    assert target["gap"] > 4, target
    page.mouse.move(target["x"], target["y"])
    page.mouse.click(target["x"], target["y"])

    # The selected point's panel: its picture (captioned with the clicked index), reconstruction, code.
    label = re.compile(rf"^test image #{target['index']}( \(digit \d\))?$")
    pic = page.locator("[data-testid='stImage']").filter(has_text=label).locator("img")
    expect(pic).to_be_visible(timeout=30_000)
    assert_picture(pic, "selected test image")
    rec = page.locator("[data-testid='stImage']").filter(has_text="reconstruction (mean)").locator("img")
    assert_picture(rec, "its reconstruction")
    traverse = page.get_by_role("button", name="Traverse from here")
    expect(traverse).to_be_visible()
    full_label = page.locator("[data-testid='stImage']").filter(has_text=label).inner_text().strip()
    assert_no_exception(page)

    # Traverse opens with that image's code as the chosen base.
    traverse.click()
    page.wait_for_url(re.compile(r"/traverse\?run=tiny2d"), timeout=30_000)
    expect(page.get_by_role("heading", name="Traverse")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Chosen: {full_label}")).to_be_visible(timeout=30_000)
    base = page.locator("[data-testid='stImage']").filter(has_text=f"Base: {full_label}").locator("img")
    expect(base).to_be_visible(timeout=30_000)
    assert_picture(base, "traverse base")
    expect(page.get_by_role("radio", name=f"Chosen: {full_label}")).to_be_checked()
    assert_no_exception(page)


# --- 2. and 3. uploads ----------------------------------------------------------------------------------
def white_digit_png() -> bytes:
    """A thick white '7' on black, like an MNIST digit drawn in a paint program."""
    im = Image.new("L", (200, 200), 0)
    d = ImageDraw.Draw(im)
    d.line([(50, 40), (150, 40), (85, 170)], fill=255, width=18, joint="curve")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def pen_on_paper_jpeg() -> bytes:
    """A dark pen '2'-ish stroke on off-white paper, lit unevenly, saved as a phone would (JPEG)."""
    w, h = 320, 240
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    paper = 235 - 40 * x - 15 * y  # brighter top-left, a shadow towards the bottom right
    rgb = np.stack([paper, paper * 0.98, paper * 0.93], -1).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    d = ImageDraw.Draw(im)
    d.arc([110, 50, 210, 140], start=200, end=20, fill=(40, 40, 60), width=9)
    d.line([(200, 110), (120, 190), (215, 190)], fill=(40, 40, 60), width=9, joint="curve")
    im = im.filter(ImageFilter.GaussianBlur(0.8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def open_encode(page, server):
    page.goto(f"{server.url}/encode?run=tiny2d")
    wait_app_idle(page)
    expect(page.get_by_role("heading", name="Encode your image")).to_be_visible(timeout=30_000)
    chooser = page.locator("[data-testid='stFileUploader'] input[type=file]").first
    chooser.wait_for(state="attached", timeout=30_000)
    return chooser


def upload(chooser, name: str, mime: str, data: bytes) -> None:
    chooser.set_input_files({"name": name, "mimeType": mime, "buffer": data})


def expect_encoded(page, what: str) -> str:
    """The upload was imported, encoded and decoded: both pictures are real; returns the input's caption."""
    expect(page.get_by_text("As the model sees it", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Reconstruction", exact=True)).to_be_visible(timeout=60_000)
    wait_app_idle(page, 60_000)
    seen, seen_col = image_after(page, "As the model sees it")
    assert_picture(seen, f"{what}: as the model sees it")
    rec, _ = image_after(page, "Reconstruction")
    assert_picture(rec, f"{what}: reconstruction")
    assert page.locator(ERROR).count() == 0, page.locator(ERROR).first.inner_text()
    assert_no_exception(page)
    return seen_col.inner_text()


def test_upload_a_png_and_a_jpeg_and_see_them_encoded(page, server):
    chooser = open_encode(page, server)

    upload(chooser, "seven.png", "image/png", white_digit_png())
    caption = expect_encoded(page, "PNG")
    assert "28×28" in caption, caption
    assert "inverted" not in caption, caption  # already light-on-dark: left as it is

    # A phone photo of a pen drawing: dark on light paper, so the importer inverts it.
    upload(chooser, "pen.jpg", "image/jpeg", pen_on_paper_jpeg())
    expect(page.get_by_text(re.compile("inverted")).first).to_be_visible(timeout=60_000)
    caption = expect_encoded(page, "JPEG")
    assert "inverted" in caption, caption


def test_broken_uploads_say_so_and_the_page_keeps_working(page, server):
    chooser = open_encode(page, server)
    err = page.locator(ERROR)
    broken = [("noise.png", "image/png", random.Random(0).randbytes(6000), "not a supported image"),
              ("cut.jpg", "image/jpeg", pen_on_paper_jpeg()[:1500], "truncated or corrupt")]
    for name, mime, data, message in broken:
        upload(chooser, name, mime, data)
        expect(err.filter(has_text=message)).to_be_visible(timeout=60_000)
        expect(err).to_have_count(1)
        assert_no_exception(page)
        expect(page.get_by_text("As the model sees it", exact=True)).to_have_count(0)

    # The same chooser still works: a good file replaces the broken one.
    upload(chooser, "seven.png", "image/png", white_digit_png())
    expect_encoded(page, "PNG after broken files")
    expect(err).to_have_count(0)


# --- 4. the sidebar ---------------------------------------------------------------------------------------
PAGES = [  # sidebar link, page heading, something the page shows once it has content for tiny2d
    ("Reconstructions", "Reconstructions", "Run tiny2d · snapshot at step"),
    ("Sample", "Sample", "decoder means of z"),
    ("Gradient estimators", "Gradient estimators", "Run tiny2d · snapshot at step"),
    ("Marginal likelihood", "Marginal likelihood", "to run both importance samplers on this image"),
    ("β and the decoder", "β and the decoder", "Start β sweep"),
    ("Disentanglement", "Disentanglement", "tiny2d was not trained on shapes"),
]


def pick_run_in_sidebar(page, run: str) -> None:
    """Choose the run in the sidebar's run picker, as a user would."""
    combo = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Run")
    expect(combo).to_be_visible(timeout=30_000)
    combo.click()
    page.get_by_role("option", name=re.compile(rf"^{run}( ·|$)")).click()
    # The Train page names the selected run: wait for the rerun to finish before moving on.
    expect(page.get_by_role("heading", name=run, exact=True)).to_be_visible(timeout=30_000)
    wait_app_idle(page, 60_000)
    # The selected run's label is its bare name; its state is on the live line below.
    expect(combo).to_have_value(run, timeout=30_000)


def test_sidebar_links_open_every_page(page, server):
    page.goto(server.url)
    wait_app_idle(page)
    pick_run_in_sidebar(page, "tiny2d")
    nav = page.get_by_test_id("stSidebarNav")
    for link, heading, marker in PAGES:
        nav.get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=30_000)
        wait_app_idle(page, 60_000)
        expect(page.get_by_text(marker).first).to_be_visible(timeout=30_000)
        assert_no_exception(page)
        assert page.locator(ERROR).count() == 0, (link, page.locator(ERROR).first.inner_text())
        if link == "Sample":  # the decoder's samples are real pictures, not blank squares
            assert_picture(page.locator("[data-testid='stImage'] img").first, "sample grid")
        if link == "Reconstructions":
            assert_picture(page.locator("[data-testid='stImage'] img").first, "reconstruction rows")


def test_a_deep_linked_run_stays_selected_across_sidebar_navigation(page, server):
    page.goto(f"{server.url}/?run=tiny2d")
    wait_app_idle(page)
    combo = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Run")
    expect(combo).to_have_value("tiny2d", timeout=30_000)  # the picker shows the linked run
    expect(page.get_by_test_id("stSidebar").get_by_text("finished · step")).to_be_visible(timeout=30_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Reconstructions").click()
    caption = page.get_by_test_id("stMain").get_by_text("snapshot at step").first  # the page's, not the sidebar's
    expect(caption).to_be_visible(timeout=30_000)
    assert caption.inner_text().startswith("Run tiny2d ·")
    expect(combo).to_have_value("tiny2d")
