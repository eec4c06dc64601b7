"""Temporary and backup folders of atomic outputs: made exclusively, owned, and cleaned up after killed runs.

:func:`owned_folder` creates ``.NAME.tmp-RANDOM`` or ``.NAME.old-RANDOM`` beside ``NAME`` with an exclusive
``mkdir`` (``RANDOM``: 16 hex digits from :mod:`secrets`) and writes its ownership file, :data:`OWNER_NAME`,
with ``O_EXCL``. :func:`recover` only ever restores from or removes folders that hold a valid ownership
file of a process that is no longer alive, so a user's folder that merely looks like one is never touched.
See :mod:`latentmap.io.atomic` for the swap these folders serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

OWNER_NAME = ".latentmap-owner.json"
"""File in every temporary and backup folder latentmap makes: {"role", "name", "token", "pid", "start", "host",
"created"}; a folder without a valid one is never removed."""

ACTIVE: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the temporary and backup folders in use here
_HOST = socket.gethostname()


def recover(path: str | os.PathLike[str]) -> None:
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
        try:
            (newest / name).rename(target)
        except OSError:  # the previous result stays where it is, untouched
            stale = [(owner, folder) for owner, folder in stale if folder != newest]
    for _, folder in stale:
        remove_owned(folder)
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


def owned_folder(target: Path, role: str) -> Path:
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
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply to parse
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


def remove_owned(folder: Path) -> None:
    """Remove a temporary or backup folder this toolkit made (never a symlink)."""
    if os.path.islink(folder):
        return
    shutil.rmtree(folder, ignore_errors=True)


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
            return identity(path) in ACTIVE
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


def _proc_stat(pid: int) -> tuple[str, int] | None:
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


def identity(path: Path) -> tuple[int, int]:
    """(st_dev, st_ino) of ``path`` itself (a link not followed): what :data:`ACTIVE` holds."""
    st = os.lstat(path)
    return st.st_dev, st.st_ino
