"""Generator expressiveness: what a model can reproduce, on its own samples, real images and a support set.

For each model and each target set (its own samples, real test images, the support-set images)
the benchmark measures the reconstruction through the encoder or inverter (MSE, SSIM, LPIPS when
available), then after gradient refinement of the latent (:func:`~latentmap.evaluation.inversion.invert`,
the source texts' "double check"), and how far the latents lie from the sampler's typical region
(:mod:`latentmap.evaluation.samplers`). The headline is the ratio of the encoder MSE on the
support set (and on real images) to that on the model's own samples, with a bootstrap 95% interval.
After refinement own samples are reproduced almost exactly, so refined errors are compared
across models rather than as ratios. Computation only: the metric registry and the result classes are
:mod:`latentmap.evaluation.expressiveness_results` (re-exported here), :mod:`latentmap.report.expressiveness`
renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap import distributed
from latentmap.batching import with_progress
from latentmap.io.settings import SettingsOf
from latentmap.errors import ConfigError
from latentmap.evaluation.distribution import (BOOTSTRAP_DRAW_SECONDS, EXPRESSIVENESS_BOOTSTRAP,  # noqa: F401
                                                MAX_BOOTSTRAP, RatioCI, bootstrap_ratio, bootstrap_seconds)
from latentmap.evaluation.expressiveness_results import (LATENT_SCORES, METRICS, RUNTIME_METRICS,  # noqa: F401
                                                         SET_LABELS, TARGET_SETS, ExpressivenessResult, MetricFn,
                                                         ModelExpressiveness, SetScores, metric_functions,
                                                         metric_label, metric_names, register_metric)
from latentmap.evaluation.inversion import invert
from latentmap.evaluation.samplers import LatentSampler, PriorSampler, TypicalRegion, typical_region
from latentmap.models.base import LatentModel
from latentmap.models.registry import record_model

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset

# support/real: the support/own ratio of a model whose own samples were real images (the calibration)
RATIOS = (("support/own", "support", "own"), ("real/own", "real", "own"), ("support/real", "support", "real"))
BOOTSTRAP = EXPRESSIVENESS_BOOTSTRAP
WORST = 8


@dataclass(frozen=True)
class ExpressivenessSettings(SettingsOf):
    """How the benchmark runs (sizes, sampler, refinement, LPIPS, seed): one object through every call."""

    WHAT = "expressiveness settings"  # not a field: no annotation

    samples: int = 512  # own samples per model
    sampler: str = "auto"
    fit_images: int = 10_000  # training images a fitted sampler is fitted on
    components: int = 10  # of the gmm sampler
    refine_images: int = 128  # per target set
    steps: int = 200
    lr: float = 0.05
    lpips_setting: str = "auto"
    seed: int = 0
    bootstrap: int = BOOTSTRAP
    worst: int = WORST
    batch_size: int = 256
    progress: bool = False


def _batched(fn: MetricFn, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device | str) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(fn(x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)).double().cpu())
    return torch.cat(out).numpy() if out else np.empty(0)


LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Per-image LPIPS, called as lpips(reconstructions, images) (from
:func:`latentmap.evaluation.relocation.lpips_function`)."""


def _metrics(lpips: LpipsFn | None) -> dict[str, MetricFn]:
    """The registered metrics, and LPIPS (called as lpips(reconstructions, images)) when given."""
    extra: dict[str, MetricFn] = {} if lpips is None else {"lpips": lambda x, x_hat: lpips(x_hat, x)}
    return {**metric_functions(), **extra}


def _scores(x: torch.Tensor, x_hat: torch.Tensor, lpips: LpipsFn | None, batch_size: int,
            device: torch.device | str) -> dict[str, np.ndarray]:
    """Each metric's per-image values of ``x_hat`` against ``x`` (numpy float64)."""
    return {name: _batched(fn, x, x_hat, batch_size, device) for name, fn in _metrics(lpips).items()}


def refine_positions(n: int, refine_images: int) -> np.ndarray:
    """Evenly spaced positions of the images that get gradient refinement."""
    if refine_images <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, min(refine_images, n)).round().astype(np.int64))


