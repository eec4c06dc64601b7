"""Where a map's latent pairs come from: one :class:`FitSource` type and one resolver.

A fit source is a support set (or any image set), images of a dataset split, or a model's own
prior samples (z, Enc_B(Dec_A z)). :func:`resolve_fit_source` turns the user's choice into a
``FitSource``; :meth:`FitSource.latents` streams every batch's latents, once per model, for a set of
ordered pairs of models. :func:`fit_pairs` is the one fit loop: it folds them into one map per pair and
estimator (statistics only and one solve for the streaming estimators, sharded over torch.distributed
ranks); :func:`fit_map` (one pair) and :func:`fit_all_pairs` (one estimator) are its special cases.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeGuard, TypeVar

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.constants import IMAGE_SPEC_PREFIXES
from latentmap.errors import ConfigError, LatentmapError, ShapeMismatchError
from latentmap.maps.linear import LinearMap
from latentmap.maps.validation import leave_one_out_r2

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.data.transforms import ImageTransform
    from latentmap.maps.base import MapEstimator
    from latentmap.maps.checks import LatentsLike
    from latentmap.models.base import LatentModel


FIT_KINDS = ("support-set", "images", "dataset", "samples")
# where FitSource.latents puts a latent: a model's index (images), or (source, "z") / (source, target) (samples)
LatentKey: TypeAlias = "int | tuple[int, int | str]"
ImageFn: TypeAlias = "Callable[[torch.Tensor], torch.Tensor]"  # images of one shape -> a model's input images
E = TypeVar("E", bound="MapEstimator")
T = TypeVar("T")


class Streaming(Protocol):
    """An estimator that folds batches into statistics that add up over ranks (:func:`streams`)."""

    def partial_fit(self, X: LatentsLike, Y: LatentsLike) -> object:
        """Fold a batch of pairs into the statistics."""

    def solve(self) -> object:
        """Solve from the statistics accumulated so far."""

    def all_reduce(self, d_source: int, d_target: int) -> object:
        """Add up the statistics of every rank of a torch.distributed run."""


@dataclass
class FitSource:
    """What a map is fitted on: anchor images (a support set or any image set), a dataset split,
    or ``count`` prior samples of the source model.

    ``data`` holds the images (tensor or ImageDataset) for the image kinds, None for samples.
    ``record()`` is what map.json and the reports store; the map's own hyperparameters (bias,
    alpha, method) live in the map, never here.
    """

    kind: str
    count: int
    name: str | None = None
    split: str | None = None
    seed: int | None = None
    path: str | None = None
    data: ImageDataset | torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FIT_KINDS:
            raise ConfigError(f"fit source kind must be one of {', '.join(FIT_KINDS)}, got '{self.kind}' instead")

    @property
    def anchors(self) -> bool:
        """A few anchor images: the paper's bias-free map, ridge penalty chosen by cross-validation."""
        return self.kind in ("support-set", "images")

    def record(self) -> dict[str, str | int]:
        """The fields that are set (kind, name, split, count, seed, path): what map.json and the reports keep."""
        return {k: v for k, v in (("kind", self.kind), ("name", self.name), ("split", self.split),
                                  ("count", self.count), ("seed", self.seed), ("path", self.path)) if v is not None}

    def new_map(self, *, bias: bool | None = None, alpha: float | str | None = None,
                method: str = "lstsq") -> LinearMap:
        """A LinearMap with this source's defaults for what the caller left as None: for anchors those of
        ``constants.ANCHOR_MAP_DEFAULTS`` (the registry's ``linear`` anchor defaults), else LinearMap's own."""
        from latentmap.maps.registry import parse_estimator

        if alpha is None and method != "lstsq":  # only least squares takes a penalty
            alpha = 0.0
        out = parse_estimator("linear").make(anchors=self.anchors,
                                             overrides={"bias": bias, "alpha": alpha, "method": method})
        assert isinstance(out, LinearMap)
        return out

    def data_shape(self, source: LatentModel) -> tuple[int, ...]:
        """The shape of the images this source feeds the models: the source model's for samples."""
        if self.kind == "samples":
            return tuple(source.image_shape)
        if isinstance(self.data, torch.Tensor):
            return tuple(self.data.shape[1:])
        assert self.data is not None, f"a '{self.kind}' fit source holds its images"
        return tuple(self.data.image_shape)

    def pairs(self, source: LatentModel, target: LatentModel, batch_size: int = 256, shard: bool = False,
              image_transform: str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(z_A, z_B) batches: (Enc_A x, Enc_B x) for images, (z, Enc_B(Dec_A z)) for samples; ``shard``: only
        this rank's part of them in a torch.distributed run (latentmap.distributed). The one-pair case of
        :meth:`latents`."""
        x_key, y_key = self.keys((0, 1))
        for latents in self.latents([source, target], [(0, 1)], batch_size, shard, image_transform):
            yield latents[x_key], latents[y_key].to(latents[x_key].device)

    def keys(self, pair: tuple[int, int]) -> tuple[LatentKey, LatentKey]:
        """Where :meth:`latents` puts a pair's (source, target) latents: the models' indices for images; for
        samples (i, "z") (source i's own z) and (i, j) (target j's encoding of source i's samples)."""
        i, j = pair
        return ((i, "z"), (i, j)) if self.kind == "samples" else (i, j)

    def steps(self, pairs: Iterable[tuple[int, int]], batch_size: int) -> int:
        """How many batches :meth:`latents` yields in one process (for a progress bar)."""
        per = -(-self.count // batch_size)
        return per * len({i for i, _ in pairs}) if self.kind == "samples" else per

    def latents(self, models: Sequence[LatentModel], pairs: Sequence[tuple[int, int]], batch_size: int = 256,
                shard: bool = False, image_transform: str | None = None) -> Iterator[dict[LatentKey, torch.Tensor]]:
        """Per fit batch, the latents the ordered ``pairs`` (indices into ``models``) need, each computed once:
        ``{model index: Enc_k x}`` for images; for samples, one source i at a time, ``{(i, "z"): z, (i, j):
        Enc_j(Dec_i z)}`` (:meth:`keys`). ``shard``: this rank's batches only, those one process runs
        (:func:`latentmap.distributed.shard_indices`). ``image_transform`` (a spec of latentmap.data.transforms):
        each model encodes the images turned into its own shape; None: every model must take them as they are."""
        from latentmap import distributed
        from latentmap.data.transforms import resolve_input

        if self.kind == "samples":
            for i in sorted({i for i, _ in pairs}):
                source = models[i]
                into = {j: resolve_input(image_transform, source.image_shape, models[j],
                                         f"the samples of model '{source.name}'") for s, j in pairs if s == i}
                for z, images in self.samples_of(source, batch_size, shard=shard):
                    yield {(i, "z"): z.to(images.device), **{(i, j): models[j].encode(t(images)).to(images.device)
                                           for j, t in into.items()}}
            return
        used = sorted({k for p in pairs for k in p})
        inputs = {k: resolve_input(image_transform, self.data_shape(models[k]), models[k], "the fit images")
                  for k in used}
        for x in image_batches(distributed.shard(self.data, batch_size) if shard else self.data, batch_size)[0]:
            yield {k: models[k].encode(inputs[k](x)) for k in used}

    def samples_of(self, model: LatentModel, batch_size: int = 256, shard: bool = False
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(z, Dec(z)) batches of ``count`` seeded prior samples of ``model``; ``shard``: this rank's batches only
        (every rank draws every z, so the samples are those of one process)."""
        from latentmap import distributed

        gen = torch.Generator().manual_seed(self.seed or 0)
        mine = distributed.shard_indices(self.count, batch_size) if shard else np.arange(self.count)
        for start in range(0, self.count, batch_size):
            z = model.sample_prior(min(batch_size, self.count - start), gen)
            if len(mine) and mine[0] <= start <= mine[-1]:  # this rank's batches: those starting in its rows
                yield z, model.decode(z)


def resolve_fit_source(*, support_set: str | None = None, dataset: str | None = None, samples: int | None = None,
                       split: str = "train", images: int | None = None, seed: int = 0,
                       data_dir: str | os.PathLike[str] | None = None) -> FitSource:
    """The one place that turns the user's choice of fit data into a :class:`FitSource`.

    Exactly one of ``support_set`` (a support-set folder, or an image set ``npy:PATH`` /
    ``folder:PATH``), ``dataset`` (a dataset spec; ``images`` takes a seeded random subset of
    the split) and ``samples`` (a count of prior samples of the source) must be given.
    """
    from latentmap.data.datasets import load_dataset

    chosen = [name for name, v in (("support set", support_set), ("dataset", dataset), ("samples", samples))
              if v is not None]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of a support set, a dataset or a number of samples to fit on"
                          + (f"; got {' and '.join(chosen)}" if chosen else ""))
    if images is not None and dataset is None:
        raise ConfigError("a number of fit images applies to a dataset fit only")
    if samples is not None:
        if int(samples) < 1:
            raise ConfigError(f"the number of samples must be at least 1, got {samples} instead")
        return FitSource("samples", int(samples), seed=seed)
    if dataset is not None:
        data = load_dataset(dataset, split, data_dir=data_dir).random_subset(images, seed)
        return FitSource("dataset", len(data), name=dataset, split=split, seed=seed, data=data)
    assert support_set is not None  # the one choice left
    if str(support_set).startswith(IMAGE_SPEC_PREFIXES):
        image_set = load_dataset(support_set, "all", data_dir=data_dir).all_images()
        return FitSource("images", len(image_set), name=support_set, data=image_set)
    from latentmap.io.support_folder import SupportSet

    support = SupportSet.load(support_set)
    return FitSource("support-set", len(support), name=support.name, path=str(support_set), data=support.images)


def fit_map(source: LatentModel, target: LatentModel, fit: FitSource, linear_map: MapEstimator | None = None, *,
            batch_size: int = 256, progress: bool = False, image_transform: str | None = None) -> MapEstimator:
    """Fit A -> B on ``fit``'s pairs: the one-pair case of :func:`fit_pairs`. The map defaults to
    ``fit.new_map()``; ``image_transform``: a spec (latentmap.data.transforms) that turns the fit images into each
    model's shape (when it changes any image, the map keeps it as ``image_transform_``, written to map.json)."""
    estimator = fit.new_map() if linear_map is None else linear_map
    return fit_pairs([source, target], fit, {"": lambda: estimator}, pairs=[(0, 1)], batch_size=batch_size,
                     progress=progress, image_transform=image_transform)[""][(0, 1)]


def check_same_images(source: LatentModel, target: LatentModel) -> None:
    """Both models must take images of one shape; ShapeMismatchError proposes an image transform otherwise."""
    if tuple(source.image_shape) != tuple(target.image_shape):
        from latentmap.data.transforms import propose_transform

        proposal = propose_transform(source.image_shape, target.image_shape) or "--image-transform auto"
        raise ShapeMismatchError(f"models '{source.name}' and '{target.name}' work on different images: "
                                 f"{tuple(source.image_shape)} and {tuple(target.image_shape)}; give an image "
                                 f"transform: {proposal}, or pad, resize, ...")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def input_transforms(spec: str | None, data_shape: Sequence[int], source: LatentModel, target: LatentModel
                     ) -> tuple[ImageFn, ImageFn]:
    """(images of ``data_shape`` -> A's shape, -> B's shape); None: the images go to both models unchanged."""
    from latentmap.data.transforms import model_inputs

    if spec is None:
        check_same_images(source, target)
        return _identity, _identity
    to_a, to_b = model_inputs(spec, data_shape, [source, target])
    return to_a, to_b


def pair_transform(linear_map: MapEstimator | None) -> ImageTransform | None:
    """The ImageTransform a map was fitted with (A's images -> B's), from ``image_transform_`` or its map.json;
    None for a map fitted without one (an old map, or equal shapes) and for no map."""
    from latentmap.data.transforms import from_record

    record = getattr(linear_map, "image_transform_", None) or getattr(linear_map, "info_", {}).get("image_transform")
    return from_record(record)


def record_transform(linear_map: MapEstimator, spec: str | None, data_shape: Sequence[int], source: LatentModel,
                     target: LatentModel) -> None:
    """Keep ``spec`` on the map (``image_transform_``: {"spec", "from": A's shape, "to": B's}) when it changed
    any image of the fit: equal shapes everywhere leave the map as it was."""
    from latentmap.data.transforms import image_transform, model_inputs

    if spec is None:
        return
    used = [*model_inputs(spec, data_shape, [source, target]), image_transform(spec, source.image_shape,
                                                                               target.image_shape)]
    if not all(t.identity for t in used):
        # a learned attribute only some maps get, which MapEstimator does not declare
        record = image_transform(spec, source.image_shape, target.image_shape).record()
        linear_map.image_transform_ = record


def check_map_fits(linear_map: MapEstimator, source: LatentModel, target: LatentModel) -> None:
    """The map's latent sizes must be the models'."""
    if linear_map.n_features_in_ != source.latent_dim:
        raise ShapeMismatchError(f"map expects source latents of size {linear_map.n_features_in_}, "
                                 f"model '{source.name}' gives {source.latent_dim}")
    if linear_map.n_targets_ != target.latent_dim:
        raise ShapeMismatchError(f"map gives target latents of size {linear_map.n_targets_}, "
                                 f"model '{target.name}' takes {target.latent_dim}")


def fit_all_pairs(models: Sequence[LatentModel], fit: FitSource, make_map: Callable[[], MapEstimator] | None = None,
                  *, batch_size: int = 256, image_transform: str | None = None
                  ) -> dict[tuple[int, int], MapEstimator]:
    """One map per ordered pair (``make_map()`` or ``fit.new_map()``): :func:`fit_pairs` with one estimator."""
    return fit_pairs(models, fit, {"": make_map or fit.new_map}, batch_size=batch_size,
                     image_transform=image_transform)[""]


def streams(estimator: object) -> TypeGuard[Streaming]:
    """Whether ``estimator`` folds batches into sufficient statistics that add up over ranks (``partial_fit``,
    ``solve`` and ``all_reduce``: every StreamingMapEstimator); the others are fitted on every pair at once."""
    return all(callable(getattr(estimator, name, None)) for name in ("partial_fit", "solve", "all_reduce"))


def latent_shape(model: LatentModel) -> tuple[int, ...]:
    """The shape of one latent of ``model``: its ``latent_shape`` ((C, h, w) for a spatial latent), else
    ``(latent_dim,)``. Latents travel flat, [N, latent_dim], through the fit loop either way."""
    return tuple(getattr(model, "latent_shape", None) or (model.latent_dim,))


def with_latent_shapes(estimator: E, source: LatentModel, target: LatentModel) -> E:
    """Give an estimator that declares ``source_shape``/``target_shape`` parameters (a convolutional map) the
    models' latent shapes where they are left as None; any other estimator is returned as it is."""
    params = estimator.get_params(deep=False) if callable(getattr(estimator, "get_params", None)) else {}
    shapes = {name: latent_shape(model) for name, model in (("source_shape", source), ("target_shape", target))
              if name in params and params[name] is None}
    if shapes:
        estimator.set_params(**shapes)
    return estimator


def fit_pairs(models: Sequence[LatentModel], fit: FitSource, factories: Mapping[str, Callable[[], E]], *,
              pairs: Sequence[tuple[int, int]] | None = None, batch_size: int = 256, progress: bool = False,
              image_transform: str | None = None) -> dict[str, dict[tuple[int, int], E]]:
    """The one fit loop: for each named estimator factory, one map per ordered pair of ``models`` (``pairs``, by
    index; default every ordered pair), each fit batch encoded once per model.

    Streaming estimators (:func:`streams`) fold each batch into their statistics and are solved once; the others
    (an MLP) get every pair at once at the end, from latents kept on the CPU. Under torch.distributed, when every
    estimator streams and the source is not a few anchors, each rank encodes its :func:`~latentmap.distributed.
    shard_indices` batches (the batches one process runs) and the statistics are added over the ranks: the maps
    equal one process's. Otherwise every rank fits every pair itself. Anchor fits (a support set or an image set)
    also keep their latents, and a least-squares LinearMap is judged by its leave-one-out R² (``loo_r2``).
    ``image_transform`` (a spec): each model encodes the fit images turned into its own shape (a target encodes a
    source's samples turned into its shape); None: every model must take the images as they are. An estimator
    with ``source_shape``/``target_shape`` parameters left None gets the models' latent shapes.
    """
    from latentmap import distributed

    ordered = list(itertools.permutations(range(len(models)), 2)) if pairs is None else [(i, j) for i, j in pairs]
    maps = {label: {(i, j): with_latent_shapes(make(), models[i], models[j]) for i, j in ordered}
            for label, make in factories.items()}
    fitted = [(p, m) for by_pair in maps.values() for p, m in by_pair.items()]
    for p, m in fitted:  # a bad parameter fails before any encoding
        if callable(getattr(m, "_validate_params", None)):
            _named(models, p, m._validate_params)
        reset = getattr(m, "_reset", None)
        if streams(m) and callable(reset):  # fitted afresh, as fit_batches does
            reset()
    held = [(p, m) for p, m in fitted if not streams(m)]
    keeping = fit.anchors or bool(held)
    sharded = distributed.active() and not fit.anchors and not held
    kept: dict[LatentKey, list[torch.Tensor]] = {}
    steps = fit.latents(models, ordered, batch_size, shard=sharded, image_transform=image_transform)
    title = f"fit {models[ordered[0][0]].name} -> {models[ordered[0][1]].name}" if len(ordered) == 1 else "fit"
    for latents in with_progress(steps, title, progress, fit.steps(ordered, batch_size)):
        for key, z in latents.items() if keeping else ():
            kept.setdefault(key, []).append(z.detach().cpu())
        for p, m in fitted:
            x_key, y_key = fit.keys(p)
            if streams(m) and x_key in latents:
                x = latents[x_key]
                _named(models, p, m.partial_fit, x, latents[y_key].to(x.device))
    whole = {key: torch.cat(parts) for key, parts in kept.items()}
    for p, m in fitted:
        i, j = p
        x_key, y_key = fit.keys(p)
        if streams(m):
            if sharded:
                m.all_reduce(models[i].latent_dim, models[j].latent_dim)
            _named(models, p, m.solve)
        else:
            empty = (torch.empty(0, models[i].latent_dim), torch.empty(0, models[j].latent_dim))
            _named(models, p, m.fit, whole.get(x_key, empty[0]), whole.get(y_key, empty[1]))
        if fit.anchors and isinstance(m, LinearMap) and m.method == "lstsq" and x_key in whole:
            m.fit_metrics_["loo_r2"] = leave_one_out_r2(whole[x_key], whole[y_key], bias=m.bias, alpha=m.alpha_)
        record_transform(m, image_transform, fit.data_shape(models[i]), models[i], models[j])
    return maps


def _named(models: Sequence[LatentModel], pair: tuple[int, int], call: Callable[..., T], *args: torch.Tensor) -> T:
    """``call(*args)``, an error naming the pair (the error keeps its class, for the CLI's policy)."""
    try:
        return call(*args)
    except LatentmapError as exc:
        i, j = pair
        exc.args = (f"map {models[i].name} -> {models[j].name}: {exc}",) + exc.args[1:]
        raise
