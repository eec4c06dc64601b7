"""Support sets: a small, well-spread set of images that fixes a linear map between latent spaces.

This module holds the artifact (``support_sets/NAME/``: ``manifest.json``, ``images.npy``,
``contact_sheet.png``) and its loading/saving. The builder (information gain, sectors,
selection, completion) lives beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_directory
from .errors import CheckpointError, DatasetError

MANIFEST_NAME = "manifest.json"
IMAGES_NAME = "images.npy"
CONTACT_SHEET_NAME = "contact_sheet.png"


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

    def save(self, path, *, overwrite: bool = True) -> Path:
        """Write the folder atomically: manifest, images as uint8-exact float32 array, contact sheet."""
        from .report.grid import square_grid_png

        path = Path(path)
        manifest = {"name": self.name, "size": len(self), "image_shape": list(self.images.shape[1:]), **self.manifest}
        with atomic_directory(path, overwrite=overwrite) as tmp:
            np.save(tmp / IMAGES_NAME, self.images.detach().cpu().float().numpy(), allow_pickle=False)
            (tmp / CONTACT_SHEET_NAME).write_bytes(square_grid_png(self.images))
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "SupportSet":
        folder = Path(path)
        if not (folder / MANIFEST_NAME).is_file():
            raise CheckpointError(f"support set '{folder}' has no {MANIFEST_NAME}")
        try:
            manifest = json.loads((folder / MANIFEST_NAME).read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{folder / MANIFEST_NAME} is not valid JSON: {exc}") from exc
        if not (folder / IMAGES_NAME).is_file():
            raise CheckpointError(f"support set '{folder}' has no {IMAGES_NAME}")
        try:
            images = np.load(folder / IMAGES_NAME, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CheckpointError(f"cannot read '{folder / IMAGES_NAME}': {exc}") from exc
        if images.ndim != 4 or images.dtype != np.float32:
            raise DatasetError(f"'{folder / IMAGES_NAME}' must be float32 NCHW, got {images.dtype} {images.shape}")
        if manifest.get("size", len(images)) != len(images):
            raise CheckpointError(f"support set '{folder}': manifest says {manifest['size']} images, "
                                  f"{IMAGES_NAME} holds {len(images)}")
        return cls(manifest.get("name", folder.name), torch.from_numpy(images), manifest)
