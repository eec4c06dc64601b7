"""Optimization-based inversion: gradient descent on the latent until the decoder reproduces an image.

The "double check by gradient ascent" of the source texts: if a generator cannot reproduce an
image even when its latent is optimized directly, the image lies outside what it can generate.
For StyleGAN-style models the optimized latent is w.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from latentmap.batching import with_progress
from latentmap.errors import ConfigError
from latentmap.evaluation.metrics import per_image_mse
from latentmap.io.frames import FrameRepr, records_frame
from latentmap.models.base import LatentModel

if TYPE_CHECKING:
    import pandas as pd

INITS = ("auto", "encoder", "prior-mean")  # auto: the encoder when it is trained, else the prior mean
LOSSES = ("mse", "mse+lpips")


@dataclass
class InversionResult(FrameRepr):
    """Latents [N, d] (the best found per image), their loss [N], the start loss [N], and the curve.

    ``curve`` [steps + 1] is the mean over images of the loss at each step (index 0 = start).
    All tensors are on CPU.
    """

    latents: torch.Tensor
    loss: torch.Tensor
    initial_loss: torch.Tensor
    curve: torch.Tensor
    init: str
    loss_name: str

    @property
    def mse(self) -> torch.Tensor:
        """The best loss per image (an alias, convenient when the loss is ``mse``)."""
        return self.loss

    def to_frame(self) -> pd.DataFrame:
        """One row per image: the loss at the start and the best loss found."""
        start, best = self.initial_loss.double().tolist(), self.loss.double().tolist()
        return records_frame(({"image": k, "initial_loss": a, "loss": b} for k, (a, b) in enumerate(zip(start, best))),
                             ["image", "initial_loss", "loss"])

    def _frame_caption(self) -> str:
        return f"Inversion of {len(self.loss)} images: {len(self.curve) - 1} steps from the {self.init}, loss {self.loss_name}"


def prior_mean(model: LatentModel, generator: torch.Generator | None = None, samples: int = 4096) -> torch.Tensor:
    """The mean of the model's prior [1, d]: the model's own ``prior_mean`` or an estimate from samples."""
    own = getattr(model, "prior_mean", None)
    if callable(own):
        return own(generator).reshape(1, model.latent_dim).float()
    if type(model).sample_prior is LatentModel.sample_prior:  # the standard normal of the interface
        return torch.zeros(1, model.latent_dim)
    generator = generator or torch.Generator().manual_seed(0)
    return model.sample_prior(samples, generator).float().mean(0, keepdim=True)


def invert(model: LatentModel, images: object, steps: int = 200, lr: float = 0.05, *, init: str = "auto",
           loss: str = "mse", seed: int = 0, lpips_weight: float = 1.0,
           lpips_weights: str | os.PathLike[str] | None = None,
           lpips_net: str = "alex", progress: bool = False) -> InversionResult:
    """Find latents whose decodings reproduce ``images`` by Adam on the latents, all images at once.

    ``init`` starts from the model's encoder or from the prior mean (``auto``: the encoder unless it is
    an untrained inverter); ``loss`` is per-image MSE or
    MSE + ``lpips_weight`` * LPIPS (needs the backbone weights, see ``latentmap.evaluation.lpips_metric``).
    Each image's latent is optimized independently (Adam is per-coordinate and the objective
    is a sum over images), so results do not depend on the batch. Runs on the model's device.
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got '{init}' instead")
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got '{loss}' instead")
    if steps < 0:
        raise ConfigError(f"steps must be non-negative, got {steps} instead")
    if lr <= 0:
        raise ConfigError(f"lr must be positive, got {lr} instead")
    if init == "auto":
        init = "encoder" if model.has_trained_encoder else "prior-mean"
    x = model.check_images(images)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    perceptual = None
    if loss == "mse+lpips":
        from latentmap.evaluation.lpips_metric import load_lpips

        perceptual = load_lpips(lpips_weights, net=lpips_net, device=model.device)

    def per_image_loss(z: torch.Tensor) -> torch.Tensor:
        x_hat = model.decode(z, grad=True)
        value = per_image_mse(x_hat, x)
        if perceptual is not None:
            value = value + lpips_weight * perceptual(x_hat, x)
        return value

    if init == "encoder":
        z0 = model.encode(x)
    else:
        z0 = prior_mean(model, generator).to(model.device).expand(len(x), -1)
    z = z0.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    best_z = z.detach().clone()
    best_loss: torch.Tensor | None = None
    initial: torch.Tensor | None = None
    curve: list[float] = []
    for step in with_progress(range(steps + 1), f"invert {model.name}", progress, unit="step"):
        value = per_image_loss(z)
        detached = value.detach()
        if best_loss is None:
            initial, best_loss = detached.clone(), detached.clone()
        better = detached < best_loss
        best_loss = torch.where(better, detached, best_loss)
        best_z[better] = z.detach()[better]
        curve.append(float(detached.mean()))
        if step == steps:
            break
        # gradient only for the latents: the model's parameters stay untouched
        (grad,) = torch.autograd.grad(value.sum(), z)
        z.grad = grad
        optimizer.step()
    assert best_loss is not None and initial is not None  # the loop runs steps + 1 >= 1 times
    return InversionResult(latents=best_z.cpu(), loss=best_loss.cpu(), initial_loss=initial.cpu(),
                           curve=torch.tensor(curve), init=init, loss_name=loss)
