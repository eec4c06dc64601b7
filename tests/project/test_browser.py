"""The report pages in a real browser: Debian's chromium, headless, renders every committed report page
(reports/**/index.html, the diagnostics pages included) and a freshly generated small demo report.

Measured as a person sees them, at 1400x900 and at 390 px wide: no page is blank, every image
loads, has alt text and is shown at no less than its natural width (wide figures scroll in their own
box), nothing is wider than the viewport, every table-of-contents link reaches an id; a committed page
is at most ``HEIGHT_BUDGET`` px tall at 1400 px, opens with a table ranked by its headline measure
(``data-headline``) within the first ``FIRST_SCREEN`` px, its figures' text is at least
``MIN_TEXT_PX`` px at their own resolution (recorded by ``latentmap.report.figures``) and no page
holds an absolute path of the machine that wrote it. The checks run in the page itself: a copy of the
report gets a small script that writes its measurements into the DOM, which ``chromium --dump-dom``
prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from latentmap.report.figures import MIN_TEXT_PX, TEXT_PX_KEY

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
                 if p and Path(p).is_file()), None)
WIDE, NARROW = (1400, 900), (390, 844)
WIDTH, HEIGHT = WIDE
FIRST_SCREEN = 900  # px from the top of the page at 1400 px wide: where the verdict must be
HEIGHT_BUDGET = 12_000  # px, the tallest a committed page may be at 1400 px wide
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(work|home|tmp|root)/")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); "
                                                         "CI installs it")

PROBE = """<script>
window.addEventListener('load', function () {
  function all(q, root) { return Array.prototype.slice.call((root || document).querySelectorAll(q)); }
  function text(e) { return e.textContent.replace(/\\s+/g, ' ').trim(); }
  var images = all('img').map(function (i) {
    return {src: i.getAttribute('src'), alt: i.getAttribute('alt') || '', loaded: i.complete && i.naturalWidth > 0,
            natural: i.naturalWidth, shown: i.getBoundingClientRect().width, scrolls: !!i.closest('.scroll')};
  });
  var wide = all('body *').filter(function (e) {
    return e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll');
  }).slice(0, 5).map(function (e) { return e.tagName + ' ' + (e.getAttribute('src') || e.className || ''); });
  var ids = {};
  all('[id]').forEach(function (e) { ids[e.id] = true; });
  var anchors = all('a[href^="#"]').map(function (a) { return a.getAttribute('href').slice(1); })
                .filter(function (h) { return !ids[h]; });
  var headline = null, table = document.querySelector('table[data-headline]');
  if (table) {
    var rows = all('tbody tr', table), box = table.getBoundingClientRect();
    var first = rows.length ? rows[0].getBoundingClientRect() : box;
    headline = {column: table.getAttribute('data-headline'), order: table.getAttribute('data-order'),
                top: box.top + window.scrollY, first_row_bottom: first.bottom + window.scrollY,
                bottom: box.bottom + window.scrollY, header: all('thead th', table).map(text),
                rows: rows.map(function (r) {
                  return {cells: all('td,th', r).map(text), calibration: r.hasAttribute('data-calibration')};
                })};
  }
  var result = {images: images, scroll_width: document.documentElement.scrollWidth,
                inner_width: window.innerWidth, wide: wide, broken_anchors: anchors,
                height: Math.max(document.documentElement.scrollHeight, document.body.scrollHeight),
                headline: headline, text: document.body.innerText.length};
  var out = document.createElement('div');
  out.id = 'latentmap-probe';
  out.setAttribute('data-result', JSON.stringify(result));
  document.body.appendChild(out);
  if (window.parent !== window) { window.parent.postMessage(JSON.stringify(result), '*'); }
});
</script>"""
# headless chromium's window is at least 500 px wide: a narrower viewport is an iframe of that width in a page
# that writes what the probe inside it posts into its own DOM
FRAME = """<!doctype html><html><body style="margin:0"><iframe src="%s" style="width:%dpx;height:%dpx;border:0">
</iframe><script>window.addEventListener('message', function (e) {
  var out = document.createElement('div'); out.id = 'latentmap-probe'; out.setAttribute('data-result', e.data);
  document.body.appendChild(out); });</script></body></html>"""
MIN_WINDOW_WIDTH = 500


def _chromium(*args, profile: Path, timeout: int = 90, size: tuple[int, int] = (WIDTH, HEIGHT)
              ) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def probe_page(page: Path, tmp: Path, size: tuple[int, int] = WIDE, screenshot: bool = True
               ) -> tuple[dict, np.ndarray | None]:
    """(measurements taken by the probe script, screenshot as an RGB array or None) of ``page``, an index.html
    inside a copied report tree, in one chromium run at window ``size`` (the probe adds nothing visible)."""
    import html

    from PIL import Image

    probe = page.with_name(".probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    opened = probe
    if size[0] < MIN_WINDOW_WIDTH:
        opened = page.with_name(".frame-" + page.name)
        opened.write_text(FRAME % (probe.name, *size))
    png = tmp / "shot.png"
    png.unlink(missing_ok=True)
    shot = [f"--screenshot={png}"] if screenshot else []
    try:
        done = _chromium("--virtual-time-budget=15000", *shot, "--dump-dom", opened.as_uri(),
                         profile=tmp / "profile", size=(max(size[0], MIN_WINDOW_WIDTH), size[1]))
    finally:
        probe.unlink()
        if opened != probe:
            opened.unlink()
    found = re.search(r'id="latentmap-probe" data-result="([^"]*)"', done.stdout)
    assert found, f"chromium printed no probe result for {page}: {done.stderr[-2000:]}"
    if not screenshot:
        return json.loads(html.unescape(found.group(1))), None
    assert png.is_file(), f"no screenshot of {page}: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), np.asarray(Image.open(png).convert("RGB"))


def check_layout(page: Path, result: dict) -> None:
    """What every page owes at any width: images loaded, with alt text and unshrunk; nothing wider than the
    window; every table-of-contents link reaches an id."""
    broken = [i["src"] for i in result["images"] if not i["loaded"]]
    assert broken == [], f"{page}: images that did not load: {broken}"
    assert [i["src"] for i in result["images"] if not i["alt"].strip()] == [], f"{page}: images without alt text"
    shrunk = [(i["src"], i["natural"], round(i["shown"])) for i in result["images"] if i["shown"] < i["natural"] - 1]
    assert shrunk == [], f"{page}: images shown below their natural width (src, natural, shown): {shrunk}"
    assert result["scroll_width"] <= result["inner_width"], \
        f"{page}: {result['scroll_width']} px wide in a {result['inner_width']} px window; wide elements: " \
        f"{result['wide']}"
    assert result["broken_anchors"] == [], f"{page}: links to missing anchors {result['broken_anchors']}"


def check_page(page: Path, tmp: Path) -> dict:
    """The page at 1400x900 (with a screenshot that must not be blank) and at 390 px: :func:`check_layout` at both."""
    result, shot = probe_page(page, tmp)
    check_layout(page, result)
    assert shot.shape[:2] == (HEIGHT, WIDTH)
    colours = len(np.unique(shot.reshape(-1, 3), axis=0))
    assert shot.std() > 10 and colours > 50, f"{page} looks blank: std {shot.std():.1f}, {colours} colours"
    narrow, _ = probe_page(page, tmp, NARROW, screenshot=False)
    check_layout(page, narrow)
    return result


def cell_number(text: str) -> float:
    """The leading number of a table cell as the reports write it ("1.49", "12,300", "72%", "1.2 (1.1–1.3)",
    "1.23e-05", "∞"); NaN for a missing one ("–" or empty)."""
    text = text.replace("−", "-").replace(",", "").strip()
    if text.startswith("∞"):
        return float("inf")
    found = re.match(r"-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", text)
    return float(found.group(0)) if found else float("nan")


def headline_values(headline: dict) -> list[float]:
    """The headline column's numbers, row by row (calibration rows left out)."""
    column = headline["header"].index(headline["column"])
    return [cell_number(r["cells"][column]) for r in headline["rows"] if not r["calibration"]]


