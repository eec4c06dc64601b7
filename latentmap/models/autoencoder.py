"""Plain convolutional autoencoder: deterministic encoder, sigmoid decoder, trained on the MSE alone.

No KL term, as the autoencoder of "Autoencoders, latent space and the curse of high
dimensionality": nothing pulls its codes towards N(0, I), so it has no prior (``has_prior`` is
False) and its samples come from a distribution fitted on its encodings.
"""

from __future__ import annotations

import torch
from torch import nn

from latentmap.models.base import LatentModel
from latentmap.models.conv import ConvDecoder, ConvEncoder, ConvNetworks, default_channels
from latentmap.models.registry import register_adapter


@register_adapter("ae")
class ConvAE(ConvNetworks, LatentModel):
    OBJECTIVE = "autoencoder"

    def __init__(self, name, image_shape, latent_dim, *, channels=None, hidden=256, metadata=None):
        super().__init__(name, image_shape, latent_dim, metadata=metadata)
        self.channels = list(channels or default_channels(self.image_shape))
        self.hidden = int(hidden)
        self.encoder = nn.Sequential(ConvEncoder(self.image_shape, self.channels, self.hidden),
                                     nn.Linear(self.hidden, self.latent_dim))
        self.decoder = ConvDecoder(self.image_shape, self.channels, self.latent_dim, self.hidden, self.image_shape[0])

    @property
    def has_prior(self) -> bool:
        return False

    def _encode(self, x):
        return self.encoder(x)

    def train_forward(self, x, generator: torch.Generator | None = None):
        """Training pass: returns (x_hat, z); no sampling."""
        z = self.encoder(x)
        return self._decode(z), z
