"""Relocation: fit a linear map A -> B from paired encodings and judge it by decoding with B.

``fit_map`` streams pairs (Enc_A x, Enc_B x) from images, or (z, Enc_B(Dec_A z)) from A's own
samples, into a :class:`~latentmap.maps.linear.LinearMap`. ``evaluate_relocation`` runs a test
split batch by batch on the models' devices and keeps only float64 sums: reconstruction MSE
of A and B, latent MSE and R² of M(Enc_A x) against Enc_B x, image MSE/SSIM (and LPIPS when
available) of Dec_B(M(Enc_A x)) against x, its ratio to B's own reconstruction MSE, and the
cycle A -> B -> A. ``build_atlas`` does this for every ordered pair of a set of models.

Relocation types, from what each model is (``objective``, ``family`` and the fingerprint of its
networks' architecture: module classes and parameter shapes): 1 = same objective, family and
architecture, different training; 2 = same objective (both VAE-like, or both adversarial),
different family or architecture; 3 = different objectives (GAN or StyleGAN vs VAE-like).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch

from latentmap import distributed
from latentmap.batching import image_batches, with_progress
from latentmap.data.datasets import evenly_spaced_indices
from latentmap.errors import ConfigError, DependencyError
from latentmap.evaluation.distribution import PerImageErrors, summarize
from latentmap.evaluation.metrics import per_image_mse, per_image_ssim
from latentmap.io.model_record import architecture_fingerprint
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.maps.fitting import check_map_fits, input_transforms, pair_transform
from latentmap.stats import Moments, Sums, r2_from_sums

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.data.images import ImageDataset
    from latentmap.maps.base import MapEstimator
    from latentmap.models.base import LatentModel

RELOCATION_TYPES = {
    1: "same objective, family and architecture, different training",
    2: "same objective, different family or architecture",
    3: "different objectives",
}
GRID_IMAGES = 12
LpipsFn: TypeAlias = "Callable[[torch.Tensor, torch.Tensor], torch.Tensor]"  # per-image LPIPS of two batches


# --------------------------------------------------------------------------- relocation type

def relocation_type(source: LatentModel, target: LatentModel) -> int:
    """1, 2 or 3 (see the module docstring) for the ordered pair of models."""
    return relocation_kind(source, target)[0]


def relocation_kind(source: LatentModel, target: LatentModel) -> tuple[int, str]:
    """(type, what holds for this pair): the type from the objectives, the families and the fingerprints of the
    networks' architecture (module classes and parameter shapes, latent size, image shape).

    A family that one of the models cannot know (modules a user wraps) does not keep a pair with the same networks from
    Type 1; two known families must be equal for it."""
    if source.objective != target.objective:
        return 3, f"different objectives ({source.objective}, {target.objective})"
    families = (source.family, target.family)
    known = None not in families
    same_family = known and families[0] == families[1]
    if architecture_fingerprint(source) == architecture_fingerprint(target) and (same_family or not known):
        return 1, "same architecture and objective, different training"
    if known and not same_family:
        return 2, f"same objective, different families ({families[0]}, {families[1]})"
    return 2, ("same family, different architecture" if same_family else "same objective, different architecture")


# --------------------------------------------------------------------------- fitting


# --------------------------------------------------------------------------- LPIPS hook

def lpips_function(device: torch.device | str | None, setting: str = "auto") -> tuple[LpipsFn | None, str]:
    """(per-image LPIPS callable or None, note) for ``setting`` "off", "auto" (the torch hub cache) or a weights path.

    Never falls back to an LPIPS with untrained or random weights: with "auto" and no pretrained
    backbone the metric is reported as unavailable; an explicit path that cannot be read is an error.
    """
    if setting == "off":
        return None, "LPIPS off (--lpips off)"
    from latentmap.evaluation.lpips_metric import load_lpips, portable_text

    try:
        return load_lpips(None if setting == "auto" else setting, device=device), "LPIPS (pretrained alex backbone)"
    except DependencyError as exc:
        if setting != "auto":
            raise
        return None, f"LPIPS unavailable: {portable_text(str(exc))}"  # the note goes into reports


# --------------------------------------------------------------------------- evaluation

@dataclass
class RelocationResult(FrameRepr):
    """Metrics of one ordered pair on an evaluation split (image metrics in [0,1] intensity units)."""

    source: str
    target: str
    source_kind: str
    target_kind: str
    type: int
    type_name: str
    n_images: int
    source_mse: float  # A's own reconstruction
    target_mse: float  # B's own reconstruction
    relocated_mse: float  # Dec_B(M(Enc_A x)) vs x
    ratio: float  # relocated_mse / target_mse
    latent_mse: float
    latent_r2: float
    target_ssim: float
    relocated_ssim: float
    cycle_mse: float | None  # Dec_A(M'(Enc_B(Dec_B(M(Enc_A x))))) vs x; None for a map with no inverse
    cycle_ratio: float | None  # cycle_mse / source_mse
    cycle_via: str
    target_lpips: float | None = None
    relocated_lpips: float | None = None
    lpips_note: str = ""
    # per label of a labelled dataset: label, name, n_images, target_mse, relocated_mse, ratio
    by_label: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    estimator: str = "linear"  # the map's estimator (its spec label in an atlas of several)
    # per-image relocated/own ratio: median, 90th percentile; seeded 95% bootstrap interval of ``ratio``
    image_ratio_median: float | None = None
    image_ratio_p90: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    worst_images: list[int] = field(default_factory=list)  # positions in the evaluated images, worst relocated first
    # MSE of the best constant image (the evaluated images' mean, in B's shape): B's own MSE at or above it means
    # B reconstructs nothing, and a ratio against it means nothing (:meth:`target_useless`)
    mean_image_mse: float | None = None

    def target_useless(self) -> bool:
        """Whether B's own reconstruction is no better than predicting every image by the images' mean."""
        return self.mean_image_mse is not None and self.target_mse >= self.mean_image_mse

    def to_dict(self) -> dict[str, Any]:
        """Every field, as a JSON-like dict."""
        return asdict(self)

    def table_row(self) -> dict[str, Any]:
        """The scalar metrics: one row of a table (the per-label breakdown, worst images and extras left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("extra", "by_label", "worst_images")}

    _one_row = True  # a notebook shows the metrics one per line

    def to_frame(self) -> pd.DataFrame:
        """The pair's scalar metrics as a one-row pandas frame (:meth:`table_row`)."""
        return records_frame([self.table_row()])

    def _frame_caption(self) -> str:
        return caption(f"Relocation {self.source} -> {self.target} (type {self.type}, {self.estimator} map), "
                       f"{self.n_images} test images", [self.source, self.target])


