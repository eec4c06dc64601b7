"""The balanced VAE loss of Asperti & Trentin (IEEE Access 8, 2020).

The reconstruction term is the Gaussian log-likelihood with variance ``gamma``, where gamma
is a running estimate of the current reconstruction error that only ever decreases
(gamma = min(previous gamma, current MSE)). Dividing by it keeps the reconstruction term
from being overwhelmed by the KL divergence as the error shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over latent variables."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


@dataclass
class BalancedLossParts:
    """One batch's balanced loss: the loss to back-propagate, and its reconstruction MSE, KL and gamma as floats."""

    loss: torch.Tensor
    mse: float
    kl: float
    gamma: float


class BalancedVAELoss:
    """Stateful loss: call it on each training batch; ``gamma`` follows the reconstruction error."""

    def __init__(self, momentum: float = 0.99, gamma_init: float = 1.0, gamma_floor: float = 1e-6) -> None:
        self.momentum = momentum
        self.gamma = float(gamma_init)
        self.running_mse: float | None = None
        self.gamma_floor = gamma_floor

    def __call__(self, x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor,
                 logvar: torch.Tensor) -> BalancedLossParts:
        """The loss of a batch of images ``x`` [N, C, H, W] given their reconstructions ``x_hat`` and posterior
        ``mu``, ``logvar`` [N, d]; updates the running MSE and gamma."""
        n_pixels = x[0].numel()
        mse_per_image = (x_hat - x).pow(2).flatten(1).mean(dim=1)
        batch_mse = float(mse_per_image.mean().detach())
        self.running_mse = batch_mse if self.running_mse is None else (
            self.momentum * self.running_mse + (1 - self.momentum) * batch_mse)
        self.gamma = max(min(self.gamma, self.running_mse), self.gamma_floor)
        kl = kl_divergence(mu, logvar)
        rec = 0.5 * n_pixels * mse_per_image / self.gamma
        loss = (rec + kl).mean()
        return BalancedLossParts(loss, batch_mse, float(kl.mean().detach()), self.gamma)
