"""Generated image sets, whether latentmap wraps the generator or not, and their shared encodings.

As torch-fidelity takes a registered model, a folder or an array alike, the coverage and
fidelity benchmarks take each generator as either a :class:`~latentmap.models.base.LatentModel`
(its own samples, drawn by :mod:`latentmap.evaluation.samplers`) or an image set ``npy:PATH`` /
``folder:PATH`` (every image of it). :class:`EncodingCache` encodes each set once with the
reference model, and every metric reads the same encodings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from latentmap.constants import IMAGE_SPEC_PREFIXES
from latentmap.errors import ConfigError, ShapeMismatchError
from latentmap.io.paths import shown_spec
from latentmap.evaluation.samplers import LatentSampler, PriorSampler
from latentmap.models.base import LatentModel

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset


@dataclass
class GeneratedSet:
    """Images (float32 NCHW in [0, 1], CPU) with a name and a description of where they came from."""

    name: str
    images: torch.Tensor = field(repr=False)
    source: str
    # the record of the model that drew them (latentmap.io.model_record); None: files
    record: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.images)


def is_image_set(spec: object) -> bool:
    """Whether ``spec`` names a set of image files (``npy:PATH``, ``folder:PATH``) rather than a model."""
    return isinstance(spec, str) and spec.startswith(IMAGE_SPEC_PREFIXES)


def load_image_set(spec: str, data_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> GeneratedSet:
    """Every image of ``npy:PATH`` or ``folder:PATH`` (the split "all")."""
    from latentmap.data.datasets import load_dataset

    if not is_image_set(spec):
        raise ConfigError(f"an image set is npy:PATH or folder:PATH, got '{spec}'")
    data = load_dataset(spec, "all", data_dir=data_dir)
    path = spec.split(":", 1)[1].split("?", 1)[0]
    return GeneratedSet(name or Path(path).stem or spec, data.all_images(), f"{shown_spec(spec)} ({len(data)} images)")


def sample_model(model: LatentModel, n: int, sampler: LatentSampler | None = None, seed: int = 0,
                 batch_size: int = 256) -> GeneratedSet:
    """``n`` images decoded from seeded draws of ``sampler`` (default the model's prior)."""
    if n < 1:
        raise ConfigError(f"the number of generated images must be positive, got {n} instead")
    sampler = sampler or PriorSampler(model)
    z = sampler.sample(n, torch.Generator().manual_seed(seed))
    from latentmap.models.registry import record_model

    return GeneratedSet(model.name, model.decode_all(z, batch_size), f"{n} draws of {model.name}'s {sampler.name}",
                        record_model(model))


def _digests(images: ImageDataset | torch.Tensor) -> list[bytes]:
    """A digest of every image at 8-bit precision (intensities x 255, rounded): equal for exact copies, also
    after a round trip through uint8 files."""
    import hashlib

    x = images.all_images() if hasattr(images, "all_images") else torch.as_tensor(images)
    rows = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def image_hashes(images: ImageDataset | torch.Tensor) -> set[bytes]:
    """The digests of ``images`` (a tensor or a dataset), for :func:`overlap_share`."""
    return set(_digests(images))


def overlap_share(images: ImageDataset | torch.Tensor, reference_hashes: set[bytes]) -> float:
    """Share of ``images`` that are exact copies (at 8-bit precision) of an image whose digest is in
    ``reference_hashes`` (:func:`image_hashes`)."""
    digests = _digests(images)
    return sum(d in reference_hashes for d in digests) / len(digests) if digests else 0.0


class EncodingCache:
    """Encodings of image sets by one reference model, each computed once."""

    def __init__(self, reference: LatentModel, batch_size: int = 256, progress: bool = False) -> None:
        self.reference, self.batch_size, self.progress = reference, batch_size, progress
        self._latents: dict[str, torch.Tensor] = {}

    def encode(self, key: str, images: Any) -> torch.Tensor:
        """The reference model's latents of ``images`` (a dataset with ``image_shape``, or an array or tensor of
        images [N, C, H, W]), encoded the first time ``key`` is asked for."""
        if key not in self._latents:
            shape = tuple(getattr(images, "image_shape", None) or tuple(images.shape[1:]))
            if shape != tuple(self.reference.image_shape):
                raise ShapeMismatchError(f"reference model '{self.reference.name}' expects images of shape "
                                         f"{tuple(self.reference.image_shape)}, {key} has {shape}")
            self._latents[key] = self.reference.encode_all(images, self.batch_size, progress=self.progress)
        return self._latents[key]

    def __contains__(self, key: str) -> bool:
        return key in self._latents
