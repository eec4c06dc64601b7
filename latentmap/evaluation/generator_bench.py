"""Coverage and fidelity/diversity of several generators in one reference space, from shared encodings.

A generator is a :class:`~latentmap.models.base.LatentModel` (its own samples: the prior, or a
sampler fitted on its encodings where it has none) or an image set ``npy:PATH`` / ``folder:PATH``.
Real test images, the support set and every generated set are encoded once by the reference
model (:class:`~latentmap.evaluation.image_sets.EncodingCache`); sector coverage and the
precision/recall/density/coverage and Fréchet-distance numbers all read those encodings. An
optional calibration set (held-out real training images) runs through the same metrics, so
the report can say what a perfect generator would score at this sample size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from latentmap.errors import ConfigError
from latentmap.evaluation.coverage import MIN_COUNT, CoverageResult, SectorSpace, sector_coverage
from latentmap.evaluation.fidelity import DEFAULT_K, FidelityResult, fidelity_diversity, space_names
from latentmap.evaluation.image_sets import (EncodingCache, GeneratedSet, image_hashes, is_image_set, load_image_set,
                                             overlap_share, sample_model)
from latentmap.evaluation.samplers import fit_sampler
from latentmap.models.base import LatentModel

if TYPE_CHECKING:
    import torch

    from latentmap.data.images import ImageDataset
    from latentmap.io.support_folder import SupportSet

CALIBRATION_NAME = "real train images"


def generated_sets(generators: Iterable[GeneratedSet | LatentModel | str], *, samples: int, sampler: str = "auto",
                   fit_data: ImageDataset | None = None, fit_images: int = 10_000, components: int = 10,
                   seed: int = 0, batch_size: int = 256, data_dir: str | os.PathLike[str] | None = None,
                   progress: bool = False, image_transform: str | None = None) -> list[GeneratedSet]:
    """Each generator as a GeneratedSet: ``samples`` own samples of a model, or every image of an image set.
    A fitted sampler is fitted on ``fit_data`` turned into the model's shape by ``image_transform``."""
    from latentmap.data.transforms import resolve_dataset

    sets: list[GeneratedSet] = []
    for gen in generators:
        if isinstance(gen, GeneratedSet):
            sets.append(gen)
        elif isinstance(gen, LatentModel):
            data = None if fit_data is None else resolve_dataset(image_transform, fit_data, gen)
            chosen = fit_sampler(gen, sampler, data=data, fit_images=fit_images, components=components,
                                 seed=seed, batch_size=batch_size, progress=progress)
            sets.append(sample_model(gen, samples, chosen, seed, batch_size))
        elif isinstance(gen, str) and is_image_set(gen):
            sets.append(load_image_set(gen, data_dir))
        else:
            raise ConfigError(f"a generator is a model or an image set npy:PATH / folder:PATH, got {gen!r}")
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"two generators share the name {', '.join(duplicates)}; give each a distinct name")
    return sets


def calibration_set(train: ImageDataset, n: int, seed: int = 0) -> GeneratedSet:
    """``n`` seeded random real training images: what a generator that matched the data would look like."""
    subset = train.random_subset(min(n, len(train)), seed + 1)
    source = (f"{len(subset)} {getattr(train, 'name', 'real')} training images (calibration: what a generator "
              "matching the data would score)")
    return GeneratedSet(CALIBRATION_NAME, subset.all_images(), source)


def fidelity_in(cache: EncodingCache, real: ImageDataset | torch.Tensor, sets: list[GeneratedSet], *, real_source: str,
                k: int = DEFAULT_K) -> FidelityResult:
    """Precision, recall, density, coverage and the Fréchet distance in the reference model's latent space."""
    space, fd_name = space_names(cache.reference.name, cache.reference.latent_dim)
    real_latents = cache.encode("real", real)
    generated = {s.name: (cache.encode(f"generated:{s.name}", s.images), s.source) for s in sets}
    result = fidelity_diversity(real_latents, generated, space=space, fd_name=fd_name, real_source=real_source, k=k)
    result.overlap = real_overlap(real, sets, real_source)
    return result


def real_overlap(real: ImageDataset | torch.Tensor, sets: list[GeneratedSet],
                 real_source: str = "real images") -> dict[str, float]:
    """{name: share} of the generated sets that contain exact copies of the real (reference) images, each with a
    warning: a copied real image lies in its own k-NN ball, so precision, density and coverage rise by
    construction and the Fréchet distance falls."""
    import warnings

    reference = image_hashes(real)
    out: dict[str, float] = {}
    for s in sets:
        share = overlap_share(s.images, reference)
        if share > 0:
            out[s.name] = share
            warnings.warn(f"'{s.name}': {share:.1%} of its {len(s)} images are copies of the {real_source} it is "
                          "scored against; its precision, density and coverage are inflated by construction "
                          "(pass generated images only)", UserWarning, stacklevel=2)
    return out


def benchmark_coverage(reference: LatentModel, support: SupportSet, real: ImageDataset | torch.Tensor,
                       sets: list[GeneratedSet], *,
                       real_source: str = "real test images", min_count: int = MIN_COUNT, k: int = DEFAULT_K,
                       fidelity: bool = True, batch_size: int = 256, progress: bool = False) -> CoverageResult:
    """Sector coverage over the support set's variables, plus fidelity/diversity from the same encodings."""
    space = SectorSpace.from_support_set(support, reference.name)
    manifest_model = support.manifest.get("model", {}).get("name")
    if manifest_model and manifest_model != reference.name:
        import warnings

        warnings.warn(f"support set '{support.name}' was built in the latent space of '{manifest_model}'; its "
                      f"sector variables are used here in the space of '{reference.name}'", UserWarning, stacklevel=2)
    cache = EncodingCache(reference, batch_size, progress)
    result = sector_coverage(space, cache, real, sets, support.images, real_source=real_source, min_count=min_count)
    if fidelity:
        result.fidelity = fidelity_in(cache, real, sets, real_source=real_source, k=k)
    return result


def benchmark_fidelity(reference: LatentModel, real: ImageDataset | torch.Tensor, sets: list[GeneratedSet], *,
                       real_source: str = "real test images",
                       k: int = DEFAULT_K, batch_size: int = 256, progress: bool = False) -> FidelityResult:
    """Precision, recall, density, coverage (k nearest neighbours) and a Fréchet distance of each generated set
    against the real images, in the latent space of ``reference`` (named in the result, never called FID)."""
    return fidelity_in(EncodingCache(reference, batch_size, progress), real, sets, real_source=real_source, k=k)
