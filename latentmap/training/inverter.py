"""Inversion networks trained on a generator's own samples, and how well they invert.

z -> G(z) -> E -> z_hat with MSE in latent space (for StyleGAN-style models z is w), optionally
plus the image MSE of G(z_hat) against G(z). Used by the GAN and StyleGAN trainers and by
``latentmap train inverter --model PATH`` for generators people already have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from latentmap.io.checkpoint import save_checkpoint
from latentmap.device import resolve_device
from latentmap.errors import ConfigError
from latentmap.evaluation.metrics import per_image_mse, reconstruction_mse
from latentmap.models.external_stylegan import ExternalStyleGAN
from latentmap.report.grid import grid_png
from latentmap.training.common import TrainSettings, Timer, environment_record, register_trainer, seed_everything

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel

INVERTER_DEFAULTS = {"inverter_steps": 2000, "inverter_batch_size": 128, "inverter_lr": 1e-3,
                     "inverter_image_weight": 0.0, "inverter_eval_samples": 256}
# settings a ``train inverter`` run never reads (the generator is trained already), left out of its record
_UNUSED_BY_INVERTER = ("latent_dim", "epochs", "batch_size", "lr", "train_images")


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily stop gradients into ``module``'s parameters (they flow through it to the inputs)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def train_inverter(model: LatentModel, *, steps: int, batch_size: int = 128, lr: float = 1e-3,
                   image_weight: float = 0.0, generator: torch.Generator | None = None, progress: bool = False,
                   what: str = "inverter") -> list[dict[str, Any]]:
    """Train ``model.inverter`` on a stream of the model's own samples; returns a short log.

    ``image_weight`` > 0 adds the image MSE of the inversions' decodings; ``generator`` draws the samples;
    ``what`` labels the progress bar. ConfigError for a model without an inversion network."""
    if steps < 1 or batch_size < 2:
        raise ConfigError(f"inverter steps must be >= 1 and batch size >= 2, got {steps} and {batch_size} instead")
    if image_weight < 0:
        raise ConfigError(f"inverter image weight must be non-negative, got {image_weight} instead")
    inverter = getattr(model, "inverter", None)
    if not isinstance(inverter, torch.nn.Module):
        raise ConfigError(f"model '{model.name}' of kind '{model.kind}' has no inversion network to train")
    generator = generator or torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(inverter.parameters(), lr=lr)
    # cosine decay: the last steps polish the inverter instead of jittering around
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    decoder_modules = [m for name, m in model.modules().items() if name != "inverter"]
    for m in decoder_modules:
        m.eval()
    log: list[dict[str, Any]] = []
    window: list[float] = []
    from latentmap.batching import progress_bar

    with contextlib.ExitStack() as stack:
        for m in decoder_modules:
            stack.enter_context(frozen(m))
        bar = stack.enter_context(progress_bar(steps, what, progress, unit="step"))
        inverter.train()
        for step in range(1, steps + 1):
            z = model.sample_prior(batch_size, generator).to(model.device)
            with torch.no_grad():
                x = model._decode(z)
            z_hat = inverter(x)
            loss = F.mse_loss(z_hat, z)
            latent_mse = float(loss.detach())
            if image_weight:
                loss = loss + image_weight * F.mse_loss(model._decode(z_hat), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            window.append(latent_mse)
            bar.update(1)
            if step % 100 == 0 or step == steps:
                log.append({"step": step, "latent_mse": sum(window) / len(window), "loss": float(loss.detach())})
                bar.set_postfix(latent_mse=f"{log[-1]['latent_mse']:.4f}")
                window = []
    inverter.eval()
    if isinstance(model, ExternalStyleGAN):  # the one adapter that records whether its inverter was trained
        model.inverter_trained = True
    return log


@torch.no_grad()
def evaluate_inverter(model: LatentModel, test_ds: ImageDataset | None = None, *, samples: int = 1000,
                      batch_size: int = 250, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Image MSE of G(E(x)) against x on the model's own samples and, if given, on real test images.

    The gap between the two is the expressiveness test of the source texts: a generator
    reproduces its own samples far better than images it cannot produce. ``generator`` draws the samples.
    """
    generator = generator or torch.Generator().manual_seed(1234)
    img_total, lat_total = 0.0, 0.0
    for start in range(0, samples, batch_size):
        z = model.sample_prior(min(batch_size, samples - start), generator)
        x = model.decode(z)
        z_hat = model.encode(x)
        img_total += float(per_image_mse(model.decode(z_hat), x).sum())
        lat_total += float((z_hat.cpu() - z).pow(2).mean(1).sum())
    out = {"own_samples_image_mse": img_total / samples, "own_samples_latent_mse": lat_total / samples,
           "own_samples": samples}
    if test_ds is not None:
        out["real_test_image_mse"] = reconstruction_mse(model, test_ds, batch_size=batch_size)
        out["real_test_images"] = len(test_ds)
    return out


