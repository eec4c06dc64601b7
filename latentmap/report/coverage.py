"""Render sector coverage (:class:`~latentmap.evaluation.coverage.CoverageResult`) and fidelity/diversity.

``coverage_sections`` / ``fidelity_sections`` write CSV, JSON and figures into a folder and
return HTML sections (the demo embeds them); ``write_coverage_report`` and
``write_fidelity_report`` add ``index.html`` with the findings first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from latentmap.evaluation.coverage import OVER, UNDER, CoverageResult, GeneratorCoverage
from latentmap.evaluation.fidelity import FidelityResult
from latentmap.evaluation.generator_bench import CALIBRATION_NAME
from latentmap.report.coverage_verdict import (class_section, coverage_verdict, precision_recall_section,
                                               verdict_section)
from latentmap.report.figures import PALETTE, figure_png, new_figure
from latentmap.io.names import slug
from latentmap.report.html import Section, details_html, render_page
from latentmap.report.labels import labelled_grid_png
from latentmap.report.tables import percent, sig

SHOWN_SECTORS = 4  # flagged sectors shown as grids per generator, most populated first
OPEN_SECTORS = 1  # of them, shown unfolded (the page holds every generator within its height budget)


def _p(value: float) -> str:
    return "< 1e-300" if value == 0 else sig(value, 2)


def coverage_findings(result: CoverageResult) -> list[str]:
    """The coverage findings: the sectors, each generator's total variation, G test and flagged sectors, the
    calibration's scores, then the fidelity findings."""
    out = [f"Sectors: {result.space.description()}; {result.real_images:,} {result.real_source} encoded by "
           f"{result.space.reference}."]
    calibration = next((g for g in result.generators if g.name == CALIBRATION_NAME), None)
    real_share = result.real_counts / max(result.real_images, 1)
    for g in result.generators:
        if g is calibration:
            continue
        text = (f"{g.name}: total variation {sig(g.tv_distance)} from the real shares, G = {sig(g.test['statistic'])} "
                f"({g.test['dof']} dof, p {_p(g.test['p_value'])}); under-represents {len(g.under)} sectors, "
                f"over-represents {len(g.over)}, never reaches {len(g.never_reached)} sectors that hold real images")
        text += _largest_gaps(result, g, real_share)
        out.append(text + ".")
    if calibration is not None:
        flagged = len(calibration.under) + len(calibration.over)
        out.append(f"For calibration, {calibration.images:,} real training images score total variation "
                   f"{sig(calibration.tv_distance)}, p {_p(calibration.test['p_value'])}, with {flagged} flagged "
                   f"sector{'' if flagged == 1 else 's'}: what a generator matching the data would get at this "
                   "sample size.")
    fidelity = result.fidelity
    if fidelity is not None:
        out.extend(fidelity_findings(fidelity))
    return out


def _largest_gaps(result: CoverageResult, g: GeneratorCoverage, real_share: np.ndarray) -> str:
    """The sector whose generated share falls furthest below its real share, over all sectors; when that one is
    not flagged under-represented, also the largest among the under-represented ones."""
    gen_share = g.counts / max(g.images, 1)
    gap = real_share - gen_share
    if not len(gap) or gap.max() <= 0:
        return ""

    def describe(s: int) -> str:
        what = (f", where {result.sector_labels[s]} is the most common real label"
                if result.sector_labels and result.sector_labels[s] else "")
        return (f"sector {s}{what}: {percent(real_share[s])} of the real images, {percent(gen_share[s])} of the "
                "generated ones")

    largest = int(np.argmax(gap))  # the lowest-numbered sector among equal gaps
    # a shortfall, not |gap|: an over-represented sector may differ more, the other way
    text = (f"; the largest shortfall (generated share below the real one) over all {len(gap)} sectors is "
            f"{describe(largest)}")
    if largest in g.under:
        return text + " (flagged under-represented)"
    why = (f"its generated share is at least {UNDER:g} times the real one" if gen_share[largest] >= UNDER *
           real_share[largest] else f"it holds fewer than {result.min_count} real images")
    text += f" (not flagged: {why})"
    if g.under:
        flagged = max(g.under, key=lambda u: gap[u])
        text += f"; the largest among the under-represented sectors is {describe(flagged)}"
    return text


def fidelity_findings(result: FidelityResult) -> list[str]:
    """The fidelity findings: each generator's precision, recall, coverage and Fréchet distance (closest first),
    warnings of copied real images, and the calibration's scores."""
    rows = [r for r in result.rows if r.name != CALIBRATION_NAME]
    calibration = next((r for r in result.rows if r.name == CALIBRATION_NAME), None)
    out = []
    if rows:
        out.append(f"In {result.space} (k = {result.k}): " + "; ".join(
            f"{r.name} precision {sig(r.precision)}, recall {sig(r.recall)}, coverage {sig(r.coverage)}, "
            f"{result.fd_name} {sig(r.frechet)}" for r in sorted(rows, key=lambda r: r.frechet)) + ".")
    for name, share in (result.overlap or {}).items():
        out.append(f"Warning: {percent(share)} of {name}'s images are copies of the {result.real_source} it is scored "
                   "against, so its precision, density and coverage are inflated by construction.")
    if calibration is not None:
        out.append(f"Real training images score precision {sig(calibration.precision)}, recall "
                   f"{sig(calibration.recall)}, coverage {sig(calibration.coverage)}, {result.fd_name} "
                   f"{sig(calibration.frechet)}: the scores of a generator that matched the data.")
    return out


