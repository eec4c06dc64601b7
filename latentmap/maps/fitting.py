"""Where a map's latent pairs come from: one :class:`FitSource` type and one resolver.

A fit source is a support set (or any image set), images of a dataset split, or a model's own
prior samples (z, Enc_B(Dec_A z)). :func:`resolve_fit_source` turns the user's choice into a
``FitSource``; :meth:`FitSource.pairs` streams (z_A, z_B) batches for an ordered pair of
models; :func:`fit_map` and :func:`fit_all_pairs` fold them into LinearMaps (statistics only,
one solve per map).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.constants import IMAGE_SPEC_PREFIXES
from latentmap.errors import ConfigError, LatentmapError, ShapeMismatchError
from latentmap.maps.linear import AUTO_ALPHA, LinearMap
from latentmap.maps.validation import leave_one_out_r2


FIT_KINDS = ("support-set", "images", "dataset", "samples")


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
    data: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in FIT_KINDS:
            raise ConfigError(f"fit source kind must be one of {', '.join(FIT_KINDS)}, got '{self.kind}' instead")

    @property
    def anchors(self) -> bool:
        """A few anchor images: the paper's bias-free map, ridge penalty chosen by cross-validation."""
        return self.kind in ("support-set", "images")

    def record(self) -> dict:
        return {k: v for k, v in (("kind", self.kind), ("name", self.name), ("split", self.split),
                                  ("count", self.count), ("seed", self.seed), ("path", self.path)) if v is not None}

    def new_map(self, *, bias: bool | None = None, alpha: float | str | None = None,
                method: str = "lstsq") -> LinearMap:
        """A LinearMap with this source's defaults for what the caller left as None."""
        bias = (not self.anchors) if bias is None else bias
        if alpha is None:
            alpha = AUTO_ALPHA if self.anchors and method == "lstsq" else 0.0
        return LinearMap(bias=bias, alpha=alpha, method=method)

    def data_shape(self, source) -> tuple[int, ...]:
        """The shape of the images this source feeds the models: the source model's for samples."""
        if self.kind == "samples":
            return tuple(source.image_shape)
        return tuple(getattr(self.data, "image_shape", None) or tuple(self.data.shape[1:]))

    def pairs(self, source, target, batch_size: int = 256, shard: bool = False, image_transform: str | None = None
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(z_A, z_B) batches: (Enc_A x, Enc_B x) for images, (z, Enc_B(Dec_A z)) for samples; ``shard``: only
        this rank's part of them in a torch.distributed run (latentmap.distributed).

        ``image_transform`` (a spec of latentmap.data.transforms): each model encodes the images turned into its
        own shape; None: both models must work on the same images, fed as they are."""
        from latentmap import distributed

        to_a, to_b = input_transforms(image_transform, self.data_shape(source), source, target)
        if self.kind == "samples":
            for z, images in self.samples_of(source, batch_size, shard=shard):
                yield z.to(images.device), target.encode(to_b(images)).to(images.device)
            return
        for x in image_batches(distributed.shard(self.data, batch_size) if shard else self.data, batch_size)[0]:
            z_a = source.encode(to_a(x))
            yield z_a, target.encode(to_b(x)).to(z_a.device)

    def samples_of(self, model, batch_size: int = 256, shard: bool = False
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
                       data_dir=None) -> FitSource:
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
    if str(support_set).startswith(IMAGE_SPEC_PREFIXES):
        data = load_dataset(support_set, "all", data_dir=data_dir).all_images()
        return FitSource("images", len(data), name=support_set, data=data)
    from latentmap.io.support_folder import SupportSet

    support = SupportSet.load(support_set)
    return FitSource("support-set", len(support), name=support.name, path=str(support_set), data=support.images)


def fit_map(source, target, fit: FitSource, linear_map: LinearMap | None = None, *,
            batch_size: int = 256, progress: bool = False, image_transform: str | None = None) -> LinearMap:
    """Fit A -> B on ``fit``'s pairs (statistics only, one solve); the map defaults to ``fit.new_map()``.

    ``image_transform``: a spec (latentmap.data.transforms) that turns the fit images into each model's shape;
    when it changes any image, the map keeps it as ``image_transform_`` (written to map.json)."""
    linear_map = fit.new_map() if linear_map is None else linear_map
    _fit_map(source, target, fit, linear_map, batch_size, progress, image_transform)
    record_transform(linear_map, image_transform, fit.data_shape(source), source, target)
    return linear_map


def _fit_map(source, target, fit, linear_map, batch_size, progress, image_transform):
    from latentmap import distributed

    if not fit.anchors and distributed.active() and hasattr(linear_map, "all_reduce"):
        # torch.distributed: each rank folds its shard of the pairs into the statistics, the sums are added
        for z_a, z_b in fit.pairs(source, target, batch_size, shard=True, image_transform=image_transform):
            linear_map.partial_fit(z_a, z_b)
        return linear_map.all_reduce(source.latent_dim, target.latent_dim).solve()
    if not fit.anchors:
        batches = with_progress(fit.pairs(source, target, batch_size, image_transform=image_transform), f"fit {source.name} -> {target.name}",
                                progress, -(-fit.count // batch_size))
        if hasattr(linear_map, "fit_batches"):
            return linear_map.fit_batches(batches)
        pairs = [(z_a.cpu(), z_b.cpu()) for z_a, z_b in batches]  # an estimator that needs every pair at once
        return linear_map.fit(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
    # a few anchor images: keep their latents, and judge the map by leave-one-out, not on its own pairs
    pairs = list(fit.pairs(source, target, batch_size, image_transform=image_transform))
    x = torch.cat([z_a.cpu() for z_a, _ in pairs]) if pairs else torch.empty(0, source.latent_dim)
    y = torch.cat([z_b.cpu() for _, z_b in pairs]) if pairs else torch.empty(0, target.latent_dim)
    linear_map.fit(x, y)
    if isinstance(linear_map, LinearMap) and linear_map.method == "lstsq":
        linear_map.fit_metrics_["loo_r2"] = leave_one_out_r2(x, y, bias=linear_map.bias, alpha=linear_map.alpha_)
    return linear_map


def check_same_images(source, target) -> None:
    if tuple(source.image_shape) != tuple(target.image_shape):
        from latentmap.data.transforms import propose_transform

        proposal = propose_transform(source.image_shape, target.image_shape) or "--image-transform auto"
        raise ShapeMismatchError(f"models '{source.name}' and '{target.name}' work on different images: "
                                 f"{tuple(source.image_shape)} and {tuple(target.image_shape)}; give an image "
                                 f"transform: {proposal}, or pad, resize, ...")


def _identity(x):
    return x


def input_transforms(spec: str | None, data_shape, source, target) -> tuple[Callable, Callable]:
    """(images of ``data_shape`` -> A's shape, -> B's shape); None: the images go to both models unchanged."""
    from latentmap.data.transforms import model_inputs

    if spec is None:
        check_same_images(source, target)
        return _identity, _identity
    return tuple(model_inputs(spec, data_shape, [source, target]))


def pair_transform(linear_map):
    """The ImageTransform a map was fitted with (A's images -> B's), from ``image_transform_`` or its map.json;
    None for a map fitted without one (an old map, or equal shapes)."""
    from latentmap.data.transforms import from_record

    record = getattr(linear_map, "image_transform_", None) or getattr(linear_map, "info_", {}).get("image_transform")
    return from_record(record)


def record_transform(linear_map, spec: str | None, data_shape, source, target) -> None:
    """Keep ``spec`` on the map (``image_transform_``: {"spec", "from": A's shape, "to": B's}) when it changed
    any image of the fit: equal shapes everywhere leave the map as it was."""
    from latentmap.data.transforms import image_transform, model_inputs

    if spec is None:
        return
    used = [*model_inputs(spec, data_shape, [source, target]), image_transform(spec, source.image_shape,
                                                                               target.image_shape)]
    if not all(t.identity for t in used):
        linear_map.image_transform_ = image_transform(spec, source.image_shape, target.image_shape).record()


def check_map_fits(linear_map: LinearMap, source, target) -> None:
    """The map's latent sizes must be the models'."""
    if linear_map.n_features_in_ != source.latent_dim:
        raise ShapeMismatchError(f"map expects source latents of size {linear_map.n_features_in_}, "
                                 f"model '{source.name}' gives {source.latent_dim}")
    if linear_map.n_targets_ != target.latent_dim:
        raise ShapeMismatchError(f"map gives target latents of size {linear_map.n_targets_}, "
                                 f"model '{target.name}' takes {target.latent_dim}")


def fit_all_pairs(models, fit: FitSource, make_map: Callable[[], LinearMap] | None = None, *,
                  batch_size: int = 256, image_transform: str | None = None) -> dict[tuple[int, int], LinearMap]:
    """One LinearMap per ordered pair (``make_map()`` or ``fit.new_map()``), encoding every fit batch once per model."""
    return fit_all_pairs_by_estimator(models, fit, {"": make_map or fit.new_map}, batch_size=batch_size,
                                      image_transform=image_transform)[""]


def fit_all_pairs_by_estimator(models, fit: FitSource, factories: dict[str, Callable[[], object]], *,
                               batch_size: int = 256, image_transform: str | None = None
                               ) -> dict[str, dict[tuple[int, int], object]]:
    """For each named estimator factory, one map per ordered pair; every fit batch is encoded once per model.

    Streaming estimators (``partial_fit``) fold each batch into their statistics; the others (an MLP) get
    every pair at once at the end, from latents kept on the CPU (once per model for image fits).
    ``image_transform`` (a spec): each model encodes the fit images turned into its own shape (a target
    encodes a source's samples turned into its shape); None: every model must take the images as they are.
    """
    from latentmap import distributed
    from latentmap.data.transforms import image_transform as resolve

    def to(k, shape):  # images of ``shape`` as model k takes them
        if image_transform is None:
            return _identity
        return resolve(image_transform, shape, models[k].image_shape)

    pairs = list(itertools.permutations(range(len(models)), 2))
    maps = {label: {p: make() for p in pairs} for label, make in factories.items()}
    streamed = [(label, p, m) for label, by_pair in maps.items() for p, m in by_pair.items() if hasattr(m, "partial_fit")]
    held = [(label, p, m) for label, by_pair in maps.items() for p, m in by_pair.items()
            if not hasattr(m, "partial_fit")]
    kept: dict = {}  # latents for the non-streaming estimators: model index, or (source, target) for samples
    # torch.distributed: with only estimators whose statistics add up, each rank folds its shard of the batches
    sharded = distributed.active() and not fit.anchors and all(hasattr(m, "all_reduce") for _, _, m in streamed) \
        and not held

    def keep(key, z):
        if held:
            kept.setdefault(key, []).append(z.detach().cpu())

    if fit.kind == "samples":  # each source's own samples, re-encoded by every target
        for i, source in enumerate(models):
            into = {j: to(j, source.image_shape) for j in range(len(models)) if j != i}
            for z, images in fit.samples_of(source, batch_size, shard=sharded):
                keep((i, "z"), z)
                for j in range(len(models)):
                    if j != i:
                        z_j = models[j].encode(into[j](images)).to(z.device)
                        keep((i, j), z_j)
                        for _, p, m in streamed:
                            if p == (i, j):
                                m.partial_fit(z, z_j)
    else:
        inputs = [to(k, fit.data_shape(models[k])) for k in range(len(models))]
        for x in image_batches(distributed.shard(fit.data, batch_size) if sharded else fit.data, batch_size)[0]:
            latents = [m.encode(t(x)) for m, t in zip(models, inputs)]  # statistics stay on each source's device
            for i, z in enumerate(latents):
                keep(i, z)
            for _, (i, j), m in streamed:
                m.partial_fit(latents[i], latents[j].to(latents[i].device))
    for _, (i, j), m in streamed + held:
        try:
            if hasattr(m, "partial_fit"):
                if sharded:
                    m.all_reduce(models[i].latent_dim, models[j].latent_dim)
                m.solve()
            else:
                x_key, y_key = ((i, "z"), (i, j)) if fit.kind == "samples" else (i, j)
                m.fit(torch.cat(kept[x_key]), torch.cat(kept[y_key]))
        except LatentmapError as exc:  # name the pair; keep the error's class for the CLI's policy
            exc.args = (f"map {models[i].name} -> {models[j].name}: {exc}",) + exc.args[1:]
            raise
        record_transform(m, image_transform, fit.data_shape(models[i]), models[i], models[j])
    return maps
