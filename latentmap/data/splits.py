"""Deterministic train/test splits.

Two rules, both with the fixed seed ``SPLIT_SEED`` so that a split never changes between runs:

* ``stratified_split_indices`` (``mnist``, ``folder:``): every label (every class subfolder)
  gives the same share of its images to the test split, chosen by a seeded shuffle; train and
  test come in shuffled order, so the first images of a split mix the labels.
* ``split_indices`` (``digits``, ``npy:``): a seeded permutation of all images, test = its tail,
  each split in index order.

``"all"`` is every image in index order under both rules.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from latentmap.constants import SPLITS
from latentmap.errors import ConfigError

ARRAY_TEST_FRACTION = 0.2
FOLDER_TEST_FRACTION = 0.1
SPLIT_SEED = 0


def check_split(split: str) -> None:
    """Refuse (ConfigError) a split that is not one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got '{split}' instead")


def held_out_count(n: int, test_fraction: float) -> int:
    """How many of ``n`` images the test split holds: round(n * fraction), at least one when n > 1."""
    return max(1, int(round(n * test_fraction))) if n > 1 else 0


def split_indices(n: int, split: str, test_fraction: float, shuffle: bool) -> np.ndarray:
    """Indices of ``split``: the tail of a seeded permutation (or of 0..n-1) is test; each in index order."""
    check_split(split)
    order = np.random.default_rng(SPLIT_SEED).permutation(n) if shuffle else np.arange(n)
    n_test = held_out_count(n, test_fraction)
    if split == "train":
        return np.sort(order[: n - n_test]) if shuffle else order[: n - n_test]
    if split == "test":
        return np.sort(order[n - n_test:]) if shuffle else order[n - n_test:]
    return np.arange(n)


def _held_out_per_label(counts: np.ndarray, test_fraction: float) -> np.ndarray:
    """Test images per label: shares of the total in proportion to the label counts (largest
    remainder), then at least one test and one train image for every label with two or more."""
    total = held_out_count(int(counts.sum()), test_fraction)
    exact = counts * (total / counts.sum())
    k = np.floor(exact).astype(np.int64)
    k[np.argsort(-(exact - k), kind="stable")[: total - int(k.sum())]] += 1
    return np.where(counts >= 2, np.clip(k, 1, counts - 1), 0)


def stratified_split_indices(labels: int | np.integer | ArrayLike, split: str, test_fraction: float,
                             seed: int = SPLIT_SEED) -> np.ndarray:
    """Indices of ``split``, drawn by a seeded shuffle within each label.

    ``labels`` holds one label per image, or is an int n for n unlabelled images (one group).
    Train and test come in shuffled order; ``"all"`` is 0..n-1.
    """
    check_split(split)
    labels = np.zeros(labels, dtype=np.int64) if isinstance(labels, (int, np.integer)) else np.asarray(labels)
    n = len(labels)
    if split == "all" or n == 0:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    _, group_of, counts = np.unique(labels.reshape(-1), return_inverse=True, return_counts=True)
    n_test = _held_out_per_label(counts, test_fraction)
    train, test = [], []
    for group, k in enumerate(n_test):
        members = rng.permutation(np.flatnonzero(group_of.reshape(-1) == group))
        test.append(members[:k])
        train.append(members[k:])
    test_order = rng.permutation(np.concatenate(test))
    train_order = rng.permutation(np.concatenate(train))
    return test_order if split == "test" else train_order
