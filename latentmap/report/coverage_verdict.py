"""The opening of the coverage page: the verdict sentences, one table ranked by total variation, what each
generator cannot produce in class names, and the precision–recall picture.

Every number comes from the :class:`~latentmap.evaluation.coverage.CoverageResult` (total variation
and its bootstrap interval, the flagged sectors, the real images' labels per sector) and its
:class:`~latentmap.evaluation.fidelity.FidelityResult`; the class names from
:mod:`latentmap.evaluation.class_miss`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from latentmap.evaluation.class_miss import (MISSED_CLASS_SHARE, ClassMiss, class_misses, missed_sectors, missed_share,
                                             unresolvable_classes)
from latentmap.evaluation.coverage import UNDER, CoverageResult, GeneratorCoverage
from latentmap.evaluation.fidelity import FidelityRow
from latentmap.evaluation.generator_bench import CALIBRATION_NAME
from latentmap.report.figures import MARKERS, SERIES, figure_png, new_figure
from latentmap.report.html import Section
from latentmap.report.tables import CALIBRATION_MARK, calibration_rows, interval, overlap_clause, percent, sig

EXPOSED = 3  # classes named per generator as the most exposed when none reaches MISSED_CLASS_SHARE


def ranked(result: CoverageResult) -> list[GeneratorCoverage]:
    """The generators by total variation (smallest first; ties by name), the calibration last."""
    gens = sorted((g for g in result.generators if g.name != CALIBRATION_NAME), key=lambda g: (g.tv_distance, g.name))
    return gens + [g for g in result.generators if g.name == CALIBRATION_NAME]


def _fidelity_rows(result: CoverageResult) -> dict[str, FidelityRow]:
    fidelity = result.fidelity
    return {r.name: r for r in fidelity.rows} if fidelity is not None else {}


def verdict_table(result: CoverageResult) -> pd.DataFrame:
    """One row per generator, ranked (:func:`ranked`): total variation with its interval, precision, recall,
    density, coverage, the Fréchet distance, the sectors missed and over-represented."""
    fid = _fidelity_rows(result)
    fidelity = result.fidelity
    fd_name = fidelity.fd_name if fidelity is not None else "Fréchet distance"
    rows, rank = [], 0
    for g in ranked(result):
        calibration = g.name == CALIBRATION_NAME
        rank += 0 if calibration else 1
        scores: dict[str, str] = {}
        if fid:
            f = fid.get(g.name)
            assert f is not None, f"the fidelity has no row for generator {g.name!r}"  # one per generator
            scores = {"Precision": sig(f.precision), "Recall": sig(f.recall), "Density": sig(f.density),
                      "Coverage": sig(f.coverage), fd_name: sig(f.frechet)}
        rows.append({"#": "" if calibration else str(rank),
                     "Generator": g.name + CALIBRATION_MARK if calibration else g.name,
                     "Total variation (95%)": interval(g.tv_distance, g.tv_low, g.tv_high),
                     **scores,
                     "Sectors missed": str(len(missed_sectors(g.never_reached, g.under))),
                     "Over-represented": str(len(g.over))})
    return pd.DataFrame(rows)


def verdict_section(result: CoverageResult) -> Section:
    """The page's verdict: :func:`verdict_table`, ranked by total variation with the calibration marked, and a
    note on how to read each column."""
    section = Section("Generators ranked by total variation", anchor="verdict")
    frame = verdict_table(result)
    section.table(frame, headline="Total variation (95%)", order="asc", calibration=calibration_rows(frame.Generator))
    fidelity = result.fidelity
    space = f" in {fidelity.space}" if fidelity is not None else ""
    section.text(f"Total variation: the distance between a generator's sector shares and those of "
                 f"{result.real_images:,} {result.real_source} (0: the same shares; lower is better), with its 95% "
                 f"bootstrap interval (none at the calibration: sampling noise alone gives its value). Precision, recall, "
                 f"density, coverage{space}: higher is better (density: near 1); the Fréchet distance and the numbers of "
                 "sectors missed and over-represented: lower is better. The calibration row, real training images, "
                 "is what a generator matching the data scores.",
                 cls="note")
    return section


def generator_misses(result: CoverageResult) -> dict[str, list[ClassMiss]]:
    """Generator name -> its :class:`~latentmap.evaluation.class_miss.ClassMiss` rows (largest share first); empty
    without labels. The calibration is left out."""
    if result.label_counts is None:
        return {}
    return {g.name: class_misses(result.label_counts, missed_sectors(g.never_reached, g.under), result.label_names)
            for g in result.generators if g.name != CALIBRATION_NAME}


def _named(misses: Sequence[ClassMiss]) -> list[ClassMiss]:
    return [m for m in misses if m.named]


def _class_list(misses: Sequence[ClassMiss]) -> str:
    return ", ".join(f"{m.name} {percent(m.share_of_class)}" for m in misses)


def class_frame(result: CoverageResult) -> pd.DataFrame:
    """Per generator and class: the real images of the class, how many lie in the generator's missed sectors, the
    share of the class and the share of the missed sectors' real images (class_misses.csv)."""
    return pd.DataFrame([{"generator": name, **m.to_dict()} for name, misses in generator_misses(result).items()
                         for m in misses])


