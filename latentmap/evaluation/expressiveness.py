"""Generator expressiveness: what a model can reproduce, on its own samples, real images and a support set.

For each model and each target set (its own samples, real test images, the support-set images)
the benchmark measures the reconstruction through the encoder or inverter (MSE, SSIM, LPIPS when
available), then after gradient refinement of the latent (:func:`~latentmap.evaluation.inversion.invert`,
the source texts' "double check"), and how far the latents lie from the sampler's typical region
(:mod:`latentmap.evaluation.samplers`). The headline is the ratio of the encoder MSE on the
support set (and on real images) to that on the model's own samples, with a bootstrap 95% interval.
After refinement own samples are reproduced almost exactly, so refined errors are compared
across models rather than as ratios. Computation only; :mod:`latentmap.report.expressiveness` renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from latentmap import distributed
from latentmap.batching import with_progress
from latentmap.errors import ConfigError
from latentmap.evaluation.inversion import invert
from latentmap.evaluation.metrics import per_image_mse, per_image_ssim
from latentmap.evaluation.samplers import LatentSampler, PriorSampler, TypicalRegion, typical_region
from latentmap.io.model_record import short_fingerprint
from latentmap.models.base import LatentModel
from latentmap.models.registry import record_model

TARGET_SETS = ("own", "real", "support")
SET_LABELS = {"own": "own samples", "real": "real test images", "support": "support-set images"}
RATIOS = (("support/own", "support", "own"), ("real/own", "real", "own"))
BOOTSTRAP = 2000
WORST = 8


# --------------------------------------------------------------------------- bootstrap

@dataclass
class RatioCI:
    """mean(a) / mean(b) with a percentile bootstrap interval (each set resampled independently)."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def bootstrap_ratio(a, b, *, resamples: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> RatioCI:
    """Ratio of the means of two samples and its percentile bootstrap interval (numpy, seeded, float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ConfigError(f"a ratio of means needs values on both sides, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level} instead")
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    for start in range(0, resamples, 250):  # chunks keep the index arrays small
        m = min(250, resamples - start)
        mean_a = a[rng.integers(0, len(a), (m, len(a)))].mean(1)
        mean_b = b[rng.integers(0, len(b), (m, len(b)))].mean(1)
        ratios[start:start + m] = mean_a / np.maximum(mean_b, 1e-300)
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return RatioCI(float(a.mean() / max(b.mean(), 1e-300)), float(low), float(high), level)


# --------------------------------------------------------------------------- results

@dataclass
class SetScores:
    """Per-image scores of one target set (numpy float64); refinement ran on the images at ``refined_index``."""

    key: str
    source: str
    encoder_mse: np.ndarray
    encoder_ssim: np.ndarray
    encoder_distance: np.ndarray
    encoder_outside: np.ndarray
    refined_index: np.ndarray
    refined_mse: np.ndarray
    refined_ssim: np.ndarray
    refined_distance: np.ndarray
    refined_outside: np.ndarray
    encoder_lpips: np.ndarray | None = None
    refined_lpips: np.ndarray | None = None
    worst: list[int] = field(default_factory=list)  # positions in the set, worst refined MSE first
    worst_rows: dict = field(default_factory=dict, repr=False)  # "target" / "encoder" / "refined" -> images

    @property
    def label(self) -> str:
        return SET_LABELS.get(self.key, self.key)

    @property
    def n(self) -> int:
        return len(self.encoder_mse)

    def summary(self, typical: float) -> dict:
        def mean(v):
            return None if v is None or len(v) == 0 else float(np.mean(v))

        return {"set": self.key, "label": self.label, "source": self.source, "images": self.n,
                "encoder_mse": mean(self.encoder_mse), "encoder_ssim": mean(self.encoder_ssim),
                "encoder_lpips": mean(self.encoder_lpips),
                "encoder_distance_ratio": _ratio(mean(self.encoder_distance), typical),
                "encoder_outside_share": mean(self.encoder_outside),
                "refined_images": len(self.refined_index),
                "encoder_mse_refined_images": mean(self.encoder_mse[self.refined_index]) if len(self.refined_index)
                else None,
                "refined_mse": mean(self.refined_mse),
                "refined_ssim": mean(self.refined_ssim), "refined_lpips": mean(self.refined_lpips),
                "refined_distance_ratio": _ratio(mean(self.refined_distance), typical),
                "refined_outside_share": mean(self.refined_outside)}


def _ratio(a, b):
    return None if a is None or not b else a / b


@dataclass
class ModelExpressiveness:
    name: str
    kind: str
    latent_dim: int
    sampler: str
    region: dict
    sets: dict  # key -> SetScores
    ratios: dict  # "support/own" -> RatioCI
    record: dict = field(default_factory=dict)  # the model's record (latentmap.io.model_record)

    def set_rows(self) -> list[dict]:
        return [{"model": self.name, **s.summary(self.region["typical"])} for s in self.sets.values()]

    def leaderboard_row(self) -> dict:
        row = {"model": self.name, "kind": self.kind, "latent_dim": self.latent_dim, "sampler": self.sampler,
               "fingerprint": short_fingerprint(self.record)}
        summaries = {k: s.summary(self.region["typical"]) for k, s in self.sets.items()}
        for key in TARGET_SETS:
            row[f"encoder_mse_{key}"] = summaries[key]["encoder_mse"] if key in summaries else None
        for name, ci in self.ratios.items():
            slug = name.replace("/", "_over_")
            row[slug], row[f"{slug}_low"], row[f"{slug}_high"] = ci.value, ci.low, ci.high
        for key in TARGET_SETS:
            row[f"refined_mse_{key}"] = summaries[key]["refined_mse"] if key in summaries else None
        for key in ("real", "support"):
            if key in summaries:
                row[f"refined_outside_share_{key}"] = summaries[key]["refined_outside_share"]
        return row

    def to_dict(self) -> dict:
        return {"model": self.name, "kind": self.kind, "latent_dim": self.latent_dim, "sampler": self.sampler,
                "record": self.record, "region": self.region, "ratios": {k: v.to_dict() for k, v in self.ratios.items()},
                "sets": {k: {**s.summary(self.region["typical"]), "worst": s.worst,
                             "per_image": {"encoder_mse": s.encoder_mse.tolist(),
                                           "refined_index": s.refined_index.tolist(),
                                           "refined_mse": s.refined_mse.tolist()}}
                         for k, s in self.sets.items()}}


@dataclass
class ExpressivenessResult:
    models: list  # ModelExpressiveness
    settings: dict
    lpips_note: str = ""

    def leaderboard(self):
        import pandas as pd

        return pd.DataFrame([m.leaderboard_row() for m in self.models])

    def set_table(self):
        import pandas as pd

        return pd.DataFrame([row for m in self.models for row in m.set_rows()])

    def to_dict(self) -> dict:
        return {"settings": self.settings, "lpips": self.lpips_note, "models": [m.to_dict() for m in self.models]}


# --------------------------------------------------------------------------- computation

def _batched(fn, x, y, batch_size, device) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(fn(x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)).double().cpu())
    return torch.cat(out).numpy() if out else np.empty(0)


def _scores(x, x_hat, lpips, batch_size, device):
    mse = _batched(per_image_mse, x, x_hat, batch_size, device)
    ssim = _batched(per_image_ssim, x, x_hat, batch_size, device)
    lp = _batched(lpips, x_hat, x, batch_size, device) if lpips is not None else None
    return mse, ssim, lp


def refine_positions(n: int, refine_images: int) -> np.ndarray:
    """Evenly spaced positions of the images that get gradient refinement."""
    if refine_images <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, min(refine_images, n)).round().astype(np.int64))


def score_set(model: LatentModel, key: str, images: torch.Tensor, source: str, region: TypicalRegion, *,
              refine_images: int = 128, steps: int = 200, lr: float = 0.05, lpips=None, seed: int = 0,
              worst: int = WORST, batch_size: int = 256, progress: bool = False,
              refined_latents: torch.Tensor | None = None) -> SetScores:
    """Encoder and refined reconstruction scores of one target set, and the drift of its latents.

    ``refined_latents`` (for the images at ``refine_positions(len(images), refine_images)``) skips the
    inversion here: :func:`evaluate_expressiveness` refines every set in one batch.
    """
    images = model.check_images(images).cpu()
    enc, x_enc = _encoder_scores(model, distributed.shard(images, batch_size), region, lpips, batch_size)
    if distributed.active():  # torch.distributed: each rank encoded its shard; the scores gathered in order
        enc = {k: None if lpips is None and k == "lpips" else distributed.gather_rows(v) for k, v in enc.items()}
    idx = refine_positions(len(images), refine_images)
    if len(idx):
        if refined_latents is None:
            refined_latents = invert(model, images[idx], steps=steps, lr=lr, init="auto", seed=seed,
                                     progress=progress).latents
        z_ref = refined_latents
        x_ref = model.decode_all(z_ref, batch_size)
        ref_mse, ref_ssim, ref_lpips = _scores(images[idx], x_ref, lpips, batch_size, model.device)
    else:
        z_ref, x_ref = torch.empty(0, model.latent_dim), torch.empty(0, *model.image_shape)
        ref_mse = ref_ssim = np.empty(0)
        ref_lpips = None if lpips is None else np.empty(0)
    order = np.argsort(-ref_mse, kind="stable")[:worst]
    scores = SetScores(key, source, enc["mse"], enc["ssim"], enc["distance"], enc["outside"],
                       idx, ref_mse, ref_ssim, region.distance(z_ref).numpy(), region.outside(z_ref).numpy(),
                       enc["lpips"], ref_lpips, worst=[int(idx[o]) for o in order])
    positions = [int(idx[o]) for o in order]
    if not distributed.active():
        worst_enc = x_enc[positions]
    else:  # a rank holds its shard's reconstructions only: the worst images' again
        worst_enc = model.decode_all(model.encode_all(images[positions], batch_size), batch_size) if positions \
            else images[:0]
    scores.worst_rows = {"target": images[positions], "encoder": worst_enc, "refined": x_ref[order]}
    return scores


def _encoder_scores(model, images, region, lpips, batch_size) -> tuple[dict, torch.Tensor | None]:
    """Per-image scores of the encoder's reconstructions ("mse", "ssim", "lpips" or None, the latents' "distance"
    and "outside" the typical region), and the reconstructions; all None for a rank's empty shard."""
    if distributed.active() and not len(images):
        return dict.fromkeys(("mse", "ssim", "lpips", "distance", "outside")), None
    z = model.encode_all(images, batch_size)
    x_enc = model.decode_all(z, batch_size)
    mse, ssim, lp = _scores(images, x_enc, lpips, batch_size, model.device)
    return {"mse": mse, "ssim": ssim, "lpips": lp, "distance": region.distance(z).numpy(),
            "outside": region.outside(z).numpy()}, x_enc


