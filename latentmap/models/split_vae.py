"""Split-VAE: the decoder emits a mask and two images, output = mask*img1 + (1-mask)*img2."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from latentmap.models.registry import register_adapter
from latentmap.models.conv import ConvDecoder
from latentmap.models.vae import ConvVAE

if TYPE_CHECKING:
    import numpy as np


@register_adapter("split-vae")
class SplitVAE(ConvVAE):
    """A :class:`ConvVAE` whose decoder blends two images through a mask it also emits."""

    def _build_decoder(self) -> nn.Module:
        c = self.image_shape[0]
        return ConvDecoder(self.image_shape, self.channels, self.latent_dim, self.hidden, 2 * c + 1)

    def decode_parts(self, z: torch.Tensor | np.ndarray, *, grad: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mask, img1, img2) for latents ``z``: the two images the output is blended from."""
        z = self.check_latents(z)
        self.eval()
        with torch.set_grad_enabled(grad):
            return self._parts(z)

    def _parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.decoder(z)
        c = self.image_shape[0]
        mask = torch.sigmoid(out[:, :1])
        return mask, torch.sigmoid(out[:, 1:1 + c]), torch.sigmoid(out[:, 1 + c:])

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        mask, img1, img2 = self._parts(z)
        return mask * img1 + (1 - mask) * img2
