"""Support sets: a small, well-spread set of images that fixes a linear map between latent spaces.

This module holds the builder (the artifact, ``support_sets/NAME/``, is read and written by
:mod:`latentmap.io.support_folder`, re-exported here), after Asperti & Tonelli: rank the latent
variables by information gain (:mod:`latentmap.support.info_gain`), split the latent space into the
2^k sign sectors of the k most informative ones (:mod:`latentmap.support.sectors`), draw one image per
non-empty sector, and complete to the target size from the most crowded sectors. Other
anchor strategies (random, farthest, kmeans) come from :mod:`latentmap.support.selectors`;
:mod:`latentmap.evaluation.anchors` compares them all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap import distributed
from latentmap.constants import ANCHOR_STRATEGIES
from latentmap.io.support_folder import IMAGES_NAME, MANIFEST_NAME, SupportSet  # noqa: F401  (re-exported)
from latentmap.io.settings import SettingsOf
from latentmap.constants import GAIN_IMAGES, SPREAD_PAIRS
from latentmap.errors import ConfigError, DatasetError, ShapeMismatchError, SupportSetError
from latentmap.models.base import LatentModel
from latentmap.support.sectors import DEFAULT_MIN_SHARE, NO_SECTOR, populations

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.support.info_gain import InformationGain
# =========================================================================== builder



@dataclass(frozen=True)
class SupportSetSettings(SettingsOf):
    """How a support set's anchors are chosen: one object through the builder (its choices go to the manifest).

    ``size`` defaults to the model's latent size; ``top_k`` and ``threshold`` to the sector method's rules."""

    WHAT = "support-set settings"  # not a field: no annotation

    size: int | None = None
    strategy: str = "sectors"
    top_k: int | None = None
    threshold: float | None = None
    seed: int = 0
    gain_images: int = GAIN_IMAGES  # images the information gain is estimated on
    pairs: int = SPREAD_PAIRS  # random pairs of the spread statistic
    min_share: float = DEFAULT_MIN_SHARE
    batch_size: int = 256
    chunk_rows: int | None = None
    progress: bool = False


@dataclass
class SectorSelection:
    """Positions (into the candidate pool) of the chosen images, with their sector and role."""

    positions: list[int]
    sectors: list[int]
    roles: list[str]  # "sector": one per non-empty sector; "completion": extra from crowded sectors
    dropped: list[int]


def _generator(seed: int, stream: int) -> torch.Generator:
    """Independent seeded streams (subsample, selection, pairs) so changing one leaves the others alone."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream) % 2**64)  # any seed < 2**63


def read_exclusions(values: Iterable[object] | None) -> np.ndarray:
    """Indices to leave out: ints, strings of comma/space-separated ints, or paths to files of such."""
    found: list[int] = []
    for value in values or ():
        if isinstance(value, (int, np.integer)):
            found.append(int(value))
            continue
        text = str(value)
        if Path(text).is_file():
            text = Path(text).read_text()
        for token in text.replace(",", " ").split():
            try:
                found.append(int(token))
            except ValueError:
                raise ConfigError(f"exclusions must be integer image indices, got '{token}' in '{value}'") from None
    return np.unique(np.asarray(found, dtype=np.int64))


def target_size_for(models: Iterable[Any], *, allow_pickle: bool = False) -> tuple[int, dict[str, int]]:
    """The largest latent dimension among models (checkpoint folders, specs or LatentModel objects); a spec that
    is no plain checkpoint is loaded, with the caller's consent to run code (``allow_pickle``) and no more."""
    from latentmap.io.checkpoint import is_checkpoint, read_config
    from latentmap.models.registry import load_model

    dims: dict[str, int] = {}
    for spec in models:
        if isinstance(spec, LatentModel):
            dims[spec.name] = spec.latent_dim
        elif is_checkpoint(spec):
            config = read_config(spec)
            dims[str(config.get("name", Path(spec).name))] = int(config["latent_dim"])
        else:
            model = load_model(spec, allow_pickle=allow_pickle)
            dims[model.name] = model.latent_dim
    if not dims:
        raise ConfigError("--for-models needs at least one model")
    return max(dims.values()), dims


def candidate_pool(n_images: int, exclude: Iterable[object] | None, dataset_name: str = "dataset") -> np.ndarray:
    """Dataset indices that may be chosen: all but the excluded ones (which must exist)."""
    excluded = read_exclusions(exclude)
    if excluded.size and (excluded.min() < 0 or excluded.max() >= n_images):
        bad = int(excluded.min()) if excluded.min() < 0 else int(excluded.max())
        raise DatasetError(f"excluded index {bad} is outside {dataset_name}, which has {n_images} images")
    return np.setdiff1d(np.arange(n_images, dtype=np.int64), excluded)