def unresolvable(result: CoverageResult) -> list[dict[str, Any]]:
    """The classes sector counts cannot show missing (:func:`~latentmap.evaluation.class_miss.unresolvable_classes`);
    none without labels."""
    return ([] if result.label_counts is None else
            unresolvable_classes(result.label_counts, result.min_count, result.label_names))


def unresolvable_sentence(result: CoverageResult) -> str:
    """The limitation sentence naming the :func:`unresolvable` classes; empty when there is none."""
    found = unresolvable(result)
    if not found:
        return ""
    parts = [f"{u['name']} (at most {percent(u['best_share'])} of a sector's real images, in sector "
             f"{u['best_sector']}; its sectors are shared mostly with {', '.join(u['shares_with'])})" for u in found]
    return ("Limitation: " + "; ".join(parts) + (" dominates" if len(found) == 1 else " dominate")
            + f" no sector of at least {result.min_count} real images, so sector counts cannot show "
            + ("it" if len(found) == 1 else "them") + " missing from a generator.")


def class_section(result: CoverageResult, folder: str | os.PathLike[str], prefix: str = "") -> Section:
    """What each generator cannot produce: the classes whose real images lie in the sectors it misses (the table of
    every class into ``folder``'s class_misses.csv, linked with ``prefix``)."""
    section = Section("What each generator cannot produce", anchor="cannot-produce")
    misses = generator_misses(result)
    if not misses:
        section.text("The real images carry no labels: each generator's section below shows real examples of the "
                     "most populated sectors it misses.")
        return section
    assert result.label_counts is not None  # misses come from the labels
    section.text(f"Missed sectors: never reached or under-represented. A class is named when at least "
                 f"{percent(MISSED_CLASS_SHARE)} of its real images lie in the generator's missed sectors; the most "
                 "exposed classes follow, with the share of each class's real images there.")
    rows = []
    for g in ranked(result):
        if g.name not in misses:
            continue
        missed = missed_sectors(g.never_reached, g.under)
        named = _named(misses[g.name])
        rows.append({"Generator": g.name,
                     "Sectors missed (share of real images)": f"{len(missed)} ({percent(missed_share(result.label_counts, missed))})",
                     "Named classes": _class_list(named) or "none",
                     "Most exposed classes": _class_list([m for m in misses[g.name] if not m.named][:EXPOSED])})
    section.table(pd.DataFrame(rows))
    limitation = unresolvable_sentence(result)
    if limitation:
        section.text(limitation)
    class_frame(result).to_csv(Path(folder) / "class_misses.csv", index=False)
    section.table(class_frame(result).drop(columns=["label"]), fold="Every class for every generator",
                  csv=f"{prefix}class_misses.csv")
    return section


def class_sentences(result: CoverageResult) -> list[str]:
    """The findings on classes: those each generator misses, with the share all classes together would show, and
    the limitation sentence; none without labels."""
    misses = generator_misses(result)
    if not misses:
        return []
    label_counts = result.label_counts
    assert label_counts is not None  # misses come from the labels
    named = {n: _named(m) for n, m in misses.items()}
    gens = {g.name: g for g in result.generators}

    def base(name: str) -> str:  # what every class would show if the missed sectors favoured none
        g = gens[name]
        return percent(missed_share(label_counts, missed_sectors(g.never_reached, g.under)))

    with_named = [f"{n} {_class_list(m)} (all classes together: {base(n)})" for n, m in named.items() if m]
    without = [n for n, m in named.items() if not m]
    text = (f"Classes with at least {percent(MISSED_CLASS_SHARE)} of their real images in sectors a generator "
            f"never reaches or under-represents (generated share below {UNDER:g} x real): "
            + ("; ".join(with_named) if with_named else "none for any generator"))
    if with_named and without:
        text += f"; none for {', '.join(without)}"
    out = [text + "."]
    limitation = unresolvable_sentence(result)
    return out + ([limitation] if limitation else [])


