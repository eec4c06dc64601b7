"""The relocation atlas: fit and evaluate every ordered pair of a set of models, with one or several estimators.

Each model encodes the fit images once and encodes and decodes every test batch once; all pairs and
estimators share those passes. Beside the ratios: the per-image ratio distribution and bootstrap
intervals of every pair (latentmap.evaluation.distribution), the linear CKA and SVCCA of every pair
of latent spaces on the test images (latentmap.evaluation.similarity) and, with a linear and an MLP
estimator, the linearity gap (latentmap.evaluation.comparison).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap import distributed
from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, LatentmapError
from latentmap.evaluation import comparison
from latentmap.evaluation.relocation import (LpipsFn, RelocationAccumulator, RelocationResult, label_batches,
                                             label_namer, lpips_function)
from latentmap.evaluation.similarity import SimilarityAccumulator
from latentmap.maps.fitting import FitSource, ImageFn, check_same_images, fit_pairs
from latentmap.models.registry import record_model
from latentmap.io.frames import FrameRepr, caption, records_frame

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.data.images import ImageDataset
    from latentmap.maps.base import MapEstimator
    from latentmap.models.base import LatentModel


@dataclass
class AtlasResult(FrameRepr):
    """Every ordered pair of models, fitted and evaluated with one or several estimators (:func:`build_atlas`).

    ``to_frame()`` gives one row per pair and estimator, ``to_frame(by="estimator")`` the estimators compared per
    relocation type; a notebook shows the first as a table."""

    results: list[RelocationResult]
    models: list[dict[str, Any]]  # each model's record (latentmap.io.model_record)
    fit_source: dict[str, Any]  # FitSource.record()
    map_params: dict[str, Any]  # the (first) estimator's hyperparameters (bias, alpha, method for a LinearMap)
    # (source name, target name) -> map of the first estimator
    maps: dict[tuple[str, str], MapEstimator] = field(default_factory=dict, repr=False)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"} of models left out
    # estimator label -> {"estimator": registered name, "params": hyperparameters}, in the order given
    estimators: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (label, source, target) -> map
    estimator_maps: dict[tuple[str, str, str], MapEstimator] = field(default_factory=dict, repr=False)
    # {"names": [model names], "cka": [m, m], "svcca": [m, m]} on the test images
    similarity: dict[str, Any] = field(default_factory=dict)
    # (label, source, target) -> (own, relocated) arrays
    per_image: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    seed: int = 0
    compute: dict[str, int] = field(default_factory=dict)  # threads per process and batch size of the float32 passes

    @property
    def primary(self) -> str:
        """The first estimator's label: the one the ratio matrix and the grids show."""
        return next(iter(self.estimators), "linear")

    def similarity_matrix(self, kind: str) -> pd.DataFrame:
        """The ``kind`` ("cka" or "svcca") similarity of every pair of models, as a frame indexed by model."""
        import pandas as pd

        mat = pd.DataFrame(self.similarity[kind], index=self.similarity["names"], columns=self.similarity["names"])
        mat.index.name = "model"
        return mat

    def similarity_frame(self) -> pd.DataFrame:
        """One row per ordered pair: type, CKA, SVCCA and each estimator's ratio."""
        return comparison.similarity_frame(self)

    def similarity_prediction(self) -> pd.DataFrame:
        """Per estimator and measure: Spearman's correlation of the similarity with the ratio over pairs."""
        return comparison.similarity_prediction(self)

    def linearity_gap(self, linear: str | None = None, nonlinear: str | None = None
                      ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """(per pair, per relocation type) frames of ratio(linear) − ratio(nonlinear); None without both."""
        return comparison.linearity_gap(self, linear, nonlinear)

    def frame(self) -> pd.DataFrame:
        """One row per result: the scalar metrics of each :class:`RelocationResult` (every estimator's)."""
        import pandas as pd

        rows = [r.table_row() for r in self.results]
        return pd.DataFrame(rows)

    def to_frame(self, by: str = "pair") -> pd.DataFrame:
        """``by="pair"``: one row per ordered pair and estimator, the scalar metrics of each
        :class:`RelocationResult`; ``by="estimator"``: the estimators compared, one row per relocation type and
        estimator (pairs, mean, median, best and worst ratio)."""
        if by not in ("pair", "estimator"):
            raise ConfigError(f"by must be 'pair' or 'estimator', got {by!r} instead")
        frame = records_frame(r.table_row() for r in self.results)
        if by == "pair" or frame.empty:
            return frame
        return (frame.groupby(["type", "estimator"], sort=False)
                .agg(pairs=("ratio", "size"), mean_ratio=("ratio", "mean"), median_ratio=("ratio", "median"),
                     best_ratio=("ratio", "min"), worst_ratio=("ratio", "max"))
                .reset_index())

    def _frame_caption(self) -> str:
        fit = self.fit_source
        if fit.get("kind") == "samples":
            on = f"{fit.get('count')} prior samples"
        else:
            on = " ".join(str(fit[k]) for k in ("kind", "name") if fit.get(k)) + f" ({fit.get('count')} images)"
        return caption(f"Relocation atlas: {len(self.results)} results of {', '.join(self.estimators) or 'linear'}, "
                       f"fitted on {on}", self.models)

    def results_of(self, estimator: str | None = None) -> list[RelocationResult]:
        """The results of one estimator (default the first)."""
        label = estimator or self.primary
        return [r for r in self.results if r.estimator == label]

    def by_label_frame(self) -> pd.DataFrame:
        """One row per pair and label (empty when the test images have no labels)."""
        import pandas as pd

        return pd.DataFrame([{"source": r.source, "target": r.target, "type": r.type, "estimator": r.estimator, **row}
                             for r in self.results for row in r.by_label])

    def ratio_matrix(self, estimator: str | None = None) -> pd.DataFrame:
        """The ratio of every ordered pair (rows: source, columns: target) for one estimator (default the first)."""
        import pandas as pd

        names = [m["name"] for m in self.models]
        mat = pd.DataFrame(np.nan, index=names, columns=names)
        for r in self.results_of(estimator):
            mat.loc[r.source, r.target] = r.ratio
        mat.index.name = "source \\ target"
        return mat


def build_atlas(models: Sequence[LatentModel], test_data: ImageDataset | torch.Tensor, fit: FitSource,
                make_map: Callable[[], MapEstimator] | None = None, *,
                estimators: Mapping[str, Callable[[], MapEstimator]] | None = None, batch_size: int = 256,
                lpips: str = "auto", model_paths: Mapping[str, str | os.PathLike[str]] | None = None,
                progress: bool = False,
                bootstrap: int = 1000, seed: int = 0, cycle: bool = True,
                image_transform: str | None = None) -> AtlasResult:
    """Fit every ordered pair of ``models`` on ``fit`` and evaluate it on ``test_data``.

    Each model's own reconstruction of a test batch, and its MSE, SSIM and LPIPS against the images, are
    computed once and shared by all its pairs; ``cycle=False`` skips the cycles A -> B -> A.

    ``make_map`` builds each pair's estimator (default ``fit.new_map()``, the fit source's defaults);
    ``estimators`` instead maps labels to factories (``{"linear": ..., "mlp": ...}``): one map per pair and
    estimator, one result row each. ``bootstrap`` seeded resamples give each ratio's 95% interval.
    ``model_paths``: where each model (by name) was loaded from, for the models' records.

    ``image_transform`` (a spec of latentmap.data.transforms, such as "auto" or "pad"): every model gets the fit
    and test images turned into its own shape (a pair's relocated images are judged against the test images in
    the target's shape), and a model no transform can serve is left out; None: models whose images are not the
    test images' shape are left out.
    """
    from latentmap.data.transforms import ImageTransform

    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct for the atlas, got {names}")
    models, skipped, inputs = _models_for(models, test_data, image_transform)
    if len(models) < 2:
        raise ConfigError(f"an atlas needs at least 2 models that work on the test images, got {len(models)}"
                          + (f" ({'; '.join(s['name'] + ': ' + s['reason'] for s in skipped)})" if skipped else ""))
    if estimators is None:
        make = make_map or fit.new_map
        estimators = {make().estimator_name: make}
    by_estimator = fit_pairs(models, fit, estimators, batch_size=batch_size, progress=progress,
                             image_transform=image_transform)
    lpips_fn, note = lpips_function(models[0].device, lpips)
    accs = {(label, i, j): RelocationAccumulator(models[i], models[j], m, maps[(j, i)], lpips_fn, note, cycle=cycle)
            for label, maps in by_estimator.items() for (i, j), m in maps.items()}
    similarity = SimilarityAccumulator([m.latent_dim for m in models])
    mine = distributed.shard(test_data, batch_size)  # torch.distributed: this rank's batches; sums added below
    batches, total = image_batches(mine, batch_size)
    labels = label_batches(mine, batch_size)
    for x in with_progress(batches, "atlas", progress, total):
        xs = [t(x) for t in inputs]  # the test images as each model takes them
        enc = [m.encode(x_m) for m, x_m in zip(models, xs)]
        rec = [m.decode(z) for m, z in zip(models, enc)]
        similarity.update(enc)
        batch_labels = next(labels)
        own = [own_metrics(m, x_m, r, lpips_fn) for m, x_m, r in zip(models, xs, rec)]
        for (_, i, j), acc in accs.items():
            acc.update(xs[i], enc[i], rec[i], enc[j], rec[j], labels=batch_labels,
                       x_target=None if xs[j] is xs[i] else xs[j],
                       own={"source_mse": own[i]["mse"], "target_mse": own[j]["mse"], "target_ssim": own[j]["ssim"],
                            **({"target_lpips": own[j]["lpips"]} if lpips_fn is not None else {})})
    reducing: list[RelocationAccumulator | SimilarityAccumulator] = [*accs.values(), similarity]
    for reduced in reducing:  # the same order on every rank
        reduced.all_reduce()
    order = {label: k for k, label in enumerate(by_estimator)}
    results = [acc.result({"fit_metrics": by_estimator[label][(i, j)].fit_metrics_}, label_namer(test_data),
                          estimator=label, bootstrap=bootstrap, seed=seed) for (label, i, j), acc in accs.items()]
    results.sort(key=lambda r: (r.type, r.source, r.target, order[r.estimator]))
    names = [m.name for m in models]
    primary = next(iter(by_estimator))
    first_maps = by_estimator[primary]
    infos = [record_model(m, (model_paths or {}).get(m.name)) for m in models]
    for info, t in zip(infos, inputs):  # how each model got the test images, when they were transformed
        if isinstance(t, ImageTransform) and not t.identity:
            info["image_transform"] = t.record()
    return AtlasResult(
        results, infos, fit.record(),
        next(iter(first_maps.values())).get_params(), maps={(names[i], names[j]): m for (i, j), m in first_maps.items()},
        skipped=skipped,
        estimators={label: {"estimator": next(iter(maps.values())).estimator_name,
                            "params": next(iter(maps.values())).get_params()} for label, maps in by_estimator.items()},
        estimator_maps={(label, names[i], names[j]): m for label, maps in by_estimator.items()
                        for (i, j), m in maps.items()},
        similarity={"names": names, **similarity.matrices()},
        per_image={(label, names[i], names[j]): acc.per_image.arrays() for (label, i, j), acc in accs.items()},
        seed=seed, compute=distributed.compute_record(batch_size))


def own_metrics(model: LatentModel, x: torch.Tensor, reconstruction: torch.Tensor, lpips_fn: LpipsFn | None = None
                ) -> dict[str, torch.Tensor]:
    """Per-image MSE, SSIM (and LPIPS) of a model's own reconstruction of ``x``, on the model's device."""
    from latentmap.evaluation.metrics import per_image_mse, per_image_ssim

    x = x.to(model.device)
    out = {"mse": per_image_mse(reconstruction, x), "ssim": per_image_ssim(reconstruction, x)}
    if lpips_fn is not None:
        out["lpips"] = lpips_fn(reconstruction, x)
    return out


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _models_for(models: Sequence[LatentModel], test_data: ImageDataset | torch.Tensor, spec: str | None = None
                ) -> tuple[list[LatentModel], list[dict[str, str]], list[ImageFn]]:
    """(usable models, skipped ones with a reason, each usable model's input transform from the test images).

    Without a ``spec``, the models whose images are the test images' shape; with one, every model the spec can
    serve (a warning names each transformed model). The others are skipped with a warning and a reason."""
    from latentmap.data.transforms import canonical_spec, resolve_input

    if spec is not None and canonical_spec(spec) == "identity":  # the images as they are: as without a spec
        spec = None
    shape = tuple(test_data.shape[1:]) if isinstance(test_data, torch.Tensor) else tuple(test_data.image_shape)
    usable: list[LatentModel] = []
    skipped: list[dict[str, str]] = []
    inputs: list[ImageFn] = []
    for m in models:
        if spec is None and tuple(m.image_shape) == shape:
            usable.append(m)
            inputs.append(_identity)
            continue
        if spec is None:
            reason = f"works on images {tuple(m.image_shape)}, the test images are {shape}"
        else:
            try:
                transform = resolve_input(spec, shape, m, "the test images")
            except LatentmapError as exc:
                reason = f"works on images {tuple(m.image_shape)}, the test images are {shape}, and {exc}"
            else:
                usable.append(m)
                inputs.append(transform)
                if not transform.identity:
                    warnings.warn(f"atlas: model '{m.name}' works on images {list(m.image_shape)}: it gets the "
                                  f"images {list(shape)} through the image transform {transform.describe()}",
                                  stacklevel=3)
                continue
        warnings.warn(f"atlas: skipping model '{m.name}': {reason}", stacklevel=3)
        skipped.append({"name": m.name, "reason": reason})
    if spec is None:
        for m in usable[1:]:
            check_same_images(usable[0], m)
    return usable, skipped, inputs
