"""The experiment that compares anchor strategies: an evaluation of the support set's sector method.

The strategies themselves (sectors in :mod:`latentmap.support.build`; ``random``, ``farthest`` and
``kmeans`` in :mod:`latentmap.support.selectors`) each choose ``size`` images of a candidate pool.
:func:`compare_anchors` fits linear maps between models from each strategy's anchors and measures
how well they relocate test images.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from latentmap.batching import with_progress
from latentmap.constants import (ANCHOR_MAP_DEFAULTS, ANCHOR_STRATEGIES, COMPARE_ALPHA, COMPARE_REFERENCE_IMAGES,
                                 GAIN_IMAGES)
from latentmap.errors import ConfigError, ShapeMismatchError
from latentmap.io.frames import FrameRepr, caption

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel


# =========================================================================== compare

REFERENCE_STRATEGY = "all-train"
COMPARE_PAIRS = 1000  # random pairs for each anchor set's pairwise-MSE statistic


@dataclass
class CompareResult(FrameRepr):
    """``rows``: one per strategy, size, seed and ordered model pair; ``summary``: per strategy and size."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    reference: pd.DataFrame
    settings: dict[str, Any]  # the comparison's parameters (JSON-like), as compare_anchors records them
    notes: list[str] = field(default_factory=list)

    def to_frame(self, by: str = "strategy") -> pd.DataFrame:
        """``by="strategy"``: one row per strategy and size (``summary``); ``by="run"``: one row per strategy, size,
        seed and ordered pair (``rows``)."""
        if by not in ("strategy", "run"):
            raise ConfigError(f"by must be 'strategy' or 'run', got {by!r} instead")
        return (self.summary if by == "strategy" else self.rows).copy()

    def _frame_caption(self) -> str:
        s = self.settings
        return caption(f"Anchor strategies compared: sizes {s.get('sizes')}, seeds {s.get('seeds')}, anchors in "
                       f"{s.get('anchor_model')}'s space", s.get("models", []))


@dataclass
class _Encoded:
    """Test images and every model's test latents, computed once."""

    images: torch.Tensor
    latents: dict[str, torch.Tensor]  # by model name


