"""Exception hierarchy.

Every error latentmap raises on purpose derives from :class:`LatentmapError`, and also from
the built-in exception a caller would naturally catch, so ``except ValueError`` keeps working.
The CLI turns any ``LatentmapError`` into a one-line message and exit code 2.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence


class LatentmapError(Exception):
    """Base class of all deliberate latentmap errors."""


class DatasetError(LatentmapError, ValueError):
    """A dataset spec, file or image is missing, unreadable or malformed."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The files behind a dataset spec are not on this machine."""


class ShapeMismatchError(LatentmapError, ValueError):
    """A tensor's shape does not match what a model or map expects."""


class NonFiniteError(LatentmapError, ValueError):
    """An input contains NaN or infinite values."""

    operand: str  # "x" or "y", set (no class default: callers read it with getattr) where the input is one of two


class CheckpointError(LatentmapError, OSError):
    """A checkpoint folder is missing, corrupted or does not fit its architecture."""


class UnknownKindError(LatentmapError, KeyError):
    """No adapter or architecture is registered under the requested kind."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotFittedError(LatentmapError, AttributeError):
    """An estimator is used before ``fit``."""


class UnderdeterminedError(LatentmapError, ValueError):
    """A least-squares problem has fewer equations than unknowns."""


class ConfigError(LatentmapError, ValueError):
    """An option or hyperparameter has an invalid value."""


class UnsafeLoadError(LatentmapError, PermissionError):
    """Loading would execute code (a pickle) and the caller did not allow it."""


class DependencyError(LatentmapError, ImportError):
    """An optional dependency, or the weights it needs, is not available."""


class SupportSetError(LatentmapError, ValueError):
    """A support set cannot be built as asked (every sector empty, too few images for the size)."""


class OutputWriteError(LatentmapError, OSError):
    """Writing an output failed for a reason of the machine (disk full, file-size limit, read-only, no permission);
    the previous output at that path, if any, is intact."""

    def __str__(self) -> str:  # OSError would print "[Errno 28] ..." once errno is set: the message alone is the line
        return str(self.args[0]) if self.args else ""

    @classmethod
    def from_os_error(cls, exc: BaseException, target: object,
                      where: Sequence[str | os.PathLike[str]] = ()) -> OutputWriteError | None:
        """``exc`` as an OutputWriteError naming the output ``target`` when it is the machine's write failure (an
        OSError of :data:`WRITE_ERRNOS` about no file, or about a file under one of the folders ``where``); else
        None (an input that could not be read, or a bug, keeps its own error)."""
        import os
        import re

        code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        if type(exc).__module__.startswith("safetensors"):  # a Rust I/O error: "... File too large (os error 27)"
            found = re.search(r"\(os error (\d+)\)", str(exc))
            code = int(found.group(1)) if found else None
        if code not in WRITE_ERRNOS or isinstance(exc, LatentmapError):
            return None
        filename = getattr(exc, "filename", None)
        if filename is not None and where:
            name = os.path.abspath(os.fsdecode(filename))
            folders = [os.path.join(os.path.abspath(w), "") for w in where]
            if not any(name.startswith(f) or name == f[:-1] for f in folders):
                return None
        reason = getattr(exc, "strerror", None) or os.strerror(code)
        error = cls(f"cannot write '{target}': {reason} ({errno.errorcode.get(code, code)}); nothing was "
                    f"replaced: '{target}' is as it was")
        error.errno = code
        return error


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})
"""Reasons of the machine, not of the program, for a write to fail: disk full, file-size limit, read-only, quota,
no permission."""


class ResourceError(LatentmapError, MemoryError):
    """A run would need more memory than the machine has available (refused before the work, with the estimate)."""