def select_from_sectors(codes: torch.Tensor, k: int, size: int, generator: torch.Generator,
                        threshold: float | None = None) -> SectorSelection:
    """One random point per non-empty sector, then further points from the most crowded sectors.

    With more non-empty sectors than ``size``, the most populated ``size`` sectors are kept and
    the others are reported as dropped.
    """
    pops = populations(codes, k)
    nonempty = [int(s) for s in np.flatnonzero(pops)]
    at = "" if threshold is None else f" at threshold {threshold:.4g}"
    if not nonempty:
        raise SupportSetError(f"every one of the {2 ** k} sectors is empty{at}: no point has |z| above the "
                              f"threshold on all {k} chosen variables; lower the threshold or top-k")
    if int(pops.sum()) < size:
        raise SupportSetError(f"the sectors hold {int(pops.sum())} images{at}, fewer than the support-set size "
                              f"{size}; lower the threshold, the top-k or the size")
    crowded = sorted(nonempty, key=lambda s: (-int(pops[s]), s))
    kept, dropped = sorted(crowded[:size]), sorted(crowded[size:])
    order = _shuffled_members(codes, nonempty, generator)
    selection = SectorSelection([order[s][0] for s in kept], list(kept), ["sector"] * len(kept), dropped)
    taken = dict.fromkeys(kept, 1)
    while len(selection.positions) < size:  # round-robin over sectors, most crowded first
        for s in crowded:
            if len(selection.positions) == size:
                break
            if s in taken and taken[s] < pops[s]:
                selection.positions.append(order[s][taken[s]])
                selection.sectors.append(s)
                selection.roles.append("completion")
                taken[s] += 1
    return selection


def _shuffled_members(codes: torch.Tensor, sectors: list[int], generator: torch.Generator) -> dict[int, list[int]]:
    """Every sector's members in a seeded random order (drawn in sector order, so reproducible)."""
    order = torch.argsort(codes, stable=True)  # group by sector once instead of scanning per sector
    counts = torch.bincount(codes[codes != NO_SECTOR], minlength=max(sectors) + 1)
    starts = torch.cumsum(counts, 0) - counts + int((codes == NO_SECTOR).sum())
    members: dict[int, list[int]] = {}
    for s in sectors:
        pos = order[int(starts[s]):int(starts[s]) + int(counts[s])]
        members[s] = pos[torch.randperm(len(pos), generator=generator)].tolist()
    return members


def build_support_set(model: LatentModel, dataset: ImageDataset, settings: SupportSetSettings | None = None, *,
                      exclude: Iterable[object] | None = None, name: str | None = None,
                      dataset_spec: str | None = None, split: str | None = None, model_source: str | None = None,
                      for_models: dict[str, Any] | None = None, latents: torch.Tensor | None = None,
                      info: InformationGain | None = None, **options: Any) -> SupportSet:
    """Choose ``size`` images of ``dataset`` (an ImageDataset split) as anchors for ``model``'s latent space.

    ``settings`` (:class:`SupportSetSettings`; ``options`` such as ``size=``, ``strategy=`` replace its
    fields): ``strategy="sectors"`` is the information-gain/sector method; ``random``, ``farthest`` and
    ``kmeans`` are baselines of the same size. ``size`` defaults to the model's latent dimension.
    The keywords say where the images come from (recorded in the manifest). ``latents`` (the encodings
    of the whole split) and ``info`` (an :class:`~latentmap.support.info_gain.InformationGain`) may be
    passed to reuse them across builds.
    """
    s = SupportSetSettings.of(settings, **options)
    size = model.latent_dim if s.size is None else int(s.size)
    s = replace(s, size=size)
    strategy, seed, batch_size, progress = s.strategy, s.seed, s.batch_size, s.progress
    _check_settings(model, dataset, s)
    pool = candidate_pool(len(dataset), exclude, _dataset_label(dataset, split))
    if len(pool) < size:
        raise SupportSetError(f"{_dataset_label(dataset, split)} has {len(pool)} usable images "
                              f"({len(dataset) - len(pool)} excluded), fewer than the support-set size {size}")
    transform: Any = getattr(dataset, "transform", None)
    manifest: dict[str, Any]
    manifest = {"strategy": strategy, "target_size": size, "seed": int(seed),
                "model": _model_record(model, model_source),
                "dataset": {"spec": dataset_spec or getattr(dataset, "name", "?"), "split": split,
                            "images": len(dataset),
                            # images of another shape than the model's reach it through a transform: record it
                            **({"image_transform": transform.record()} if hasattr(transform, "record") else {})},
                "excluded": [int(i) for i in np.setdiff1d(np.arange(len(dataset)), pool)],
                "for_models": dict(for_models or {}), "notes": [],
                "compute": distributed.compute_record(batch_size)}  # how the encodings' float32 passes ran
    if latents is not None and tuple(latents.shape) != (len(dataset), model.latent_dim):
        raise ShapeMismatchError(f"latents of the split must have shape {(len(dataset), model.latent_dim)}, "
                                 f"got {tuple(latents.shape)}")
    if strategy != "random":  # every strategy but random works in the latent space of the split
        if latents is None:  # torch.distributed: each rank encodes its shard, the codes gathered in order
            latents = distributed.map_shards(lambda part: model.encode_all(part, batch_size, progress=progress),
                                             dataset, batch_size)
        latents = latents[torch.from_numpy(pool)]
    details: list[dict[str, Any]]
    if strategy == "sectors":
        assert latents is not None  # encoded above for every strategy but random
        positions, details = _sector_method(model, dataset, pool, latents, info, s, manifest)
    else:
        from latentmap.support.selectors import select_anchors

        positions = select_anchors(strategy, size, pool_size=len(pool), latents=latents, seed=seed)
        details = [{} for _ in positions]
    indices = [int(pool[p]) for p in positions]
    images = dataset.batch(indices)
    manifest["indices"] = indices
    manifest["images"] = [{"index": i, **d} for i, d in zip(indices, details)]
    manifest["statistics"] = {**manifest.get("statistics", {}),
                              **image_statistics(images, dataset, pool, s.pairs, seed, batch_size)}
    for note in manifest["notes"]:
        warnings.warn(note, stacklevel=2)
    return SupportSet(name or f"{model.name}-{strategy}", images, manifest)


