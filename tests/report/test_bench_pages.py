"""The benchmark pages' verdicts from hand-built results: the coverage page's ranked table and findings, the
expressiveness page's ranked table with its calibration row, and the reports index's cross-report leaderboard.
Every number is distinct, so a sentence or cell that quotes the wrong one fails."""

import re

import numpy as np
import pandas as pd
import pytest

from latentmap.evaluation.coverage import CoverageResult, GeneratorCoverage, SectorSpace
from latentmap.evaluation.expressiveness import ExpressivenessResult, ModelExpressiveness, RatioCI
from latentmap.evaluation.fidelity import FidelityResult, FidelityRow
from latentmap.report import coverage_verdict as cv
from latentmap.report import expressiveness as er
from latentmap.report.coverage import write_coverage_report
from latentmap.report.html import Section, details_html, render_page
from latentmap.report.index import write_reports_index
from latentmap.report.leaderboard import (BenchRows, best_on, generator_leaderboard, leaderboard_display,
                                          leaderboard_verdict, read_bench_rows)
from latentmap.report.tables import interval, overlap_clause

# 4 sectors x 3 labels ("tee", "boot", "shirt"): shirt dominates no sector of at least 20 real images
LABELS = np.array([[60, 0, 30], [0, 50, 10], [40, 0, 35], [0, 25, 0]])


def _gen(name, counts, tv, low, high, never=(), under=(), over=()):
    test = {"test": "G test", "statistic": 10.0, "dof": 3, "p_value": 0.01}
    return GeneratorCoverage(name, "hand", int(np.sum(counts)), np.array(counts), test, list(never), 0, list(under),
                             list(over), tv, low, high)


@pytest.fixture
def coverage():
    real = LABELS.sum(axis=1)  # 90, 60, 75, 25
    gens = [_gen("far", [100, 5, 120, 25], 0.31, 0.27, 0.36, under=[1]),
            _gen("near", [80, 70, 60, 40], 0.12, 0.09, 0.16, never=[3], under=[3], over=[]),
            _gen("real train images", [88, 61, 77, 24], 0.021, 0.011, 0.045)]
    fidelity = FidelityResult("ref latent space (2-d)", "FD in ref space", 5, 250, "real test images", [
        FidelityRow("far", "x", 250, 0.41, 0.22, 0.33, 0.18, 7.5),
        FidelityRow("near", "y", 250, 0.62, 0.57, 0.81, 0.44, 2.25),
        FidelityRow("real train images", "z", 250, 0.88, 0.86, 0.97, 0.93, 0.125)])
    return CoverageResult(SectorSpace("ref", [0, 1]), "real test images", real, 20, np.zeros(0, int), gens,
                          fidelity, None, LABELS, ["tee", "boot", "shirt"])


def test_coverage_verdict_table_is_ranked_with_the_calibration_last(coverage):
    table = cv.verdict_table(coverage)
    assert list(table["Generator"]) == ["near", "far", "real train images (calibration)"]
    assert list(table["#"]) == ["1", "2", ""]
    assert list(table["Total variation (95%)"]) == ["0.120 (0.0900–0.160)", "0.310 (0.270–0.360)",
                                                    "0.0210 (0.0110–0.0450)"]
    assert list(table["Recall"]) == ["0.570", "0.220", "0.860"] and list(table["Density"]) == ["0.810", "0.330",
                                                                                               "0.970"]
    assert list(table["FD in ref space"]) == ["2.25", "7.50", "0.125"]
    assert list(table["Sectors missed"]) == ["1", "1", "0"]  # near: sector 3 (never reached, also under)


def test_coverage_verdict_sentences(coverage):
    text = cv.coverage_verdict(coverage)
    assert text[0] == ("Closest to the real sector shares: near, total variation 0.120 (0.0900–0.160); farthest: far, "
                       "0.310 (0.270–0.360). Real training images (calibration) score 0.0210 (0.0110–0.0450), the value of "
                       "sampling noise alone; 2 of 2 generators' intervals lie wholly above it.")
    assert text[1] == ("Highest precision: near 0.620; highest recall: near 0.570, lowest far 0.220; the calibration "
                       "scores precision 0.880 and recall 0.860.")
    # far misses sector 1: boot 50 of 75 (67%), shirt 10 of 75; near misses sector 3: boot 25 of 75 (33%);
    # sector 1 holds 60 of the 250 real images (24%): the share every class would show there
    assert text[2] == ("Classes with at least 50% of their real images in sectors a generator never reaches or "
                       "under-represents (generated share below 0.5 x real): far boot 67% (all classes together: "
                       "24%); none for near.")
    # shirt's sector-mates: tee 30 x 60/90 + 35 x 40/75 = 38.7, boot 10 x 50/60 = 8.3
    assert text[3] == ("Limitation: shirt (at most 47% of a sector's real images, in sector 2; its sectors are shared "
                       "mostly with tee, boot) dominates no sector of at least 20 real images, so sector counts cannot "
                       "show it missing from a generator.")
    assert len(text) == 4


