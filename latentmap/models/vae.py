"""Convolutional VAE: Gaussian encoder, sigmoid decoder (trained with the balanced loss)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from latentmap.models.base import VAELikeModel
from latentmap.models.registry import register_adapter
from latentmap.models.conv import ConvDecoder, ConvEncoder, ConvNetworks, default_channels


class GaussianEncoder(nn.Module):
    """Images -> the diagonal Gaussian posterior's (mu, logvar), each [N, latent_dim]: a :class:`ConvEncoder` body
    and two linear heads."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden: int, latent_dim: int):
        super().__init__()
        self.body = ConvEncoder(image_shape, channels, hidden)
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, C, H, W] -> (mu, logvar)."""
        h = self.body(x)
        return self.mu(h), self.logvar(h)


@register_adapter("vae")
class ConvVAE(ConvNetworks, VAELikeModel):
    """Reference VAE; ``architecture`` = channels per stage and the hidden width."""

    def __init__(self, name: str, image_shape: Iterable[int], latent_dim: int, *, channels: Sequence[int] | None = None,
                 hidden: int = 256, metadata: dict[str, Any] | None = None):
        super().__init__(name, image_shape, latent_dim, metadata=metadata)
        self.channels = list(channels or default_channels(self.image_shape))
        self.hidden = int(hidden)
        self.encoder = GaussianEncoder(self.image_shape, self.channels, self.hidden, self.latent_dim)
        self.decoder = self._build_decoder()

    def _build_decoder(self) -> nn.Module:
        return ConvDecoder(self.image_shape, self.channels, self.latent_dim, self.hidden, self.image_shape[0])

    def _encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def train_forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass with the reparameterization trick: returns (x_hat, mu, logvar)."""
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device) if generator is not None \
            else torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self._decode(z), mu, logvar
