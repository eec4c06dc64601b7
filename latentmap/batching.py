"""Batches and progress bars shared by every batched loop (encoding, relocation, anchors)."""

from __future__ import annotations

import numpy as np
import torch

from latentmap.errors import ConfigError


def image_batches(data, batch_size: int):
    """Normalize a dataset / image tensor / iterable of batches into (iterable, number of batches or None)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size} instead")
    if hasattr(data, "iter_batches"):  # ImageDataset and its subsets
        return data.iter_batches(batch_size), -(-len(data) // batch_size)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(data)
        return (t[s:s + batch_size] for s in range(0, len(t), batch_size)), -(-len(t) // batch_size)
    return iter(data), None


_QUIET = {"on": False}


def set_quiet(quiet: bool) -> None:
    """Silence every progress bar of this process (the CLI's ``--quiet``)."""
    _QUIET["on"] = bool(quiet)


def progress_shown(enabled: bool) -> bool:
    """Bars go to stderr, only when asked, not silenced, and stderr is a terminal (not a log or a pipe)."""
    import sys

    return bool(enabled) and not _QUIET["on"] and sys.stderr.isatty()


def progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "batch"):
    """A tqdm bar on stderr (a disabled one when progress is not shown)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit=unit, disable=not progress_shown(enabled))


def with_progress(iterable, desc: str, enabled: bool, total: int | None = None, unit: str = "batch"):
    """Wrap ``iterable`` in a tqdm bar when progress is shown; otherwise return it unchanged."""
    if not progress_shown(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, unit=unit)