class RelocationAccumulator:
    """Streams the batches of one ordered pair A -> B into float64 sums."""

    def __init__(self, source: LatentModel, target: LatentModel, linear_map: MapEstimator,
                 reverse_map: MapEstimator | None = None, lpips: LpipsFn | None = None, lpips_note: str = "",
                 cycle: bool = True) -> None:
        check_map_fits(linear_map, source, target)
        self.source, self.target, self.map = source, target, linear_map
        self.cycle_via = "fitted reverse map" if reverse_map is not None else "pseudo-inverse of the map"
        self.reverse: MapEstimator | None = reverse_map if reverse_map is not None else (
            linear_map.inverse() if hasattr(linear_map, "inverse") else None)
        if self.reverse is None:  # a nonlinear map given alone: no way back to A
            self.cycle_via = "none (the map has no inverse)"
        else:
            check_map_fits(self.reverse, target, source)
        if not cycle:  # the cycle costs an encode and a decode per image: optional
            self.reverse, self.cycle_via = None, "not computed (cycle off)"
        self.lpips, self.lpips_note = lpips, lpips_note
        self.sums, self.z_b, self.n = Sums(), Moments(), 0
        self.x_t = Moments()  # per-pixel moments of the images B is judged against: the mean image's MSE
        self.per_image = PerImageErrors()  # own and relocated MSE of each image: quantiles, bootstrap, worst
        self.label_sums: torch.Tensor | None = None  # [labels, 3]: count, target MSE sum, relocated MSE sum

    def update(self, x: torch.Tensor, z_a: torch.Tensor, x_a: torch.Tensor, z_b: torch.Tensor, x_b: torch.Tensor,
               labels: torch.Tensor | None = None, own: dict[str, torch.Tensor] | None = None,
               x_target: torch.Tensor | None = None) -> None:
        """x: images; z_a, x_a: A's encodings and reconstructions; z_b, x_b: B's; labels: optional, per image.

        ``x_target``: the same images in B's shape when the models work on different images (x is then in A's):
        B's own and the relocated reconstructions are judged against it, A's own and the cycle against x.

        ``own`` may hold the per-image metrics of the models' own reconstructions, computed once per model
        and shared by every pair (the atlas): ``source_mse``, ``target_mse``, ``target_ssim``, ``target_lpips``.
        """
        dev = self.target.device
        x_t = (x if x_target is None else x_target).to(dev)
        x_s = x.to(dev) if x_target is None else x.to(self.source.device)
        z_mapped = self.map.transform(z_a.to(dev))
        assert isinstance(z_mapped, torch.Tensor)  # a tensor in, a tensor out
        x_mapped = self.target.decode(z_mapped)
        z_b = z_b.to(dev, torch.float64)
        s = self.sums
        own = own or {}
        s.add("source_mse", own["source_mse"] if "source_mse" in own else per_image_mse(x_a.to(x_s.device), x_s))
        target_mse = own["target_mse"].to(dev) if "target_mse" in own else per_image_mse(x_b.to(dev), x_t)
        relocated_mse = per_image_mse(x_mapped, x_t)
        s.add("target_mse", target_mse)
        s.add("relocated_mse", relocated_mse)
        self.per_image.update(target_mse, relocated_mse)
        if labels is not None:
            self._add_by_label(torch.as_tensor(labels), target_mse, relocated_mse)
        if self.reverse is not None:
            z_cycle = self.reverse.transform(self.target.encode(x_mapped).to(self.source.device))
            s.add("cycle_mse", per_image_mse(self.source.decode(z_cycle).to(x_s.device), x_s))
        s.add("target_ssim", own["target_ssim"] if "target_ssim" in own else per_image_ssim(x_b.to(dev), x_t))
        s.add("relocated_ssim", per_image_ssim(x_mapped, x_t))
        s.add("latent_sse", (z_mapped.to(torch.float64) - z_b).pow(2))  # per dimension
        self.z_b.update(z_b)
        self.x_t.update(x_t.to(torch.float64))
        if self.lpips is not None:
            s.add("target_lpips", own["target_lpips"] if "target_lpips" in own else self.lpips(x_b.to(dev), x_t))
            s.add("relocated_lpips", self.lpips(x_mapped, x_t))
        self.n += len(x)

    def all_reduce(self) -> RelocationAccumulator:
        """torch.distributed: add up every rank's sums (each fed its shard of the images) and gather the per-image
        errors in shard order, so every rank's result is the single process's; nothing outside a run of ranks."""
        if not distributed.active():
            return self
        own = {} if self.label_sums is None else {"__by_label__": self.label_sums}
        total = distributed.all_reduce_named({**self.sums.values, **own})
        self.label_sums = total.pop("__by_label__").cpu() if "__by_label__" in total else None
        self.sums.values = total
        z_b = distributed.all_reduce_moments(self.z_b, self.target.latent_dim, full=False)
        x_t = distributed.all_reduce_moments(self.x_t, math.prod(self.target.image_shape), full=False)
        assert z_b is not None and x_t is not None  # an accumulator in, one out
        self.z_b, self.x_t = z_b, x_t
        self.n = distributed.all_reduce_count(self.n)
        own_mse, relocated = (distributed.gather_rows(a) for a in self.per_image.arrays())
        self.per_image = PerImageErrors()
        self.per_image.update(torch.from_numpy(own_mse), torch.from_numpy(relocated))
        return self

    def _add_by_label(self, labels: torch.Tensor, target_mse: torch.Tensor, relocated_mse: torch.Tensor) -> None:
        labels = labels.to(target_mse.device, torch.int64)
        if len(labels) != len(target_mse) or bool((labels < 0).any()):
            raise ConfigError("labels must be one non-negative integer per image")
        old = self.label_sums
        k = max(int(labels.max()) + 1, 0 if old is None else len(old))  # labels seen so far, or in this batch
        sums = torch.stack([torch.bincount(labels, minlength=k).to(torch.float64),
                            torch.bincount(labels, target_mse.to(torch.float64), minlength=k),
                            torch.bincount(labels, relocated_mse.to(torch.float64), minlength=k)], dim=1).cpu()
        if old is not None:
            sums[:len(old)] += old
        self.label_sums = sums

    def _by_label(self, label_name: Callable[[int], str]) -> list[dict[str, Any]]:
        if self.label_sums is None:
            return []
        rows: list[dict[str, Any]] = []
        for label, (count, target, relocated) in enumerate(self.label_sums.tolist()):
            if count:
                rows.append({"label": label, "name": label_name(label), "n_images": int(count),
                             "target_mse": target / count, "relocated_mse": relocated / count,
                             "ratio": _ratio(relocated, target)})
        return rows

    def result(self, extra: dict[str, Any] | None = None, label_name: Callable[[int], str] = str, *,
               estimator: str = "linear", bootstrap: int = 1000, seed: int = 0) -> RelocationResult:
        """The pair's metrics; ``bootstrap`` resamples (seeded) give the 95% interval of the ratio."""
        if self.n == 0:
            raise ConfigError(f"no images were evaluated for the pair {self.source.name} -> {self.target.name}")
        s, n = self.sums, self.n
        mean = {k: float(s.get(k)) / n for k in ("source_mse", "target_mse", "relocated_mse", "target_ssim",
                                                 "relocated_ssim")}
        cycle_mse = float(s.get("cycle_mse")) / n if "cycle_mse" in s else None
        sse = s.get("latent_sse")
        r2 = r2_from_sums(sse, self.z_b.variance() * n)
        lp = {k: float(s.get(k)) / n for k in ("target_lpips", "relocated_lpips")} if self.lpips else {}
        kind, kind_name = relocation_kind(self.source, self.target)
        return RelocationResult(
            source=self.source.name, target=self.target.name, source_kind=self.source.kind,
            target_kind=self.target.kind, type=kind, type_name=kind_name, n_images=n,
            source_mse=mean["source_mse"], target_mse=mean["target_mse"], relocated_mse=mean["relocated_mse"],
            ratio=_ratio(mean["relocated_mse"], mean["target_mse"]),
            latent_mse=float(sse.sum()) / (n * len(sse)), latent_r2=float(r2.mean()),
            target_ssim=mean["target_ssim"], relocated_ssim=mean["relocated_ssim"],
            cycle_mse=cycle_mse, cycle_ratio=None if cycle_mse is None else _ratio(cycle_mse, mean["source_mse"]),
            cycle_via=self.cycle_via, target_lpips=lp.get("target_lpips"),
            relocated_lpips=lp.get("relocated_lpips"), lpips_note=self.lpips_note,
            by_label=self._by_label(label_name), extra=dict(extra or {}), estimator=estimator,
            mean_image_mse=float(self.x_t.variance().mean()) if self.x_t.n else None,
            **summarize(*self.per_image.arrays(), n_boot=bootstrap, seed=seed))


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 1.0 if a == 0 else float("inf")


