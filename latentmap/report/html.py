"""A small, dependency-free HTML page builder for reports.

A page opens with its title, its verdict (a few findings with numbers, the rest folded, and a table
ranked by the page's headline measure, marked ``data-headline``, all in the first screen), an intro
line and a table of contents whose entries link to every ``<h2>``/``<h3>`` heading (ids are added
where a heading has none), and ends with a glossary of the terms it uses
(:mod:`latentmap.report.glossary`). Tables and figures scroll sideways inside their own box instead
of widening the page; figures are shown at their natural width; long tables fold into ``<details>``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from latentmap.io.paths import shown_path, shown_spec  # noqa: F401 (re-exported for the renderers)
from latentmap.report.glossary import used_terms
from latentmap.report.tables import MAX_ALIGNED_COLUMNS, column_label, display_frame, text_columns, unit_notes

GENERATOR = "latentmap report"
STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
p,li{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%;margin:.8rem 0}
table{border-collapse:collapse;font-size:.88rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3;vertical-align:bottom}
img{max-width:none;height:auto;display:block}img.grid{image-rendering:pixelated}
figure{margin:1rem 0}figure .scroll{margin:0}figcaption{font-size:.85rem;color:#555}
.note{color:#555;font-size:.9rem}
.findings{background:#f5f8fc;border-left:4px solid #2c7fb8;padding:.4rem 1rem;margin:1rem 0}
.findings h2{border:none;margin:.3rem 0;font-size:1.1rem}.findings li{margin:.25rem 0}
.verdict h2{margin-top:1rem}table[data-headline] td{white-space:nowrap}
table[data-headline] tr[data-calibration] td{font-style:italic;background:#fafafa}
details{margin:.6rem 0}summary{cursor:pointer;color:#1f5a85}
.glossary dl{columns:2 28rem;column-gap:2.5rem}.glossary dt{font-weight:600;margin-top:.4rem;break-after:avoid}.glossary dd{margin-left:1.2rem;break-inside:avoid}
nav.toc{font-size:.92rem;margin:1rem 0}nav.toc ul{margin:.2rem 0}
.back{font-size:.9rem}
""" + "".join(f".left-{i} td:nth-child({i}),.left-{i} th:nth-child({i}){{text-align:left}}"
              for i in range(1, MAX_ALIGNED_COLUMNS + 1)) + "\n"


