"""``synthetic:N[xHxWxC]``: seeded random images made on demand, for running the large-data paths without data.

Image ``i`` is a function of ``(seed, i)`` alone: a coarse grid of uniform random values, upsampled
bilinearly to H×W (smooth blobs in [0, 1], closer to photographs than pixel noise). Nothing is stored:
a batch is generated when asked for, so ``synthetic:200000x64x64x3`` (CelebA's size) costs no memory
beyond the batch. The test split holds out 20% by a seeded permutation, as ``npy:`` does.

Spec: ``synthetic:N`` (28×28 grey, Fashion-MNIST's shape), ``synthetic:NxHxW`` (grey) or
``synthetic:NxHxWxC`` (C = 1 or 3); option ``seed`` (``synthetic:20000x64x64x3?seed=1``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from numpy.typing import ArrayLike

from latentmap.data.images import ImageDataset
from latentmap.data.registry import register_dataset
from latentmap.data.splits import ARRAY_TEST_FRACTION, split_indices
from latentmap.io.schema import MAX_SEED
from latentmap.errors import ConfigError

DEFAULT_SHAPE = (28, 28, 1)  # H, W, C
MAX_IMAGES = 10**9


def parse_synthetic(text: str | None) -> tuple[int, tuple[int, int, int]]:
    """``"20000x64x64x3"`` -> (20000, (3, 64, 64)) as (N, CHW)."""
    parts = [p.strip() for p in str(text or "").lower().split("x")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 3, 4) or any(v < 1 for v in values):
        raise ConfigError(f"synthetic dataset must be synthetic:N, synthetic:NxHxW or synthetic:NxHxWxC with positive "
                          f"integers, got 'synthetic:{text}' instead")
    n = values[0]
    h, w, c = (values[1:] + [1])[:3] if len(values) > 1 else DEFAULT_SHAPE
    if c not in (1, 3):
        raise ConfigError(f"synthetic images need 1 or 3 channels, got {c} in 'synthetic:{text}'")
    if n > MAX_IMAGES:
        raise ConfigError(f"synthetic datasets hold at most {MAX_IMAGES:,} images, got {n:,}")
    return n, (c, h, w)


class SyntheticImageDataset(ImageDataset):
    """Seeded random images generated per index (see the module docstring); ``ids`` are the global indices."""

    labels = None
    lazy = True

    def __init__(self, n_total: int, image_shape: tuple[int, int, int], ids: np.ndarray, seed: int = 0,
                 name: str | None = None) -> None:
        c, h, w = image_shape
        self.n_total, self.image_shape, self.ids, self.seed = n_total, (c, h, w), ids, int(seed)
        self.name = name or f"synthetic:{n_total}x{h}x{w}x{c}"
        self.source = "generated"
        self.grid = max(2, min(h, w) // 8)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: ArrayLike) -> torch.Tensor:
        """The images at ``indices``, generated now from (seed, global index), float32 in [0, 1]."""
        ids = self.ids[self._check_indices(indices)]
        c, h, w = self.image_shape
        if len(ids) == 0:
            return torch.empty((0, c, h, w))
        coarse = np.stack([np.random.default_rng([self.seed, int(i)]).random((c, self.grid, self.grid),
                                                                              dtype=np.float32) for i in ids])
        out = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w), mode="bilinear",
                                              align_corners=True)
        return out.clamp_(0.0, 1.0)


def _describe(data_dir: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    return True, "generated on demand (synthetic:N[xHxWxC])"


@register_dataset("synthetic", _describe,
                  "synthetic:N[xHxWxC][?seed=S] seeded random smooth images made per index, never held in memory",
                  options=("seed",), path="required")
def _load_synthetic(path: str | None = None, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                    seed: str | int = 0) -> SyntheticImageDataset:
    n, shape = parse_synthetic(path)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"seed of a synthetic dataset must be an integer, got {seed!r} instead") from None
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed of a synthetic dataset must be between 0 and {MAX_SEED}, got {seed} instead")
    ids = split_indices(n, split, ARRAY_TEST_FRACTION, shuffle=True)
    c, h, w = shape
    return SyntheticImageDataset(n, shape, np.asarray(ids, dtype=np.int64), seed,
                                 name=f"synthetic:{n}x{h}x{w}x{c}" + (f"?seed={seed}" if seed else ""))