def evaluate_expressiveness(model: LatentModel, targets: dict, *, sampler: LatentSampler | None = None,
                            region: TypicalRegion | None = None, refine_images: int = 128, steps: int = 200,
                            lr: float = 0.05, lpips=None, seed: int = 0, bootstrap: int = BOOTSTRAP,
                            worst: int = WORST, batch_size: int = 256, progress: bool = False) -> ModelExpressiveness:
    """Score ``model`` on each target set; ``targets`` maps a key ("own", "real", "support") to (images, source).

    ``sampler`` names where the own samples came from (default the prior); ``region`` is the typical region
    the drift is measured against (default: the sampler's, see :func:`typical_region`).
    """
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
        # torch.distributed: each rank refines its shard of the rows (independent latents), gathered in order
        refined = distributed.map_shards(lambda b: invert(model, b, steps=steps, lr=lr, init="auto", seed=seed,
                                                          progress=progress).latents, batch)
    parts = dict(zip(chosen, torch.split(refined, [len(c) for c in chosen.values()]))) if len(refined) else {}
    sets = {}
    for key, (images, source) in with_progress(list(targets.items()), f"expressiveness {model.name}", progress,
                                               unit="set"):
        sets[key] = score_set(model, key, images, source, region, refine_images=refine_images, steps=steps, lr=lr,
                              lpips=lpips, seed=seed, worst=worst, batch_size=batch_size, progress=False,
                              refined_latents=parts.get(key))
    ratios = {name: bootstrap_ratio(sets[a].encoder_mse, sets[b].encoder_mse, resamples=bootstrap, seed=seed)
              for name, a, b in RATIOS if a in sets and b in sets}
    return ModelExpressiveness(model.name, model.kind, model.latent_dim, sampler.name, region.to_dict(), sets, ratios,
                               record_model(model))


