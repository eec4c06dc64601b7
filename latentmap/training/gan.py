"""Adversarial training (shared by the DCGAN and the StyleGAN-style generator) and the GAN trainer.

Non-saturating logistic loss; optional lazy R1 penalty on real images (StyleGAN2's
regularizer), applied every ``r1_every`` discriminator steps and scaled up to match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from latentmap.io.checkpoint import save_checkpoint
from latentmap.models.gan import GANModel, recalibrate_batchnorm
from latentmap.report.grid import square_grid_png
from latentmap.training.common import (Timer, TrainSettings, check_model_fits, environment_record, epoch_progress, register_trainer, sanity_step,
                     shuffled_batches, start_run)
from latentmap.training.inverter import fit_and_record_inverter, inversion_grid

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel


def adversarial_training(settings: TrainSettings, *, generate: Callable[[torch.Tensor], torch.Tensor], z_dim: int,
                         g_modules: Sequence[torch.nn.Module], discriminator: torch.nn.Module,
                         train_ds: ImageDataset, generator: torch.Generator, device: torch.device,
                         betas: tuple[float, float] = (0.5, 0.999), r1_gamma: float = 0.0, r1_every: int = 4,
                         param_groups: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Alternate one discriminator and one generator step per batch for ``settings.epochs`` epochs.

    ``generate(z)`` maps latents to images in [0, 1] in training mode, keeping the graph; ``z_dim`` is the size of
    its ``z``; ``g_modules`` are the generator's networks (put in training mode, and trained unless
    ``param_groups``, optional, gives the generator's parameters with per-group learning rates); ``generator``
    draws the noise and the batch order; ``r1_gamma`` > 0 adds the R1 penalty every ``r1_every`` steps. Returns
    one log entry per epoch.
    """
    groups = param_groups or [{"params": [p for m in g_modules for p in m.parameters()]}]
    opt_g = torch.optim.Adam(groups, lr=settings.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=betas)

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, z_dim, generator=generator).to(device)

    def train_mode() -> None:
        for m in (*g_modules, discriminator):
            m.train()

    train_mode()
    sanity_step(lambda: discriminator(generate(noise(2))), f"{settings.kind} '{settings.model_name}'")
    log: list[dict[str, Any]] = []
    step = 0
    n_batches = -(-len(train_ds) // settings.batch_size)
    for epoch in range(1, settings.epochs + 1):
        train_mode()
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        with Timer() as timer, epoch_progress(settings, n_batches, epoch) as bar:
            for real in shuffled_batches(train_ds, settings.batch_size, generator):
                real = real.to(device)
                n = len(real)
                step += 1
                # discriminator: real -> 1, fake -> 0
                with torch.no_grad():
                    fake = generate(noise(n))
                d_real, d_fake = discriminator(real), discriminator(fake)
                d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
                if r1_gamma > 0 and step % r1_every == 0:
                    real_req = real.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(discriminator(real_req).sum(), real_req, create_graph=True)
                    d_loss = d_loss + 0.5 * r1_gamma * r1_every * grad.pow(2).flatten(1).sum(1).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                # generator: make the discriminator say 1
                g_loss = F.softplus(-discriminator(generate(noise(n)))).mean()
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                sums["d_loss"] += float(d_loss.detach()) * n
                sums["g_loss"] += float(g_loss.detach()) * n
                sums["d_real"] += float(torch.sigmoid(d_real.detach()).sum())
                sums["d_fake"] += float(torch.sigmoid(d_fake.detach()).sum())
                bar.update(1)
                bar.set_postfix(d=f"{float(d_loss.detach()):.3f}", g=f"{float(g_loss.detach()):.3f}")
        entry = {"epoch": epoch, **{k: v / len(train_ds) for k, v in sums.items()}, "seconds": round(timer.seconds, 2)}
        log.append(entry)
        if settings.progress:
            print(f"epoch {epoch}: d_loss {entry['d_loss']:.3f}  g_loss {entry['g_loss']:.3f}  "
                  f"D(real) {entry['d_real']:.2f}  D(fake) {entry['d_fake']:.2f}  ({entry['seconds']:.0f}s)")
    return log


def finish_generator(model: LatentModel, settings: TrainSettings, device: torch.device, test_ds: ImageDataset,
                     log: list[dict[str, Any]], generator: torch.Generator, seconds: float, description: str) -> None:
    """Train and evaluate the inverter, record everything in the metadata, save with sample grids.

    ``log`` is the adversarial training's log, ``seconds`` its duration and ``description`` its loss in words."""
    model.eval()
    fit_and_record_inverter(model, settings, test_ds, generator)
    model.metadata.update({"dataset": settings.dataset, "seed": settings.seed})
    training = model.metadata.setdefault("training", {})
    training.update({"settings": settings.record(), "log": log, "loss": description,
                     "train_images": settings.train_images or "all", "adversarial_seconds": round(seconds, 2),
                     "environment": environment_record(device)})
    sample_gen = torch.Generator().manual_seed(settings.seed)
    extra = {"samples.png": square_grid_png(model.sample(64, sample_gen).cpu()),
             "inversions.png": inversion_grid(model, test_ds, torch.Generator().manual_seed(settings.seed + 1))}
    save_checkpoint(model, settings.out, extra_files=extra, overwrite=settings.overwrite)


@register_trainer("gan", default_lr=2e-4)
def train_gan(settings: TrainSettings) -> GANModel:
    """DCGAN on the dataset, then its inversion network on the generator's own samples."""
    device, generator, train_ds, test_ds = start_run(settings)
    opts = settings.options
    given = {"channels": opts.get("channels"), "inverter_channels": opts.get("inverter_channels"),
             "inverter_hidden": opts.get("hidden")}
    arch: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    check_model_fits(lambda: GANModel(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch), settings,
                     train_ds.image_shape)
    model = GANModel(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch)
    model.to(device)
    discriminator = model.make_discriminator()
    with Timer() as timer:
        log = adversarial_training(settings, generate=model.generate, z_dim=model.latent_dim,
                                   g_modules=[model.generator], discriminator=discriminator, train_ds=train_ds,
                                   generator=generator, device=device)
    # batch-norm statistics for eval-mode decoding, from fresh prior samples
    recalibrate_batchnorm(model.generator, [torch.randn(256, model.latent_dim, generator=generator).to(device)
                                            for _ in range(20)])
    finish_generator(model, settings, device, test_ds, log, generator, timer.seconds,
                     "DCGAN, non-saturating logistic loss, Adam(beta1=0.5)")
    return model
