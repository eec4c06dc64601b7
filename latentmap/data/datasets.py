"""Datasets: one loader, ``load_dataset(spec, split=...)``, for every image source.

Images come out as float32 tensors in [0, 1], NCHW (see :mod:`latentmap.data.images`).
The sources register themselves: the named datasets in :mod:`latentmap.data.sources`,
``folder:`` and ``npy:`` in :mod:`latentmap.data.files`.

Splits are deterministic (see :mod:`latentmap.data.splits`): Fashion-MNIST keeps its official
train/test files; ``mnist`` and ``folder:`` hold out 20% and 10% of every label (every class
subfolder) by a seeded shuffle; ``digits`` and ``npy:`` hold out 20% by a seeded permutation.

This module is the public entry: every name other modules import from it stays importable here.
"""

from __future__ import annotations

import os
from typing import Any

from latentmap.data import files as _files  # noqa: F401  (registers folder: and npy:)
from latentmap.data import sources as _sources  # noqa: F401  (registers fashion-mnist, mnist, digits)
from latentmap.data import synthetic as _synthetic  # noqa: F401  (registers synthetic:N[xHxWxC])
from latentmap.data.images import (IMAGE_SUFFIXES, FolderImageDataset, ImageDataset, SubsetImageDataset,
                                   TensorImageDataset, array_to_tensor, as_image_batch, evenly_spaced_indices,
                                   images_to_nchw)
from latentmap.data.registry import DatasetSource, _DATASETS, check_options, dataset_sources, parse_spec, \
    register_dataset
from latentmap.data.sources import (FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, FASHION_MNIST_SYSTEM_DIR,
                                    read_idx)
from latentmap.data.splits import ARRAY_TEST_FRACTION, FOLDER_TEST_FRACTION, SPLIT_SEED, SPLITS, check_split
from latentmap.errors import UnknownKindError

__all__ = [
    "load_dataset", "SPLITS", "ARRAY_TEST_FRACTION", "FOLDER_TEST_FRACTION", "SPLIT_SEED",
    "ImageDataset", "TensorImageDataset", "SubsetImageDataset", "FolderImageDataset", "IMAGE_SUFFIXES",
    "evenly_spaced_indices", "images_to_nchw", "array_to_tensor", "as_image_batch",
    "DatasetSource", "register_dataset", "dataset_sources", "parse_spec",
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "FASHION_MNIST_SYSTEM_DIR", "read_idx",
]


def load_dataset(spec: str, split: str = "train", *, data_dir: str | os.PathLike[str] | None = None,
                 **options: Any) -> ImageDataset:
    """Load a dataset split from a spec: ``fashion-mnist``, ``mnist``, ``digits``, ``folder:PATH``, ``npy:PATH``.

    ``options`` (or the spec's ``?key=value`` query) pass loader settings such as ``crop``,
    ``size`` and ``channels`` for folders; a setting the dataset does not take is a ConfigError.
    """
    check_split(split)
    kind, path, query = parse_spec(spec)
    if kind not in _DATASETS:
        raise UnknownKindError(
            f"unknown dataset '{kind}'; known: {', '.join(sorted(_DATASETS))} (folder: and npy: take a path)"
        )
    source = _DATASETS[kind]
    merged = {**query, **{k: v for k, v in options.items() if v is not None}}
    check_options(source, path, merged)
    return source.loader(path=path, split=split, data_dir=data_dir, **merged)
