"""Atomic output folders: write into a temporary sibling, rename into place when complete.

An interrupted or failed run never leaves a half-written checkpoint, support set, map or
report, and a previous result at the same path stays intact until the new one is complete.

Every folder written with a ``kind`` carries a small marker file, :data:`MARKER_NAME`, so a
later run can tell its own outputs from a folder a user happens to point ``--out`` at:
a non-empty folder without the marker, or with a marker of another kind, is never replaced.

Temporary and backup folders are created exclusively, under unguessable names, and each carries an
ownership file, :data:`OWNER_NAME`, written exclusively when it is made: the process (id, start time,
host) and the random part of the folder's name. Only folders with a valid ownership file whose process
is gone are ever cleaned up; a user's folder that merely looks like one (``.NAME.tmp-1234-abcd``, an
older version's ``.NAME.old-PID``) is never touched.

The swap: the block fills ``.NAME.tmp-RANDOM``; the previous result (if any) is moved to
``.NAME.old-RANDOM/NAME``; ``.NAME.tmp-RANDOM`` is renamed to ``NAME``; its ownership file and the backup
folder are removed. A process killed in between leaves the previous result only in the backup; the next
:func:`check_output_path` or :func:`atomic_directory` for ``NAME`` moves it back, and removes what
processes that are no longer alive left behind (never what live ones are using).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentmap.io.leftovers import OWNER_NAME, recover  # noqa: F401  (re-exported)
from latentmap.io.leftovers import ACTIVE, identity, owned_folder, remove_owned

if TYPE_CHECKING:
    from latentmap.errors import ConfigError, OutputWriteError

PathInput = str | os.PathLike[str]
"""A path as callers give one: text or a path object."""
Inputs = PathInput | Iterable[PathInput | None] | None
"""The inputs of a command that its output must not touch: one path, or several (None and '' are skipped)."""

MARKER_NAME = ".latentmap-output.json"
"""File in every output folder latentmap writes with a ``kind``: {"kind", "latentmap_version", "created"}."""

OUTPUT_KINDS = ("checkpoint", "support-set", "map", "report")
"""The kinds the CLI writes; any other non-empty name is accepted too."""

PAUSE_ENV = "LATENTMAP_TEST_PAUSE_AT"
"""Test hook: ``between-renames`` (or ``after-renames``) makes :func:`atomic_directory` sleep between its two
renames (or after them, before its ownership file and the backup are removed)."""


def _err(message: str) -> ConfigError:
    from latentmap.errors import ConfigError

    return ConfigError(message)


def _write_error(exc: BaseException, target: Path, where: tuple[Path, ...]) -> OutputWriteError | None:
    """A disk-full, file-size-limit, read-only or permission failure while writing ``target``: one line."""
    from latentmap.errors import OutputWriteError

    return OutputWriteError.from_os_error(exc, target, where)


def read_output_marker(path: PathInput) -> dict[str, Any] | None:
    """The marker of the output folder ``path`` as a dict, or None when it has none (or it is unreadable)."""
    try:
        data = json.loads((Path(path) / MARKER_NAME).read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_output_marker(folder: PathInput, kind: str) -> Path:
    """Write the marker of an output of ``kind`` into ``folder``; returns the marker's path."""
    from latentmap.version import __version__

    marker = Path(folder) / MARKER_NAME
    marker.write_text(json.dumps({"kind": kind, "latentmap_version": __version__,
                                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
    return marker


def check_output_path(path: PathInput | None, kind: str | None, overwrite: bool, inputs: Inputs = ()) -> Path:
    """Check, before any work, that an output of ``kind`` may be written at ``path``; returns it as a Path.

    First restores a previous result left as ``.NAME.old-PID`` by a killed run and removes
    leftovers of dead processes. Then raises ``ConfigError`` (one line naming the folder) when
    the path is empty, ``.`` or ``..``; equals, contains or lies inside one of ``inputs``; is a
    file; is a non-empty folder without latentmap's marker, or with a marker of another kind;
    already holds an output of ``kind`` and ``overwrite`` is false; or its parent folder cannot
    be created or written. An empty existing folder is accepted.

    ``kind=None`` is the generic output of older callers: no marker checks, and with
    ``overwrite=False`` any existing folder is refused.
    """
    target = _validate_name(path)
    if kind is not None and (not isinstance(kind, str) or not kind or kind != kind.strip()):
        raise ValueError(f"output kind must be a non-empty name, got {kind!r}")
    recover(target)
    _check_inputs(target, inputs)
    _check_existing(target, kind, overwrite)
    _check_parent_writable(target)
    return target


@contextlib.contextmanager
def atomic_directory(path: PathInput | None, overwrite: bool | None = None, *, kind: str | None = None,
                     inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    Runs :func:`check_output_path` first, so a refused path is an error raised before any work
    is done. With a ``kind`` the result gets the marker file and ``overwrite`` defaults to False;
    without one (the generic output of older callers) it defaults to True and no marker is written.
    """
    if overwrite is None:
        overwrite = kind is None
    from latentmap.distributed import is_main

    if not is_main():  # torch.distributed: rank 0 alone writes; the others fill a scratch folder, then drop it
        with tempfile.TemporaryDirectory(prefix="latentmap-rank-") as scratch:
            yield Path(scratch)
        return
    target = check_output_path(path, kind, overwrite, inputs)
    created = [p for p in (target.parent, *target.parent.parents) if not os.path.lexists(p)]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = owned_folder(target, "tmp")
    except BaseException:
        _remove_empty(created)
        raise
    held = [identity(tmp)]
    ACTIVE.update(held)
    backup = None
    try:
        try:
            yield tmp
            if kind is not None:
                write_output_marker(tmp, kind)
            _relax_permissions(tmp)
            _check_existing(target, kind, overwrite)  # something may have appeared there meanwhile
        except BaseException as exc:
            remove_owned(tmp)
            _remove_empty(created)
            converted = _write_error(exc, target, (tmp, target.parent))
            if converted is not None:
                raise converted from exc
            raise
        if os.path.lexists(target):
            try:
                backup = owned_folder(target, "old")
                held.append(identity(backup))
                ACTIVE.update(held)
                target.rename(backup / target.name)
            except BaseException as exc:
                remove_owned(tmp)
                if backup is not None:
                    remove_owned(backup)
                converted = _write_error(exc, target, (tmp, target.parent))
                if converted is not None:
                    raise converted from exc
                raise
        try:
            _pause_for_tests("between-renames")
            tmp.rename(target)
        except BaseException as exc:
            if backup is not None:
                (backup / target.name).rename(target)
                remove_owned(backup)
            remove_owned(tmp)
            converted = _write_error(exc, target, (tmp, target.parent))
            if converted is not None:
                raise converted from exc
            raise
        _pause_for_tests("after-renames")
        with contextlib.suppress(FileNotFoundError):
            (target / OWNER_NAME).unlink()
        if backup is not None:
            remove_owned(backup)
    finally:
        ACTIVE.difference_update(held)


def _validate_name(path: PathInput | None) -> Path:
    raw = os.fsdecode(os.fspath(path)) if path is not None else ""
    if not raw.strip():
        raise _err(f"'{raw}' cannot be an output folder (empty path); choose another --out")
    separators = os.sep + (os.altsep or "")
    last = re.split(f"[{re.escape(separators)}]", raw.rstrip(separators))[-1]
    if last in ("", ".", ".."):
        raise _err(f"'{raw}' cannot be an output folder (it names no folder of its own); choose another --out")
    return Path(raw)


def _check_existing(target: Path, kind: str | None, overwrite: bool) -> None:
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise _err(f"'{target}' exists and is not a folder; choose another --out")
    if kind is None:
        if not overwrite:
            raise _err(f"'{target}' already exists; pass --overwrite to replace it")
        return
    try:
        with os.scandir(target) as entries:
            empty = not any(entries)
    except OSError as exc:
        raise _err(f"'{target}' cannot be read ({exc.strerror or exc}); choose another --out") from exc
    if empty:
        return
    marker = read_output_marker(target)
    if marker is None:
        raise _err(f"'{target}' exists and was not written by latentmap; choose another --out")
    if marker["kind"] != kind:
        raise _err(f"'{target}' holds a latentmap {marker['kind']}, not a {kind}; choose another --out")
    if not overwrite:
        raise _err(f"'{target}' already holds a latentmap {kind}; pass --overwrite to replace it")


def _check_inputs(target: Path, inputs: Inputs) -> None:
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    out = Path(os.path.realpath(target))
    for item in inputs or ():
        if item is None or (isinstance(item, str) and not item):
            continue
        inp = Path(os.path.realpath(item))
        if out == inp:
            raise _err(f"'{target}' is also an input of this command; choose another --out")
        if out in inp.parents:
            raise _err(f"'{target}' contains the input '{item}'; choose another --out")
        if inp in out.parents:
            raise _err(f"'{target}' is inside the input '{item}'; choose another --out")


def _check_parent_writable(target: Path) -> None:
    parent = Path(os.path.abspath(target)).parent
    existing = parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _err(f"cannot create '{target}': '{existing}' is not a folder; choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=existing)  # exclusive, random
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _err(f"cannot write to '{existing}' ({exc.strerror or exc}); choose another --out") from exc


def _remove_empty(folders: Iterable[Path]) -> None:
    """Remove the parent folders a failed run created (deepest first), if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _pause_for_tests(where: str) -> None:
    if os.environ.get(PAUSE_ENV) == where:
        print(f"{PAUSE_ENV}={where}: process {os.getpid()} paused", file=sys.stderr, flush=True)
        time.sleep(600)


def _relax_permissions(folder: Path) -> None:
    """mkdtemp creates 0700 folders; give the result the permissions of a normal mkdir/open."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


def atomic_write_bytes(path: PathInput, data: bytes) -> None:
    """Write a single file atomically (temporary file in the same folder, then rename); rank 0 alone writes."""
    from latentmap.distributed import is_main

    if not is_main():
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)  # exclusive, random: ours alone
    except OSError as exc:
        converted = _write_error(exc, target, ())
        if converted is not None:
            raise converted from exc
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; the result gets a normal file's permissions
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        converted = _write_error(exc, target, (target.parent,))
        if converted is not None:
            raise converted from exc
        raise


RUNS_FOLDER = "runs"  # default home of every command's output (git-ignored)


def new_run_folder(stem: str, root: PathInput = RUNS_FOLDER) -> Path:
    """A fresh ``runs/STEM-YYYYmmdd-HHMMSS`` path (suffixed -2, -3, ... when taken); nothing is created."""
    base = Path(root) / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, k = base, 1
    while candidate.exists() or any(candidate.parent.glob(f".{candidate.name}.*")):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate
