"""Datasets from a path: ``folder:PATH`` (image files, labelled by class subfolders) and ``npy:PATH``.

A folder whose images sit in immediate subfolders is labelled as torchvision's ImageFolder
labels it: the class names are the sorted subfolder names and an image's label is the index of
its subfolder (images deeper below a class subfolder belong to that class). A folder with its
images at the top level is unlabelled. The test split holds out 10% of every class by a seeded
shuffle; an array file holds out the tail of a seeded permutation, 20%.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from latentmap.data.images import (IMAGE_SUFFIXES, FolderImageDataset, TensorImageDataset, array_to_tensor,
                                   images_to_nchw)
from latentmap.data.registry import register_dataset
from latentmap.data.splits import ARRAY_TEST_FRACTION, FOLDER_TEST_FRACTION, split_indices, stratified_split_indices
from latentmap.errors import ConfigError, DatasetError, DatasetNotFoundError

FOLDER_OPTIONS = ("crop", "size", "channels")


# --------------------------------------------------------------------------- options

def _int_values(value: object, what: str) -> tuple[int, ...]:
    parts: list[Any]
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()]
    elif isinstance(value, (list, tuple, np.ndarray)):
        parts = list(value)
    else:
        parts = [value]
    out: list[int] = []
    for p in parts:
        if isinstance(p, (bool, np.bool_)) or isinstance(p, (float, np.floating)):
            raise ConfigError(f"{what} must be integers, got {value!r} instead")
        try:
            out.append(int(p))
        except (TypeError, ValueError):
            raise ConfigError(f"{what} must be integers, got {value!r} instead") from None
    return tuple(out)


def parse_crop(value: object) -> tuple[int, int, int, int] | None:
    """``"L,T,R,B"`` (or four ints) -> a PIL crop box with right > left and bottom > top; None when unset."""
    if value is None or value == "":
        return None
    box = _int_values(value, "crop")
    if len(box) != 4 or any(v < 0 for v in box):
        raise ConfigError(f"crop must be 4 non-negative integers left,top,right,bottom, got {value!r} instead")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ConfigError(f"crop must be left,top,right,bottom with right>left and bottom>top, got {box}")
    return box


def parse_size(value: object) -> tuple[int, int] | None:
    """``"64"`` or ``"64,48"`` / ``"64x48"`` (height, width) -> (H, W) of at least 1; None when unset."""
    if value is None or value == "":
        return None
    hw = _int_values(value, "size")
    if len(hw) not in (1, 2) or any(v < 1 for v in hw):
        raise ConfigError(f"size must be 1 or 2 positive integers (S or H,W), got {value!r} instead")
    return (hw[0], hw[0]) if len(hw) == 1 else (hw[0], hw[1])


def parse_channels(value: object) -> str:
    """1 or 3 -> the PIL mode ("L" or "RGB")."""
    mode = {"1": "L", "3": "RGB"}.get(str(value).strip()) if not isinstance(value, (bool, float)) else None
    if mode is None:
        raise ConfigError(f"channels must be 1 or 3, got {value!r} instead")
    return mode


# --------------------------------------------------------------------------- folder:

def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def find_images(root: Path) -> tuple[list[Path], np.ndarray | None, tuple[str, ...] | None]:
    """The image files of a folder, with labels and class names when they sit in class subfolders.

    Hidden subfolders (``.name``) and subfolders without images are not classes.
    """
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(f"cannot list image folder '{root}': {exc}") from exc
    top = [p for p in entries if _is_image(p)]
    classes: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for sub in entries:
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        found = sorted(p for p in sub.rglob("*") if _is_image(p))
        if found:
            files += found
            labels += [len(classes)] * len(found)
            classes.append(sub.name)
    if not classes:
        return top, None, None
    if top:
        raise DatasetError(
            f"image folder '{root}' has {len(top)} images at its top level and more in class subfolders "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); put every image in a class "
            "subfolder, or point folder: at a folder of images"
        )
    return files, np.asarray(labels, dtype=np.int64), tuple(classes)


def _describe_path(data_dir: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    return True, "any path you give"


@register_dataset("folder", _describe_path,
                  "folder:PATH[?crop=L,T,R,B&size=S&channels=1|3] every image below a folder, read lazily; "
                  "immediate subfolders are classes",
                  options=FOLDER_OPTIONS, path="required")
def _load_folder(path: str | None = None, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                 crop: object = None, size: object = None, channels: object = 3) -> FolderImageDataset:
    if not path:
        raise ConfigError("dataset spec 'folder:' needs a path, e.g. folder:/data/img_align_celeba")
    crop_box, hw, mode = parse_crop(crop), parse_size(size), parse_channels(channels)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder '{root}' does not exist")
    files, labels, classes = find_images(root)
    if not files:
        raise DatasetError(f"image folder '{root}' contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    idx = stratified_split_indices(len(files) if labels is None else labels, split, FOLDER_TEST_FRACTION)
    return FolderImageDataset(f"folder:{root}", [files[i] for i in idx], mode=mode, crop=crop_box, size=hw,
                              source=str(root), labels=None if labels is None else labels[idx], label_names=classes)


# --------------------------------------------------------------------------- npy:

@register_dataset("npy", _describe_path, "npy:PATH an array of images, NHWC or NCHW, uint8 or float in [0,1]",
                  path="required")
def _load_npy(path: str | None = None, split: str = "train",
              data_dir: str | os.PathLike[str] | None = None) -> TensorImageDataset:
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
    idx = split_indices(len(arr), split, ARRAY_TEST_FRACTION, shuffle=True)
    return TensorImageDataset(f"npy:{file}", array_to_tensor(arr[idx], str(file)), source=str(file))