def check_headline(page: Path, result: dict) -> None:
    """A table ranked by the headline measure (``data-headline``: its column's header; ``data-order``: asc
    or desc) starts within the first screen, its header and first row in view."""
    headline = result["headline"]
    assert headline is not None, f"{page}: no table marked data-headline"
    assert headline["column"] in headline["header"], f"{page}: headline column {headline['column']!r} not in " \
                                                     f"{headline['header']}"
    assert headline["first_row_bottom"] <= FIRST_SCREEN, \
        f"{page}: the headline table's first row ends {headline['first_row_bottom']:.0f} px down, beyond " \
        f"{FIRST_SCREEN} px"
    values = [v for v in headline_values(headline) if v == v]
    assert values, f"{page}: the headline column holds no numbers"
    ranked = sorted(values, reverse=headline["order"] == "desc")
    assert values == ranked, f"{page}: headline rows are not ranked by {headline['column']} " \
                             f"({headline['order']}): {values}"


def evaluated_generators(folder: Path) -> set[str]:
    """The generators a benchmark report folder evaluated, from its CSV files."""
    import pandas as pd

    names = set()
    for csv, column in (("leaderboard.csv", "model"), ("coverage_summary.csv", "generator"),
                        ("fidelity.csv", "name")):
        if (folder / csv).is_file():
            names |= set(pd.read_csv(folder / csv)[column].astype(str))
    return names


