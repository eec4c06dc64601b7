"""``latentmap train kl``: a small diffusers ``AutoencoderKL`` (the autoencoder of latent diffusion) on a dataset.

The network is diffusers' own class: one ``DownEncoderBlock2D``/``UpDecoderBlock2D`` a value of ``--channels``
(each block but the last halves the image: 28 x 28 with three blocks gives 7 x 7 latents), ``--latent-channels``
latent channels, one ResNet layer a block, no attention in the middle block. The loss is latent diffusion's
first stage without its perceptual and adversarial terms: the mean squared error of images in diffusers'
[-1, 1], decoded from a posterior sample, plus ``--kl-weight`` times the KL divergence per pixel. After
training, ``scaling_factor`` is set to 1 / the standard deviation of the posterior means over (at most
``SCALE_IMAGES``) training images, as latent diffusion sets it, so the latents latentmap sees have unit variance.
The checkpoint is a ``save_pretrained`` folder that is also a latentmap checkpoint
(:mod:`latentmap.models.diffusers_model`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.metrics import reconstruction_mse
from latentmap.models.diffusers_model import DiffusersAutoencoder, import_diffusers
from latentmap.report.grid import grid_png, square_grid_png
from latentmap.training.common import (Timer, TrainSettings, environment_record, epoch_progress, register_trainer,
                                       sanity_step, shuffled_batches, start_run)

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset

DEFAULT_CHANNELS = (16, 32, 32)
DEFAULT_LATENT_CHANNELS = 4
DEFAULT_KL_WEIGHT = 1e-4
SCALE_IMAGES = 5000  # training images whose posterior means set scaling_factor


def build_autoencoder(image_shape: Sequence[int], channels: Sequence[int], latent_channels: int) -> Any:
    """An untrained diffusers AutoencoderKL for images of ``image_shape`` (C, H, W), H = W divisible by
    2 ** (len(channels) - 1); GroupNorm groups: the largest of 8, 4, 2, 1 dividing every block's channels.
    ``channels``: the output channels of each encoder block (the decoder mirrors them)."""
    diffusers = import_diffusers()
    c, h, w = (int(s) for s in image_shape)
    blocks = len(channels)
    if h != w or h % (2 ** (blocks - 1)):
        raise ConfigError(f"train kl needs square images whose side {2 ** (blocks - 1)} divides ({blocks} blocks "
                          f"of --channels), got {h} x {w}; pad them (--dataset 'fashion-mnist?pad=2') or change "
                          "--channels")
    groups = next(g for g in (8, 4, 2, 1) if all(ch % g == 0 for ch in channels))
    return diffusers.AutoencoderKL(
        in_channels=c, out_channels=c, down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=tuple(int(ch) for ch in channels),
        layers_per_block=1, latent_channels=int(latent_channels), norm_num_groups=groups, sample_size=h,
        mid_block_add_attention=False, scaling_factor=1.0, force_upcast=False)


def kl_loss(vae: Any, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse in [-1, 1], KL per image) of one batch of images in [0, 1], through the diffusers AutoencoderKL
    ``vae`` (decoding a posterior sample drawn with ``generator``)."""
    target = x * 2 - 1
    posterior = vae.encode(target).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator).to(x.device)
    recon = vae.decode(posterior.mean + posterior.std * noise).sample
    mse = torch.mean((recon - target) ** 2)
    kl = posterior.kl().mean()  # summed over C x h x w, mean over the batch
    return mse + kl_weight * kl / x[0].numel(), mse, kl


def posterior_std(vae: Any, dataset: ImageDataset, images: int, batch_size: int, device: torch.device) -> float:
    """Standard deviation of the posterior means' elements over the first ``images`` images of ``dataset``, through
    the diffusers AutoencoderKL ``vae`` on ``device``."""
    total = total2 = count = 0.0
    with torch.no_grad():
        for start in range(0, min(images, len(dataset)), batch_size):
            x = dataset.batch(range(start, min(start + batch_size, images, len(dataset)))).to(device)
            m = vae.encode(x * 2 - 1).latent_dist.mean.double()
            total, total2, count = total + float(m.sum()), total2 + float((m * m).sum()), count + m.numel()
    mean = total / count
    return math.sqrt(max(total2 / count - mean * mean, 1e-12))