def evaluate_relocation(source: LatentModel, target: LatentModel, linear_map: MapEstimator,
                        data: ImageDataset | torch.Tensor, *, reverse_map: MapEstimator | None = None,
                        batch_size: int = 256, lpips: str = "auto", progress: bool = False,
                        seed: int = 0, cycle: bool = True, image_transform: str | None = None) -> RelocationResult:
    """Relocation metrics of A -> B on ``data`` (ImageDataset or image tensor), batched on the devices.

    ``linear_map`` is any map estimator (LinearMap or one of latentmap.maps.registry's); ``seed`` seeds the
    bootstrap interval of the ratio; ``cycle=False`` skips the cycle A -> B -> A (an encode and a decode per image).
    ``image_transform`` (a spec of latentmap.data.transforms; default the one the map was fitted with, if any):
    each model gets the images turned into its own shape; B's reconstructions and the relocated images are
    judged against the images in B's shape, A's own and the cycle against them in A's."""
    spec = _transform_spec(linear_map, image_transform)
    to_a, to_b = input_transforms(spec, _data_shape(data), source, target)
    lpips_fn, note = lpips_function(target.device, lpips)
    acc = RelocationAccumulator(source, target, linear_map, reverse_map, lpips_fn, note, cycle=cycle)
    mine = distributed.shard(data, batch_size)  # torch.distributed: this rank's batches; sums added below
    batches, total = image_batches(mine, batch_size)
    labels = label_batches(mine, batch_size)
    for x in with_progress(batches, f"{source.name} -> {target.name}", progress, total):
        x_a, x_b = to_a(x), to_b(x)
        z_a, z_b = source.encode(x_a), target.encode(x_b)
        acc.update(x_a, z_a, source.decode(z_a), z_b, target.decode(z_b), labels=next(labels),
                   x_target=None if x_b is x_a else x_b)
    acc.all_reduce()
    return acc.result(label_name=label_namer(data), estimator=linear_map.estimator_name,
                      seed=seed)