def coverage_verdict(result: CoverageResult) -> list[str]:
    """The page's findings: the ranking by total variation against the calibration, precision and recall, the
    classes each generator misses and the classes sectors cannot resolve; warnings of copied images."""
    order = ranked(result)
    gens = [g for g in order if g.name != CALIBRATION_NAME]
    calibration = next((g for g in order if g.name == CALIBRATION_NAME), None)
    out: list[str] = []
    if gens:
        best, worst = gens[0], gens[-1]
        text = (f"Closest to the real sector shares: {best.name}, total variation "
                f"{interval(best.tv_distance, best.tv_low, best.tv_high)}"
                + overlap_clause((best.name, best.tv_low, best.tv_high),
                                 [(g.name, g.tv_low, g.tv_high) for g in gens[1:]]))
        if worst is not best:
            text += f"; farthest: {worst.name}, {interval(worst.tv_distance, worst.tv_low, worst.tv_high)}"
        if calibration is not None:
            above = [g for g in gens if g.tv_low > calibration.tv_distance]  # a missing interval: never above
            text += (f". Real training images (calibration) score "
                     f"{interval(calibration.tv_distance, calibration.tv_low, calibration.tv_high)}, the value of "
                     f"sampling noise alone; {len(above)} of {len(gens)} generators' intervals lie wholly above it")
        out.append(text + ".")
    fid = _fidelity_rows(result)
    rows = [fid[g.name] for g in gens if g.name in fid]
    if rows:
        p, r = max(rows, key=lambda x: x.precision), max(rows, key=lambda x: x.recall)
        low_r = min(rows, key=lambda x: x.recall)
        text = (f"Highest precision: {p.name} {sig(p.precision)}; highest recall: {r.name} {sig(r.recall)}, lowest "
                f"{low_r.name} {sig(low_r.recall)}")
        cal = fid.get(CALIBRATION_NAME)
        if cal is not None:
            text += f"; the calibration scores precision {sig(cal.precision)} and recall {sig(cal.recall)}"
        out.append(text + ".")
    out.extend(class_sentences(result))
    fidelity = result.fidelity
    if any(g.name == result.space.reference for g in gens):
        what = "the sectors" + (" and the fidelity features" if fidelity is not None else "")
        out.append(f"Caution: {what} come from {result.space.reference}'s encoder, and {result.space.reference} is "
                   "also ranked here: its own samples are judged by its own encoder, which may favour it.")
    if fidelity is not None:
        out.extend(f"Warning: {percent(share)} of {name}'s images are copies of the {fidelity.real_source} "
                   "they are scored against: their precision, density and coverage are inflated by construction."
                   for name, share in (fidelity.overlap or {}).items())
    return out


def precision_recall_png(result: CoverageResult) -> bytes:
    """Precision against recall, one marker per generator and a black star for the calibration."""
    fidelity = result.fidelity
    assert fidelity is not None, "a coverage result without fidelity"
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    gens = [r for r in fidelity.rows if r.name != CALIBRATION_NAME]
    for i, r in enumerate(gens):
        ax.scatter([r.recall], [r.precision], s=60, color=SERIES[i % len(SERIES)], marker=MARKERS[i % len(MARKERS)],
                   edgecolor="black", linewidth=0.5, label=f"{r.name} ({sig(r.recall)}, {sig(r.precision)})", zorder=3)
    for r in fidelity.rows:
        if r.name == CALIBRATION_NAME:
            ax.scatter([r.recall], [r.precision], s=140, color="black", marker="*", zorder=3,
                       label=f"{r.name}, calibration ({sig(r.recall)}, {sig(r.precision)})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall: share of real images on the generated manifold", fontsize=9)
    ax.set_ylabel("precision: share of generated\nimages on the real manifold", fontsize=9)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="generator (recall, precision)",
              title_fontsize=8, frameon=False)
    return figure_png(fig)


def precision_recall_section(result: CoverageResult, folder: str | os.PathLike[str], prefix: str = ""
                             ) -> Section | None:
    """The precision–recall figure (written into ``folder``, linked with ``prefix``) and its caption; None without
    fidelity rows."""
    fidelity = result.fidelity
    if fidelity is None or not fidelity.rows:
        return None
    section = Section("Precision and recall", anchor="precision-recall")
    (Path(folder) / "precision_recall.png").write_bytes(precision_recall_png(result))
    section.image(prefix + "precision_recall.png",
                  f"Precision against recall in {fidelity.space} (k = {fidelity.k}), one marker per "
                  "generator; the black star is real training images, where a generator matching the data would sit "
                  "(top right is better)")
    return section
