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
import secrets
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

MARKER_NAME = ".latentmap-output.json"
"""File in every output folder latentmap writes with a ``kind``: {"kind", "latentmap_version", "created"}."""

OUTPUT_KINDS = ("checkpoint", "support-set", "map", "report")
"""The kinds the CLI writes; any other non-empty name is accepted too."""

PAUSE_ENV = "LATENTMAP_TEST_PAUSE_AT"
"""Test hook: ``between-renames`` (or ``after-renames``) makes :func:`atomic_directory` sleep between its two
renames (or after them, before its ownership file and the backup are removed)."""

OWNER_NAME = ".latentmap-owner.json"
"""File in every temporary and backup folder latentmap makes: {"role", "name", "token", "pid", "start", "host",
"created"}; a folder without a valid one is never removed."""

_ACTIVE: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the temporary and backup folders in use here
_HOST = socket.gethostname()


def _err(message: str):
    from latentmap.errors import ConfigError

    return ConfigError(message)


def read_output_marker(path) -> dict | None:
    """The marker of the output folder ``path`` as a dict, or None when it has none (or it is unreadable)."""
    try:
        data = json.loads((Path(path) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_output_marker(folder, kind: str) -> Path:
    """Write the marker of an output of ``kind`` into ``folder``; returns the marker's path."""
    from latentmap import __version__

    marker = Path(folder) / MARKER_NAME
    marker.write_text(json.dumps({"kind": kind, "latentmap_version": __version__,
                                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
    return marker


def check_output_path(path, kind: str | None, overwrite: bool, inputs=()) -> Path:
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
def atomic_directory(path, overwrite: bool | None = None, *, kind: str | None = None, inputs=()):
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
        tmp = _owned_folder(target, "tmp")
    except BaseException:
        _remove_empty(created)
        raise
    held = [_identity(tmp)]
    _ACTIVE.update(held)
    backup = None
    try:
        try:
            yield tmp
            if kind is not None:
                write_output_marker(tmp, kind)
            _relax_permissions(tmp)
            _check_existing(target, kind, overwrite)  # something may have appeared there meanwhile
        except BaseException:
            _remove_owned(tmp)
            _remove_empty(created)
            raise
        if os.path.lexists(target):
            try:
                backup = _owned_folder(target, "old")
                held.append(_identity(backup))
                _ACTIVE.update(held)
                target.rename(backup / target.name)
            except BaseException:
                _remove_owned(tmp)
                if backup is not None:
                    _remove_owned(backup)
                raise
        try:
            _pause_for_tests("between-renames")
            tmp.rename(target)
        except BaseException:
            if backup is not None:
                (backup / target.name).rename(target)
                _remove_owned(backup)
            _remove_owned(tmp)
            raise
        _pause_for_tests("after-renames")
        with contextlib.suppress(FileNotFoundError):
            (target / OWNER_NAME).unlink()
        if backup is not None:
            _remove_owned(backup)
    finally:
        _ACTIVE.difference_update(held)


def recover(path) -> None:
    """Clean up after killed runs that wrote ``path``.

    Only folders named ``.NAME.tmp-*`` / ``.NAME.old-*`` that hold a valid ownership file of a process that
    is no longer alive count. If ``path`` is missing and such a backup holds the previous result, it is
    moved back (the newest, when there are several); then those folders are removed, and the ownership
    file a killed run may have left inside ``path`` itself. Anything else is never touched.
    """
    target = Path(path)
    parent, name = target.parent, target.name
    if not name or name in (".", ".."):
        return
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    stale = []
    for entry in entries:
        role = _leftover_role(entry.name, name)
        if role is None:
            continue
        owner = _read_owner(Path(entry.path), role, name)
        if owner is not None and not _owner_alive(owner, Path(entry.path)):
            stale.append((owner, Path(entry.path)))
    backups = [(owner, folder) for owner, folder in stale
               if owner["role"] == "old" and os.path.isdir(folder / name) and not os.path.islink(folder / name)]
    if backups and not os.path.lexists(target):
        _, newest = max(backups, key=lambda item: (str(item[0].get("created", "")), _ctime(item[1])))
        with contextlib.suppress(OSError):
            (newest / name).rename(target)
    for _, folder in stale:
        _remove_owned(folder)
    owner = _read_owner(target, "tmp", name, inside_output=True)
    if owner is not None and not _owner_alive(owner, target):
        with contextlib.suppress(FileNotFoundError):
            (target / OWNER_NAME).unlink()


def _leftover_role(entry: str, name: str) -> str | None:
    for role in ("tmp", "old"):
        prefix = f".{name}.{role}-"
        if entry.startswith(prefix) and len(entry) > len(prefix):
            return role
    return None


def _owned_folder(target: Path, role: str) -> Path:
    """Create ``.NAME.ROLE-RANDOM`` beside ``target`` exclusively, with its ownership file; returns it."""
    for _ in range(100):
        token = secrets.token_hex(8)
        folder = target.parent / f".{target.name}.{role}-{token}"
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        try:
            owner = {"role": role, "name": target.name, "token": token, "pid": os.getpid(),
                     "start": _start_ticks(os.getpid()), "host": _HOST,
                     "created": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
            fd = os.open(folder / OWNER_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(owner) + "\n")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder
    raise FileExistsError(f"could not create a temporary folder beside '{target}'")


def _read_owner(folder: Path, role: str, name: str, inside_output: bool = False) -> dict | None:
    """The ownership record of ``folder`` if it is a real folder holding a valid one for ``role`` and ``name``."""
    try:
        if not os.path.isdir(folder) or os.path.islink(folder):
            return None
        file = folder / OWNER_NAME
        if not os.path.isfile(file) or os.path.islink(file):
            return None
        owner = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or owner.get("role") != role or owner.get("name") != name:
        return None
    token = owner.get("token")
    if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{16}", token):
        return None
    if not inside_output and folder.name != f".{name}.{role}-{token}":
        return None
    if not isinstance(owner.get("pid"), int) or isinstance(owner.get("pid"), bool):
        return None
    return owner


def _remove_owned(folder: Path) -> None:
    """Remove a temporary or backup folder this toolkit made (never a symlink)."""
    if os.path.islink(folder):
        return
    shutil.rmtree(folder, ignore_errors=True)


def _validate_name(path) -> Path:
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


def _check_inputs(target: Path, inputs) -> None:
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


def _owner_alive(owner: dict, path: Path) -> bool:
    """Whether the process recorded in ``owner`` may still be using ``path`` (when in doubt: yes)."""
    if owner.get("host") != _HOST:
        return True  # another machine's (a shared folder): not ours to judge
    pid, start = owner["pid"], owner.get("start")
    if pid <= 0:
        return False
    if pid == os.getpid():  # ours only if this very process made it (a container's PID 1 repeats)
        if start is not None and start != _start_ticks(pid):
            return False
        try:
            return _identity(path) in _ACTIVE
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        pass
    stat = _proc_stat(pid)
    if stat is not None:
        state, ticks = stat
        if state in ("Z", "X"):  # killed, not yet reaped: can do nothing any more
            return False
        if start is not None and ticks is not None and ticks != start:
            return False  # the PID now belongs to another process
    return True


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _proc_stat(pid: int):
    """(state, start time in clock ticks since boot) from Linux's /proc, or None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _ctime(path: Path) -> float:
    try:
        return os.lstat(path).st_ctime
    except OSError:
        return float("-inf")


def _identity(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def _remove_empty(folders) -> None:
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


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a single file atomically (temporary file in the same folder, then rename); rank 0 alone writes."""
    from latentmap.distributed import is_main

    if not is_main():
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)  # exclusive, random: ours alone
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; the result gets a normal file's permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


RUNS_FOLDER = "runs"  # default home of every command's output (git-ignored)


def new_run_folder(stem: str, root=RUNS_FOLDER) -> Path:
    """A fresh ``runs/STEM-YYYYmmdd-HHMMSS`` path (suffixed -2, -3, ... when taken); nothing is created."""
    base = Path(root) / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, k = base, 1
    while candidate.exists() or any(candidate.parent.glob(f".{candidate.name}.*")):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate
