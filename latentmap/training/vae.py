"""Training of the reference VAE and Split-VAE with the balanced loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from latentmap.io.checkpoint import save_checkpoint
from latentmap.losses import BalancedVAELoss
from latentmap.evaluation.metrics import latent_statistics, reconstruction_mse
from latentmap.models.autoencoder import ConvAE
from latentmap.models.registry import adapter_class
from latentmap.models.vae import ConvVAE
from latentmap.report.grid import grid_png, square_grid_png
from latentmap.report.trajectories import trajectory_files
from latentmap.training.common import (Timer, TrainSettings, check_model_fits, environment_record, epoch_progress,
                                       register_trainer, sanity_step, shuffled_batches, start_run)
from latentmap.training.tracking import DEFAULT_TRACK_EVERY, TrajectoryRecorder

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.losses import BalancedLossParts
    from latentmap.models.base import LatentModel


def _train_vae_like(settings: TrainSettings) -> LatentModel:
    device, generator, train_ds, test_ds = start_run(settings)
    arch = {k: v for k, v in settings.options.items() if k in ("channels", "hidden") and v is not None}
    check_model_fits(lambda: adapter_class(settings.kind)(settings.model_name, train_ds.image_shape,
                                                          settings.latent_dim, **arch), settings, train_ds.image_shape)
    # the kinds registered below: ConvVAE, SplitVAE (a ConvVAE) and ConvAE
    model = adapter_class(settings.kind)(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch)
    assert isinstance(model, (ConvVAE, ConvAE))
    model.to(device)
    params = [p for m in model.modules().values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    plain = settings.kind == "ae"  # a plain autoencoder: the MSE alone, no KL term
    loss_fn = _MSELoss() if plain else BalancedVAELoss(gamma_floor=settings.options.get("gamma_min") or 1e-6)

    def step(batch: torch.Tensor) -> BalancedLossParts:
        x = batch.to(device)
        x_hat, *posterior = model.train_forward(x)
        parts = loss_fn(x, x_hat, *posterior)
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        optimizer.step()
        return parts

    for m in model.modules().values():
        m.train()
    sanity_step(lambda: model.train_forward(train_ds.batch(range(min(2, len(train_ds)))).to(device)),
                f"{settings.kind} '{settings.model_name}'")

    log: list[dict[str, Any]] = []
    n_batches = -(-len(train_ds) // settings.batch_size)
    recorder = tracker(settings, model, test_ds, n_batches)
    n_steps = 0
    for epoch in range(1, settings.epochs + 1):
        for m in model.modules().values():
            m.train()
        totals = {"loss": 0.0, "mse": 0.0, "kl": 0.0}
        with Timer() as timer, epoch_progress(settings, n_batches, epoch) as bar:
            for batch in shuffled_batches(train_ds, settings.batch_size, generator):
                parts = step(batch)
                n_steps += 1
                if recorder is not None:
                    recorder.step(n_steps)
                totals["loss"] += float(parts.loss.detach()) * len(batch)
                totals["mse"] += parts.mse * len(batch)
                totals["kl"] += parts.kl * len(batch)
                bar.update(1)
                bar.set_postfix(mse=f"{parts.mse:.4f}", kl=f"{parts.kl:.1f}")
        entry = {"epoch": epoch, **{k: v / len(train_ds) for k, v in totals.items()},
                 "gamma": loss_fn.gamma, "seconds": round(timer.seconds, 2)}
        log.append(entry)
        if settings.progress:
            print(f"epoch {epoch}: loss {entry['loss']:.2f}  mse {entry['mse']:.5f}  kl {entry['kl']:.2f}  "
                  f"gamma {entry['gamma']:.5f}  ({entry['seconds']:.0f}s)")

    model.eval()
    test_mse = reconstruction_mse(model, test_ds, batch_size=512)
    stats = latent_statistics(model, test_ds, batch_size=512)
    model.metadata.update({
        "dataset": settings.dataset,
        "seed": settings.seed,
        "training": {"settings": settings.record(), "log": log,
                     "loss": "mean squared error" if plain else "balanced (Asperti & Trentin 2020)",
                     "train_images": len(train_ds), "environment": environment_record(device)},
        "metrics": {"test_mse": test_mse, "test_images": len(test_ds), **stats},
    })
    sample_gen = torch.Generator().manual_seed(settings.seed)
    x = test_ds.batch(range(min(16, len(test_ds))))
    extra = {
        "reconstructions.png": grid_png([x, model.reconstruct(x).cpu()]),
        "samples.png": square_grid_png(_own_samples(model, train_ds, sample_gen, settings.seed)),
    }
    if recorder is not None:
        extra.update(trajectory_files(recorder.finish(n_steps, {"dataset": settings.dataset, "kind": settings.kind})))
    save_checkpoint(model, settings.out, extra_files=extra, overwrite=settings.overwrite)
    return model


def tracker(settings: TrainSettings, model: LatentModel, test_ds: ImageDataset, steps_per_epoch: int
            ) -> TrajectoryRecorder | None:
    """The trajectory recorder asked for by ``--track N`` (None when N is 0 or unset), recording ``model`` on
    images of ``test_ds``."""
    n = settings.options.get("track") or 0
    if n <= 0:
        return None
    return TrajectoryRecorder(model, test_ds, n, every=settings.options.get("track_every") or DEFAULT_TRACK_EVERY,
                              steps_per_epoch=steps_per_epoch)


def _own_samples(model: LatentModel, train_ds: ImageDataset, generator: torch.Generator, seed: int, n: int = 64
                 ) -> torch.Tensor:
    """Samples from the prior, or, for a model without one (the plain autoencoder), from a Gaussian fitted on
    the encodings of (at most 2,000) training images."""
    if model.has_prior:
        return model.sample(n, generator).cpu()
    from latentmap.evaluation.samplers import fit_sampler

    sampler = fit_sampler(model, "gaussian", data=train_ds, fit_images=2000, seed=seed)
    return model.decode(sampler.sample(n, generator)).cpu()


class _MSELoss:
    """The plain autoencoder's loss, with the fields the training log reads (kl 0, gamma 1)."""

    gamma = 1.0

    def __call__(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> BalancedLossParts:
        from latentmap.losses import BalancedLossParts

        mse = torch.mean((x_hat - x) ** 2)
        return BalancedLossParts(loss=mse, mse=float(mse.detach()), kl=0.0, gamma=1.0)


# tracks: --track records the encoder's mean and variance (the ae: its latent)
register_trainer("vae", tracks=True)(_train_vae_like)
register_trainer("split-vae", tracks=True)(_train_vae_like)
register_trainer("ae", tracks=True)(_train_vae_like)
