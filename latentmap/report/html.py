"""A small, dependency-free HTML page builder for reports."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{image-rendering:pixelated;max-width:100%}
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}.note{color:#555;font-size:.9rem}
"""


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, text: str, cls: str = "") -> "Section":
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")
        return self

    def table(self, frame: pd.DataFrame, float_format: str = "{:.5f}") -> "Section":
        formatted = frame.copy()
        for col in formatted.columns:
            if pd.api.types.is_float_dtype(formatted[col]):
                formatted[col] = formatted[col].map(lambda v: "" if pd.isna(v) else float_format.format(v))
        self.parts.append(formatted.to_html(index=False, escape=True, border=0))
        return self

    def image(self, src: str, caption: str = "") -> "Section":
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">{cap}</figure>')
        return self

    def render(self) -> str:
        return f"<h2>{html.escape(self.title)}</h2>\n" + "\n".join(self.parts)


def render_page(title: str, sections: list[Section], intro: str = "") -> str:
    body = "\n".join(s.render() for s in sections)
    intro_html = f"<p>{html.escape(intro)}</p>" if intro else ""
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro_html}\n{body}\n</body></html>\n")