@register_trainer("kl")
def train_kl(settings: TrainSettings) -> DiffusersAutoencoder:
    """A diffusers AutoencoderKL trained on the dataset (options ``channels``, ``latent_channels``, ``kl_weight``),
    its ``scaling_factor`` set from the posterior means, saved as a save_pretrained folder."""
    device, generator, train_ds, test_ds = start_run(settings)
    channels = tuple(settings.options.get("channels") or DEFAULT_CHANNELS)
    latent_channels = int(settings.options.get("latent_channels") or DEFAULT_LATENT_CHANNELS)
    kl_option = settings.options.get("kl_weight")
    kl_weight = float(kl_option if kl_option is not None else DEFAULT_KL_WEIGHT)
    vae = build_autoencoder(train_ds.image_shape, channels, latent_channels).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=settings.lr)
    noise_gen = torch.Generator().manual_seed(settings.seed + 1)
    vae.train()
    sanity_step(lambda: kl_loss(vae, train_ds.batch(range(min(2, len(train_ds)))).to(device), kl_weight, noise_gen),
                f"kl '{settings.model_name}'")

    log: list[dict[str, Any]] = []
    n_batches = -(-len(train_ds) // settings.batch_size)
    with Timer() as total_timer:
        for epoch in range(1, settings.epochs + 1):
            vae.train()
            sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0}
            with Timer() as timer, epoch_progress(settings, n_batches, epoch) as bar:
                for batch in shuffled_batches(train_ds, settings.batch_size, generator):
                    loss, mse, kl = kl_loss(vae, batch.to(device), kl_weight, noise_gen)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    for key, value in (("loss", loss), ("mse", mse), ("kl", kl)):
                        sums[key] += float(value.detach()) * len(batch)
                    bar.update(1)
                    bar.set_postfix(mse=f"{float(mse.detach()):.4f}", kl=f"{float(kl.detach()):.1f}")
            entry = {"epoch": epoch, **{k: v / len(train_ds) for k, v in sums.items()},
                     "seconds": round(timer.seconds, 2)}
            log.append(entry)
            if settings.progress:
                print(f"epoch {epoch}: loss {entry['loss']:.5f}  mse[-1,1] {entry['mse']:.5f}  kl {entry['kl']:.1f}  "
                      f"({entry['seconds']:.0f}s)")
    vae.eval()
    std = posterior_std(vae, train_ds, SCALE_IMAGES, 256, device)
    vae.register_to_config(scaling_factor=1.0 / std)

    record = settings.record()
    record["latent_dim"] = None  # not used: the latent size is latent_channels x h x w
    model = DiffusersAutoencoder(settings.model_name, vae, metadata={
        "dataset": settings.dataset, "seed": settings.seed,
        "training": {"settings": record, "log": log, "train_images": len(train_ds),
                     "seconds": round(total_timer.seconds, 1),
                     "loss": f"MSE in [-1, 1] of a posterior sample's decoding + {kl_weight:g} x KL per pixel",
                     "scaling_factor": f"1 / std of posterior means over {min(SCALE_IMAGES, len(train_ds))} "
                                       "training images", "environment": environment_record(device)}})
    model.to(device).eval()
    test_mse = reconstruction_mse(model, test_ds, batch_size=256)
    model.metadata["metrics"] = {"test_mse": test_mse, "test_images": len(test_ds)}
    x = test_ds.batch(range(min(16, len(test_ds))))
    extra = {"reconstructions.png": grid_png([x, model.reconstruct(x).cpu()]),
             "samples.png": square_grid_png(_own_samples(model, train_ds, settings.seed))}
    model.save(settings.out, overwrite=settings.overwrite, extra_files=extra)
    return model


def _own_samples(model: DiffusersAutoencoder, train_ds: ImageDataset, seed: int, n: int = 64) -> torch.Tensor:
    """Decodings of a Gaussian fitted on the encodings of (at most 2,000) training images: the model has no prior."""
    from latentmap.evaluation.samplers import fit_sampler

    sampler = fit_sampler(model, "gaussian", data=train_ds, fit_images=2000, seed=seed)
    return model.decode(sampler.sample(n, torch.Generator().manual_seed(seed))).cpu()