def _check_settings(model: LatentModel, dataset: ImageDataset, s: SupportSetSettings) -> None:
    from latentmap.support.sectors import check_top_k

    size, strategy, top_k, threshold, gain_images, pairs = s.size, s.strategy, s.top_k, s.threshold, \
        s.gain_images, s.pairs
    assert size is not None  # build_support_set sets it
    if strategy not in ANCHOR_STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(ANCHOR_STRATEGIES)}, got '{strategy}' instead")
    if size < 1:
        raise ConfigError(f"support-set size must be at least 1, got {size} instead")
    if tuple(dataset.image_shape) != tuple(model.image_shape):
        raise DatasetError(f"model '{model.name}' expects images of shape {tuple(model.image_shape)}, "
                           f"dataset '{dataset.name}' has {tuple(dataset.image_shape)}")
    if top_k is not None:
        check_top_k(int(top_k), model.latent_dim, model.name)
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"threshold must be a non-negative number, got {threshold} instead")
    if gain_images < 1:
        raise ConfigError(f"gain-images must be at least 1, got {gain_images} instead")
    if pairs < 1:
        raise ConfigError(f"pairs must be at least 1, got {pairs} instead")
    check_pairs(pairs, dataset.image_shape)


PAIR_BYTES = 33  # peak bytes per random pair in random_pairs_mse: two int64 index draws, a mask and its long copy
PAIR_SECONDS = (1e-6, 5e-9)  # time per random pair: a constant and one per pixel (the 2-core machine, measured roughly)


def check_pairs(pairs: int, image_shape: Sequence[int]) -> float:
    """Refuse (ResourceError) ``pairs`` random pairs whose indices cannot fit in memory; else the expected seconds
    of the dataset's random pairs MSE over images of ``image_shape``."""
    from latentmap.resources import check_memory

    check_memory(PAIR_BYTES * pairs, f"--pairs {pairs:,} (the random pairs' indices)", "choose fewer --pairs")
    return pairs * (PAIR_SECONDS[0] + PAIR_SECONDS[1] * int(np.prod(image_shape)))


def _dataset_label(dataset: object, split: str | None) -> str:
    return f"dataset '{getattr(dataset, 'name', '?')}'" + (f" ({split} split)" if split else "")


def _model_record(model: LatentModel, source: str | None) -> dict[str, Any]:
    from latentmap.models.registry import record_model

    return record_model(model, source)