def _flag_text(flag: str) -> str:
    return {"under": f"under-represented (generated share < {UNDER:g} x real)",
            "over": f"over-represented (generated share > {OVER:g} x real)",
            "never reached": "never reached"}.get(flag, flag)


def summary_display(result: CoverageResult) -> pd.DataFrame:
    """The G-test table as the page shows it: one row per generator, its total variation, G statistic and
    flagged sectors."""
    return pd.DataFrame([{"Generator": g.name, "Images": g.images, "Total variation": sig(g.tv_distance),
                          "G statistic": sig(g.test["statistic"]), "dof": g.test["dof"], "p": _p(g.test["p_value"]),
                          "Never reached": len(g.never_reached), "Under-represented": len(g.under),
                          "Over-represented": len(g.over), "Source": g.source} for g in result.generators])


def fidelity_display(result: FidelityResult) -> pd.DataFrame:
    """The fidelity table as the page shows it: one row per generator, its precision, recall, density, coverage
    and Fréchet distance."""
    return pd.DataFrame([{"Generator": r.name, "Images": r.images, "Precision": sig(r.precision),
                          "Recall": sig(r.recall), "Density": sig(r.density), "Coverage": sig(r.coverage),
                          result.fd_name: sig(r.frechet), "Source": r.source} for r in result.rows])


def coverage_bars_png(result: CoverageResult, generator: GeneratorCoverage) -> bytes:
    """Real and generated share per sector, sectors ordered by real share, every sector labelled; flagged sectors
    marked."""
    real = result.real_counts / max(result.real_images, 1)
    gen = generator.counts / max(generator.images, 1)
    order = np.argsort(-real, kind="stable")
    fig = new_figure(9.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(order))
    ax.bar(x - 0.2, real[order], width=0.4, color=PALETTE[0], label="real")
    ax.bar(x + 0.2, gen[order], width=0.4, color=PALETTE[1], label=generator.name)
    for i, s in enumerate(order):
        if s in generator.under or s in generator.over:
            ax.annotate("▼" if s in generator.under else "▲", (i, max(real[s], gen[s])), ha="center", va="bottom",
                        fontsize=7, color=PALETTE[3])
    step = max(1, -(-len(x) // 64))  # every sector up to 64; beyond, every step-th
    size = 7 if len(x[::step]) > 32 else 8
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(s) for s in order[::step]], fontsize=size, rotation=90)
    ax.set_xlim(-0.7, len(x) - 0.3)
    ax.set_xlabel("sector (ordered by real share; ▼ under-, ▲ over-represented)", fontsize=9)
    ax.set_ylabel("share of images", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=8)
    return figure_png(fig)