def test_class_misses_of_each_generator(coverage):
    frame = cv.class_frame(coverage).set_index(["generator", "name"])
    assert frame.loc[("far", "boot"), "in_missed"] == 50 and frame.loc[("far", "boot"), "real_images"] == 75
    assert frame.loc[("far", "shirt"), "share_of_missed"] == pytest.approx(10 / 60)
    assert frame.loc[("near", "boot"), "share_of_class"] == pytest.approx(25 / 75)
    assert "real train images" not in frame.index.get_level_values(0)


def test_coverage_page_opens_with_the_verdict_then_folds_its_long_tables(coverage, tmp_path):
    coverage.generators[0].examples = {}
    page = write_coverage_report(coverage, tmp_path).read_text()
    findings, table, contents = (page.index('class="findings"'), page.index('id="verdict"'),
                                 page.index('<nav class="toc">'))
    assert findings < table < contents
    first_table = page[table:page.index("</table>", table)]
    assert first_table.index(">near<") < first_table.index(">far<") < first_table.index("(calibration)")
    assert re.search(r"<details><summary>Flagged sectors of far: 1 row</summary>\s*<div class=\"scroll\"><table",
                     page)
    glossary = page[page.index('<section class="glossary">'):]
    assert "<dt>total variation</dt>" in glossary and "<dt>calibration</dt>" in glossary
    assert (tmp_path / "precision_recall.png").is_file() and (tmp_path / "class_misses.csv").is_file()
    assert 'alt="Precision against recall' in page
    assert "the Fréchet distance and the numbers of sectors missed and over-represented: lower is better" in page
    summary = pd.read_csv(tmp_path / "coverage_summary.csv").set_index("generator")
    assert summary.loc["near", "tv_low"] == 0.09 and summary.loc["far", "tv_high"] == 0.36


def test_precision_recall_figure_is_drawn_at_its_size(coverage):
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(cv.precision_recall_png(coverage)))
    assert image.size == (770, 462)  # 7 x 4.2 inches at 110 dpi


def test_html_folds_and_verdict_page():
    section = Section("s").table(pd.DataFrame({"a": [1.5], "mse": [0.25]}), fold="Rows", csv="rows.csv",
                                 note_html='<p class="note">n</p>')
    assert len(section.parts) == 1  # the table, its units' note and the given note all fold
    box = section.parts[0]
    assert box.startswith('<details><summary>Rows: 1 row (<a href="rows.csv">rows.csv</a>)</summary>')
    assert "1.50" in box and 'class="note units"' in box and box.endswith('<p class="note">n</p></details>')
    assert Section("t").table(pd.DataFrame({"a": [1.5]}), note_html="<p>n</p>").parts[-1] == "<p>n</p>"
    assert details_html("x <b>", ["<p>y</p>"], opened=True) == "<details open><summary>x &lt;b&gt;</summary>" \
                                                                  "<p>y</p></details>"
    page = render_page("T", [Section("One"), Section("Two")], findings=["f."],
                       verdict=Section("Verdict", ["<table></table>"]))
    assert page.index("f.</li>") < page.index(">Verdict</h2>") < page.index("Contents") < page.index(">One</h2>")
    assert '<a href="#one">One</a>' in page


# --------------------------------------------------------------------------- expressiveness

def _model(name, ratios, support_refined=(0.02, 0.04), outside=(True, False)):
    from tests.report.test_findings import _set

    sets = {"own": _set("own", [0.01, 0.01], [0.001, 0.001]), "real": _set("real", [0.02, 0.04], [0.01, 0.01]),
            "support": _set("support", [0.05, 0.07], list(support_refined), outside)}
    return ModelExpressiveness(name, "vae", 8, "prior", {"typical": 1.0}, sets,
                               {k: RatioCI(*v) for k, v in ratios.items()})


@pytest.fixture
def expressiveness():
    hard = _model("hard", {"support/own": (9.5, 7.25, 12.5), "real/own": (4.5, 3.75, 5.25),
                           "support/real": (2.11, 1.75, 2.5)}, (0.03, 0.05), (True, True))
    easy = _model("easy", {"support/own": (3.5, 2.75, 4.25), "real/own": (2.5, 2.25, 2.75),
                           "support/real": (1.4, 1.2, 1.6)})
    return ExpressivenessResult([hard, easy], {"steps": 50})


