"""Memory and time estimates made before work whose size a user chooses.

Where one number drives an allocation (``--pairs``, ``--channels``/``--hidden``, ``?pad=``,
``--bootstrap``), the command estimates the bytes it will need and compares them with the
memory this machine has available (``MemAvailable`` of /proc/meminfo, else the physical memory
from ``os.sysconf``). A run that cannot fit is refused at once with the estimate, instead of
failing or swapping minutes later; a long but feasible one is announced with its expected time.
"""

from __future__ import annotations

import os
from typing import Any

from latentmap.errors import ResourceError

MEMORY_ENV = "LATENTMAP_MEMORY_LIMIT"
"""Bytes to treat as available instead of what the machine reports (tests, shared machines)."""


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now; None when the system does not say."""
    override = os.environ.get(MEMORY_ENV, "").strip()
    if override:
        try:
            return max(0, int(float(override)))
        except ValueError:
            raise ResourceError(f"{MEMORY_ENV} must be a number of bytes, got {override!r}") from None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit: ``512 B``, ``1.5 MB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


def format_seconds(s: float) -> str:
    """A duration of ``s`` seconds in seconds, minutes, hours or days, whichever reads best."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def check_memory(needed: float, what: str, hint: str = "") -> None:
    """Refuse (ResourceError, one line) when ``needed`` bytes exceed the memory available now."""
    available = available_memory()
    if available is None or needed <= available:
        return
    raise ResourceError(f"{what} needs about {format_bytes(needed)} of memory, and this machine has "
                        f"{format_bytes(available)} available" + (f"; {hint}" if hint else ""))


def flattened_map_bytes(d_source: int, d_target: int) -> int:
    """Bytes a linear map between flat latents of sizes ``d_source`` and ``d_target`` holds while it is fitted:
    ``FLAT_MAP_SQUARE_MATRICES`` float64 matrices of (d_source + 1)^2, and two of (d_source + 1) x d_target (the
    cross moments and the coefficients). Two spatial latents of 4 x 64 x 64 (16,384 values each: Stable Diffusion's
    autoencoder at 512 x 512) take 10 GB."""
    from latentmap.constants import FLAT_MAP_SQUARE_MATRICES

    rows = int(d_source) + 1
    return 8 * (FLAT_MAP_SQUARE_MATRICES * rows * rows + 2 * rows * int(d_target))


def check_flattened_map(source: Any, target: Any) -> None:
    """Refuse (ResourceError, one line) a linear map between the flat latents of two models that cannot fit in
    memory, before any image is encoded."""
    def size(model: Any) -> str:
        shape = tuple(getattr(model, "latent_shape", None) or (model.latent_dim,))
        return f"{model.latent_dim:,}" + (f" = {' x '.join(str(s) for s in shape)} flattened" if len(shape) > 1 else "")

    check_memory(flattened_map_bytes(source.latent_dim, target.latent_dim),
                 f"a linear map from '{source.name}' (latents of {size(source)}) to '{target.name}' "
                 f"({size(target)})", "map smaller latents (a model of smaller images) or a map that does not "
                 "flatten them")
