"""Report pages people read: three significant digits, headers in words, findings with the result's
numbers, a table of contents whose links resolve, labelled grids, and the reports index."""

import html as htmllib
import os
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.report.findings import anchors_findings, atlas_findings, demo_findings
from latentmap.report.grid import grid_image
from latentmap.report.html import Section, render_page
from latentmap.report.index import INDEX_MARKER, refresh_parent_index, report_entries, write_reports_index
from latentmap.report.tables import column_label, display_frame, percent, sig

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- numbers and headers

@pytest.mark.parametrize("value, text", [
    (0.006841, "0.00684"), (1.5, "1.50"), (1.4827, "1.48"), (123.4, "123"), (6000.0, "6,000"), (12345.6, "12,300"),
    (1.2345e-5, "1.23e-05"), (9.996, "10.0"), (0.9996, "1.00"), (-0.0123, "-0.0123"), (0.0, "0"), (7, "7"),
    (60000, "60,000"), (12345, "12,345"), (float("nan"), "–"), (None, "–"), (float("inf"), "∞"),
])
def test_three_significant_digits(value, text):
    assert sig(value) == text


@pytest.mark.parametrize("value, text", [
    (0.018, "1.8%"), (0.72, "72%"), (1.0, "100%"), (0.0, "0%"), (0.0005, "0.050%"), (0.12345, "12%"), (None, "–"),
    (0.0496, "5.0%"), (0.04, "4.0%"), (0.0996, "10%"), (0.999, "100%"), (0.5, "50%"),  # trailing zeros kept
])
def test_one_percent_formatter(value, text):
    assert percent(value) == text


def test_interval_keeps_its_digits_and_refuses_one_printed_high_to_low():
    from latentmap.report.tables import interval

    assert interval(3.7, 3.41, 4.0) == "3.70 (3.41–4.00)"
    assert interval(0.0388, float("nan"), float("nan")) == interval(0.0388, None, None) == "0.0388"
    with pytest.raises(ValueError, match="low <= high"):
        interval(3.7, 4.0, 3.41)


def test_headers_in_words_with_units_and_numbers_rounded():
    frame = pd.DataFrame({"source": ["a"], "relocated_mse": [0.0103412], "ratio": [1.48276], "latent_dim": [64],
                          "some_new_column": [2.0], "a_model -> b_model": [1.23456]})
    shown = display_frame(frame)
    assert list(shown.columns) == ["source A", "relocated MSE", "ratio (relocated / B's own)",
                                   "latent size", "some new column", "a_model -> b_model"]  # a pair keeps its names
    assert shown.iloc[0].tolist() == ["a", "0.0103", "1.48", "64", "2.00", "1.23"]
    assert column_label("test_mse").startswith("test MSE")
    assert display_frame(frame, "{:.1f}").iloc[0, 2] == "1.5"  # an explicit format still wins
    rendered = Section("t").table(frame).render()  # the unit said once, under the table
    assert rendered.count("MSE: mean squared error per pixel, intensities in [0, 1].") == 1
    assert "mean squared error" not in Section("t").table(frame[["source", "ratio"]]).render()


def test_tables_scroll_instead_of_widening_the_page():
    section = Section("Wide").table(pd.DataFrame({f"column_{i}": [1.0 / (i + 1)] for i in range(30)}))
    page = render_page("t", [section])
    assert '<div class="scroll"><table' in page and ".scroll{overflow-x:auto" in page
    assert "<td>0.0333</td>" in page  # 1/30 to three significant digits


# --------------------------------------------------------------------------- page structure

def _ids_and_links(page: str):
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = re.findall(r'href="#([^"]+)"', page)
    return ids, links


