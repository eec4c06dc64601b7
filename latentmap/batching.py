"""Batches and progress bars shared by every batched loop (encoding, relocation, anchors)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from latentmap.errors import ConfigError

if TYPE_CHECKING:
    from tqdm.auto import tqdm

T = TypeVar("T")


def image_batches(data: Any, batch_size: int) -> tuple[Iterable[torch.Tensor], int | None]:
    """Normalize a dataset / image tensor / iterable of batches into (iterable, number of batches or None).

    ``data``: an ImageDataset (anything with ``iter_batches``), a tensor or array of images [N, C, H, W], or an
    iterable of image batches.

    Datasets read lazily (folders, synthetic images) are read by a torch DataLoader with worker processes and
    pinned memory when :func:`loader_workers` says so, so that reading overlaps the models' work."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size} instead")
    if hasattr(data, "iter_batches"):  # ImageDataset and its subsets
        total = -(-len(data) // batch_size)
        workers = loader_workers(data)
        if workers and total > 1:
            return _loader(data, batch_size, workers), total
        return data.iter_batches(batch_size), total
    if isinstance(data, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(data)
        return (t[s:s + batch_size] for s in range(0, len(t), batch_size)), -(-len(t) // batch_size)
    return iter(data), None


# DataLoader workers for lazily read datasets: None = automatic (see loader_workers)
_LOADER: dict[str, int | None] = {"workers": None}


def set_loader_workers(workers: int | None) -> None:
    """Worker processes reading lazily loaded datasets (0: read in this process; None: automatic)."""
    if workers is not None and workers < 0:
        raise ConfigError(f"loader workers must be >= 0, got {workers} instead")
    _LOADER["workers"] = workers


def loader_workers(data: object) -> int:
    """How many DataLoader workers read ``data``: none for in-memory data; for lazily read data the number
    set (``set_loader_workers``, ``LATENTMAP_LOADER_WORKERS``), else, automatically, up to 4 when a GPU does
    the models' work and none on a CPU, whose cores the models already use (measured: benchmarks/bench_loader.py)."""
    import os

    if not getattr(data, "lazy", False):
        return 0
    chosen = _LOADER["workers"]
    if chosen is None and os.environ.get("LATENTMAP_LOADER_WORKERS", "").strip():
        chosen = int(os.environ["LATENTMAP_LOADER_WORKERS"])
    if chosen is not None:
        return chosen
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if torch.cuda.is_available() else 0


class _BatchSet(torch.utils.data.Dataset):
    """Batch k of a dataset as one item, so that each worker reads whole batches."""

    def __init__(self, data: Any, batch_size: int) -> None:
        self.data, self.batch_size = data, batch_size

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __getitem__(self, k: int) -> torch.Tensor:
        start = k * self.batch_size
        return self.data.batch(np.arange(start, min(start + self.batch_size, len(self.data))))


def _loader(data: Any, batch_size: int, workers: int) -> Iterator[torch.Tensor]:
    return iter(torch.utils.data.DataLoader(_BatchSet(data, batch_size), batch_size=None, num_workers=workers,
                                            pin_memory=torch.cuda.is_available(), prefetch_factor=2))


_QUIET = {"on": False}


def set_quiet(quiet: bool) -> None:
    """Silence (or show again) every progress bar of this process; the CLI sets it on each invocation from its
    ``--quiet``."""
    _QUIET["on"] = bool(quiet)


def progress_shown(enabled: bool) -> bool:
    """Bars go to stderr, only when asked, not silenced, and stderr is a terminal (not a log or a pipe)."""
    import sys

    return bool(enabled) and not _QUIET["on"] and sys.stderr.isatty()


def progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "batch") -> tqdm:
    """A tqdm bar on stderr (a disabled one when progress is not shown)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit=unit, disable=not progress_shown(enabled))


def with_progress(iterable: Iterable[T], desc: str, enabled: bool, total: int | None = None,
                  unit: str = "batch") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when progress is shown; otherwise return it unchanged."""
    if not progress_shown(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, unit=unit)
