"""The one rule that turns a name (a model's, an estimator's, a generator's) into part of a file name.

Names come from users and from configs (a checkpoint's ``name``, a pickle's stem, an estimator spec),
so a name such as ``../../evil`` must never make a command write outside its output folder. Every
name that reaches the file system goes through :func:`slug`:

- letters and digits (any script), ``-``, ``_`` and ``.`` are kept, so the names the toolkit ships
  (``fmnist-vae-a``, ``soft-piecewise-16``) stay as they are;
- whitespace becomes ``_`` and every other run of characters (``/``, ``\\``, ``:``, ``=``, NUL,
  control characters, ...) becomes one ``-``;
- leading and trailing ``.``, ``-`` and ``_`` are dropped (no hidden files, no ``.`` or ``..``,
  nothing that reads as a command-line option);
- an empty result becomes ``default``, a Windows device name (``CON``, ``nul``, ``com1``...) gets
  a trailing ``_``;
- a result longer than :data:`MAX_BYTES` bytes (UTF-8) is cut and ends with ``-`` and 8 hex digits
  of the full name's SHA-256, so long names that differ only at the end stay apart.

:func:`unique_slugs` also keeps distinct names apart when their slugs coincide (``a b`` and ``a_b``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Hashable, Iterable

MAX_BYTES = 96
"""Longest slug in UTF-8 bytes: two of them and a suffix stay well below the usual 255-byte limit."""

_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_EDGES = ".-_"


def _keep(char: str) -> bool:
    return char in "-_." or (char.isalnum() and unicodedata.category(char)[0] in "LN")


def slug(name: object, default: str = "unnamed") -> str:
    """``name`` as a safe part of a file name (see the module docstring); ``default`` when nothing is left."""
    text = unicodedata.normalize("NFC", str(name))
    out: list[str] = []
    pending = ""
    for char in text:
        if _keep(char):
            if pending and out:
                out.append(pending)
            pending = ""
            out.append(char)
        elif char.isspace():
            pending = "_" if pending != "-" else pending
        else:
            pending = "-"
    result = "".join(out).strip(_EDGES)
    result = re.sub(r"\.{2,}", ".", result)  # no '..' anywhere
    if not result:
        result = default
    if result.split(".", 1)[0].lower() in _WINDOWS_DEVICES:
        result += "_"
    if len(result.encode("utf-8")) > MAX_BYTES:
        digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cut = result.encode("utf-8")[:MAX_BYTES - 9].decode("utf-8", "ignore").rstrip(_EDGES)
        result = f"{cut}-{digest}"
    return result


def unique_slugs(names: Iterable[Hashable], default: str = "unnamed") -> dict[Hashable, str]:
    """{name: slug} for distinct ``names``, a slug shared by several names suffixed ``-2``, ``-3``, ... in order."""
    taken: dict[str, int] = {}
    result: dict[Hashable, str] = {}
    for name in dict.fromkeys(names):
        base = slug(name, default)
        candidate, k = base, 1
        while candidate.lower() in taken:
            k += 1
            candidate = f"{base}-{k}"
        taken[candidate.lower()] = 1
        result[name] = candidate
    return result