def test_page_opens_with_findings_then_contents_whose_anchors_resolve():
    first = Section("Relocation atlas").text("about the atlas")
    first.parts.append("<h3>Type 1: same architecture</h3><p>x</p><h3>Type 3: different objectives</h3>")
    second = Section("Relocation atlas")  # the same title twice: two different anchors
    raw = Section("")
    raw.parts.append("<h2>Latent diagnostics: m (vae, latent 8)</h2>")
    page = render_page("demo", [first, second, raw], "intro line", findings=["Ratio 1.48 at best.", "Second."])
    ids, links = _ids_and_links(page)
    assert len(links) == 6 and len(set(links)) == 6 and set(links) <= ids  # every heading, each its own anchor
    assert links[:2] == ["relocation-atlas", "type-1-same-architecture"]
    assert links[-1] == "glossary"  # the page speaks of Type 1 and 3: its glossary says what they are
    # order: title, findings, intro, contents, the first section
    positions = [page.index(s) for s in ("<h1>demo</h1>", "Ratio 1.48 at best.", "intro line", 'class="toc"',
                                         'id="relocation-atlas"')]
    assert positions == sorted(positions)
    assert page.count('<li><a href="#type-1') == 1 and "<ul><li><a href=\"#type-1" in page  # nested under its h2


def test_a_short_page_has_no_contents_and_a_link_back():
    page = render_page("one", [Section("Only")], back=("../index.html", "demo report"))
    assert 'class="toc"' not in page and '<a href="../index.html">← demo report</a>' in page


# --------------------------------------------------------------------------- grids

def _ink(region: np.ndarray) -> int:
    return int((region < 128).sum())


def test_grid_rows_and_columns_carry_labels_beside_unchanged_images():
    rows = [torch.rand(3, 1, 6, 6), torch.rand(3, 1, 6, 6)]
    plain = np.asarray(grid_image(rows, scale=2).convert("L"))
    labelled = np.asarray(grid_image(rows, scale=2, row_labels=["originals", "B after mapping"],
                                     column_labels=["t=0", "t=0.5", "t=1"]).convert("L"))
    top = labelled.shape[0] - plain.shape[0]
    left = labelled.shape[1] - plain.shape[1]
    assert top > 0 and left > 0
    np.testing.assert_array_equal(labelled[top:, left:], plain)  # the images themselves are untouched
    cell = plain.shape[0] // 2
    for i in range(2):  # text in the left margin beside each row
        assert _ink(labelled[top + i * cell:top + (i + 1) * cell, :left]) > 10
    assert _ink(labelled[:top, left:]) > 10  # and above the columns
    with pytest.raises(ValueError, match="one label per row"):
        grid_image(rows, row_labels=["only one"])


def test_demo_grids_are_labelled(small_report):
    from PIL import Image

    grid = np.asarray(Image.open(small_report / "reconstruction_tiny-vae.png").convert("L"))
    width = 2 * (12 * 30 + 2)
    assert grid.shape[1] > width and _ink(grid[:, :grid.shape[1] - width]) > 20


# --------------------------------------------------------------------------- findings

DEMO_SUMMARY = {
    "reconstruction": [{"model": "a", "test_mse": 0.00684, "test_images": 2000},
                       {"model": "g", "test_mse": 0.0317, "test_images": 2000}],
    "generators": [{"model": "g", "inverter_mse_own_samples": 0.0086, "inverter_mse_real_test": 0.0317}],
    "relocation_atlas": {"fit": {"kind": "dataset", "count": 10000, "split": "train"}, "pairs": [
        {"source": "a", "target": "b", "type": 1, "ratio": 1.4827}, {"source": "b", "target": "a", "type": 1,
                                                                     "ratio": 1.4801},
        {"source": "g", "target": "a", "type": 3, "ratio": 4.151}, {"source": "a", "target": "g", "type": 3,
                                                                    "ratio": 1.031}]},
}


def test_demo_findings_state_the_numbers_of_the_result():
    text = " ".join(demo_findings(DEMO_SUMMARY))
    assert "0.00684 (a) to 0.0317 (g)" in text
    assert "g 0.00860 vs 0.0317, 3.69 times worse" in text
    assert "Type 1 (same architecture, different training): 1.48 (a → b, b → a)" in text  # one value, said once
    assert "Type 3 (different objectives) from 1.03 (a → g) to 4.15 (g → a)" in text
    assert "maps fitted on 10,000 train images" in text