def test_expressiveness_verdict_table_ranks_by_support_over_own(expressiveness):
    table = er.verdict_table(expressiveness)
    # its "1.40–2.11" sits in a "(95%)" column: the row's name says it is a range over the models
    assert list(table["Model"]) == ["easy", "hard", "own samples matching the data: lowest–highest "
                                                    "support / real, not an interval (calibration)"]
    assert list(table["Support / own (95%)"]) == ["3.50 (2.75–4.25)", "9.50 (7.25–12.5)", "1.40–2.11"]
    assert list(table["Real / own (95%)"]) == ["2.50 (2.25–2.75)", "4.50 (3.75–5.25)", "1.00"]
    assert list(table["Support / real (95%)"])[:2] == ["1.40 (1.20–1.60)", "2.11 (1.75–2.50)"]
    assert list(table["Refined MSE, support set"])[:2] == ["0.0300", "0.0400"]
    assert list(table["Refined support latents outside 99%"])[:2] == ["50%", "100%"]
    assert er.calibration_range(expressiveness) == (1.4, 2.11)
    from latentmap.report.tables import display_frame, text_columns

    assert text_columns(display_frame(table)) == [2, 3]  # model and kind left; every number, a range too, right


def test_expressiveness_verdict_sentences(expressiveness):
    assert er.verdict(expressiveness) == [
        "Most expressive: easy (vae), whose encoder reconstructs support-set images 3.50 (2.75–4.25) times worse than "
        "its own samples; least: hard (vae), 9.50 (7.25–12.5) times (95% intervals; the paper's StyleGAN on CelebA: "
        "9.7).",
        "A model whose own samples matched the data would score real / own 1 and support / own equal to its support / "
        "real, 1.40–2.11 here; real / own runs from 2.50 (easy) to 4.50 (hard).",
        "After 50 steps of gradient refinement, support-set images reach MSE 0.0300–0.0400; refined support-set "
        "latents outside the range holding 99% of the model's own samples: easy 50%, hard 100%."]


# --------------------------------------------------------------------------- the reports index

ROWS = BenchRows(
    expressiveness=[{"model": "b", "support_over_own": 4.25, "support_over_own_low": 3.5, "support_over_own_high": 5.0,
                     "real_over_own": 3.0, "real_over_own_low": 2.75, "real_over_own_high": 3.25},
                    {"model": "a", "support_over_own": 13.5, "support_over_own_low": 11.0,
                     "support_over_own_high": 16.5, "real_over_own": 9.75, "real_over_own_low": 8.5,
                     "real_over_own_high": 11.0}],
    coverage=[{"generator": "a", "tv_distance": 0.29, "tv_low": 0.28, "tv_high": 0.31},
              {"generator": "b", "tv_distance": 0.26, "tv_low": 0.25, "tv_high": 0.27},
              {"generator": "c", "tv_distance": 0.2, "tv_low": None, "tv_high": None},
              {"generator": "real train images", "tv_distance": 0.04, "tv_low": 0.03, "tv_high": 0.05}],
    fidelity=[{"name": "a", "precision": 0.31, "recall": 0.018, "density": 0.15, "coverage": 0.147},
              {"name": "b", "precision": 0.56, "recall": 0.375, "density": 0.31, "coverage": 0.27},
              {"name": "real train images", "precision": 0.85, "recall": 0.85, "density": 0.99, "coverage": 0.97}],
    sources={"expressiveness": "bx", "coverage": "bc"})


def test_generator_leaderboard_joins_the_reports_ranked_by_support_over_own():
    frame = generator_leaderboard(ROWS)
    assert list(frame.generator) == ["b", "a", "c", "real train images"]  # c has no ratio: after, by TV
    assert list(frame.calibration) == [False, False, False, True]
    assert best_on(frame, "support/own") == ("b", 4.25) and best_on(frame, "recall") == ("b", 0.375)
    assert best_on(frame, "total variation") == ("c", 0.2)  # the calibration never wins
    assert best_on(frame, "density") is None
    shown = leaderboard_display(frame)
    assert list(shown["#"]) == ["1", "2", "3", ""]
    assert list(shown["Support / own (95%)"]) == ["4.25 (3.50–5.00)", "13.5 (11.0–16.5)", "–", "–"]
    assert list(shown["Total variation (95%)"]) == ["0.260 (0.250–0.270)", "0.290 (0.280–0.310)", "0.200",
                                                    "0.0400 (0.0300–0.0500)"]
    assert list(shown["Recall"]) == ["0.375", "0.0180", "–", "0.850"]
    assert leaderboard_verdict(frame, ROWS.sources) == [
        "Best generator on each measure: support / own b 4.25, real / own b 3.00, total variation c 0.200 (lower is "
        "better); precision b 0.560, recall b 0.375, coverage b 0.270 (higher is better).",
        "3 generators, from bx/ and bc/; ranked by support / own."]