def score_set(model: LatentModel, key: str, images: torch.Tensor, source: str, region: TypicalRegion, *,
              lpips: LpipsFn | None = None, refined_latents: torch.Tensor | None = None,
              settings: ExpressivenessSettings | None = None, **options: Any) -> SetScores:
    """Encoder and refined reconstruction scores of one target set, and the drift of its latents.

    ``settings`` (:class:`ExpressivenessSettings`, ``options`` replacing its fields) gives refine_images,
    steps, lr, seed, worst, batch_size and progress. ``refined_latents`` (for the images at
    ``refine_positions(len(images), refine_images)``) skips the inversion here:
    :func:`evaluate_expressiveness` refines every set in one batch.
    """
    s = ExpressivenessSettings.of(settings, **options)
    refine_images, steps, lr, seed, worst, batch_size, progress = (
        s.refine_images, s.steps, s.lr, s.seed, s.worst, s.batch_size, s.progress)
    images = model.check_images(images).cpu()
    enc, x_enc = _encoder_scores(model, distributed.shard(images, batch_size), region, lpips, batch_size)
    if distributed.active():  # torch.distributed: each rank encoded its shard; the scores gathered in order
        enc = {k: distributed.gather_rows(v) for k, v in enc.items()}
    idx = refine_positions(len(images), refine_images)
    if len(idx):
        if refined_latents is None:
            refined_latents = refine(model, images[idx], steps=steps, lr=lr, seed=seed, batch_size=batch_size,
                                     progress=progress)
        z_ref = refined_latents
        x_ref = model.decode_all(z_ref, batch_size)
        ref = _scores(images[idx], x_ref, lpips, batch_size, model.device)
    else:
        z_ref, x_ref = torch.empty(0, model.latent_dim), torch.empty(0, *model.image_shape)
        ref = {name: np.empty(0) for name in _metrics(lpips)}
    ref.update(distance=region.distance(z_ref).numpy(), outside=region.outside(z_ref).numpy())
    order = np.argsort(-ref["mse"], kind="stable")[:worst]
    scores = SetScores(key, source, enc, idx, ref, worst=[int(idx[o]) for o in order])
    positions = [int(idx[o]) for o in order]
    if not distributed.active() and x_enc is not None:  # one process: x_enc holds every image's reconstruction
        worst_enc = x_enc[positions]
    else:  # a rank holds its shard's reconstructions only: the worst images' again
        worst_enc = model.decode_all(model.encode_all(images[positions], batch_size), batch_size) if positions \
            else images[:0]
    scores.worst_rows = {"target": images[positions], "encoder": worst_enc, "refined": x_ref[order]}
    return scores


def refine(model: LatentModel, images: torch.Tensor, *, steps: int, lr: float, seed: int, batch_size: int,
           progress: bool = False) -> torch.Tensor:
    """Refined latents of ``images`` (gradient inversion from the encoder), in batches of ``batch_size`` rows:
    each latent is optimized on its own, but a float32 decoder rounds a row by the rows of its call, so the
    batches are fixed by ``batch_size`` alone, as a torch.distributed rank's shard of them is."""
    return torch.cat([invert(model, images[s:s + batch_size], steps=steps, lr=lr, init="auto", seed=seed,
                             progress=progress).latents for s in range(0, len(images), batch_size)])


def _encoder_scores(model: LatentModel, images: torch.Tensor, region: TypicalRegion, lpips: LpipsFn | None,
                    batch_size: int) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Per-image scores of the encoder's reconstructions (each metric of :func:`_metrics`, the latents'
    "distance" and "outside" the typical region), and the reconstructions; all None for a rank's empty shard."""
    if distributed.active() and not len(images):
        return dict.fromkeys([*_metrics(lpips), *LATENT_SCORES]), None
    z = model.encode_all(images, batch_size)
    x_enc = model.decode_all(z, batch_size)
    return {**_scores(images, x_enc, lpips, batch_size, model.device), "distance": region.distance(z).numpy(),
            "outside": region.outside(z).numpy()}, x_enc


def evaluate_expressiveness(model: LatentModel, targets: dict[str, tuple[torch.Tensor, str]], *,
                            sampler: LatentSampler | None = None, region: TypicalRegion | None = None,
                            lpips: LpipsFn | None = None, settings: ExpressivenessSettings | None = None,
                            **options: Any) -> ModelExpressiveness:
    """Score ``model`` on each target set; ``targets`` maps a key ("own", "real", "support") to (images, source).

    ``sampler`` names where the own samples came from (default the prior); ``region`` is the typical region
    the drift is measured against (default: the sampler's, see :func:`typical_region`); ``settings``
    (``options`` replacing its fields) as for :func:`score_set`, with ``bootstrap`` for the ratios.
    """
    s = ExpressivenessSettings.of(settings, **options)
    refine_images, steps, lr, seed, progress, batch_size = (s.refine_images, s.steps, s.lr, s.seed, s.progress,
                                                            s.batch_size)
    if not model.has_trained_encoder:
        raise ConfigError(f"model '{model.name}' has no trained encoder or inverter: the expressiveness benchmark "
                          "starts from one (train it with 'latentmap train inverter')")
    sampler = sampler or PriorSampler(model)
    region = region or typical_region(model, sampler, seed)
    # every set's refinement in one batch: each latent is optimized on its own, so the result is the same as
    # per set, with a third of the decoder passes
    chosen = {k: images[refine_positions(len(images), refine_images)] for k, (images, _) in targets.items()}
    refined = torch.empty(0, model.latent_dim)
    if sum(len(c) for c in chosen.values()):
        batch = torch.cat([model.check_images(c).cpu() for c in chosen.values()])
        # torch.distributed: each rank refines its shard's batches (one process's batches), gathered in order
        refined = distributed.map_shards(lambda rows: refine(model, rows, steps=steps, lr=lr, seed=seed,
                                                             batch_size=batch_size, progress=progress),
                                         batch, batch_size)
    parts = dict(zip(chosen, torch.split(refined, [len(c) for c in chosen.values()]))) if len(refined) else {}
    sets = {}
    for key, (images, source) in with_progress(list(targets.items()), f"expressiveness {model.name}", progress,
                                               unit="set"):
        sets[key] = score_set(model, key, images, source, region, lpips=lpips, refined_latents=parts.get(key),
                              settings=replace(s, progress=False))
    ratios = {name: bootstrap_ratio(sets[a].encoder_mse, sets[b].encoder_mse, resamples=s.bootstrap, seed=seed)
              for name, a, b in RATIOS if a in sets and b in sets}
    return ModelExpressiveness(model.name, model.kind, model.latent_dim, sampler.name, region.to_dict(), sets, ratios,
                               record_model(model))


