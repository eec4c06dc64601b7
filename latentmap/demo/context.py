"""What every demo section shares: the context it reads and writes, and the registry of sections.

A section is a function ``(DemoContext) -> Section`` registered with :func:`register_demo_section`;
the story (``latentmap.demo.story``) imports the section modules and runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from latentmap.report.html import Section

if TYPE_CHECKING:
    import torch

    from latentmap.data.images import ImageDataset
    from latentmap.maps.base import MapEstimator
    from latentmap.models.base import LatentModel

DEMO_DATASET = "fashion-mnist"
# how the demo's Fashion-MNIST test images reach a model of another shape (the shipped fmnist-vae-32 was trained
# on Fashion-MNIST zero-padded to 32x32): see latentmap.data.transforms
DEMO_IMAGE_TRANSFORM = "pad"
GRID_IMAGES = 12
QUICK_TEST_IMAGES = 300  # --quick: test images, and the most images any section fits or samples


@dataclass
class DemoContext:
    """What the demo's sections share: the shipped models, the test images, the report folder being written, and
    what earlier sections leave for later ones (``summary`` for summary.json, ``rows``, the atlas's ``maps``)."""

    checkpoints: Path
    out: Path  # the temporary folder being written
    models: list[LatentModel]
    test: ImageDataset
    data_dir: str | None
    device: str | torch.device | None
    summary: dict[str, Any] = field(default_factory=dict)  # JSON records, written as summary.json
    rows: list[dict[str, Any]] = field(default_factory=list)
    model_paths: dict[str, str] = field(default_factory=dict)  # model name -> its checkpoint folder
    # (source, target) -> (fitted map, relocated MSE), from the atlas
    maps: dict[tuple[str, str], tuple[MapEstimator, float]] = field(default_factory=dict)
    # models whose images are not the test images' shape: only the reconstructions and the atlas show them, with
    # the test images through ``image_transform``; the other sections work on ``models``
    other_models: list[LatentModel] = field(default_factory=list)
    quick: bool = False  # --quick: a smoke run on small sizes
    image_transform: str = DEMO_IMAGE_TRANSFORM

    def grid_indices(self, n: int = GRID_IMAGES) -> np.ndarray:
        """``n`` evenly spaced positions in the test images, first and last included: the images a grid shows."""
        return np.linspace(0, len(self.test) - 1, n).round().astype(int)


SectionFunction = Callable[[DemoContext], Section]
_SECTIONS: list[tuple[int, str, SectionFunction]] = []


def register_demo_section(order: int, name: str) -> Callable[[SectionFunction], SectionFunction]:
    """Decorator: run the decorated section function in the demo at position ``order`` (lower first), named
    ``name`` in the progress bar and summary.json's timings; the function itself is returned unchanged."""

    def decorator(fn: SectionFunction) -> SectionFunction:
        _SECTIONS.append((order, name, fn))
        _SECTIONS.sort(key=lambda item: item[0])
        return fn

    return decorator