def fidelity_sections(result: FidelityResult, folder: str | os.PathLike[str], prefix: str = "", *,
                      folded: bool = False) -> list[Section]:
    """The fidelity section (CSV and JSON written into ``folder``); ``folded``: its table behind one line, where the
    page's ranked table already shows the same numbers."""
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    result.frame().rename(columns={"frechet": "frechet_distance"}).to_csv(base / "fidelity.csv", index=False)
    (base / "fidelity.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    section = Section(f"Fidelity and diversity in {result.space}")
    section.text(f"Precision, recall, density and coverage (Naeem et al. 2020, k = {result.k} nearest neighbours) "
                 f"and the Fréchet distance between Gaussians fitted to the features, all in {result.space}, against "
                 f"{result.real_images:,} {result.real_source}. This is not Inception's space: the distance is named "
                 f"'{result.fd_name}', not FID, and is comparable only between rows of this table.")
    links = (f'<p class="note"><a href="{prefix}fidelity.csv">fidelity.csv</a>, '
             f'<a href="{prefix}fidelity.json">fidelity.json</a></p>')
    section.table(fidelity_display(result), fold="The table, with each generator's source" if folded else "",
                  note_html=links)
    return [section]


def _generator_section(result: CoverageResult, g: GeneratorCoverage, folder: Path, prefix: str) -> Section:
    section = Section(f"Coverage of {g.name}")
    sentence = next((f for f in coverage_findings(result) if f.startswith(f"{g.name}: total variation")), "")
    if sentence:
        section.text(sentence)
    name = f"coverage_{slug(g.name)}.png"
    (folder / name).write_bytes(coverage_bars_png(result, g))
    section.image(prefix + name, f"{g.name}: share of real and generated images per sector, sectors ordered by their "
                                 "real share (▼ under-, ▲ over-represented)")
    frame = result.sector_frame()
    frame = frame[(frame.generator == g.name) & (frame.flag != "")]
    if len(frame):
        shown = frame.assign(real_share=frame.real_share.map(sig), generated_share=frame.generated_share.map(sig),
                             share_ratio=frame.share_ratio.map(sig), flag=frame.flag.map(_flag_text))
        shown = shown.drop(columns=["generator"]).rename(columns={
            "sector": "Sector", "signs": "Signs", "real_majority": "Most common real label",
            "support_images": "Support images", "real_count": "Real images", "real_share": "Real share",
            "generated_count": "Generated images", "generated_share": "Generated share",
            "share_ratio": "Generated / real share", "flag": "Flag"})
        section.table(shown, fold=f"Flagged sectors of {g.name}",
                      note_html=f'<p class="note">Every sector of every generator: '
                                f'<a href="{prefix}coverage_sectors.csv">coverage_sectors.csv</a></p>')
    else:
        section.text("No sector is flagged.")
    flagged = sorted(g.examples, key=lambda s: -int(result.real_counts[s]))
    shown_sectors = [s for s in flagged if s in g.under][:SHOWN_SECTORS] + [s for s in flagged if s in g.over][:2]
    figures = []
    for s in shown_sectors:
        images = g.example_images[s]
        name = f"sector_{slug(g.name)}_{s}.png"
        (folder / name).write_bytes(labelled_grid_png(
            [images["support"], images["real"], images["generated"]],
            ["support-set image", "real images", "nearest generated"], image_shape=images["real"].shape[1:]
            if images["real"] is not None and len(images["real"]) else None))
        kind = "under-represented" if s in g.under else "over-represented"
        label = f", most common real label {result.sector_labels[s]}" if result.sector_labels else ""
        figures.append(Section("").image(prefix + name, f"{g.name}, sector {s} ({kind}: {int(result.real_counts[s])} "
                                                        f"real, {int(g.counts[s])} generated{label}): its support-set "
                                                        "image, real examples and the generated images nearest to "
                                                        "the sector's real images").parts[0])
    section.parts.extend(figures[:OPEN_SECTORS])
    if len(figures) > OPEN_SECTORS:
        section.parts.append(details_html(f"{len(figures) - OPEN_SECTORS} more flagged sectors of {g.name}, as images",
                                          figures[OPEN_SECTORS:]))
    return section


def coverage_sections(result: CoverageResult, folder: str | os.PathLike[str], prefix: str = "") -> list[Section]:
    """Write the CSV, JSON and figures into ``folder``; the sections: the ranked verdict table, what each generator
    cannot produce, precision and recall, one section per generator, the G tests, fidelity, the glossary."""
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    result.summary_frame().to_csv(base / "coverage_summary.csv", index=False)
    result.sector_frame().to_csv(base / "coverage_sectors.csv", index=False)
    (base / "coverage.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    sections = [verdict_section(result), class_section(result, base, prefix)]
    pr = precision_recall_section(result, base, prefix)
    sections.extend([pr] if pr is not None else [])
    sections.extend(_generator_section(result, g, base, prefix) for g in result.generators)
    summary = Section("Sector counts and the G test")
    summary.text(f"Sectors: {result.space.description()}. Real: {result.real_images:,} {result.real_source}; every "
                 f"image is encoded by {result.space.reference}. The G test compares the generated and real counts "
                 f"over the sectors (2 x sectors table); a sector is under-represented when its generated share is "
                 f"below {UNDER:g} times the real share and it holds at least {result.min_count} real images, "
                 f"over-represented above {OVER:g} times with at least {result.min_count} generated images.")
    summary.table(summary_display(result))
    summary.parts.append(f'<p class="note"><a href="{prefix}coverage_sectors.csv">coverage_sectors.csv</a> (every '
                         f'sector of every generator), <a href="{prefix}coverage_summary.csv">coverage_summary.csv'
                         f'</a>, <a href="{prefix}coverage.json">coverage.json</a></p>')
    sections.append(summary)
    fidelity = result.fidelity
    if fidelity is not None:
        sections.extend(fidelity_sections(fidelity, base, prefix, folded=True))
    return sections


def write_coverage_report(result: CoverageResult, folder: str | os.PathLike[str],
                          title: str = "Sector coverage") -> Path:
    """All files plus ``index.html``: the verdict (findings and the ranked table) first."""
    base = Path(folder)
    verdict, *sections = coverage_sections(result, base)
    (base / "index.html").write_text(render_page(title, sections, findings=coverage_verdict(result),
                                                           verdict=verdict))
    return base / "index.html"


def write_fidelity_report(result: FidelityResult, folder: str | os.PathLike[str],
                          title: str = "Fidelity and diversity") -> Path:
    """The fidelity files plus ``index.html`` with the fidelity findings first; returns the page's path."""
    base = Path(folder)
    sections = fidelity_sections(result, base)
    (base / "index.html").write_text(render_page(title, sections, findings=fidelity_findings(result)))
    return base / "index.html"
