"""A support-set folder (``support_sets/NAME/``: ``manifest.json``, ``images.npy``, figures) read and written.

The builder lives in :mod:`latentmap.support.build`; anything that only reads a support set (a map's
fit, a benchmark) needs this module alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import CheckpointError, DatasetError
from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import read_json_object
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.io.model_record import relative_record
from latentmap.io.schema import Field

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "manifest.json"
MANIFEST_FIELDS = {  # what reading a manifest relies on, checked before use: a wrong type is one line naming the field
    key: Field(kind, low=limits.get("low"), high=limits.get("high")) for key, (kind, limits) in {
        "name": ("str", {}), "size": ("int", {"low": 0}), "seed": ("int", {}), "strategy": ("str", {}),
        "model": ("dict", {}), "dataset": ("dict", {}), "excluded": ("list", {}), "indices": ("list", {}),
        "images": ("list", {}), "top_k": ("int", {"low": 0}), "variables": ("list", {}), "threshold": ("float", {}),
        "notes": ("list", {}), "dropped_sectors": ("list", {}), "sector_populations": ("list", {}),
        "for_models": ("dict", {}), "statistics": ("dict", {}), "statistics.population_median": ("float", {}),
        "statistics.support_pairwise_mse": ("float", {}), "statistics.dataset_random_pairs_mse": ("float", {}),
    }.items()}
IMAGES_NAME = "images.npy"


@dataclass
class SupportSet(FrameRepr):
    """Images (float32 NCHW in [0,1]) plus a manifest describing how they were chosen."""

    name: str
    images: torch.Tensor
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def indices(self) -> list[int]:
        """The images' indices in their dataset, as the manifest records them ([] when it does not)."""
        return list(self.manifest.get("indices", []))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True,
             files: dict[str, bytes] | None = None) -> Path:
        """Write the folder atomically: manifest, images as a float32 array, and ``files`` (name -> bytes).

        ``latentmap.report.support_set.write_support_set`` adds the contact sheet and figures.
        """
        folder = Path(path)
        manifest = {"name": self.name, "size": len(self), "image_shape": list(self.images.shape[1:]), **self.manifest}
        if isinstance(manifest.get("model"), dict):  # its model's path, relative to the folder (model_record)
            manifest["model"] = relative_record(manifest["model"], folder)
        with atomic_directory(folder, overwrite=overwrite, kind="support-set") as tmp:
            np.save(tmp / IMAGES_NAME, self.images.detach().cpu().float().numpy(), allow_pickle=False)
            for file_name, data in (files or {}).items():
                (tmp / file_name).write_bytes(data)
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SupportSet:
        """Read a support-set folder, checking its manifest's fields and that the images are float32 NCHW in [0, 1]."""
        folder = Path(path)
        if not (folder / MANIFEST_NAME).is_file():
            raise CheckpointError(f"support set '{folder}' has no {MANIFEST_NAME}")
        manifest = read_json_object(folder / MANIFEST_NAME, MANIFEST_FIELDS)
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

    def to_frame(self) -> pd.DataFrame:
        """One row per image: its position here, its index in the dataset and what the manifest says of it
        (sector, signs, role for the sector method)."""
        recorded = self.manifest.get("images") or [{"index": i} for i in self.indices]
        if len(recorded) != len(self):  # a hand-made set without a record per image
            recorded = [{} for _ in range(len(self))]
        return records_frame(({"image": k, **row} for k, row in enumerate(recorded)),
                             None if len(self) else ["image", "index"])

    def _frame_caption(self) -> str:
        m = self.manifest
        dataset = m.get("dataset") or {}
        model = m.get("model")
        text = f"Support set {self.name}: {len(self)} images"
        if m.get("strategy"):
            text += f", strategy {m['strategy']}"
        if dataset.get("spec"):
            text += f", from {dataset['spec']}" + (f" ({dataset['split']})" if dataset.get("split") else "")
        return caption(text, [model] if model else [])
