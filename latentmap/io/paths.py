"""Paths as outputs write them: the same text on every machine (relative, or a name), never this machine's folders."""

from __future__ import annotations

import os
from pathlib import Path

from latentmap.constants import IMAGE_SPEC_PREFIXES


def shown_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` as a report writes it, the same on every machine: as given when relative; relative to ``base``
    (the report folder) or else to the working folder when inside it; otherwise its last part only."""
    p = Path(str(path))
    if not p.is_absolute():
        return p.as_posix()
    roots = ([Path(base).resolve()] if base is not None else []) + [Path.cwd().resolve()]
    for root in roots:
        if p.resolve().is_relative_to(root):
            return p.resolve().relative_to(root).as_posix() or "."
    return p.name


def shown_spec(spec: object) -> str:
    """A data or image-set spec (``npy:PATH``, ``folder:PATH?crop=...``, a dataset name) with its path as
    :func:`shown_path` writes it."""
    text = str(spec)
    for prefix in IMAGE_SPEC_PREFIXES:
        if text.startswith(prefix):
            path, sep, query = text[len(prefix):].partition("?")
            return f"{prefix}{shown_path(path)}{sep}{query}"
    return text
