"""DCGAN generator and discriminator, and the GAN adapter whose encoder is an inversion network.

A GAN has no encoder, so ``encode`` is a CNN trained on the generator's own samples
(z -> G(z) -> E -> z_hat), as in the source texts. The discriminator is only needed for
training and is not part of the saved model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from latentmap.models.base import LatentModel
from latentmap.models.registry import register_adapter
from latentmap.models.conv import ConvEncoder, default_channels, feature_shape


class DCGANGenerator(nn.Module):
    """z -> dense -> (transposed conv, BN, ReLU) per stage -> image logits.

    ``channels`` lists the widths from the image side inwards (as for the encoders), so
    [32, 64] starts from 64 maps at 7x7 for 28x28 images.
    """

    def __init__(self, latent_dim: int, image_shape: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        self.start = feature_shape(image_shape, channels)
        c0, h0, w0 = self.start
        self.fc = nn.Sequential(nn.Linear(latent_dim, c0 * h0 * w0, bias=False), nn.BatchNorm1d(c0 * h0 * w0),
                                nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for i, c in enumerate(rev[:-1]):
            layers += [nn.ConvTranspose2d(c, rev[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(rev[i + 1]),
                       nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(rev[-1], image_shape[0], 4, 2, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [N, latent_dim] -> image logits [N, C, H, W]."""
        return self.features(self.fc(z).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """Images in [0, 1] -> one real/fake logit per image (no batch norm: plays well with R1)."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = image_shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        fc, fh, fw = feature_shape(image_shape, channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(fc * fh * fw, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] in [0, 1] -> logits [N]."""
        return self.head(self.features(x * 2 - 1)).squeeze(1)


class InversionNetwork(nn.Module):
    """Images -> latent vectors: the conv encoder of the VAEs with a linear head.

    With ``input_size`` the images are first area-resized to that side, so a 1024x1024
    generator gets a small inverter instead of one with a huge dense layer.
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden: int, latent_dim: int,
                 input_size: int | None = None) -> None:
        super().__init__()
        c, h, w = image_shape
        self.input_size = (int(input_size), int(input_size)) if input_size else None
        shape = (c, *self.input_size) if self.input_size else (c, h, w)
        self.body = ConvEncoder(shape, channels, hidden)
        self.head = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] -> latents [N, latent_dim]."""
        if self.input_size and tuple(x.shape[2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="area")
        return self.head(self.body(x))


def recalibrate_batchnorm(module: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute BN running statistics as exact averages over ``inputs`` (a list of batches).

    A GAN generator is trained in train mode, where BN uses batch statistics; its running
    averages lag behind the last weights. Re-estimating them makes eval-mode decoding look like
    the samples seen during training.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = module.training
    module.train()
    with torch.no_grad():
        for batch in inputs:
            module(batch)
    module.train(was_training)
    for m, (momentum, _) in zip(bns, saved):
        m.momentum = momentum


@register_adapter("gan")
class GANModel(LatentModel):
    """DCGAN with a Gaussian prior; ``encode`` is the inversion network, ``decode`` the generator."""

    OBJECTIVE = "adversarial"
    FAMILY = "dcgan"

    def __init__(self, name: str, image_shape: Iterable[int], latent_dim: int, *, channels: Sequence[int] | None = None,
                 inverter_channels: Sequence[int] | None = None, inverter_hidden: int = 256,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(name, image_shape, latent_dim, metadata=metadata)
        self.channels = list(channels or default_channels(self.image_shape))
        self.inverter_channels = list(inverter_channels or self.channels)
        self.inverter_hidden = int(inverter_hidden)
        self.generator = DCGANGenerator(self.latent_dim, self.image_shape, self.channels)
        self.inverter = InversionNetwork(self.image_shape, self.inverter_channels, self.inverter_hidden,
                                         self.latent_dim)

    def modules(self) -> dict[str, nn.Module]:
        """The generator and the inversion network (the discriminator is not part of the model)."""
        return {"generator": self.generator, "inverter": self.inverter}

    def architecture(self) -> dict[str, Any]:
        """The widths of the generator and inverter and the inverter's hidden size."""
        return {"channels": self.channels, "inverter_channels": self.inverter_channels,
                "inverter_hidden": self.inverter_hidden}

    @classmethod
    def from_architecture(cls, name: str, image_shape: Iterable[int], latent_dim: int, architecture: dict[str, Any],
                          metadata: dict[str, Any] | None = None) -> LatentModel:
        """An untrained GAN of the architecture :meth:`architecture` recorded."""
        return cls(name, image_shape, latent_dim, metadata=metadata, **architecture)

    def make_discriminator(self, channels: Sequence[int] | None = None) -> DCGANDiscriminator:
        """A fresh discriminator (training only); the generator's widths unless given, as in DCGAN."""
        return DCGANDiscriminator(self.image_shape, list(channels or self.channels)).to(self.device)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Training-time generator pass (no validation, keeps the graph, current BN mode)."""
        return torch.sigmoid(self.generator(z))

    def prior_mean(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean of the N(0, I) prior, [1, latent_dim] (``generator`` is unused: the mean is exact)."""
        return torch.zeros(1, self.latent_dim)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inverter(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z))
