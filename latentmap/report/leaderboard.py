"""The cross-report generator leaderboard of the reports index: one row per generator, from the benchmark reports.

:func:`read_bench_rows` is the one reader of the numbers the benchmark reports save: the
expressiveness ``leaderboard.csv`` (support / own and real / own with their intervals), the
coverage ``coverage_summary.csv`` (total variation and its interval) and ``fidelity.csv``
(precision, recall, density, coverage). :func:`generator_leaderboard` joins them by generator,
ranked by the expressiveness headline (support / own, lower is better) with the calibration row
last; :func:`leaderboard_verdict` names the best generator on each measure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from latentmap.report.tables import CALIBRATION_MARK, interval, sig

EXPRESSIVENESS_FILE, COVERAGE_FILE, FIDELITY_FILE = "leaderboard.csv", "coverage_summary.csv", "fidelity.csv"
# measure -> (machine column, label, lower is better)
MEASURES = {"support/own": ("support_over_own", "support / own", True),
            "real/own": ("real_over_own", "real / own", True),
            "total variation": ("tv_distance", "total variation", True),
            "precision": ("precision", "precision", False), "recall": ("recall", "recall", False),
            "density": ("density", "density", None),  # best near 1, not at an end: named, never ranked
            "coverage": ("coverage", "coverage", False)}


@dataclass
class BenchRows:
    """The rows each benchmark report saved, and the folders they came from (names relative to the index)."""

    expressiveness: list[dict[str, Any]] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    fidelity: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # "expressiveness" / "coverage" -> folder name


def _rows(path: Path, needed: set[str]) -> list[dict[str, Any]] | None:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    if not needed <= set(frame.columns):
        return None
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def read_bench_rows(folder: str | os.PathLike[str]) -> BenchRows:
    """The first expressiveness and the first coverage report (by folder name) among ``folder``'s subfolders."""
    out = BenchRows()
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not out.expressiveness and (sub / EXPRESSIVENESS_FILE).is_file():
            rows = _rows(sub / EXPRESSIVENESS_FILE, {"model", "support_over_own"})
            if rows:
                out.expressiveness, out.sources["expressiveness"] = rows, sub.name
        if not out.coverage and (sub / COVERAGE_FILE).is_file():
            rows = _rows(sub / COVERAGE_FILE, {"generator", "tv_distance"})
            if rows:
                out.coverage, out.sources["coverage"] = rows, sub.name
                fidelity = _rows(sub / FIDELITY_FILE, {"name", "precision", "recall", "density", "coverage"}) \
                    if (sub / FIDELITY_FILE).is_file() else None
                out.fidelity = fidelity or []
    return out


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def generator_leaderboard(rows: BenchRows) -> pd.DataFrame:
    """One row per generator named in any of the reports: the measures of :data:`MEASURES` (with the intervals
    saved beside them), ranked by support / own (lower first; generators without it after, by total variation);
    the calibration row last, with ``calibration`` True."""
    from latentmap.evaluation.generator_bench import CALIBRATION_NAME  # torch only when there are rows

    table: dict[str, dict[str, Any]] = {}

    def row(name: object) -> dict[str, Any]:
        return table.setdefault(str(name), {"generator": str(name), "calibration": str(name) == CALIBRATION_NAME})

    for r in rows.expressiveness:
        out = row(r["model"])
        for key in ("support_over_own", "real_over_own"):
            for suffix in ("", "_low", "_high"):
                out[key + suffix] = _number(r.get(key + suffix))
    for r in rows.coverage:
        out = row(r["generator"])
        for key in ("tv_distance", "tv_low", "tv_high"):
            out[key] = _number(r.get(key))
    for r in rows.fidelity:
        out = row(r["name"])
        for key in ("precision", "recall", "density", "coverage"):
            out[key] = _number(r.get(key))
    columns = ["generator", "calibration", "support_over_own", "support_over_own_low", "support_over_own_high",
               "real_over_own", "real_over_own_low", "real_over_own_high", "tv_distance", "tv_low", "tv_high",
               "precision", "recall", "density", "coverage"]
    frame = pd.DataFrame(list(table.values()), columns=columns)
    if not len(frame):
        return frame
    inf = float("inf")
    order = sorted(range(len(frame)), key=lambda i: (
        bool(frame.calibration[i]),
        inf if pd.isna(frame.support_over_own[i]) else frame.support_over_own[i],
        inf if pd.isna(frame.tv_distance[i]) else frame.tv_distance[i], frame.generator[i]))
    return frame.iloc[order].reset_index(drop=True)


def best_on(frame: pd.DataFrame, measure: str) -> tuple[str, float] | None:
    """(generator, value) best on ``measure`` among the generators (not the calibration), or None; ties: the first
    in the ranked frame."""
    column, _, lower = MEASURES[measure]
    rows = frame[~frame.calibration.astype(bool) & frame[column].notna()]
    if lower is None or not len(rows):
        return None
    position = rows[column].astype(float).idxmin() if lower else rows[column].astype(float).idxmax()
    return str(frame.generator[position]), float(frame[column][position])


def leaderboard_verdict(frame: pd.DataFrame, sources: dict[str, str]) -> list[str]:
    """The index's opening sentences: the best generator on each measure, and where the numbers come from."""
    best = [(m, b) for m in MEASURES if (b := best_on(frame, m)) is not None]
    if not best:
        return []
    def tied(measure: str, name: str, value: float) -> str:  # others the page shows with the same digits
        column = MEASURES[measure][0]
        others = [str(g) for g, c, v in zip(frame.generator, frame.calibration, frame[column])
                  if not c and str(g) != name and v is not None and not pd.isna(v) and sig(float(v)) == sig(value)]
        return f" (as shown, tied with {', '.join(others)})" if others else ""

    groups = []
    for lower, words in ((True, "lower is better"), (False, "higher is better")):
        parts = [f"{MEASURES[m][1]} {name} {sig(value)}{tied(m, name, value)}" for m, (name, value) in best
                 if MEASURES[m][2] is lower]
        if parts:
            groups.append(", ".join(parts) + f" ({words})")
    names = [str(g) for g, c in zip(frame.generator, frame.calibration) if not c]
    return ["Best generator on each measure: " + "; ".join(groups) + ".",
            f"{len(names)} generators, from " + " and ".join(f"{folder}/" for folder in sources.values())
            + "; ranked by support / own."]


def leaderboard_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as the index shows it: rank, generator, then each measure with its interval."""
    shown = []
    rank = 0
    for _, r in frame.iterrows():
        calibration = bool(r.calibration)
        rank += 0 if calibration else 1
        shown.append({"#": "" if calibration else str(rank),
                      "Generator": r.generator + CALIBRATION_MARK if calibration else r.generator,
                      "Support / own (95%)": interval(r.support_over_own, r.support_over_own_low,
                                                      r.support_over_own_high),
                      "Real / own (95%)": interval(r.real_over_own, r.real_over_own_low, r.real_over_own_high),
                      "Total variation (95%)": interval(r.tv_distance, r.tv_low, r.tv_high),
                      "Precision": sig(r.precision), "Recall": sig(r.recall), "Density": sig(r.density),
                      "Coverage": sig(r.coverage)})
    return pd.DataFrame(shown)
