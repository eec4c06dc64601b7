"""A small, dependency-free HTML page builder for reports.

A page opens with its title, its findings (a few sentences with numbers), an intro line and a
table of contents whose entries link to every ``<h2>``/``<h3>`` heading (ids are added where a
heading has none); tables scroll sideways inside their own box instead of widening the page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd

from latentmap.io.paths import shown_path, shown_spec  # noqa: F401 (re-exported for the renderers)
from latentmap.report.tables import MAX_ALIGNED_COLUMNS, display_frame, text_columns, unit_notes

GENERATOR = "latentmap report"
STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
p,li{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%;margin:.8rem 0}
table{border-collapse:collapse;font-size:.88rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3;vertical-align:bottom}
img{image-rendering:pixelated;max-width:100%;height:auto}
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}.note{color:#555;font-size:.9rem}
.findings{background:#f5f8fc;border-left:4px solid #2c7fb8;padding:.4rem 1rem;margin:1rem 0}
.findings h2{border:none;margin:.3rem 0;font-size:1.1rem}.findings li{margin:.25rem 0}
nav.toc{font-size:.92rem;margin:1rem 0}nav.toc ul{margin:.2rem 0}
.back{font-size:.9rem}
""" + "".join(f".left-{i} td:nth-child({i}),.left-{i} th:nth-child({i}){{text-align:left}}"
              for i in range(1, MAX_ALIGNED_COLUMNS + 1)) + "\n"


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)
    anchor: str = ""  # the heading's id; empty: derived from the title when the page is rendered

    def text(self, text: str, cls: str = "") -> Section:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")
        return self

    def subheading(self, title: str) -> Section:
        self.parts.append(f"<h3>{html.escape(title)}</h3>")
        return self

    def table(self, frame: pd.DataFrame, float_format=None, *, labels: bool = True) -> Section:
        """``frame`` as a table in a sideways-scrolling box: numbers to three significant digits (or
        ``float_format``), headers in words (see :mod:`latentmap.report.tables`)."""
        shown = display_frame(frame, float_format, labels)
        left = " ".join(f"left-{i}" for i in text_columns(shown))  # text left, numbers right
        table = shown.to_html(index=False, escape=True, border=0, classes=left or None)
        self.parts.append(f'<div class="scroll">{table}</div>')
        notes = unit_notes(frame.columns) if labels else []
        if notes:
            self.parts.append(f'<p class="note units">{html.escape(" ".join(notes))}</p>')
        return self

    def image(self, src: str, caption: str = "") -> Section:
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">{cap}</figure>')
        return self

    def link(self, href: str, text: str, note: str = "") -> Section:
        tail = f" {html.escape(note)}" if note else ""
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a>{tail}</p>')
        return self

    def render(self) -> str:
        if not self.title:
            return "\n".join(self.parts)
        ident = f' id="{html.escape(self.anchor)}"' if self.anchor else ""
        return f"<h2{ident}>{html.escape(self.title)}</h2>\n" + "\n".join(self.parts)


def slug(text: str) -> str:
    """A lowercase anchor id from heading text ("Relocation atlas (10000 ...)" -> "relocation-atlas-10000")."""
    words = re.findall(r"[a-z0-9]+", html.unescape(re.sub(r"<[^>]+>", "", text)).lower())
    return "-".join(words[:6]) or "section"


_HEADING = re.compile(r"<(h[23])([^>]*)>(.*?)</\1>", re.S)


def anchor_headings(body: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Give every h2/h3 in ``body`` a unique id; returns (body, [(tag, id, heading html)])."""
    used: set[str] = set()
    entries = []

    def replace(match):
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


def toc_html(entries) -> str:
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


def findings_html(findings) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in findings if s)
    return f'<section class="findings" id="findings"><h2>Findings</h2><ul>{items}</ul></section>' if items else ""


def render_page(title: str, sections: list[Section], intro: str = "", *, findings=(), back: tuple | None = None,
                toc: bool = True) -> str:
    """The page: title, link back (``(href, text)``), findings, intro, table of contents, sections.

    The contents list every heading once there are at least two.
    """
    body, entries = anchor_headings("\n".join(s.render() for s in sections))
    intro_html = f'<p class="lead">{html.escape(intro)}</p>' if intro else ""
    back_html = (f'<p class="back"><a href="{html.escape(back[0])}">← {html.escape(back[1])}</a></p>'
                 if back else "")
    contents = toc_html(entries) if toc and len(entries) >= 2 else ""
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='generator' content='{GENERATOR}'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{back_html}<h1>{html.escape(title)}</h1>"
            f"{findings_html(findings)}{intro_html}\n{contents}\n{body}\n</body></html>\n")


# --------------------------------------------------------------------------- folded tables, glossaries, verdict pages

def details_html(summary: str, parts: list[str], *, opened: bool = False) -> str:
    """A folded block: ``<details>`` whose one-line ``summary`` (text, escaped) opens ``parts`` (HTML). A closed
    block takes one line of the page; its tables and images are laid out only when a reader opens it."""
    attr = " open" if opened else ""
    return f"<details{attr}><summary>{html.escape(summary)}</summary>\n" + "\n".join(parts) + "\n</details>"


def fold_table(section: Section, summary: str, frame: pd.DataFrame, note_html: str = "", **table_options) -> Section:
    """Append ``frame`` to ``section`` as :meth:`Section.table` renders it, folded behind ``summary`` (with
    ``note_html``, e.g. the link to the CSV holding the same rows, inside the fold)."""
    inner = Section("").table(frame, **table_options)
    section.parts.append(details_html(summary, inner.parts + ([note_html] if note_html else [])))
    return section


def glossary_html(terms: dict) -> str:
    """A short definition list, term -> one or two sentences (text, escaped)."""
    items = "".join(f"<dt><strong>{html.escape(t)}</strong></dt><dd>{html.escape(d)}</dd>" for t, d in terms.items())
    return f'<dl class="glossary">{items}</dl>'


def render_verdict_page(title: str, verdict: Section, sections: list[Section], *, findings=(), intro: str = "",
                        back: tuple | None = None) -> str:
    """:func:`render_page` with ``verdict`` (a short section: the ranked table) between the findings and the table
    of contents, so that the page's answer sits in its first screen; the contents list the other sections."""
    body, entries = anchor_headings("\n".join(s.render() for s in sections))
    contents = Section("", [toc_html(entries)] if len(entries) >= 2 else [])
    return render_page(title, [verdict, contents, Section("", [body])], intro, findings=findings, back=back, toc=False)
