"""Every input a command will read, as real paths, resolved before its output is checked.

A command's inputs come in many forms: checkpoint folders, shipped model and support-set names,
``npy:PATH`` and ``folder:PATH?...`` image specs, ``--data-dir``, ``--exclude`` files, LPIPS weights,
map and support-set folders, and the paths those outputs record (a map's models, an inverter
checkpoint's generator pickle, the dataset spec a model was trained on). :func:`input_paths` turns
all of them into the files and folders they name, so :func:`latentmap.io.atomic.check_output_path`
can refuse an ``--out`` that equals, contains or lies inside any of them, whatever the form it was
given in. :func:`check_not_shipped` refuses writing into the folders of the shipped checkpoints and
support sets.

Nothing here imports torch.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latentmap.constants import IMAGE_SPEC_PREFIXES

CODE_SPEC_PREFIX = "py:"
SHIPPED_WRITES_ENV = "LATENTMAP_WRITE_SHIPPED"
"""Set to 1 to let a command write into the shipped checkpoints/ or support_sets/ (how they are regenerated)."""

INPUT_PARAMS = frozenset({
    "model_spec", "source", "target", "support_set", "dataset", "data_dir", "exclude", "map_dir", "models_opt",
    "more_models", "model_specs", "for_models", "checkpoints", "generators", "models", "reference", "lpips",
    "anchor_model",
})
"""Names of the command parameters whose values a command reads: :func:`latentmap.cli.options.prepare_output`
adds their values to the inputs a command names itself (``tests/project/test_outputs.py`` checks every parameter of
every command that writes an output is either here or known not to be read)."""

# outputs record the inputs they were made from: file name -> keys of each recorded path or spec
_RECORDED = {
    "map.json": (("source", "path"), ("target", "path"), ("fit_source", "path"), ("fit_source", "name")),
    "config.json": (("generator", "source"), ("dataset",)),
    "manifest.json": (("model", "source"), ("dataset", "spec")),
}
_MAX_DEPTH = 3  # a map records a checkpoint, which records a generator pickle


def input_paths(specs: Any, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The real (symlink-free, absolute) paths of every input named by ``specs`` and ``data_dir``.

    Each spec may be a path, a shipped model or support-set name, an image spec (``npy:PATH``,
    ``folder:PATH?...``), a dataset name (which reads from ``data_dir``), a ``py:`` spec (no file of
    its own) or None. Paths that do not exist are left out: there is nothing there to lose, and the
    command refuses them itself. Outputs (maps, checkpoints, support sets) add the inputs they record.
    """
    found: list[Path] = []
    for spec in _flatten(specs):
        _add_spec(spec, found, None, 0)
    if data_dir:
        _add_path(Path(os.fspath(data_dir)).expanduser(), found, 0)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _flatten(specs: Any) -> Iterator[Any]:
    if specs is None or isinstance(specs, (str, bytes, os.PathLike)):
        specs = [specs]
    for spec in specs:
        if isinstance(spec, (list, tuple, set, frozenset)):
            yield from _flatten(list(spec))
        elif spec is not None:
            yield spec


def _add_spec(spec: Any, found: list[Path], base: Path | None, depth: int) -> None:
    if not isinstance(spec, (str, os.PathLike)):
        return  # a model object, a number: nothing on disk
    text = os.fspath(spec)
    if not isinstance(text, str) or not text or "\0" in text or text.startswith(CODE_SPEC_PREFIX):
        return
    if text.startswith(IMAGE_SPEC_PREFIXES):
        text = text.split(":", 1)[1].split("?", 1)[0]
        if not text:
            return
    candidates = [Path(text).expanduser()]
    if base is not None and not candidates[0].is_absolute():  # recorded relative to the output that records it
        candidates.insert(0, Path(os.path.normpath(base / candidates[0])))
    hit = False
    for path in candidates:
        if os.path.lexists(path):
            _add_path(path, found, depth)
            hit = True
    if hit:
        return
    for folder in _shipped_folders(text.split("?", 1)[0]):
        _add_path(folder, found, depth)
    if depth == 0 and "," in text:  # --models A,B
        for part in text.split(","):
            if part.strip():
                _add_spec(part.strip(), found, base, depth)
    elif depth == 0 and glob.has_magic(text):  # --models 'checkpoints/*'
        for match in glob.glob(os.path.expanduser(text)):
            _add_path(Path(match), found, depth)


def _add_path(path: Path, found: list[Path], depth: int) -> None:
    found.append(Path(os.path.realpath(path)))
    if depth >= _MAX_DEPTH or not path.is_dir():
        return
    for name, keys in _RECORDED.items():
        for value in _recorded_values(path / name, keys):
            _add_spec(value, found, path, depth + 1)


def _recorded_values(file: Path, keys: tuple[tuple[str, ...], ...]) -> list[str]:
    from latentmap.io.checkpoint import read_json_object

    try:
        data = read_json_object(file)  # the one safe reader: malformed or too deeply nested is a CheckpointError
    except OSError:  # missing, unreadable or malformed (CheckpointError is an OSError): nothing recorded to follow
        return []
    values = []
    for key in keys:
        value: Any = data
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            values.append(value)
    return values


def _shipped_folders(name: str) -> list[Path]:
    """The shipped checkpoint and support set called ``name`` (a plain name, never a path)."""
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        return []
    from latentmap.models.shipped import shipped_checkpoints, shipped_support_sets

    return [folder for table in (shipped_checkpoints(), shipped_support_sets()) for key, folder in table.items()
            if key == name]


def shipped_folders() -> list[Path]:
    """The real paths of the folders that hold the shipped checkpoints and support sets (those that exist)."""
    from latentmap.errors import CheckpointError
    from latentmap.models.shipped import CHECKPOINTS_DIR, SUPPORT_SETS_DIR, shipped_root

    try:
        root = shipped_root()
    except CheckpointError:
        return []
    return [Path(os.path.realpath(root / sub)) for sub in (CHECKPOINTS_DIR, SUPPORT_SETS_DIR) if (root / sub).is_dir()]


def check_not_shipped(target: str | os.PathLike[str]) -> None:
    """Refuse an output at, inside, or containing the shipped checkpoints or support sets (unless
    LATENTMAP_WRITE_SHIPPED=1)."""
    if os.environ.get(SHIPPED_WRITES_ENV) == "1":
        return
    from latentmap.errors import ConfigError

    out = Path(os.path.realpath(os.fspath(target)))
    for folder in shipped_folders():
        if out == folder or folder in out.parents or out in folder.parents:
            where = "contains" if out in folder.parents else "is inside"
            raise ConfigError(f"'{os.fspath(target)}' {where} latentmap's shipped models ('{folder}'), which no "
                              f"command replaces; choose another --out")