def label_batches(data: object, batch_size: int) -> Iterator[torch.Tensor | None]:
    """The labels of each batch that ``image_batches(data, batch_size)`` yields; None when unlabelled."""
    labels = getattr(data, "labels", None)
    if labels is None:
        return itertools.repeat(None)
    return (labels[s:s + batch_size] for s in range(0, len(labels), batch_size))


def label_namer(data: object) -> Callable[[int], str]:
    """How ``data`` names a label: its ``label_name`` (an ImageDataset's), else the label's number as text."""
    return data.label_name if hasattr(data, "label_name") else str


def _transform_spec(linear_map: MapEstimator | None, given: str | None) -> str | None:
    if given is not None:
        return given
    recorded = pair_transform(linear_map)
    return None if recorded is None else recorded.spec


def _data_shape(data: ImageDataset | torch.Tensor) -> tuple[int, ...]:
    return tuple(data.shape[1:]) if isinstance(data, torch.Tensor) else tuple(data.image_shape)


def pair_images(source: LatentModel, target: LatentModel, linear_map: MapEstimator | None, images: torch.Tensor,
                image_transform: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``images`` as A takes them, as B takes them), through ``image_transform`` or the map's own (unchanged
    for a pair fitted without one, or without a map)."""
    spec = _transform_spec(linear_map, image_transform)
    to_a, to_b = input_transforms(spec, tuple(images.shape[1:]), source, target)
    return to_a(images), to_b(images)


def relocation_rows(source: LatentModel, target: LatentModel, linear_map: MapEstimator, images: torch.Tensor,
                    image_transform: str | None = None) -> list[torch.Tensor]:
    """Grid rows as in the source texts' figures: original / A's reconstruction / B after mapping / B's own.

    Between models of different image shapes (``image_transform``, default the map's), every row is shown in
    B's shape: the originals as B gets them, and A's reconstruction turned into B's shape."""
    from latentmap.data.transforms import image_transform as resolve

    check_map_fits(linear_map, source, target)
    spec = _transform_spec(linear_map, image_transform)
    x_a, x_b = pair_images(source, target, linear_map, images, spec)
    a_to_b = resolve(spec, source.image_shape, target.image_shape) if spec is not None else (lambda x: x)
    z_a = source.encode(x_a)
    mapped = target.decode(linear_map.transform(z_a.to(target.device)))
    return [x_b.cpu(), a_to_b(source.decode(z_a).cpu()), mapped.cpu(), target.reconstruct(x_b).cpu()]


def grid_indices(n_total: int, n: int = GRID_IMAGES) -> np.ndarray:
    """Positions of ``n`` images spread evenly over ``n_total`` (the images a relocation grid shows)."""
    return evenly_spaced_indices(n_total, n)


# --------------------------------------------------------------------------- atlas