def compare_anchors(models: Sequence[LatentModel], train: ImageDataset, test: ImageDataset, *, sizes: Sequence[int],
                    strategies: Sequence[str] = ANCHOR_STRATEGIES, seeds: Sequence[int] = (0, 1, 2),
                    anchor_model: LatentModel | str | None = None, alpha: float | str = COMPARE_ALPHA,
                    bias: bool = bool(ANCHOR_MAP_DEFAULTS["bias"]),
                    gain_images: int = GAIN_IMAGES, reference_images: int = COMPARE_REFERENCE_IMAGES,
                    batch_size: int = 256,
                    progress: bool = False) -> CompareResult:
    """For each strategy, size and seed: anchors in ``anchor_model``'s latent space (default the first
    model), a linear map fitted from them for every ordered pair of ``models``, and its relocated
    image MSE, mean over ``test``, of Dec_B(map(Enc_A x)) against x.

    The maps are bias-free (the paper's map) with ridge ``alpha`` by default: sizes below the
    source latent size leave the unpenalized problem underdetermined. ``anchor_model`` is one of ``models`` or its
    name; ``sizes``, ``strategies`` (of ``constants.ANCHOR_STRATEGIES``) and ``seeds`` span the runs, and the
    reference maps are fitted on ``reference_images`` training images.
    """
    from latentmap.support.build import build_support_set, subsample_information_gain

    models, anchor = _check_compare(models, train, test, sizes, strategies, seeds, anchor_model)
    settings: dict[str, Any] = {
        "models": [m.name for m in models], "anchor_model": anchor.name, "sizes": list(sizes),
        "strategies": list(strategies), "seeds": list(seeds), "alpha": alpha, "bias": bias,
        "train_images": len(train), "test_images": len(test), "gain_images": gain_images,
        "reference_images": min(reference_images, len(train))}
    encoded = _encode_test(models, test, batch_size, progress)
    split_latents = anchor.encode_all(train, batch_size, progress=progress)
    info = (subsample_information_gain(anchor, train, np.arange(len(train)), gain_images, 0, batch_size,
                                       progress=progress) if "sectors" in strategies else None)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    runs = list(itertools.product(strategies, sizes, seeds))
    for strategy, size, seed in with_progress(runs, "anchor strategies", progress, unit="run"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            support = build_support_set(anchor, train, size=size, strategy=strategy, seed=seed,
                                        latents=split_latents, info=info, pairs=COMPARE_PAIRS,
                                        batch_size=batch_size)
            anchor_latents = {m.name: m.encode_all(support.images, batch_size) for m in models}
            for a, b in itertools.permutations(models, 2):
                mse, r2 = _relocate(a, b, anchor_latents[a.name], anchor_latents[b.name], encoded, alpha, bias,
                                    batch_size)
                rows.append({"strategy": strategy, "size": size, "seed": seed, "source": a.name, "target": b.name,
                             "relocated_mse": mse, "latent_r2": r2,
                             "support_pairwise_mse": support.manifest["statistics"]["support_pairwise_mse"]})
        notes += [f"{strategy} size {size} seed {seed}: {w.message}" for w in caught]
    reference = _reference(models, train, encoded, settings["reference_images"], alpha, bias, batch_size)
    frame = pd.DataFrame(rows)
    return CompareResult(frame, summarize(frame), reference, settings, sorted(set(notes)))


def _check_compare(models: Sequence[LatentModel], train: ImageDataset, test: ImageDataset, sizes: Sequence[int],
                   strategies: Sequence[str], seeds: Sequence[int], anchor_model: LatentModel | str | None
                   ) -> tuple[list[LatentModel], LatentModel]:
    listed = list(models)
    if len(listed) < 2:
        raise ConfigError(f"compare needs at least two models to map between, got {len(listed)}")
    names = [m.name for m in listed]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct, got {names}")
    for m in listed:
        for data in (train, test):
            if tuple(m.image_shape) != tuple(data.image_shape):
                raise ShapeMismatchError(f"model '{m.name}' expects images of shape {tuple(m.image_shape)}, "
                                         f"dataset '{data.name}' has {tuple(data.image_shape)}")
    bad = [s for s in strategies if s not in ANCHOR_STRATEGIES]
    if bad or not strategies:
        raise ConfigError(f"strategies must be among {', '.join(ANCHOR_STRATEGIES)}, got {list(strategies)}")
    if not sizes or min(sizes) < 1 or max(sizes) > len(train):
        raise ConfigError(f"sizes must be between 1 and the {len(train)} training images, got {list(sizes)}")
    if not seeds:
        raise ConfigError("compare needs at least one seed")
    if anchor_model is None:
        return listed, listed[0]
    by_name = {m.name: m for m in listed}
    key = anchor_model if isinstance(anchor_model, str) else anchor_model.name
    if key not in by_name:
        raise ConfigError(f"anchor model '{key}' is not among the compared models {names}")
    return listed, by_name[key]


def _encode_test(models: Sequence[LatentModel], test: ImageDataset, batch_size: int, progress: bool) -> _Encoded:
    images = test.all_images()
    return _Encoded(images, {m.name: m.encode_all(images, batch_size, progress=progress) for m in models})


def _relocate(a: LatentModel, b: LatentModel, za: torch.Tensor, zb: torch.Tensor, encoded: _Encoded,
              alpha: float | str, bias: bool, batch_size: int) -> tuple[float, float]:
    """Fit a -> b on anchor latents; relocated image MSE and latent R² on the test images."""
    from latentmap.evaluation.metrics import per_image_mse
    from latentmap.maps.linear import LinearMap
    from latentmap.stats import r2_score

    linear_map = LinearMap(bias=bias, alpha=alpha).fit(za.double(), zb.double())
    predicted = linear_map.predict(encoded.latents[a.name].double())
    assert isinstance(predicted, torch.Tensor)  # a tensor in, a tensor out
    predicted = predicted.float()
    relocated = b.decode_all(predicted, batch_size)
    mse = float(per_image_mse(relocated, encoded.images).double().mean())
    return mse, r2_score(encoded.latents[b.name], predicted)


def _reference(models: Sequence[LatentModel], train: ImageDataset, encoded: _Encoded, n_images: int,
               alpha: float | str, bias: bool, batch_size: int) -> pd.DataFrame:
    """Per ordered pair: the same map fitted on many training images, and the target's own reconstruction."""
    from latentmap.evaluation.metrics import per_image_mse

    idx = np.sort(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n_images].numpy())
    images = train.batch(idx)
    fit_latents = {m.name: m.encode_all(images, batch_size) for m in models}
    rows: list[dict[str, Any]] = []
    for a, b in itertools.permutations(models, 2):
        mse, r2 = _relocate(a, b, fit_latents[a.name], fit_latents[b.name], encoded, alpha, bias, batch_size)
        recon = b.decode_all(encoded.latents[b.name], batch_size)
        rows.append({"source": a.name, "target": b.name, "fit_images": len(idx), "relocated_mse": mse,
                     "latent_r2": r2,
                     "target_reconstruction_mse": float(per_image_mse(recon, encoded.images).double().mean())})
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and size: mean over model pairs, then mean/std/min/max over seeds; ratio to random."""
    per_seed = rows.groupby(["strategy", "size", "seed"], as_index=False).agg(
        relocated_mse=("relocated_mse", "mean"), latent_r2=("latent_r2", "mean"),
        support_pairwise_mse=("support_pairwise_mse", "first"))
    summary = per_seed.groupby(["strategy", "size"], as_index=False).agg(
        relocated_mse=("relocated_mse", "mean"), relocated_mse_std=("relocated_mse", "std"),
        relocated_mse_min=("relocated_mse", "min"), relocated_mse_max=("relocated_mse", "max"),
        latent_r2=("latent_r2", "mean"), support_pairwise_mse=("support_pairwise_mse", "mean"),
        seeds=("seed", "count"))
    if "random" in set(summary["strategy"]):
        random_mse = summary[summary["strategy"] == "random"].set_index("size")["relocated_mse"]
        summary["vs_random"] = summary["relocated_mse"] / summary["size"].map(random_mse)
    order = {s: i for i, s in enumerate(ANCHOR_STRATEGIES)}
    return summary.sort_values(["size", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c,
                               ignore_index=True)


# =========================================================================== report