def check_benchmark_headline(page: Path, folders: list[Path], result: dict) -> None:
    """A benchmark page's headline table has a row for every evaluated generator and a calibration row."""
    rows = result["headline"]["rows"]
    shown = " ".join(" ".join(r["cells"]) for r in rows)
    missing = sorted(g for f in folders for g in evaluated_generators(f) if g not in shown)
    assert missing == [], f"{page}: evaluated generators missing from the headline table: {missing}"
    assert any(r["calibration"] for r in rows), f"{page}: no calibration row (data-calibration) in the headline table"


def figure_text_px(png: Path) -> float | None:
    """The smallest text size, in px at the figure's own resolution, that ``latentmap.report.figures``
    recorded in a figure's PNG (None where it recorded none)."""
    from PIL import Image

    with Image.open(png) as image:
        info = dict(getattr(image, "text", {}) or {})
    if TEXT_PX_KEY in info:
        return float(info[TEXT_PX_KEY])
    assert not str(info.get("Software", "")).lower().startswith("matplotlib"), \
        f"{png}: a matplotlib figure that did not go through latentmap.report.figures.figure_png"
    return None


def check_figures(page: Path, result: dict) -> None:
    small = []
    for image in result["images"]:
        path = page.parent / image["src"]
        if path.suffix == ".png" and path.is_file():
            px = figure_text_px(path)
            if px is not None and px < MIN_TEXT_PX:
                small.append((image["src"], px))
    assert small == [], f"{page}: figures with text below {MIN_TEXT_PX} px: {small}"


COMMITTED = sorted(p.relative_to(ROOT / "reports").as_posix() for p in (ROOT / "reports").rglob("index.html"))
# the benchmark pages and the index are being reworked in another change; their check passes once it is merged
BENCHMARK = {"bench-coverage/index.html": ["bench-coverage"], "bench-expressiveness/index.html":
             ["bench-expressiveness"], "index.html": ["bench-coverage", "bench-expressiveness"]}


@pytest.fixture(scope="module")
def committed_reports(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("reports") / "reports"
    shutil.copytree(ROOT / "reports", copy, ignore=shutil.ignore_patterns("*.safetensors", "*.npy"))
    return copy


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_report_page_in_chromium(name, committed_reports, tmp_path):
    page = committed_reports / name
    source = (ROOT / "reports" / name).read_text()
    assert not MACHINE_PATH.search(source), f"{name}: an absolute path of the writing machine: " \
                                             f"{MACHINE_PATH.search(source).group(0)}"
    result = check_page(page, tmp_path)
    assert result["text"] > 200
    assert result["height"] <= HEIGHT_BUDGET, f"{name}: {result['height']} px tall at {WIDTH} px, budget " \
                                              f"{HEIGHT_BUDGET}"
    check_headline(page, result)
    check_figures(page, result)
    if name in BENCHMARK:
        check_benchmark_headline(page, [committed_reports / f for f in BENCHMARK[name]], result)


def test_reports_index_links_the_examples():
    if not (ROOT / "reports" / "index.html").is_file():
        pytest.skip("reports/index.html is not there (latentmap report index reports writes it)")
    page = (ROOT / "reports" / "index.html").read_text()
    for name in ("demo", "anchors", "anchors-auto"):
        assert f'href="{name}/index.html"' in page


def test_cell_number_reads_the_reports_numbers():
    assert [cell_number(t) for t in ("1.49", "12,300", "72%", "1.2 (1.1–1.3)", "−0.5", "1.23e-05", "∞")] == \
        [1.49, 12300, 72, 1.2, -0.5, 1.23e-05, float("inf")]
    assert np.isnan(cell_number("–")) and np.isnan(cell_number(""))


def test_machine_path_pattern():
    assert MACHINE_PATH.search("written to /work/wt/x") and MACHINE_PATH.search('src="/tmp/a.png"')
    assert not MACHINE_PATH.search("runs/tmp/a and checkpoints/home/x")


@pytest.fixture(scope="module")
def small_demo(tiny_vae_checkpoint, tmp_path_factory):
    """A demo report on two tiny VAEs (the atlas, diagnostics with carried paths) and 64 test images, its
    sections sized down as their own tests do (about a minute on a busy CPU)."""
    from latentmap.demo import expressiveness, relocation
    from latentmap.demo.story import run_demo
    from latentmap.training import TrainSettings, train

    base = tmp_path_factory.mktemp("browser-demo")
    checkpoints = base / "checkpoints"
    shutil.copytree(tiny_vae_checkpoint, checkpoints / "tiny-vae")
    train(TrainSettings(kind="vae", out=str(checkpoints / "tiny-vae-b"), latent_dim=8, epochs=1, train_images=400,
                        test_images=100, batch_size=64, seed=1, progress=False, device="cpu"))
    shipped_support = ROOT / "support_sets" / "fmnist-svae"
    if (shipped_support / "manifest.json").is_file():  # spares a 60,000-image support-set build
        shutil.copytree(shipped_support, base / "support_sets" / "fmnist-svae")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relocation, "DEMO_FIT_IMAGES", 500)
        for name, value in (("OWN_SAMPLES", 64), ("REFINE_IMAGES", 8), ("STEPS", 5)):
            patch.setattr(expressiveness, name, value, raising=False)
        return run_demo(checkpoints, base / "report", test_images=64, device="cpu").out