def own_samples(model: LatentModel, sampler: LatentSampler, n: int, seed: int = 0,
                batch_size: int = 256) -> torch.Tensor:
    """``n`` images decoded from the sampler's seeded draws (CPU)."""
    z = sampler.sample(n, torch.Generator().manual_seed(seed))
    return distributed.map_shards(lambda part: model.decode_all(part, batch_size), z, batch_size)  # ranks' shards


def benchmark_expressiveness(models, real: torch.Tensor, support: torch.Tensor | None = None, *,
                             real_source: str = "real test images", support_source: str = "support set",
                             samples: int = 512, sampler: str = "auto", fit_data=None, fit_images: int = 10_000,
                             components: int = 10, refine_images: int = 128, steps: int = 200, lr: float = 0.05,
                             lpips_setting: str = "auto", seed: int = 0, bootstrap: int = BOOTSTRAP,
                             worst: int = WORST, batch_size: int = 256, progress: bool = False,
                             image_transform: str | None = None) -> ExpressivenessResult:
    """The leaderboard: every model on its own samples, ``real`` images and the ``support`` images.

    ``image_transform`` (a spec of latentmap.data.transforms): a model working on images of another shape
    gets the real and support images (and the training images its sampler is fitted on) through it; without
    one, such a model is refused before any work (latentmap.data.transforms.resolve_input)."""
    from latentmap.data.transforms import resolve_dataset, resolve_input
    from latentmap.evaluation.relocation import lpips_function
    from latentmap.evaluation.samplers import fit_sampler

    models = list(models)
    if not models:
        raise ConfigError("the expressiveness benchmark needs at least one model")
    if samples < 2:
        raise ConfigError(f"own samples must be at least 2 (a bootstrap needs them), got {samples} instead")
    inputs = {}
    for model in models:  # before any work: every target set must fit every model
        inputs[model.name] = {what: None if images is None else resolve_input(image_transform, images.shape[1:],
                                                                              model, f"the {what}")
                              for what, images in (("real images", real), ("support-set images", support))}
    lpips, lpips_note = lpips_function(models[0].device, lpips_setting)
    results = []
    for model in with_progress(models, "expressiveness", progress, unit="model"):
        to_model = inputs[model.name]
        data = None if fit_data is None else resolve_dataset(image_transform, fit_data, model)
        chosen = fit_sampler(model, sampler, data=data, fit_images=fit_images, components=components, seed=seed,
                             batch_size=batch_size)
        region = typical_region(model, chosen, seed)
        targets = {"own": (own_samples(model, chosen, samples, seed, batch_size), f"{samples} draws of the {chosen.name}"),
                   "real": (to_model["real images"](real), real_source)}
        if support is not None:
            targets["support"] = (to_model["support-set images"](support), support_source)
        results.append(evaluate_expressiveness(model, targets, sampler=chosen, region=region,
                                               refine_images=refine_images, steps=steps, lr=lr, lpips=lpips,
                                               seed=seed, bootstrap=bootstrap, worst=worst, batch_size=batch_size,
                                               progress=progress))
    settings = {"own_samples": samples, "real_images": len(real), "real_source": real_source,
                "support_images": None if support is None else len(support), "support_source": support_source,
                "sampler": sampler, "refine_images": refine_images, "steps": steps, "lr": lr, "seed": seed,
                "bootstrap_resamples": bootstrap, "image_transform": image_transform}
    return ExpressivenessResult(results, settings, lpips_note)
