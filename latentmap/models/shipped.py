"""The reference checkpoints and support sets that ship with latentmap, found from anywhere.

In a clone (or an editable install) they are the folders ``checkpoints/`` and ``support_sets/``
at the repository root. An installed wheel carries the same folders as package data of the
data-only package ``latentmap_data`` (``site-packages/latentmap_data/checkpoints/...``), mapped
from the repository root by ``setup.cfg``. Either way ``checkpoints/`` and ``support_sets/`` sit
side by side under :func:`shipped_root`, so code that looks for the support sets beside the
checkpoints keeps working.

This module imports nothing heavy: it only looks at folders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TypeVar

from latentmap.errors import CheckpointError
from latentmap.io.model_record import SHIPPED_PREFIX  # a shipped model only, never a working folder's

CHECKPOINTS_DIR = "checkpoints"
SUPPORT_SETS_DIR = "support_sets"
DATA_PACKAGE = "latentmap_data"
_CHECKPOINT_FILE = "config.json"
_SUPPORT_SET_FILE = "manifest.json"
# files that mark a folder as the root of a latentmap source tree (not merely some folder
# that happens to hold a "checkpoints" directory)
_CLONE_MARKERS = ("setup.cfg", "pyproject.toml")

SpecT = TypeVar("SpecT")


def _package_parent() -> Path:
    """The folder holding the ``latentmap`` package (this file is latentmap/models/shipped.py)."""
    return Path(__file__).resolve().parents[2]


def _clone_root() -> Path | None:
    """The repository root when latentmap runs from a clone or an editable install."""
    root = _package_parent()
    if (root / CHECKPOINTS_DIR).is_dir() and any((root / marker).is_file() for marker in _CLONE_MARKERS):
        return root
    return None


def _installed_root() -> Path | None:
    """``latentmap_data`` of an installed wheel: beside ``latentmap`` in site-packages, else on sys.path."""
    candidates = [_package_parent() / DATA_PACKAGE]
    try:
        spec = importlib.util.find_spec(DATA_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        candidates += [Path(p) for p in (spec.submodule_search_locations or ())]
    for candidate in candidates:
        if (candidate / CHECKPOINTS_DIR).is_dir():
            return candidate
    return None


def shipped_root() -> Path:
    """The folder that holds ``checkpoints/`` and ``support_sets/``: the clone's root when running
    from a clone or an editable install, else the installed package data."""
    root = _clone_root() or _installed_root()
    if root is None:
        raise CheckpointError(
            f"the shipped checkpoints are not installed: no '{CHECKPOINTS_DIR}' folder beside the latentmap "
            f"package ({_package_parent()}) and no '{DATA_PACKAGE}' package; reinstall latentmap"
        )
    return root


def _shipped(subfolder: str, marker: str) -> dict[str, Path]:
    """Name -> folder of every shipped ``subfolder/NAME`` holding ``marker``; {} when nothing is installed."""
    try:
        folder = shipped_root() / subfolder
    except CheckpointError:
        return {}
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and (p / marker).is_file()}


def shipped_checkpoints() -> dict[str, Path]:
    """Name -> folder of every shipped checkpoint (folders of ``checkpoints/`` with config.json)."""
    return _shipped(CHECKPOINTS_DIR, _CHECKPOINT_FILE)


def shipped_support_sets() -> dict[str, Path]:
    """Name -> folder of every shipped support set (folders of ``support_sets/`` with manifest.json)."""
    return _shipped(SUPPORT_SETS_DIR, _SUPPORT_SET_FILE)


def shipped_checkpoint(name: str) -> Path:
    """The folder of the shipped model ``name``; a CheckpointError naming the shipped ones if there is none."""
    folder = shipped_checkpoints().get(name)
    if folder is None:
        raise CheckpointError(f"no shipped model is called '{name}'; shipped: "
                              f"{', '.join(shipped_checkpoints()) or 'none installed'}")
    return folder


def shipped_name(spec: object) -> str | None:
    """The shipped model a spec loads: ``shipped:NAME``, a shipped name that is no existing path, or the path of
    a shipped model's own folder; None for anything else."""
    text = str(spec)
    if text.startswith(SHIPPED_PREFIX):
        return text[len(SHIPPED_PREFIX):]
    shipped = shipped_checkpoints()
    if not text or not Path(text).exists():
        return text if text in shipped else None
    here = Path(text).resolve()
    return next((name for name, folder in shipped.items() if folder.resolve() == here), None)


def resolve_model_spec(spec: SpecT) -> SpecT | str:
    """A shipped model's name (``fmnist-vae-a``, or ``shipped:fmnist-vae-a``) -> its folder, as a string.

    A spec that names an existing path wins over a bare shipped name (a folder ``fmnist-vae-a`` in the
    working directory is that folder); ``shipped:NAME`` is only ever the shipped model. Anything else,
    including model objects and other specs (``py:...``, pickles, missing paths), is returned unchanged.
    """
    if not isinstance(spec, (str, Path)):
        return spec
    text = str(spec)
    if text.startswith(SHIPPED_PREFIX):
        return str(shipped_checkpoint(text[len(SHIPPED_PREFIX):]))
    if not text or Path(text).exists():
        return spec
    folder = shipped_checkpoints().get(text)
    return str(folder) if folder is not None else spec