def test_small_demo_report_in_chromium(small_demo, tmp_path):
    pages = sorted(small_demo.rglob("index.html"))
    names = {str(p.relative_to(small_demo)) for p in pages}
    assert {"index.html", "atlas/index.html", "diagnostics/tiny-vae/index.html"} <= names
    for page in pages:
        result = check_page(page, tmp_path)
        assert len(result["images"]) >= 1, f"{page} shows no image"
        check_headline(page, result)
        check_figures(page, result)


VERDICT_PROBE = """<script>
window.addEventListener('load', function () {
  var table = document.querySelector('table');
  var box = table ? table.getBoundingClientRect() : null;
  var out = document.createElement('div');
  out.id = 'latentmap-verdict';
  out.setAttribute('data-result', JSON.stringify({
    height: document.documentElement.scrollHeight, scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth, table_bottom: box ? box.bottom + window.scrollY : null,
    table_text: table ? table.innerText : '',
    no_alt: Array.prototype.slice.call(document.images).filter(function (i) { return !i.alt; }).length}));
  document.body.appendChild(out);
});
</script>"""
SCREEN = (WIDTH, FIRST_SCREEN)  # the reader's window


@pytest.mark.parametrize("page, csv, headline", [
    ("index.html", "bench-expressiveness/leaderboard.csv", "support_over_own"),
    ("bench-coverage/index.html", "bench-coverage/coverage_summary.csv", "tv_distance"),
    ("bench-expressiveness/index.html", "bench-expressiveness/leaderboard.csv", "support_over_own")])