def test_atlas_and_anchor_findings_from_the_saved_json():
    atlas = {"models": [1, 2], "fit_source": {"kind": "support-set", "count": 64}, "results": [
        {"source": "a", "target": "b", "type": 2, "ratio": 2.17, "latent_r2": 0.5, "n_images": 100},
        {"source": "b", "target": "a", "type": 2, "ratio": 2.891, "latent_r2": 0.77, "n_images": 100}]}
    text = " ".join(atlas_findings(atlas))
    assert "from 2.17 (a → b) to 2.89 (b → a)" in text and "64-image support set" in text
    assert "0.500 to 0.770" in text
    committed = json.loads((ROOT / "reports" / "anchors" / "summary.json").read_text())
    text = " ".join(anchors_findings(committed))
    best64 = min((r for r in committed["summary"] if r["size"] == 64), key=lambda r: r["relocated_mse"])
    assert f"64: {best64['strategy']} ({sig(best64['relocated_mse'])})" in text
    sectors16 = next(r for r in committed["summary"] if r["size"] == 16 and r["strategy"] == "sectors")
    assert f"{sig(sectors16['vs_random'])} at 16" in text


def test_demo_page_findings_match_its_summary(small_report):
    page = (small_report / "index.html").read_text()
    summary = json.loads((small_report / "summary.json").read_text())
    findings = re.search(r'<section class="findings".*?</section>', page, re.S).group(0)
    for sentence in demo_findings(summary):
        assert htmllib.escape(sentence) in findings
    assert f"{sig(summary['reconstruction'][0]['test_mse'])}" in findings
    ids, links = _ids_and_links(page)
    assert links and set(links) <= ids
    assert (small_report / "reconstruction_errors.png").is_file()
    assert (small_report / "reconstruction_errors.csv").is_file()


# --------------------------------------------------------------------------- reports index