def own_samples(model: LatentModel, sampler: LatentSampler, n: int, seed: int = 0,
                batch_size: int = 256) -> torch.Tensor:
    """``n`` images decoded from the sampler's seeded draws (CPU)."""
    z = sampler.sample(n, torch.Generator().manual_seed(seed))
    return distributed.map_shards(lambda part: model.decode_all(part, batch_size), z, batch_size)  # ranks' shards


def benchmark_expressiveness(models: Iterable[LatentModel], real: torch.Tensor, support: torch.Tensor | None = None,
                             *, real_source: str = "real test images", support_source: str = "support set",
                             support_model: str | None = None,
                             fit_data: ImageDataset | None = None, settings: ExpressivenessSettings | None = None,
                             image_transform: str | None = None, **options: Any) -> ExpressivenessResult:
    """The leaderboard: every model on its own samples, ``real`` images and the ``support`` images.

    ``settings``: an :class:`ExpressivenessSettings`; ``options`` (samples=, steps=, ...) replace its fields.
    ``image_transform`` (a spec of latentmap.data.transforms): a model working on images of another shape
    gets the real and support images (and the training images its sampler is fitted on) through it; without
    one, such a model is refused before any work (latentmap.data.transforms.resolve_input)."""
    from latentmap.data.transforms import resolve_dataset, resolve_input
    from latentmap.evaluation.relocation import lpips_function
    from latentmap.evaluation.samplers import fit_sampler

    s = ExpressivenessSettings.of(settings, **options)
    samples, sampler, seed, batch_size, progress = s.samples, s.sampler, s.seed, s.batch_size, s.progress

    models = list(models)
    if not models:
        raise ConfigError("the expressiveness benchmark needs at least one model")
    if samples < 2:
        raise ConfigError(f"own samples must be at least 2 (a bootstrap needs them), got {samples} instead")
    inputs = {}
    for model in models:  # before any work: every target set must fit every model
        inputs[model.name] = {what: resolve_input(image_transform, images.shape[1:], model, f"the {what}")
                              for what, images in (("real images", real), ("support-set images", support))
                              if images is not None}
    lpips, lpips_note = lpips_function(models[0].device, s.lpips_setting)
    results = []
    for model in with_progress(models, "expressiveness", progress, unit="model"):
        to_model = inputs[model.name]
        data = None if fit_data is None else resolve_dataset(image_transform, fit_data, model)
        chosen = fit_sampler(model, sampler, data=data, fit_images=s.fit_images, components=s.components,
                             seed=seed, batch_size=batch_size)
        region = typical_region(model, chosen, seed)
        targets = {"own": (own_samples(model, chosen, samples, seed, batch_size), f"{samples} draws of the {chosen.name}"),
                   "real": (to_model["real images"](real), real_source)}
        if support is not None:
            targets["support"] = (to_model["support-set images"](support), support_source)
        results.append(evaluate_expressiveness(model, targets, sampler=chosen, region=region, lpips=lpips,
                                               settings=s))
    record = {"own_samples": samples, "real_images": len(real), "real_source": real_source,
              "support_images": None if support is None else len(support), "support_source": support_source,
              "support_model": support_model,
              "sampler": sampler, "refine_images": s.refine_images, "steps": s.steps, "lr": s.lr, "seed": seed,
              "bootstrap_resamples": s.bootstrap, "image_transform": image_transform,
              "compute": distributed.compute_record(batch_size)}
    return ExpressivenessResult(results, record, lpips_note)
