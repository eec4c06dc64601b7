"""Image and latent metrics as pure functions (batched, on the model's device)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from latentmap.errors import ShapeMismatchError
from latentmap.stats import Moments

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel, VAELikeModel


def per_image_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: [N, C, H, W] x2 -> [N]."""
    if x.shape != y.shape:
        raise ShapeMismatchError(f"images must have equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)


def reconstruction_mse(model: LatentModel, dataset: ImageDataset, batch_size: int = 256,
                       progress: bool = False) -> float:
    """Mean per-pixel MSE between images and their reconstructions, over a whole dataset split."""
    total, count = 0.0, 0
    for batch in dataset.iter_batches(batch_size):
        x = batch.to(model.device)
        total += float(per_image_mse(model.reconstruct(x), x).sum())
        count += len(batch)
    return total / max(count, 1)


def per_image_reconstruction_mse(model: LatentModel, dataset: ImageDataset, batch_size: int = 256) -> np.ndarray:
    """MSE of every image of a split against its reconstruction: a float64 numpy array [N] (its mean is
    :func:`reconstruction_mse`), for error histograms."""
    with torch.no_grad():
        parts = [per_image_mse(model.reconstruct(b.to(model.device)), b.to(model.device)).double().cpu()
                 for b in dataset.iter_batches(batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


# A latent variable whose posterior mean hardly varies over the data carries no information.
INACTIVE_THRESHOLD = 0.01


def latent_statistics(model: LatentModel, dataset: ImageDataset, batch_size: int = 256,
                      inactive_threshold: float = INACTIVE_THRESHOLD) -> dict[str, Any]:
    """Per-variable Var(mu) and mean sigma^2 over a split, for VAE-like models.

    For a well-trained VAE, Var(mu_i) + E[sigma_i^2] is close to 1 for every variable; inactive
    (collapsed) variables have Var(mu_i) ~ 0 and sigma_i^2 ~ 1.
    """
    if not getattr(model, "vae_like", False):
        return {}
    vae = cast("VAELikeModel", model)  # vae_like: the adapter gives encode_stats
    mu_moments, sigma2 = Moments(), Moments()
    for batch in dataset.iter_batches(batch_size):
        mu, logvar = vae.encode_stats(batch.to(vae.device))
        mu_moments.update(mu)
        sigma2.update(logvar.double().exp())
    var_mu, mean_sigma2 = mu_moments.variance(), sigma2.mean()
    return {
        "var_mu": [round(float(v), 6) for v in var_mu],
        "mean_sigma2": [round(float(v), 6) for v in mean_sigma2],
        "inactive_variables": int((var_mu < inactive_threshold).sum()),
    }


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device | str | None,
                     dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def per_image_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: int = 11,
                   sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004): [N, C, H, W] x2 -> [N].

    Gaussian window (11 px, sigma 1.5, shrunk to the largest odd size that fits small images),
    valid positions only, averaged over positions and channels; 1 means identical.
    """
    if x.shape != y.shape:
        raise ShapeMismatchError(f"images must have equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 4:
        raise ShapeMismatchError(f"SSIM needs NCHW images, got shape {tuple(x.shape)} instead")
    size = min(window, x.shape[2], x.shape[3])
    size -= 1 - size % 2  # odd, so the window has a centre
    x, y = x.float(), y.float()
    coords = torch.arange(size, device=x.device, dtype=x.dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    # (co)variances are shift-invariant: take them about each image's mean, so float32
    # E[x²] - mu² does not cancel away the small local variances of flat regions
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    yc = y - y.mean(dim=(2, 3), keepdim=True)
    maps = torch.cat([x, y, xc, yc, xc * xc, yc * yc, xc * yc], 1)
    k = maps.shape[1]
    # the Gaussian window is separable: one pass along rows, one along columns (2·size products per pixel,
    # not size²), all seven maps in one grouped convolution
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, size, 1).expand(k, 1, size, 1).contiguous(), groups=k)
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, 1, size).expand(k, 1, 1, size).contiguous(), groups=k)
    mu_x, mu_y, mxc, myc, sxx, syy, sxy = maps.chunk(7, dim=1)
    var_x = sxx - mxc ** 2
    var_y = syy - myc ** 2
    cov = sxy - mxc * myc
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)