@dataclass
class Section:
    """One part of a page: an ``<h2>`` heading (none where ``title`` is empty) over HTML ``parts`` that the
    builder methods append; each returns the section, so calls chain."""

    title: str
    parts: list[str] = field(default_factory=list)
    anchor: str = ""  # the heading's id; empty: derived from the title when the page is rendered

    def text(self, text: str, cls: str = "") -> Section:
        """A paragraph of ``text`` (escaped), with CSS class ``cls`` where given."""
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")
        return self

    def subheading(self, title: str) -> Section:
        """An ``<h3>`` heading."""
        self.parts.append(f"<h3>{html.escape(title)}</h3>")
        return self

    def table(self, frame: pd.DataFrame, float_format: str | Callable[[float], str] | None = None, *,
              labels: bool = True, headline: str | None = None, order: str = "asc", calibration: Iterable[int] = (),
              fold: str = "", csv: str = "", note_html: str = "") -> Section:
        """``frame`` as a table in a sideways-scrolling box: numbers to three significant digits (or
        ``float_format``), headers in words (see :mod:`latentmap.report.tables`).

        ``headline``: the column (machine name) the rows are ranked by, ``order`` "asc" or "desc": the
        table is marked ``data-headline`` (its header as shown) for the browser test; ``calibration``: row
        positions of reference rows (real data), marked ``data-calibration`` and not ranked. ``fold``: the
        table folds into ``<details>`` under that summary (with its row count and a link to ``csv``, every row at
        full precision); ``note_html``: HTML beneath the table (such as links to the files holding its rows),
        inside the fold with the units' note.
        """
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r} instead")
        shown = display_frame(frame, float_format, labels)
        left = " ".join(f"left-{i}" for i in text_columns(shown))  # text left, numbers right
        table = shown.to_html(index=False, escape=True, border=0, classes=left or None)
        if headline is not None:
            if headline not in frame.columns:
                raise ValueError(f"headline column {headline!r} is not among the table's columns {list(frame.columns)}")
            label = column_label(headline) if labels else str(headline)
            table = table.replace("<table", f'<table data-headline="{html.escape(label)}" data-order="{order}"', 1)
        table = _mark_rows(table, calibration, "data-calibration")
        parts = [f'<div class="scroll">{table}</div>']
        notes = unit_notes(frame.columns) if labels else []
        if notes:
            parts.append(f'<p class="note units">{html.escape(" ".join(notes))}</p>')
        if note_html:
            parts.append(note_html)
        if fold:
            link = f' (<a href="{html.escape(csv)}">{html.escape(csv)}</a>)' if csv else ""
            rows = f"{len(frame)} row" + ("" if len(frame) == 1 else "s")
            parts = [details_html(f"{fold}: {rows}", parts, summary_tail_html=link)]
        self.parts.extend(parts)
        return self

    def image(self, src: str, caption: str = "", *, alt: str = "", grid: bool = False) -> Section:
        """A figure at its natural width (scrolling sideways where the page is narrower), with ``alt`` text
        (the caption where none is given); ``grid``: an image grid, scaled without smoothing where it is."""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        text = alt or caption or f"figure {src.rsplit('/', 1)[-1]}"
        cls = ' class="grid"' if grid else ""
        self.parts.append(f'<figure><div class="scroll"><img src="{html.escape(src)}" alt="{html.escape(text)}"'
                          f'{cls}></div>{cap}</figure>')
        return self

    def fold(self, summary: str, inner: Section | str) -> Section:
        """``inner`` (a section's parts, or HTML) folded into ``<details>`` under ``summary``."""
        body = inner if isinstance(inner, str) else "\n".join(inner.parts if not inner.title else [inner.render()])
        self.parts.append(details_html(summary, [body]))
        return self

    def link(self, href: str, text: str, note: str = "") -> Section:
        """A paragraph holding a link to ``href``, followed by ``note`` (plain text) where given."""
        tail = f" {html.escape(note)}" if note else ""
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a>{tail}</p>')
        return self

    def render(self) -> str:
        """The section's HTML: its heading (with ``anchor`` as id where set), then its parts."""
        if not self.title:
            return "\n".join(self.parts)
        ident = f' id="{html.escape(self.anchor)}"' if self.anchor else ""
        return f"<h2{ident}>{html.escape(self.title)}</h2>\n" + "\n".join(self.parts)


def _mark_rows(table: str, positions: Iterable[int], attribute: str) -> str:
    """``table`` (pandas HTML) with ``attribute`` on the body rows at ``positions``."""
    rows = set(positions)
    if not rows:
        return table
    head, sep, body = table.partition("<tbody>")
    position = iter(range(len(body)))
    body = re.sub(r"<tr>", lambda _m: f"<tr {attribute}>" if next(position) in rows else "<tr>", body)
    return head + sep + body


def slug(text: str) -> str:
    """A lowercase anchor id from heading text ("Relocation atlas (10000 ...)" -> "relocation-atlas-10000")."""
    words = re.findall(r"[a-z0-9]+", html.unescape(re.sub(r"<[^>]+>", "", text)).lower())
    return "-".join(words[:6]) or "section"


_HEADING = re.compile(r"<(h[23])([^>]*)>(.*?)</\1>", re.S)


