"""Plain convolutional autoencoder: deterministic encoder, sigmoid decoder, trained on the MSE alone.

No KL term, as the autoencoder of "Autoencoders, latent space and the curse of high
dimensionality": nothing pulls its codes towards N(0, I), so it has no prior (``has_prior`` is
False) and its samples come from a distribution fitted on its encodings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from latentmap.models.base import LatentModel
from latentmap.models.conv import ConvDecoder, ConvEncoder, ConvNetworks, default_channels
from latentmap.models.registry import register_adapter


@register_adapter("ae")
class ConvAE(ConvNetworks, LatentModel):
    """Plain autoencoder: a deterministic encoder and a sigmoid decoder; ``architecture`` = channels per stage and the
    hidden width."""

    OBJECTIVE = "autoencoder"

    def __init__(self, name: str, image_shape: Iterable[int], latent_dim: int, *, channels: Sequence[int] | None = None,
                 hidden: int = 256, metadata: dict[str, Any] | None = None):
        super().__init__(name, image_shape, latent_dim, metadata=metadata)
        self.channels = list(channels or default_channels(self.image_shape))
        self.hidden = int(hidden)
        self.encoder = nn.Sequential(ConvEncoder(self.image_shape, self.channels, self.hidden),
                                     nn.Linear(self.hidden, self.latent_dim))
        self.decoder = ConvDecoder(self.image_shape, self.channels, self.latent_dim, self.hidden, self.image_shape[0])

    @property
    def has_prior(self) -> bool:
        """False: nothing pulls the codes towards N(0, I), so samples need a distribution fitted on encodings."""
        return False

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def train_forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: returns (x_hat, z); no sampling (``generator`` is accepted for the VAEs' signature)."""
        z = self.encoder(x)
        return self._decode(z), z
