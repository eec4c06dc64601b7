"""Training of the reference VAE and Split-VAE with the balanced loss."""

from __future__ import annotations

import torch

from latentmap.io.checkpoint import save_checkpoint
from latentmap.losses import BalancedVAELoss
from latentmap.evaluation.metrics import latent_statistics, reconstruction_mse
from latentmap.models.registry import adapter_class
from latentmap.report.grid import grid_png, square_grid_png
from latentmap.report.trajectories import trajectory_files
from latentmap.training.common import (Timer, TrainSettings, environment_record, epoch_progress, register_trainer, sanity_step,
                     shuffled_batches, start_run)
from latentmap.training.tracking import DEFAULT_TRACK_EVERY, TrajectoryRecorder


def _train_vae_like(settings: TrainSettings):
    device, generator, train_ds, test_ds = start_run(settings)
    arch = {k: v for k, v in settings.options.items() if k in ("channels", "hidden") and v is not None}
    model = adapter_class(settings.kind)(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch)
    model.to(device)
    params = [p for m in model.modules().values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    loss_fn = BalancedVAELoss(gamma_floor=settings.options.get("gamma_min") or 1e-6)

    def step(batch):
        x = batch.to(device)
        x_hat, mu, logvar = model.train_forward(x)
        parts = loss_fn(x, x_hat, mu, logvar)
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        optimizer.step()
        return parts

    for m in model.modules().values():
        m.train()
    sanity_step(lambda: model.train_forward(train_ds.batch(range(min(2, len(train_ds)))).to(device)),
                f"{settings.kind} '{settings.model_name}'")

    log = []
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
        "training": {"settings": settings.record(), "log": log, "loss": "balanced (Asperti & Trentin 2020)",
                     "train_images": len(train_ds), "environment": environment_record(device)},
        "metrics": {"test_mse": test_mse, "test_images": len(test_ds), **stats},
    })
    sample_gen = torch.Generator().manual_seed(settings.seed)
    x = test_ds.batch(range(min(16, len(test_ds))))
    extra = {
        "reconstructions.png": grid_png([x, model.reconstruct(x).cpu()]),
        "samples.png": square_grid_png(model.sample(64, sample_gen).cpu()),
    }
    if recorder is not None:
        extra.update(trajectory_files(recorder.finish(n_steps, {"dataset": settings.dataset, "kind": settings.kind})))
    save_checkpoint(model, settings.out, extra_files=extra, overwrite=settings.overwrite)
    return model


def tracker(settings: TrainSettings, model, test_ds, steps_per_epoch: int):
    """The trajectory recorder asked for by ``--track N`` (None when N is 0 or unset)."""
    n = settings.options.get("track") or 0
    if n <= 0:
        return None
    return TrajectoryRecorder(model, test_ds, n, every=settings.options.get("track_every") or DEFAULT_TRACK_EVERY,
                              steps_per_epoch=steps_per_epoch)


_train_vae_like.tracks = True  # --track records the encoder's mean and variance
register_trainer("vae")(_train_vae_like)
register_trainer("split-vae")(_train_vae_like)