def _sector_method(model: LatentModel, dataset: ImageDataset, pool: np.ndarray, latents: torch.Tensor,
                   info: InformationGain | None, s: SupportSetSettings,
                   manifest: dict[str, Any]) -> tuple[list[int], list[dict[str, Any]]]:
    """Information gain -> top-k variables -> sectors -> selection; fills the manifest's sector fields."""
    from latentmap.support.sectors import default_threshold, default_top_k, sector_codes, sector_signs

    size, top_k, threshold, seed = s.size, s.top_k, s.threshold, s.seed
    assert size is not None  # build_support_set sets it
    k = default_top_k(size, model.latent_dim) if top_k is None else int(top_k)
    if info is None:
        info = subsample_information_gain(model, dataset, pool, s.gain_images, seed, s.batch_size, s.chunk_rows,
                                          s.progress)
    variables = info.ranking[:k]
    rule: dict[str, Any] = {"rule": "given"}
    if threshold is None:
        threshold, rule = default_threshold(latents, variables, s.min_share)
    codes = sector_codes(latents, variables, float(threshold))
    selection = select_from_sectors(codes, k, size, _generator(seed, 2), float(threshold))
    pops = populations(codes, k)
    manifest.update({"top_k": k, "variables": variables, "threshold": round(float(threshold), 6),
                     "threshold_rule": rule, "information_gain": info.to_dict(),
                     "sector_populations": [{"sector": s, "signs": sector_signs(s, k), "population": int(p)}
                                            for s, p in enumerate(pops)],
                     "dropped_sectors": [{"sector": s, "signs": sector_signs(s, k), "population": int(pops[s])}
                                         for s in selection.dropped]})
    manifest["statistics"] = sector_statistics(pops, len(pool))
    if selection.dropped:
        manifest["notes"].append(f"{int((pops > 0).sum())} sectors are populated but the size is {size}: kept the "
                                 f"{size} most populated, dropped sectors {selection.dropped}")
    details = [{"sector": s, "signs": sector_signs(s, k), "role": r}
               for s, r in zip(selection.sectors, selection.roles)]
    return selection.positions, details


def subsample_information_gain(model: LatentModel, dataset: ImageDataset, pool: np.ndarray, gain_images: int,
                               seed: int, batch_size: int = 64, chunk_rows: int | None = None,
                               progress: bool = False) -> InformationGain:
    """Information gain over a seeded subsample of ``gain_images`` images of the pool."""
    from latentmap.support.info_gain import information_gain

    gain_pos = torch.randperm(len(pool), generator=_generator(seed, 1))[:min(gain_images, len(pool))]
    gain_idx = np.sort(pool[gain_pos.numpy()])
    return information_gain(model, dataset.subset(gain_idx), batch_size=min(batch_size, 64),
                            chunk_rows=chunk_rows, progress=progress)


# =========================================================================== statistics and figures

def sector_statistics(pops: np.ndarray, pool_size: int) -> dict[str, Any]:
    """Counts of the 2^k sectors (``pops``: population of each) and the smallest, median and largest non-empty one."""
    nonempty = pops[pops > 0]
    return {"sectors": int(len(pops)), "nonempty_sectors": int(len(nonempty)),
            "empty_sectors": int((pops == 0).sum()), "points_in_sectors": int(pops.sum()),
            "points_outside_sectors": int(pool_size - pops.sum()),
            "population_min": int(nonempty.min()), "population_median": float(np.median(nonempty)),
            "population_max": int(nonempty.max())}


def mean_pairwise_mse(images: torch.Tensor) -> float | None:
    """Mean per-pixel MSE over all pairs i < j of a batch (None for fewer than two images)."""
    n = len(images)
    if n < 2:
        return None
    flat = images.flatten(1).double()
    sq = flat.pow(2).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T).clamp_min(0) / flat.shape[1]
    return float(dist[torch.triu_indices(n, n, 1).unbind()].mean())


def random_pairs_mse(dataset: ImageDataset, pool: np.ndarray, pairs: int, generator: torch.Generator,
                     batch_size: int = 256) -> float | None:
    """Mean per-pixel MSE between random pairs of distinct images of the pool."""
    n = len(pool)
    if n < 2:
        return None
    first = torch.randint(n, (pairs,), generator=generator)
    second = torch.randint(n - 1, (pairs,), generator=generator)
    second = second + (second >= first).long()  # distinct from first, still uniform
    total = 0.0
    for s in range(0, pairs, batch_size):
        a = dataset.batch(pool[first[s:s + batch_size].numpy()])
        b = dataset.batch(pool[second[s:s + batch_size].numpy()])
        total += float((a.double() - b.double()).pow(2).flatten(1).mean(1).sum())
    return total / pairs


def image_statistics(images: torch.Tensor, dataset: ImageDataset, pool: np.ndarray, pairs: int, seed: int,
                     batch_size: int = 256) -> dict[str, Any]:
    """The spread of the chosen images: their mean pairwise per-pixel MSE, that of ``pairs`` random pairs of the
    pool, and the ratio of the two."""
    inside = mean_pairwise_mse(images)
    outside = random_pairs_mse(dataset, pool, pairs, _generator(seed, 3), batch_size)
    ratio = inside / outside if inside is not None and outside else None
    return {"support_pairwise_mse": _round(inside), "dataset_random_pairs_mse": _round(outside),
            "random_pairs": int(pairs), "pairwise_mse_ratio": _round(ratio)}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


