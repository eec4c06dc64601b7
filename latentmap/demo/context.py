"""What every demo section shares: the context it reads and writes, and the registry of sections.

A section is a function ``(DemoContext) -> Section`` registered with :func:`register_demo_section`;
the story (``latentmap.demo.story``) imports the section modules and runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

from latentmap.report.html import Section

DEMO_DATASET = "fashion-mnist"
# how the demo's Fashion-MNIST test images reach a model of another shape (the shipped fmnist-vae-32 was trained
# on Fashion-MNIST zero-padded to 32x32): see latentmap.data.transforms
DEMO_IMAGE_TRANSFORM = "pad"
GRID_IMAGES = 12
QUICK_TEST_IMAGES = 300  # --quick: test images, and the most images any section fits or samples


@dataclass
class DemoContext:
    checkpoints: Path
    out: Path  # the temporary folder being written
    models: list
    test: object  # ImageDataset
    data_dir: str | None
    device: object
    summary: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    model_paths: dict = field(default_factory=dict)  # model name -> its checkpoint folder
    maps: dict = field(default_factory=dict)  # (source, target) -> (fitted map, relocated MSE), from the atlas
    # models whose images are not the test images' shape: only the reconstructions and the atlas show them, with
    # the test images through ``image_transform``; the other sections work on ``models``
    other_models: list = field(default_factory=list)
    quick: bool = False  # --quick: a smoke run on small sizes
    image_transform: str = DEMO_IMAGE_TRANSFORM

    def grid_indices(self, n: int = GRID_IMAGES) -> np.ndarray:
        return np.linspace(0, len(self.test) - 1, n).round().astype(int)


_SECTIONS: list[tuple[int, str, Callable[[DemoContext], Section]]] = []


def register_demo_section(order: int, name: str):
    def decorator(fn):
        _SECTIONS.append((order, name, fn))
        _SECTIONS.sort(key=lambda item: item[0])
        return fn

    return decorator