def test_committed_benchmark_pages_answer_in_their_first_screen(page, csv, headline, tmp_path):
    """Issue 21's budget, as a reader at 1400 x 900 sees the committed pages: the first table ends within the first
    900 px and lists every generator of the page's CSV in the order of its headline column (lower first), then the
    calibration row; the page is at most 12,000 px tall and no wider than the window; every image has alt text;
    no absolute path of the writing machine appears."""
    import html as html_module

    import pandas as pd

    source = ROOT / "reports" / page
    if not source.is_file():
        pytest.skip(f"{page} is not committed")
    text = source.read_text()
    probe = source.with_name(".verdict-" + source.name)  # beside the page, so its images load
    probe.write_text(text.replace("</body>", VERDICT_PROBE + "</body>"))
    try:
        done = _chromium("--virtual-time-budget=15000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile",
                         size=SCREEN)
    finally:
        probe.unlink()
    found = re.search(r'id="latentmap-verdict" data-result="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    r = json.loads(html_module.unescape(found.group(1)))
    assert r["table_bottom"] is not None and r["table_bottom"] <= FIRST_SCREEN, r["table_bottom"]
    frame = pd.read_csv(ROOT / "reports" / csv)
    frame = frame[frame.iloc[:, 0] != "real train images"].sort_values(headline)
    rows = r["table_text"].split("\n")
    shown = [next(i for i, line in enumerate(rows) if f"\t{name}\t" in f"\t{line}\t") for name in frame.iloc[:, 0]]
    assert shown == sorted(shown), (list(frame.iloc[:, 0]), rows)
    assert "(calibration)" in rows[-1] or "(calibration)" in " ".join(rows[max(shown) + 1:])
    assert r["height"] <= HEIGHT_BUDGET and r["scroll_width"] <= r["inner_width"], r
    assert r["no_alt"] == 0
    assert not re.search(r"(/home/|/work/|/tmp/|/root/|/Users/|[A-Z]:\\\\)", text)


# The screenshots the pages of docs/reading/ show: (file in docs/img, committed report page, CSS selector of the part
# to show at the top, or None for the top of the page).
SCREENSHOTS = [
    ("reports-index.png", "index.html", None),
    ("demo-findings.png", "demo/index.html", None),
    ("demo-reconstructions.png", "demo/index.html", "#reconstructions"),
    ("demo-support-set.png", "demo/index.html", "#support-set"),
    ("demo-atlas.png", "demo/atlas/index.html", None),
    ("demo-atlas-matrix.png", "demo/atlas/index.html", 'img[src="ratio_matrix.png"]'),
    ("demo-diagnostics.png", "demo/diagnostics/fmnist-svae/index.html", None),
    ("demo-interpolation.png", "demo/diagnostics/fmnist-svae/index.html", "#interpolation-fmnist-svae"),
    ("bench-expressiveness.png", "bench-expressiveness/index.html", None),
    ("bench-expressiveness-worst.png", "bench-expressiveness/index.html", "#errors-and-worst-reconstructions"),
    ("bench-coverage.png", "bench-coverage/index.html", None),
    ("bench-coverage-generator.png", "bench-coverage/index.html", "#coverage-of-fmnist-stylegan"),
    ("atlas-estimators.png", "atlas-estimators/index.html", None),
    ("atlas-estimators-gap.png", "atlas-estimators/index.html", "#linearity-gap"),
    ("anchors.png", "anchors/index.html", None),
]
SHOT_SIZE = (1280, 960)
SCROLL = """<script>
window.addEventListener('load', function () {
  var target = document.querySelector('%s');
  if (target) {  /* shift the page up: headless screenshots ignore a scroll position */
    var top = target.getBoundingClientRect().top + window.scrollY - 8;
    document.body.style.marginTop = (parseFloat(getComputedStyle(document.body).marginTop) - top) + 'px';
  }
  else { document.body.innerHTML = '<h1>nothing matches %s</h1>'; }
});
</script>"""


def save_screenshots(out: Path, reports: Path = ROOT / "reports") -> list[Path]:
    """Screenshots of the committed example reports (``SCREENSHOTS``) as 256-colour PNGs in ``out``.

    A page is opened where it lies, so its images load from beside it; a copy with a small script
    scrolls to the section asked for, and is removed after the shot. ``make docs-screenshots`` runs this.
    """
    import tempfile

    from PIL import Image

    if CHROMIUM is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, page, anchor in SCREENSHOTS:
            source = reports / page
            shot = source.with_name(".shot-" + source.name)
            script = SCROLL % (anchor, anchor) if anchor else ""
            shot.write_text(source.read_text().replace("</body>", script + "</body>"))
            png = Path(tmp) / name
            try:
                done = _chromium("--virtual-time-budget=15000", f"--screenshot={png}", shot.as_uri(),
                                 profile=Path(tmp) / "profile", size=SHOT_SIZE)
            finally:
                shot.unlink()
            if not png.is_file():
                raise RuntimeError(f"no screenshot of {source}: {done.stderr[-2000:]}")
            image = Image.open(png).convert("RGB")
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out / name, optimize=True)
            written.append(out / name)
    return written


def test_every_screenshot_page_and_section_exists():
    """The screenshots the pages of docs/reading/ show come from pages and sections the committed reports have."""
    for _, page, anchor in SCREENSHOTS:
        source = ROOT / "reports" / page
        assert source.is_file(), source
        if anchor:  # an id (#name) or an image (img[src="file"])
            wanted = f'id="{anchor[1:]}"' if anchor.startswith("#") else anchor.split("[", 1)[1].rstrip("]")
            assert wanted in source.read_text(), (page, anchor)


if __name__ == "__main__":
    import sys

    for path in save_screenshots(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"):
        print(path)