def inverter_options(options: dict[str, Any]) -> dict[str, Any]:
    """The inverter settings of a run, defaults filled in."""
    return {k: (options.get(k) if options.get(k) is not None else v) for k, v in INVERTER_DEFAULTS.items()}


def fit_and_record_inverter(model: LatentModel, settings: TrainSettings, test_ds: ImageDataset | None,
                            generator: torch.Generator) -> dict[str, Any]:
    """Train the inverter with the run's options, evaluate it, and store both in ``model.metadata``; returns the
    evaluation (on real ``test_ds`` images too, unless None)."""
    opts = inverter_options(settings.options)
    with Timer() as timer:
        log = train_inverter(model, steps=int(opts["inverter_steps"]), batch_size=int(opts["inverter_batch_size"]),
                             lr=float(opts["inverter_lr"]), image_weight=float(opts["inverter_image_weight"]),
                             generator=generator, progress=settings.progress, what=f"{settings.model_name} inverter")
    metrics = evaluate_inverter(model, test_ds, samples=int(opts["inverter_eval_samples"]))
    if settings.progress:
        real = ("no real images (--own-samples-only)" if test_ds is None else
                f"on {metrics['real_test_images']} real test images {metrics['real_test_image_mse']:.5f}")
        print(f"inverter: image MSE on {metrics['own_samples']} own samples {metrics['own_samples_image_mse']:.5f}, "
              f"{real} ({timer.seconds:.0f}s)")
    model.metadata.setdefault("training", {})["inverter"] = {**opts, "log": log, "seconds": round(timer.seconds, 2)}
    model.metadata.setdefault("metrics", {}).update({"inverter": metrics})
    if "real_test_image_mse" in metrics:
        model.metadata["metrics"]["test_mse"] = metrics["real_test_image_mse"]
    return metrics


def inversion_grid(model: LatentModel, test_ds: ImageDataset | None, generator: torch.Generator, n: int = 12) -> bytes:
    """Rows: own samples, their inversions, real test images, their inversions (no real rows without ``test_ds``)."""
    with torch.no_grad():
        x = model.decode(model.sample_prior(n, generator)).cpu()
        if test_ds is None:
            return grid_png([x, model.reconstruct(x).cpu()])
        real = test_ds.batch(range(min(n, len(test_ds))))
        return grid_png([x, model.reconstruct(x).cpu(), real, model.reconstruct(real).cpu()])


def _test_split(settings: TrainSettings) -> ImageDataset:
    """The evaluation images (the generator is trained already: no training split needed)."""
    from latentmap.data.datasets import load_dataset

    test_ds = load_dataset(settings.dataset, "test", data_dir=settings.data_dir)
    return test_ds.random_subset(settings.test_images, settings.seed)


def _inverter_record(settings: TrainSettings, own_only: bool) -> dict:
    """The run's settings as a ``train inverter`` run used them: no epochs, latent size or training images (the
    generator is trained already), and no dataset at all with --own-samples-only."""
    record = {k: v for k, v in settings.record().items() if k not in _UNUSED_BY_INVERTER}
    if own_only:
        for key in ("dataset", "data_dir", "test_images"):
            record.pop(key, None)
    return record


@register_trainer("inverter")
def train_inverter_command(settings: TrainSettings) -> LatentModel:
    """``latentmap train inverter --model SPEC``: (re)train the inverter of a generator and save it."""
    from latentmap.models.registry import load_model

    spec = settings.options.get("model")
    if not spec:
        raise ConfigError("training an inverter needs --model PATH (a checkpoint, a StyleGAN-style pickle or py:...)")
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    model = load_model(spec, device=device, allow_pickle=bool(settings.options.get("trust_pickle")))
    if settings.name:
        model.name = settings.name
    if not isinstance(getattr(model, "inverter", None), torch.nn.Module):
        raise ConfigError(f"model '{model.name}' of kind '{model.kind}' has no inversion network to train "
                          "(its encoder is part of the model)")
    # the inverter learns from the generator's own samples only; real images only measure it afterwards, and
    # --own-samples-only skips them (a generator of images no dataset here has, such as 1024x1024 faces)
    own_only = bool(settings.options.get("own_samples_only"))
    test_ds = None if own_only else _test_split(settings)
    if test_ds is not None:
        from latentmap.data.transforms import resolve_dataset

        spec = settings.options.get("image_transform")
        what = f"the {settings.dataset} test images (or pass --own-samples-only to measure on own samples only)"
        test_ds = resolve_dataset(spec, test_ds, model, what)
    fit_and_record_inverter(model, settings, test_ds, generator)
    model.metadata.setdefault("training", {})["settings"] = _inverter_record(settings, own_only)
    model.metadata["training"]["environment"] = environment_record(device)
    if own_only:
        model.metadata["training"]["inverter"]["real_images"] = "none (--own-samples-only)"
    else:
        model.metadata.setdefault("dataset", settings.dataset)
    extra = {"inversions.png": inversion_grid(model, test_ds, torch.Generator().manual_seed(settings.seed))}
    save_checkpoint(model, settings.out, extra_files=extra, overwrite=settings.overwrite)
    return model
