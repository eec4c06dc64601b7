"""Image datasets: the ``ImageDataset`` interface and its in-memory, subset and lazy-folder forms.

Images come out as float32 tensors in [0, 1], NCHW. In-memory sets keep uint8 where they can
(Fashion-MNIST is 55 MB that way instead of 220 MB) and convert per batch; folders are read
lazily, so a 200,000-image CelebA folder never sits in memory. Also here: the checks that turn
user arrays into such images (``images_to_nchw``, ``array_to_tensor``, ``as_image_batch``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike

from latentmap.errors import ConfigError, DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def evenly_spaced_indices(n_total: int, n: int) -> np.ndarray:
    """min(n, n_total) distinct indices from 0 to n_total - 1, evenly spaced."""
    return np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int)


class ImageDataset(torch.utils.data.Dataset):
    """A split of an image dataset: ``len``, ``ds[i]`` (C,H,W) and ``ds.batch(indices)``.

    Labelled datasets have ``labels`` (an int64 tensor, one label per image) and, when the labels
    have names, ``label_names`` (``label_names[k]`` names label k); ``label_name(k)`` works either way.
    """

    name: str
    image_shape: tuple[int, int, int]
    labels: torch.Tensor | None
    label_names: tuple[str, ...] | None = None  # label_names[k] names label k, when the dataset has names
    lazy = False  # read from files or made on demand per batch (then a DataLoader with workers may read it)

    def label_name(self, label: int) -> str:
        """The name of label ``label`` (its number as text when the dataset has no names)."""
        names = self.label_names
        return names[label] if names is not None and 0 <= label < len(names) else str(label)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, indices: ArrayLike) -> torch.Tensor:  # pragma: no cover - abstract
        """The images at ``indices`` as one float32 [B, C, H, W] tensor in [0, 1]."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.batch([index])[0]

    def iter_batches(self, batch_size: int = 256, indices: ArrayLike | None = None) -> Iterator[torch.Tensor]:
        """Yield float32 [B, C, H, W] batches in order (of ``indices`` when given)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size} instead")
        order = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])

    def subset(self, indices: ArrayLike) -> ImageDataset:
        """A view of the images at ``indices``, in that order (labels kept)."""
        return SubsetImageDataset(self, np.asarray(indices, dtype=np.int64))

    def random_subset(self, n: int | None, seed: int | np.random.Generator = 0) -> ImageDataset:
        """``n`` images drawn without replacement by ``seed`` (an int or a numpy Generator), in index
        order so that reading stays sequential; the whole set when ``n`` is None or not smaller."""
        if n is None or n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))

    def evenly_spaced_subset(self, n: int) -> ImageDataset:
        """``n`` images spread evenly over the split (so every part of it is represented); all when n >= len."""
        if n >= len(self):
            return self
        return self.subset(evenly_spaced_indices(len(self), n))

    def all_images(self) -> torch.Tensor:
        """Every image of the split as one tensor (only sensible for small splits)."""
        return self.batch(np.arange(len(self)))

    def _check_indices(self, indices: ArrayLike) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DatasetError(f"dataset '{self.name}' has {len(self)} images; index {int(idx.max())} is out of range")
        return idx


class TensorImageDataset(ImageDataset):
    """Images held in memory, as uint8 (scaled by 1/255 on access) or float32 in [0, 1]."""

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor | None = None, source: str = "",
                 label_names: Sequence[str] | None = None) -> None:
        if images.ndim != 4:
            raise DatasetError(f"dataset '{name}' must hold NCHW images, got shape {tuple(images.shape)} instead")
        self.name = name
        self.images = images
        self.labels = labels
        self.source = source
        c, h, w = (int(s) for s in images.shape[1:])
        self.image_shape = (c, h, w)
        if label_names is not None:
            self.label_names = tuple(label_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: ArrayLike) -> torch.Tensor:
        """The images at ``indices``, float32 in [0, 1] (uint8 scaled by 1/255)."""
        out = self.images[torch.as_tensor(self._check_indices(indices))]
        return out.float().div_(255.0) if out.dtype == torch.uint8 else out.float()


class SubsetImageDataset(ImageDataset):
    """The images of ``parent`` at ``indices`` (labels and names kept), read through the parent."""

    def __init__(self, parent: ImageDataset, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = parent._check_indices(indices)
        self.name = parent.name
        self.image_shape = parent.image_shape
        self.source = getattr(parent, "source", "")
        self.labels = None if parent.labels is None else parent.labels[torch.as_tensor(self.indices)]
        self.label_names = parent.label_names
        self.lazy = parent.lazy

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, indices: ArrayLike) -> torch.Tensor:
        """The images at ``indices`` of this subset."""
        return self.parent.batch(self.indices[self._check_indices(indices)])


class FolderImageDataset(ImageDataset):
    """Image files read lazily, optionally cropped and resized; labelled when ``labels`` is given
    (one per file; ``label_names`` names them, e.g. the class subfolders of an image folder)."""

    lazy = True

    def __init__(self, name: str, files: Sequence[Path], *, mode: str, crop: tuple[int, int, int, int] | None = None,
                 size: tuple[int, int] | None = None, source: str = "", labels: ArrayLike | None = None,
                 label_names: Sequence[str] | None = None) -> None:
        if not files:
            raise DatasetError(f"dataset '{name}' has no images in this split")
        self.name = name
        self.files = list(files)
        self.mode = mode
        self.crop = crop
        self.size = size
        self.source = source
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if self.labels is not None and len(self.labels) != len(self.files):
            raise DatasetError(f"dataset '{name}' has {len(self.files)} images but {len(self.labels)} labels")
        self.label_names = None if label_names is None else tuple(label_names)
        first = self._read(self.files[0])
        c, h, w = (int(s) for s in first.shape)
        self.image_shape = (c, h, w)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        img: Image.Image
        arr: np.ndarray
        try:
            with Image.open(path) as img:
                wide = img.mode in WIDE_GREY_MODES  # 16-bit grey: read as floats, never clipped to 8 bits
                img = img.convert("I").convert("F") if wide else img.convert(self.mode)
                if self.crop is not None:
                    left, top, right, bottom = self.crop
                    if right > img.width or bottom > img.height:
                        raise DatasetError(
                            f"crop box {tuple(self.crop)} does not fit image '{path}' of size {img.width}x{img.height}"
                        )
                    img = img.crop(self.crop)
                if self.size is not None:
                    # Pillow's types name it Image.Resampling.BILINEAR, new in Pillow 9.1 (setup.cfg allows 9.0)
                    img = img.resize((self.size[1], self.size[0]), Image.BILINEAR)  # type: ignore[attr-defined]
                arr = np.asarray(img, dtype=np.float32 if wide else np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"cannot read image '{path}': {exc}") from exc
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if wide:
            if self.mode == "RGB":
                arr = np.repeat(arr, 3, axis=2)
            return torch.from_numpy(np.clip(arr / WIDE_GREY_MAX, 0.0, 1.0).astype(np.float32)).permute(2, 0, 1)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)

    def batch(self, indices: ArrayLike) -> torch.Tensor:
        """The files at ``indices`` read, cropped and resized now, as one float32 tensor in [0, 1]."""
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


WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL modes of 16-bit greyscale files (PNG, TIFF): pixel values 0..65535, scaled by 1/65535, not by 1/255."""
WIDE_GREY_MAX = 65535.0


# --------------------------------------------------------------------------- checks on user arrays

def images_to_nchw(arr: np.ndarray, what: str) -> np.ndarray:
    """Accept [N,H,W], [N,H,W,C] or [N,C,H,W] with C in (1, 3) and return NCHW."""
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"'{what}' must hold one array of images, got {type(arr).__name__} instead")
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim != 4:
        raise DatasetError(f"images in '{what}' must be [N,H,W], NHWC or NCHW, got shape {arr.shape} instead")
    elif arr.shape[1] in (1, 3) and arr.shape[3] not in (1, 3):
        pass
    elif arr.shape[3] in (1, 3):
        arr = np.transpose(arr, (0, 3, 1, 2))
    elif arr.shape[1] not in (1, 3):
        raise DatasetError(f"images in '{what}' need 1 or 3 channels, got shape {arr.shape} instead")
    if arr.size == 0:
        raise DatasetError(f"'{what}' contains no images (shape {arr.shape})")
    return arr


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


def as_image_batch(x: object, what: str = "images") -> torch.Tensor:
    """Validate a user-given image batch: float tensor NCHW, finite (uint8 is scaled to [0, 1])."""
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
