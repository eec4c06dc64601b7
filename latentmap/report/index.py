"""The reports index: one page listing every report folder under a folder, with its headline numbers.

``write_reports_index(folder)`` reads, for each subfolder that holds an ``index.html``, the
numbers the report saved beside it (``summary.json`` of the demo or the anchor comparison,
``atlas.json``, ``relocation.json``, ``diagnostics.json``, the expressiveness ``leaderboard.csv``,
``coverage_summary.csv``) and states its findings with the same functions the report's own page
uses (:mod:`latentmap.report.findings`); a report it does not know is listed with the findings
written on its page. ``latentmap report index [FOLDER]`` writes it, and every command that
writes a report into a folder whose ``index.html`` is such an index refreshes it
(:func:`refresh_parent_index`).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from latentmap.io.atomic import atomic_write_bytes
from latentmap.report.findings import (anchors_findings, atlas_findings, demo_findings, diagnostics_findings,
                                       expressiveness_findings, relocation_findings)
from latentmap.report.html import Section, render_page
from latentmap.report.leaderboard import generator_leaderboard, leaderboard_display, leaderboard_verdict, read_bench_rows
from latentmap.report.tables import calibration_rows, sig

INDEX_NAME = "index.html"
INDEX_MARKER = "<!-- latentmap reports index -->"
MARKER_FILE = ".latentmap-output.json"
SHOWN_FINDINGS = 4


@dataclass
class ReportEntry:
    """One report folder as the index lists it."""

    name: str  # the folder's name
    title: str  # the page's <title>
    kind: str  # demo, atlas, anchors, relocation, diagnostics, expressiveness, coverage or report
    written: str  # when (the output marker's time), or ""
    findings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # CSV and JSON beside the page


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return None


UNTRUSTED_CONTENT = (KeyError, TypeError, ValueError, AttributeError, IndexError)
"""What findings built from a saved file with missing or wrong-typed fields raise: that report is listed as
unreadable, the index of the others is still written."""


def _saved_findings(kind: str, fn: Callable[[Any], list[str]], data: Any, name: str) -> tuple[str, list[str]]:
    try:
        return kind, [str(f) for f in fn(data)]
    except UNTRUSTED_CONTENT as exc:
        return kind, [f"{name} is unreadable ({type(exc).__name__}: {exc})"]


def _page_findings(page: Path) -> list[str]:
    """The findings a page states (its findings list, else its lead paragraph), as plain text."""
    try:
        text = page.read_text(errors="replace")
    except OSError:
        return []
    block = re.search(r'<section class="findings"[^>]*>(.*?)</section>', text, re.S)
    items = re.findall(r"<li>(.*?)</li>", block.group(1), re.S) if block else []
    if not items:
        lead = re.search(r"<h1>.*?</h1>\s*<p[^>]*>(.*?)</p>", text, re.S)
        items = [lead.group(1)] if lead else []
    return [html.unescape(re.sub(r"<[^>]+>", "", i)).strip() for i in items]


def _coverage_findings(frame: pd.DataFrame) -> list[str]:
    """One sentence naming every generator of ``coverage_summary.csv`` (the index shows a report's first few
    findings only, so one per generator would drop some)."""
    from latentmap.evaluation.generator_bench import CALIBRATION_NAME

    parts = [f"{g['generator']}{' (calibration)' if g['generator'] == CALIBRATION_NAME else ''} "
             f"{sig(float(g['tv_distance']))} ({int(g['never_reached'])}, {int(g['under_represented'])}, "
             f"{int(g['over_represented'])})" for _, g in frame.iterrows()]
    if not parts:
        return []
    generators = int((frame["generator"] != CALIBRATION_NAME).sum())
    return [f"Total variation from the real sector shares (sectors never reached, under-represented, "
            f"over-represented), {generators} generator{'s' if generators != 1 else ''}"
            + (" and the calibration" if generators < len(parts) else "") + ": " + "; ".join(parts) + "."]


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def report_headline(folder: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """(kind, findings) of the report in ``folder``, from the numbers it saved."""
    base = Path(folder)
    summary = _json(base / "summary.json") if (base / "summary.json").is_file() else None
    if isinstance(summary, dict) and "reconstruction" in summary:
        return _saved_findings("demo", demo_findings, summary, "summary.json")
    if isinstance(summary, dict) and "settings" in summary and "summary" in summary:
        return _saved_findings("anchors", anchors_findings, summary, "summary.json")
    checks: list[tuple[str, str, Callable[[Any], list[str]]]] = [
        ("atlas.json", "atlas", atlas_findings), ("relocation.json", "relocation", relocation_findings),
              ("diagnostics.json", "diagnostics", diagnostics_findings)]
    for name, kind, fn in checks:
        data = _json(base / name) if (base / name).is_file() else None
        if isinstance(data, dict):
            return _saved_findings(kind, fn, data, name)
    board = _read_csv(base / "leaderboard.csv") if (base / "leaderboard.csv").is_file() else None
    if board is not None:
        rows = board.astype(object).where(board.notna(), None).to_dict(orient="records")
        kind, found = _saved_findings("expressiveness", expressiveness_findings, rows, "leaderboard.csv")
        return kind, found or _page_findings(base / INDEX_NAME)
    coverage = _read_csv(base / "coverage_summary.csv") if (base / "coverage_summary.csv").is_file() else None
    if coverage is not None and {"generator", "tv_distance", "never_reached"} <= set(coverage.columns):
        return _saved_findings("coverage", _coverage_findings, coverage, "coverage_summary.csv")
    return "report", _page_findings(base / INDEX_NAME)


def report_entries(folder: str | os.PathLike[str]) -> list[ReportEntry]:
    """Every immediate subfolder of ``folder`` with an ``index.html``, by name."""
    entries = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and (p / INDEX_NAME).is_file()):
        if sub.name.startswith("."):  # a temporary sibling being written
            continue
        page = (sub / INDEX_NAME).read_text(errors="replace")
        title = re.search(r"<title>(.*?)</title>", page, re.S)
        marker = _json(sub / MARKER_FILE) if (sub / MARKER_FILE).is_file() else None
        kind, findings = report_headline(sub)
        files = sorted(p.name for p in sub.iterdir() if p.suffix in (".csv", ".json") and not p.name.startswith("."))
        entries.append(ReportEntry(sub.name, html.unescape(title.group(1)) if title else sub.name, kind,
                                   str(marker.get("created") or "") if isinstance(marker, dict) else "",
                                   [f for f in findings if f], files))
    return entries


def leaderboard_section(folder: str | os.PathLike[str]) -> tuple[Section | None, list[str]]:
    """(the cross-report generator leaderboard, its verdict sentences), from the benchmark reports in ``folder``
    (:mod:`latentmap.report.leaderboard`); (None, []) when there is none."""
    rows = read_bench_rows(folder)
    frame = generator_leaderboard(rows)
    if not len(frame):
        return None, []
    section = Section("Generators across the benchmark reports", anchor="leaderboard")
    shown = leaderboard_display(frame)
    section.table(shown, headline="Support / own (95%)", order="asc", calibration=calibration_rows(shown.Generator))
    links = " and ".join(f'<a href="{html.escape(quote(f))}/{INDEX_NAME}">{html.escape(f)}</a>'
                         for f in rows.sources.values())
    section.parts.append(f'<p class="note">Ranked by support / own: the mean encoder MSE on support-set images over '
                         f"that on the model's own samples (lower is better), with 95% intervals; real / own likewise "
                         f"for real test images; total variation between the generated and real sector shares (lower "
                         f"is better); precision, recall, density and coverage in the reference space (higher is "
                         f"better, density near 1). The calibration row, real training images, is what a generator "
                         f"matching the data scores. From {links}.</p>")
    return section, leaderboard_verdict(frame, rows.sources)


def render_index(folder: str | os.PathLike[str], entries: list[ReportEntry]) -> str:
    """The index page of ``folder``: the cross-report leaderboard as its verdict, a list of ``entries`` with each
    one's first finding, then a section per report with its findings and its CSV and JSON files."""
    top = Section("All reports")
    if entries:  # a list, not a table: each headline wraps at any width
        top.parts.append("<ul>" + "".join(
            f'<li><a href="{html.escape(quote(e.name))}/{INDEX_NAME}">{html.escape(e.name)}</a> ({html.escape(e.kind)}'
            + (f", {html.escape(e.written.replace('T', ' ')[:16])}" if e.written else "") + ")"
            + (f": {html.escape(e.findings[0])}" if e.findings else "") + "</li>" for e in entries) + "</ul>")
    else:
        top.text("No report folders (subfolders with an index.html) here yet.")
    sections = [top]
    for e in entries:
        section = Section(e.name, anchor=f"report-{e.name}")
        section.link(f"{quote(e.name)}/{INDEX_NAME}", e.title, f"({e.kind})")
        if e.findings:
            section.parts.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in e.findings[:SHOWN_FINDINGS])
                                 + "</ul>")
        if e.files:
            links = ", ".join(f'<a href="{html.escape(quote(e.name))}/{html.escape(quote(f))}">{html.escape(f)}</a>'
                              for f in e.files)
            section.parts.append(f'<p class="note">Numbers: {links}</p>')
        sections.append(section)
    kinds = pd.Series([e.kind for e in entries]).value_counts()
    board, verdict = leaderboard_section(folder) if entries else (None, [])
    findings = verdict + ([f"{len(entries)} reports in '{Path(folder).name}': "
                           + ", ".join(f"{n} {k}" for k, n in kinds.items()) + "."] if entries else [])
    intro = "Each report's page opens with its findings; its CSV and JSON files hold every number."
    if board is not None:
        page = render_page("latentmap reports", sections, intro, findings=findings, verdict=board)
    else:
        page = render_page("latentmap reports", sections, intro, findings=findings)
    return page.replace("<!doctype html>\n", f"<!doctype html>\n{INDEX_MARKER}\n", 1)


def write_reports_index(folder: str | os.PathLike[str] = "reports", entries: list[ReportEntry] | None = None) -> Path:
    """Write ``folder/index.html`` listing every report folder in ``folder`` (``entries``: already read);
    returns its path."""
    base = Path(folder)
    out = base / INDEX_NAME
    page = render_index(base, report_entries(base) if entries is None else entries)
    atomic_write_bytes(out, page.encode("utf-8"))  # a temporary file of its own, never a user's '.index.html.tmp'
    return out


def is_reports_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a page :func:`write_reports_index` wrote (its marker near the top)."""
    try:
        return INDEX_MARKER in Path(path).read_text(errors="replace")[:200]
    except OSError:
        return False


def refresh_parent_index(report_folder: str | os.PathLike[str]) -> Path | None:
    """Rewrite the index of ``report_folder``'s parent when that parent already has a reports index."""
    parent = Path(report_folder).resolve().parent
    if is_reports_index(parent / INDEX_NAME):
        return write_reports_index(parent)
    return None
