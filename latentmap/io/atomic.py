"""Atomic output folders: write into a temporary sibling, rename into place when complete.

An interrupted or failed run never leaves a half-written checkpoint, support set, map or
report, and a previous result at the same path stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(path, overwrite: bool = True):
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    With ``overwrite=False`` an existing ``path`` is an error raised before any work is done.
    """
    from latentmap.errors import ConfigError

    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"output folder '{target}' already exists; pass overwrite to replace it")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"output path '{target}' exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _relax_permissions(tmp)
    backup = None
    if target.exists():
        backup = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    try:
        tmp.rename(target)
    except BaseException:
        if backup is not None:
            backup.rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


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
    """Write a single file atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