def test_reports_index_opens_with_the_leaderboard_read_from_the_reports(tmp_path):
    for name in ("bx", "bc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(f"<html><head><title>{name}</title></head></html>")
    pd.DataFrame(ROWS.expressiveness).to_csv(tmp_path / "bx" / "leaderboard.csv", index=False)
    pd.DataFrame(ROWS.coverage).to_csv(tmp_path / "bc" / "coverage_summary.csv", index=False)
    pd.DataFrame(ROWS.fidelity).to_csv(tmp_path / "bc" / "fidelity.csv", index=False)
    read = read_bench_rows(tmp_path)
    assert read.sources == {"coverage": "bc", "expressiveness": "bx"}
    assert list(generator_leaderboard(read).generator) == ["b", "a", "c", "real train images"]
    page = write_reports_index(tmp_path).read_text()
    board = page.index('id="leaderboard"')
    assert page.index('class="findings"') < board < page.index(">All reports</h2>")
    table = page[board:page.index("</table>", board)]
    assert table.index(">b<") < table.index(">a<") < table.index("real train images (calibration)")
    assert "support / own b 4.25" in page
    assert interval(0.26, 0.25, 0.27) in table


def test_a_best_whose_interval_meets_the_next_ones_is_said_to_be_unsettled(coverage, expressiveness):
    assert overlap_clause(("a", 1.0, 2.0), [("b", 2.0, 3.0), ("c", 2.5, 3.0), ("d", float("nan"), 9.0)]) == \
        "; its interval overlaps that of b, so that order is not settled"
    assert overlap_clause(("a", None, None), [("b", 0.0, 9.0)]) == ""
    coverage.generators[0].tv_low = 0.15  # far: 0.15-0.36 now meets near's 0.09-0.16
    assert cv.coverage_verdict(coverage)[0].startswith(
        "Closest to the real sector shares: near, total variation 0.120 (0.0900–0.160); its interval overlaps that "
        "of far, so that order is not settled; farthest: far, 0.310 (0.150–0.360).")
    expressiveness.models.append(_model("close", {"support/own": (5.0, 4.0, 6.0)}))  # meets easy's 2.75-4.25
    assert er.verdict(expressiveness)[0].startswith(
        "Most expressive: easy (vae), whose encoder reconstructs support-set images 3.50 (2.75–4.25) times worse than "
        "its own samples; its interval overlaps that of close, so that order is not settled; least: hard")


def test_the_index_verdict_says_when_the_best_is_tied_at_the_shown_digits():
    rows = BenchRows(coverage=[{"generator": "a", "tv_distance": 0.2734, "tv_low": None, "tv_high": None},
                               {"generator": "b", "tv_distance": 0.2725, "tv_low": None, "tv_high": None},
                               {"generator": "c", "tv_distance": 0.2815, "tv_low": None, "tv_high": None}],
                     sources={"coverage": "bc"})
    # b is lower, but a shows the same 0.273; c (0.282) does not
    assert leaderboard_verdict(generator_leaderboard(rows), rows.sources)[0] == (
        "Best generator on each measure: total variation b 0.273 (as shown, tied with a) (lower is better).")


def test_the_coverage_verdict_warns_when_the_reference_model_is_ranked(coverage):
    assert not any(t.startswith("Caution") for t in cv.coverage_verdict(coverage))  # "ref" is not ranked
    coverage.generators[1].name = "ref"
    assert cv.coverage_verdict(coverage)[-1] == (
        "Caution: the sectors and the fidelity features come from ref's encoder, and ref is also ranked here: its own "
        "samples are judged by its own encoder, which may favour it.")


def test_the_expressiveness_verdict_warns_when_the_support_sets_model_is_ranked(expressiveness):
    assert not any(t.startswith("Caution") for t in er.verdict(expressiveness))  # no support model recorded
    expressiveness.settings["support_model"] = "other"
    assert not any(t.startswith("Caution") for t in er.verdict(expressiveness))
    expressiveness.settings["support_model"] = "easy"
    assert er.verdict(expressiveness)[-1] == (
        "Caution: the support set was chosen with easy's encoder, and easy is also ranked here: images picked in its "
        "own latent space may favour it.")
