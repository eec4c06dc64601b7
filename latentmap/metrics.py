"""Image and latent metrics as pure functions (batched, on the model's device)."""

from __future__ import annotations

import torch

from .errors import ShapeMismatchError


def per_image_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: [N, C, H, W] x2 -> [N]."""
    if x.shape != y.shape:
        raise ShapeMismatchError(f"images must have equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)


def reconstruction_mse(model, dataset, batch_size: int = 256, progress: bool = False) -> float:
    """Mean per-pixel MSE between images and their reconstructions, over a whole dataset split."""
    total, count = 0.0, 0
    for batch in dataset.iter_batches(batch_size):
        x = batch.to(model.device)
        total += float(per_image_mse(model.reconstruct(x), x).sum())
        count += len(batch)
    return total / max(count, 1)


def latent_statistics(model, dataset, batch_size: int = 256, inactive_threshold: float = 0.01) -> dict:
    """Per-variable Var(mu) and mean sigma^2 over a split, for VAE-like models.

    For a well-trained VAE, Var(mu_i) + E[sigma_i^2] is close to 1 for every variable; inactive
    (collapsed) variables have Var(mu_i) ~ 0 and sigma_i^2 ~ 1.
    """
    if not getattr(model, "vae_like", False):
        return {}
    n, s_mu, s_mu2, s_sig2 = 0, 0.0, 0.0, 0.0
    for batch in dataset.iter_batches(batch_size):
        mu, logvar = model.encode_stats(batch.to(model.device))
        mu, var = mu.double(), logvar.double().exp()
        n += len(mu)
        s_mu = s_mu + mu.sum(0)
        s_mu2 = s_mu2 + mu.pow(2).sum(0)
        s_sig2 = s_sig2 + var.sum(0)
    mean = s_mu / n
    var_mu = (s_mu2 / n - mean.pow(2)).clamp_min(0)
    mean_sigma2 = s_sig2 / n
    return {
        "var_mu": [round(float(v), 6) for v in var_mu],
        "mean_sigma2": [round(float(v), 6) for v in mean_sigma2],
        "inactive_variables": int((var_mu < inactive_threshold).sum()),
    }