def anchor_headings(body: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Give every h2/h3 in ``body`` a unique id; returns (body, [(tag, id, heading html)])."""
    used: set[str] = set()
    entries: list[tuple[str, str, str]] = []

    def replace(match: re.Match[str]) -> str:
        tag, attrs, inner = match.groups()
        found = re.search(r'\bid="([^"]*)"', attrs)
        ident = found.group(1) if found else slug(inner)
        base, k = ident, 2
        while ident in used:
            ident, k = f"{base}-{k}", k + 1
        used.add(ident)
        attrs = re.sub(r'\s*\bid="[^"]*"', "", attrs) + f' id="{ident}"'
        entries.append((tag, ident, re.sub(r"<[^>]+>", "", inner).strip()))
        return f"<{tag}{attrs}>{inner}</{tag}>"

    return _HEADING.sub(replace, body), entries


def toc_html(entries: Sequence[tuple[str, str, str]]) -> str:
    """Nested list of links: h3 entries under the h2 before them."""
    out, open_sub = ['<nav class="toc"><strong>Contents</strong><ul>'], False
    for i, (tag, ident, text) in enumerate(entries):
        if tag == "h3" and not open_sub and i:
            out[-1] = out[-1].removesuffix("</li>")
            out.append("<ul>")
            open_sub = True
        elif tag == "h2" and open_sub:
            out.append("</ul></li>")
            open_sub = False
        out.append(f'<li><a href="#{ident}">{text}</a></li>')
    out.append("</ul></li></ul></nav>" if open_sub else "</ul></nav>")
    return "".join(out)


def findings_html(findings: Iterable[str], more: Sequence[str] = ()) -> str:
    """The findings box; ``more``: further findings, folded under "All findings" inside it."""
    items = "".join(f"<li>{html.escape(s)}</li>" for s in findings if s)
    rest = "".join(f"<li>{html.escape(s)}</li>" for s in more if s)
    if rest:
        rest = f"<details><summary>More findings ({sum(1 for s in more if s)})</summary><ul>{rest}</ul></details>"
    if not items and not rest:
        return ""
    return f'<section class="findings" id="findings"><h2>Findings</h2><ul>{items}</ul>{rest}</section>'


def glossary_html(text: str) -> str:
    """The glossary entries (:mod:`latentmap.report.glossary`) of the terms ``text`` (a page's HTML) uses,
    as a section; empty where it uses none."""
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
    entries = used_terms(plain)
    if not entries:
        return ""
    items = "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(meaning)}</dd>" for term, meaning in entries)
    return f'<section class="glossary"><h2 id="glossary">Glossary</h2><dl>{items}</dl></section>'


def render_page(title: str, sections: list[Section], intro: str = "", *, findings: Iterable[str] = (),
                back: tuple[str, str] | None = None, toc: bool = True, verdict: Section | None = None,
                more_findings: Sequence[str] = (), glossary: bool = True) -> str:
    """The page: title, link back (``(href, text)``), findings (``more_findings`` folded beneath them), the
    ``verdict`` section (the table ranked by the page's headline measure), intro, table of contents,
    sections, and a glossary of the terms the page uses.

    The contents list every heading once there are at least two.
    """
    parts = ([f'<section class="verdict">{verdict.render()}</section>'] if verdict is not None else []) \
        + [s.render() for s in sections]
    body, entries = anchor_headings("\n".join(parts))
    top, sep, body = body.partition("</section>") if verdict is not None else ("", "", body)
    top += sep
    intro_html = f'<p class="lead">{html.escape(intro)}</p>' if intro else ""
    back_html = (f'<p class="back"><a href="{html.escape(back[0])}">← {html.escape(back[1])}</a></p>'
                 if back else "")
    head = findings_html(findings, more_findings)
    terms = glossary_html(head + top + intro_html + body) if glossary else ""
    if terms:
        entries.append(("h2", "glossary", "Glossary"))
    contents = toc_html(entries) if toc and len(entries) >= 2 else ""
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='generator' content='{GENERATOR}'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{back_html}<h1>{html.escape(title)}</h1>"
            f"{head}{top}{intro_html}\n{contents}\n{body}\n{terms}\n</body></html>\n")


def details_html(summary: str, parts: list[str], *, opened: bool = False, summary_tail_html: str = "") -> str:
    """A folded block: ``<details>`` whose one-line ``summary`` (text, escaped, followed by ``summary_tail_html``,
    such as a link) opens ``parts`` (HTML). A closed block takes one line of the page; its tables and images are
    laid out only when a reader opens it."""
    attr = " open" if opened else ""
    return (f"<details{attr}><summary>{html.escape(summary)}{summary_tail_html}</summary>" + "\n".join(parts)
            + "</details>")