def _fake_report(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(files.pop("index.html", "<html><head><title>t</title></head></html>"))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_reports_index_lists_every_report_with_its_headline(tmp_path):
    shutil.copytree(ROOT / "reports" / "anchors", tmp_path / "anchors")
    _fake_report(tmp_path / "demo-run", {"summary.json": json.dumps(DEMO_SUMMARY)})
    page = render_page("Other", [Section("x")], findings=["A page-only finding, 42."])
    _fake_report(tmp_path / "other", {"index.html": page})
    (tmp_path / "not-a-report").mkdir()
    out = write_reports_index(tmp_path)
    text = out.read_text()
    assert INDEX_MARKER in text
    kinds = {e.name: e.kind for e in report_entries(tmp_path)}
    assert kinds == {"anchors": "anchors", "demo-run": "demo", "other": "report"}
    for name in kinds:
        assert f'href="{name}/index.html"' in text
    assert "not-a-report" not in text
    assert "4.15 (g → a)" in text and "A page-only finding, 42." in text
    committed = json.loads((ROOT / "reports" / "anchors" / "summary.json").read_text())
    assert htmllib.escape(anchors_findings(committed)[0]) in text
    assert 'href="anchors/summary.csv"' in text  # the numbers beside each report


def test_index_refreshes_only_a_latentmap_index(tmp_path):
    report = _fake_report(tmp_path / "r1", {"summary.json": json.dumps(DEMO_SUMMARY)})
    assert refresh_parent_index(report) is None and not (tmp_path / "index.html").exists()
    (tmp_path / "index.html").write_text("<html>someone's own page</html>")
    assert refresh_parent_index(report) is None  # not ours: left alone
    assert (tmp_path / "index.html").read_text() == "<html>someone's own page</html>"
    (tmp_path / "index.html").unlink()
    write_reports_index(tmp_path)
    _fake_report(tmp_path / "r2", {"summary.json": json.dumps(DEMO_SUMMARY)})
    assert refresh_parent_index(tmp_path / "r2") == tmp_path / "index.html"
    assert 'href="r2/index.html"' in (tmp_path / "index.html").read_text()


def test_cli_report_index_and_commands_refresh_it(tmp_path, tiny_vae_checkpoint):
    runner = CliRunner()
    res = runner.invoke(main, ["report", "index", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "index of 0 reports" in res.output and INDEX_MARKER in (tmp_path / "index.html").read_text()
    res = runner.invoke(main, ["diagnose", "--model", str(tiny_vae_checkpoint), "--images", "40", "--out",
                               str(tmp_path / "diag"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "reports index refreshed" in res.output
    assert (tmp_path / "diag" / "interpolation.png").is_file()  # diagnose shows interpolation grids too
    text = (tmp_path / "index.html").read_text()
    assert 'href="diag/index.html"' in text and "(diagnostics)" in text
    summary = json.loads((tmp_path / "diag" / "diagnostics.json").read_text())["summary"]
    assert f"reconstruction MSE {sig(summary['mse'])}" in text
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "index.html").write_text("mine")
    res = runner.invoke(main, ["report", "index", str(tmp_path / "own")])
    assert res.exit_code == 2 and "not a reports index" in res.output
    assert (tmp_path / "own" / "index.html").read_text() == "mine"


def test_committed_reports_index_lists_the_committed_reports():
    index = ROOT / "reports" / "index.html"
    assert index.is_file(), "reports/index.html is missing: latentmap report index reports"
    text = index.read_text()
    for sub in sorted(p.name for p in (ROOT / "reports").iterdir() if (p / "index.html").is_file()):
        assert f'href="{sub}/index.html"' in text, sub


# --------------------------------------------------------------------------- a small demo report

@pytest.fixture(scope="module")
def small_report(tiny_vae_checkpoint, tmp_path_factory):
    """The demo's reconstruction section alone on the tiny VAE and 24 test images (the full demo is
    exercised by tests/cli/test_commands.py and tests/project/test_browser.py)."""
    from latentmap import load_dataset, load_model
    from latentmap.demo.story import DemoContext, reconstruction_section
    from latentmap.report.findings import demo_findings as findings

    out = tmp_path_factory.mktemp("small-report")
    test = load_dataset("fashion-mnist", "test").subset(np.arange(24))
    ctx = DemoContext(out, out, [load_model(tiny_vae_checkpoint, device="cpu")], test, None, "cpu")
    section = reconstruction_section(ctx)
    (out / "summary.json").write_text(json.dumps(ctx.summary))
    (out / "index.html").write_text(render_page("demo", [section, Section("More")], findings=findings(ctx.summary)))
    return out


def test_reports_index_never_uses_a_users_file(tmp_path):
    (tmp_path / ".index.html.tmp").write_text("a user's notes")
    out = write_reports_index(tmp_path, entries=[])
    assert out.read_text().startswith("<!doctype html>") and (tmp_path / ".index.html.tmp").read_text() == \
        "a user's notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.html.tmp", "index.html"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # a normal file's permissions, not mkstemp's 0600


# --------------------------------------------------------------------------- verdict first, short pages, figures

def test_a_headline_table_is_marked_ranked_with_its_calibration_rows():
    frame = pd.DataFrame({"model": ["b", "a", "real"], "ratio": [1.2, 1.5, 0.9]})
    page = render_page("t", [Section("More")], verdict=Section("Verdict").table(frame, headline="ratio",
                                                                                  calibration=[2]))
    table = re.search(r"<table[^>]*>", page).group(0)
    assert 'data-headline="ratio (relocated / B&#x27;s own)"' in table and 'data-order="asc"' in table
    rows = re.findall(r"<tr( data-calibration)?>\s*<td>([^<]*)</td>", page)
    assert rows == [("", "b"), ("", "a"), (" data-calibration", "real")]
    # the verdict comes right after the findings, before the contents
    assert page.index('class="verdict"') < page.index('class="toc"')
    with pytest.raises(ValueError, match="headline column 'mse'"):
        Section("x").table(frame, headline="mse")


def test_long_tables_and_repeated_parts_fold_behind_their_csv():
    frame = pd.DataFrame({"pair": [f"p{i}" for i in range(40)], "ratio": np.linspace(1, 2, 40)})
    html = Section("t").table(frame, fold="Every pair", csv="atlas.csv").render()
    assert html.startswith("<h2>t</h2>\n<details><summary>Every pair: 40 rows (<a href=\"atlas.csv\">atlas.csv</a>)")
    inner = Section("").text("hidden")
    assert "<details><summary>More (1)</summary><p>hidden</p></details>" in Section("s").fold("More (1)", inner).render()


def test_images_at_natural_width_with_alt_text_and_pixelated_only_for_grids():
    page = render_page("t", [Section("s").image("plot.png", "a plot").image("grid.png", "", grid=True)])
    assert '<div class="scroll"><img src="plot.png" alt="a plot">' in page
    assert 'alt="figure grid.png" class="grid"' in page  # no caption: alt text still says what it is
    assert "img{max-width:none" in page and "img.grid{image-rendering:pixelated}" in page
    assert "max-width:100%;height:auto" not in page  # a plot is never shrunk (or blurred) to fit


def test_glossary_lists_the_terms_a_page_uses_and_only_those():
    from latentmap.report.glossary import GLOSSARY

    terms = " ".join(term for term, _, _ in GLOSSARY)
    for term in ("sign orthant", "G test", "Type 1 / 2 / 3", "bias-free map", "linearity gap", "Δ_var"):
        assert term in terms
    page = render_page("t", [Section("s").text("The linearity gap of Type 2 pairs; a bias-free map.")])
    glossary = page[page.index('<section class="glossary">'):]
    assert "<dt>linearity gap</dt>" in glossary and "<dt>Type 1 / 2 / 3</dt>" in glossary
    assert "<dt>bias-free map</dt>" in glossary and "G test" not in glossary
    assert '<a href="#glossary">Glossary</a>' in page
    assert 'class="glossary"' not in render_page("t", [Section("s").text("Nothing special here.")])


def test_figures_record_their_smallest_text_and_draw_from_the_palette():
    import io

    from PIL import Image

    from latentmap.report.figures import DPI, PALETTE, TEXT_PX_KEY, figure_png, new_figure

    fig = new_figure(4, 3)
    ax = fig.subplots()
    first, second = ax.plot([0, 1]), ax.plot([1, 0])
    ax.set_title("small", fontsize=6)
    ax.tick_params(labelsize=8)
    png = Image.open(io.BytesIO(figure_png(fig)))
    assert float(png.text[TEXT_PX_KEY]) == pytest.approx(6 * DPI / 72, abs=0.01)
    assert (first[0].get_color(), second[0].get_color()) == PALETTE[:2]


def test_labelled_grids_record_their_label_size():
    import io

    from PIL import Image

    from latentmap.report.figures import MIN_TEXT_PX, TEXT_PX_KEY
    from latentmap.report.grid import LABEL_FONT_SIZE, grid_png

    labelled = Image.open(io.BytesIO(grid_png([torch.zeros(2, 1, 4, 4)], row_labels=["row"])))
    assert float(labelled.text[TEXT_PX_KEY]) == LABEL_FONT_SIZE >= MIN_TEXT_PX
    assert TEXT_PX_KEY not in Image.open(io.BytesIO(grid_png([torch.zeros(2, 1, 4, 4)]))).text


def _summary():
    """A demo summary by hand: three models, coverage with a calibration row, fidelity, expressiveness, atlas."""
    recon = [{"model": m, "kind": "vae", "latent_dim": 8, "test_mse": e, "test_images": 100}
             for m, e in (("a", 0.01), ("b", 0.02), ("c", 0.03))]
    coverage = [{"generator": g, "tv_distance": t} for g, t in (("a", 0.30), ("b", 0.20), ("c", 0.25),
                                                                  ("real train images", 0.05))]
    fidelity = {"space": "a latent space (8-d)", "rows": [
        {"name": n, "precision": p, "recall": r, "density": d, "coverage": c}
        for n, p, r, d, c in (("a", 0.5, 0.2, 0.4, 0.1), ("b", 0.3, 0.6, 0.2, 0.2), ("c", 0.4, 0.4, 0.3, 0.15),
                              ("real train images", 0.85, 0.84, 0.97, 0.6))]}
    express = [{"model": m, "support_over_own": s, "real_over_own": r} for m, s, r in (("a", 4.0, 3.0),
                                                                                        ("b", 9.0, 7.0))]
    pairs = [{"source": "a", "target": "b", "ratio": 1.2}, {"source": "b", "target": "c", "ratio": 3.4}]
    return {"reconstruction": recon, "coverage": coverage, "fidelity": fidelity, "expressiveness": express,
            "relocation_atlas": {"pairs": pairs}}


def test_demo_verdict_ranks_the_generators_and_speaks_of_coverage_and_fidelity():
    from latentmap.demo.story import VERDICT_COLUMNS, demo_verdict, verdict_frame

    frame, calibration = verdict_frame(_summary())
    tv = VERDICT_COLUMNS["tv_distance"]
    assert frame["generator"].tolist() == ["b", "c", "a", "real train images"] and calibration == [3]
    assert frame[tv].tolist() == [0.20, 0.25, 0.30, 0.05]
    assert frame.loc[0, VERDICT_COLUMNS["support_over_own"]] == 9.0 and frame.loc[1, "precision"] == 0.4
    assert np.isnan(frame.loc[1, VERDICT_COLUMNS["support_over_own"]])  # c was not in the expressiveness run
    sentences, table = demo_verdict(_summary())
    assert sentences[0] == ("Sector coverage, total variation from the test images' sector shares (0 = the same "
                            "shares): closest b 0.200, farthest a 0.300; real train images as calibration 0.0500.")
    assert sentences[1] == ("Fidelity and diversity in the a latent space (8-d): precision 0.300 to 0.500 (a), "
                            "recall 0.200 to 0.600 (b); real train images reach 0.850 and 0.840.")
    assert "4.00 (a) to 9.00 (b)" in sentences[2] and "1.20 (a → b) to 3.40 (b → c)" in sentences[3]
    assert len(sentences) == 4 and 'data-headline="sector coverage: total variation"' in table.render()
    # without coverage: the models ranked by reconstruction MSE
    bare = {"reconstruction": _summary()["reconstruction"][::-1]}
    frame, calibration = verdict_frame(bare)
    assert frame["model"].tolist() == ["a", "b", "c"] and calibration == []
    assert 'data-headline="test reconstruction MSE"' in demo_verdict(bare)[1].render()


def test_atlas_verdict_ranks_pairs_and_estimators():
    from latentmap.report.atlas import ranked_pairs
    from latentmap.report.estimators import estimator_ranking

    frame = pd.DataFrame({"type": [1, 3, 1, 3], "source": ["a", "a", "a", "a"], "target": ["b", "c", "b", "c"],
                          "estimator": ["linear", "linear", "mlp", "mlp"], "ratio": [1.5, 3.0, 1.1, 2.0],
                          "ratio_low": [1.4, 2.9, 1.0, 1.9], "ratio_high": [1.6, 3.1, 1.2, 2.1]})
    assert ranked_pairs(frame, "mlp")["ratio"].tolist() == [1.1, 2.0]
    assert list(ranked_pairs(frame, "linear").columns) == ["source", "target", "type", "ratio", "ratio_low",
                                                           "ratio_high"]
    ranking = estimator_ranking(frame)
    assert ranking["estimator"].tolist() == ["mlp", "linear"]
    assert ranking.loc[0, ["median_ratio", "best_ratio", "worst_ratio", "type_1_median", "type_3_median"]].tolist() \
        == [1.55, 1.1, 2.0, 1.1, 2.0]


def test_anchor_verdict_ranks_strategies_against_random_anchors():
    from latentmap.report.anchors import VS_RANDOM, strategy_ranking

    summary = pd.DataFrame({"strategy": ["sectors", "random", "sectors", "random"], "size": [32, 32, 16, 16],
                            "relocated_mse": [0.02, 0.03, 0.05, 0.04], "vs_random": [2 / 3, 1.0, 1.25, 1.0]})
    ranking = strategy_ranking(summary)
    assert ranking["strategy"].tolist() == ["sectors", "random"]
    assert ranking.loc[0, VS_RANDOM] == pytest.approx((2 / 3 + 1.25) / 2)
    assert list(ranking.columns[2:]) == ["relocated MSE, 16 anchors", "relocated MSE, 32 anchors"]
    assert ranking.loc[0, "relocated MSE, 16 anchors"] == 0.05
