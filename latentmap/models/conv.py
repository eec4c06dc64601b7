"""Convolutional encoder/decoder blocks shared by the reference architectures.

The image side is halved once per entry of ``channels`` (4x4 stride-2 convolutions), optionally
followed by ``extra_convs`` 3x3 convolutions; the decoder mirrors it with transposed convolutions. So
28x28 with two stages works on 14x14 and 7x7 maps, 64x64 with four stages down to 4x4.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from latentmap.errors import ConfigError
from latentmap.models.base import LatentModel

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the package also runs on 3.10


def default_channels(image_shape: Sequence[int]) -> list[int]:
    """Halve while the side stays even and above 4, at most four times: 28 -> [32, 64], 64 -> [32, 64, 128, 256]."""
    side = min(image_shape[1:])
    widths, stages = [32, 64, 128, 256], 0
    while side % 2 == 0 and side > 4 and stages < 4:
        side //= 2
        stages += 1
    return widths[:max(stages, 1)]


def feature_shape(image_shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width) of the feature maps after the stride-2 stages: the image side halved once per entry
    of ``channels``, ConfigError when it does not divide."""
    c, h, w = image_shape
    scale = 2 ** len(channels)
    if h % scale or w % scale:
        raise ConfigError(f"image side {h}x{w} must be divisible by 2^{len(channels)}={scale} for channels {list(channels)}")
    return channels[-1], h // scale, w // scale


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ConvEncoder(nn.Module):
    """Images -> feature vector of size ``hidden``."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden: int, extra_convs: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = image_shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.BatchNorm2d(c), _act()]
            for _ in range(extra_convs):
                layers += [nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), _act()]
            c_in = c
        self.features = nn.Sequential(*layers)
        fc, fh, fw = feature_shape(image_shape, channels)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(fc * fh * fw, hidden), _act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] -> features [N, hidden]."""
        return self.fc(self.features(x))


class ConvDecoder(nn.Module):
    """Latent vector -> ``out_channels`` maps at image resolution (pre-activation logits)."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], latent_dim: int, hidden: int,
                 out_channels: int, extra_convs: int = 0):
        super().__init__()
        self.start = feature_shape(image_shape, channels)
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), _act(),
                                nn.Linear(hidden, math.prod(self.start)), _act())
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for i, c in enumerate(rev):
            c_out = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), _act()]
            for _ in range(extra_convs):
                layers += [nn.Conv2d(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), _act()]
        layers.append(nn.Conv2d(rev[-1], out_channels, 3, 1, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [N, latent_dim] -> logits [N, out_channels, H, W]."""
        return self.features(self.fc(z).view(-1, *self.start))


class ConvNetworks(LatentModel):
    """Mixin for the conv adapters (VAE, Split-VAE, plain autoencoder): an ``encoder`` and a sigmoid ``decoder``
    described by ``channels`` and ``hidden``, saved and rebuilt from that architecture.

    Listed before the adapter's base (``class ConvVAE(ConvNetworks, VAELikeModel)``); the subclass's ``__init__``
    takes ``channels`` and ``hidden`` as keywords and sets the four attributes below."""

    encoder: nn.Module
    decoder: nn.Module
    channels: list[int]
    hidden: int

    def modules(self) -> dict[str, nn.Module]:
        """The encoder and the decoder, by name."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def architecture(self) -> dict[str, Any]:
        """``channels`` and ``hidden``: the keywords that rebuild the networks."""
        return {"channels": self.channels, "hidden": self.hidden}

    @classmethod
    def from_architecture(cls, name: str, image_shape: Iterable[int], latent_dim: int, architecture: Mapping[str, Any],
                          metadata: dict[str, Any] | None = None) -> Self:
        """An untrained adapter built from a config's architecture section (``channels``, ``hidden``)."""
        return cls(name, image_shape, latent_dim, metadata=metadata, **architecture)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))
