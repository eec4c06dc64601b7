"""A support-set folder (``support_sets/NAME/``: ``manifest.json``, ``images.npy``, figures) read and written.

The builder lives in :mod:`latentmap.support.build`; anything that only reads a support set (a map's
fit, a benchmark) needs this module alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentmap.errors import CheckpointError, DatasetError
from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import read_json_object
from latentmap.io.model_record import relative_record

MANIFEST_NAME = "manifest.json"
IMAGES_NAME = "images.npy"


@dataclass
class SupportSet:
    """Images (float32 NCHW in [0,1]) plus a manifest describing how they were chosen."""

    name: str
    images: torch.Tensor
    manifest: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def indices(self) -> list[int]:
        return list(self.manifest.get("indices", []))

    def save(self, path, *, overwrite: bool = True, files: dict[str, bytes] | None = None) -> Path:
        """Write the folder atomically: manifest, images as a float32 array, and ``files`` (name -> bytes).

        ``latentmap.report.support_set.write_support_set`` adds the contact sheet and figures.
        """
        path = Path(path)
        manifest = {"name": self.name, "size": len(self), "image_shape": list(self.images.shape[1:]), **self.manifest}
        if isinstance(manifest.get("model"), dict):  # its model's path, relative to the folder (model_record)
            manifest["model"] = relative_record(manifest["model"], path)
        with atomic_directory(path, overwrite=overwrite, kind="support-set") as tmp:
            np.save(tmp / IMAGES_NAME, self.images.detach().cpu().float().numpy(), allow_pickle=False)
            for file_name, data in (files or {}).items():
                (tmp / file_name).write_bytes(data)
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "SupportSet":
        folder = Path(path)
        if not (folder / MANIFEST_NAME).is_file():
            raise CheckpointError(f"support set '{folder}' has no {MANIFEST_NAME}")
        manifest = read_json_object(folder / MANIFEST_NAME)
        if not (folder / IMAGES_NAME).is_file():
            raise CheckpointError(f"support set '{folder}' has no {IMAGES_NAME}")
        try:
            images = np.load(folder / IMAGES_NAME, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CheckpointError(f"cannot read '{folder / IMAGES_NAME}': {exc}") from exc
        if images.ndim != 4 or images.dtype != np.float32:
            raise DatasetError(f"'{folder / IMAGES_NAME}' must be float32 NCHW, got {images.dtype} {images.shape}")
        if not (np.isfinite(images).all() and images.min(initial=0) >= 0 and images.max(initial=0) <= 1):
            raise DatasetError(f"'{folder / IMAGES_NAME}' must hold finite pixel values in [0, 1]")
        if manifest.get("size", len(images)) != len(images):
            raise CheckpointError(f"support set '{folder}': manifest says {manifest['size']} images, "
                                  f"{IMAGES_NAME} holds {len(images)}")
        return cls(manifest.get("name", folder.name), torch.from_numpy(images), manifest)
