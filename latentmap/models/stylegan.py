"""A small StyleGAN-style generator and the W-space adapter shared with external StyleGANs.

The generator follows the convention of the official StyleGAN2/3 PyTorch code, so the same
adapter serves it and any generator people already have: ``mapping(z, c)`` returns ws of
shape [N, num_ws, w_dim], ``synthesis(ws)`` returns images roughly in [-1, 1], and the
attributes ``z_dim``, ``w_dim``, ``num_ws``, ``c_dim`` describe it.

The adapter's latent space is W (``latent_dim = w_dim``): one w is broadcast to every layer
inside ``decode``, ``sample_prior`` draws z and maps it, and ``encode`` is a W inverter
trained on generated images.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from latentmap.errors import ConfigError
from latentmap.models.base import LatentModel
from latentmap.models.registry import register_adapter
from latentmap.models.conv import default_channels
from latentmap.models.gan import InversionNetwork

PRIOR_MEAN_SAMPLES = 10_000


class MappingNetwork(nn.Module):
    """z -> w: normalize z to unit second moment, then an MLP with leaky ReLUs."""

    w_avg: torch.Tensor  # a registered buffer

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int = 4) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        blocks: list[nn.Module] = []
        d_in = z_dim
        for _ in range(layers):
            linear = nn.Linear(d_in, w_dim)
            # variance-preserving init: with torch's default, w would shrink ~3x per layer and W collapse
            nn.init.kaiming_normal_(linear.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            blocks += [linear, nn.LeakyReLU(0.2)]
            d_in = w_dim
        self.net = nn.Sequential(*blocks)
        # running mean of w, as in StyleGAN: the "prior mean" of W and the truncation centre
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim] (one w repeated); ``c`` (labels) is unused, as the official
        signature has it. ``truncation_psi`` < 1 pulls w towards ``w_avg``; ``update_w_avg`` tracks it (training)."""
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        w = self.net(z)
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.995))
        if truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)


class ModulatedConv(nn.Module):
    """Conv whose input channels are scaled per sample by a style from w, then demodulated."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int = 3, demodulate: bool = True,
                 upsample: bool = False, activate: bool = True) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, c_in)
        nn.init.ones_(self.affine.bias)  # styles start at 1: the conv starts as a plain conv
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)
        self.demodulate, self.upsample, self.activate, self.padding = demodulate, upsample, activate, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Feature maps [N, c_in, H, W] styled by w [N, w_dim] -> [N, c_out, H, W] (2H x 2W with ``upsample``)."""
        # Scale the input by the styles, convolve with the shared weight, then scale the output by
        # the demodulation coefficients: the same result as per-sample modulated weights (the
        # official "non-fused" path), but one ordinary batched conv, much faster on CPU.
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.scale
        x = x * styles[:, :, None, None]
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum over (in, k, k) of (weight * style)^2, per sample and output channel
            dcoefs = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # [N, out]
            out = out * dcoefs[:, :, None, None]
        out = out + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


class SynthesisNetwork(nn.Module):
    """ws -> image: a learned constant, two modulated convs per resolution, toRGB skips summed.

    No per-pixel noise inputs: at these sizes they add little, and without them decoding is
    deterministic, which the adapter interface requires.
    """

    def __init__(self, w_dim: int, image_shape: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        c, h, w = image_shape
        self.w_dim, self.img_channels, self.img_resolution = w_dim, c, h
        steps = len(channels) - 1
        if h % (2 ** steps) or w % (2 ** steps):
            raise ConfigError(f"image side {h}x{w} must be divisible by 2^{steps} for channels {list(channels)}")
        self.const = nn.Parameter(torch.randn(channels[0], h >> steps, w >> steps))
        self.convs, self.torgbs = nn.ModuleList(), nn.ModuleList()
        c_prev = channels[0]
        for i, ch in enumerate(channels):
            self.convs.append(ModulatedConv(c_prev, ch, w_dim, upsample=i > 0))
            self.convs.append(ModulatedConv(ch, ch, w_dim))
            self.torgbs.append(ModulatedConv(ch, c, w_dim, kernel=1, demodulate=False, activate=False))
            c_prev = ch
        self.num_ws = len(self.convs) + 1

    def forward(self, ws: torch.Tensor, **_: object) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, H, W], roughly in [-1, 1]; keyword options (``noise_mode``) are
        accepted and ignored."""
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        img: torch.Tensor | None = None
        for i, torgb in enumerate(self.torgbs):
            x = self.convs[2 * i](x, ws[:, 2 * i])
            x = self.convs[2 * i + 1](x, ws[:, 2 * i + 1])
            y = torgb(x, ws[:, 2 * i + 2])
            img = y if img is None else F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + y
        assert img is not None  # channels is never empty: the constant has channels[0] maps
        return img


class StyleGenerator(nn.Module):
    """Mapping + synthesis with the attributes of the official StyleGAN2/3 generators."""

    def __init__(self, z_dim: int, w_dim: int, image_shape: Sequence[int], channels: Sequence[int],
                 mapping_layers: int = 4) -> None:
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, image_shape, channels)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers)
        self.z_dim, self.w_dim, self.c_dim = z_dim, w_dim, 0
        self.img_channels, self.img_resolution = self.synthesis.img_channels, self.synthesis.img_resolution

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                **kwargs: object) -> torch.Tensor:
        """z [N, z_dim] -> images [N, C, H, W] roughly in [-1, 1]; ``kwargs`` go to the synthesis network."""
        return self.synthesis(self.mapping(z, c, truncation_psi=truncation_psi), **kwargs)


def default_style_channels(image_shape: Sequence[int]) -> list[int]:
    """Widths from the constant's resolution up: 28x28 -> [64, 64, 32] at 7, 14, 28."""
    stages = len(default_channels(image_shape))
    widths = [64] * (stages + 1)
    widths[-1] = 32
    return widths


def _convention_int(G: nn.Module, attr: str) -> int:
    """The integer attribute ``attr`` (``z_dim``, ``w_dim``, ``num_ws``) of a StyleGAN-convention generator."""
    value = getattr(G, attr, None)
    if not isinstance(value, int):
        raise ConfigError(f"generator must have an integer attribute '{attr}' (StyleGAN convention)")
    return value


class WSpaceModel(LatentModel):
    """Any StyleGAN-convention generator ``G`` in its W space, with a W inverter for ``encode``.

    Images come out of ``synthesis`` in [-1, 1] and are mapped to [0, 1] (clamped).
    ``label`` picks the class of a conditional generator (c_dim > 0).
    """

    OBJECTIVE = "adversarial"
    FAMILY = "stylegan"

    def __init__(self, name: str, G: nn.Module, inverter: nn.Module, image_shape: Iterable[int], *,
                 label: int | None = None, metadata: dict[str, Any] | None = None) -> None:
        z_dim, w_dim, num_ws = [_convention_int(G, attr) for attr in ("z_dim", "w_dim", "num_ws")]
        super().__init__(name, image_shape, w_dim, metadata=metadata)
        self.G, self.inverter = G, inverter
        self.z_dim, self.num_ws = int(z_dim), int(num_ws)
        self.c_dim = int(getattr(G, "c_dim", 0) or 0)
        if self.c_dim and label is None:
            raise ConfigError(f"generator is conditional (c_dim={self.c_dim}); pass label=0..{self.c_dim - 1}")
        if label is not None and not 0 <= int(label) < max(self.c_dim, 1):
            raise ConfigError(f"label must lie in 0..{max(self.c_dim, 1) - 1}, got {label} instead")
        self.label = None if label is None else int(label)
        synthesis = G.synthesis
        assert callable(synthesis)  # the StyleGAN convention: a synthesis module
        params = inspect.signature(synthesis.forward).parameters
        # official generators draw fresh noise per call unless told otherwise
        self._synthesis_kwargs = {"noise_mode": "const"} if "noise_mode" in params else {}

    def modules(self) -> dict[str, nn.Module]:
        """The generator and the W inverter."""
        return {"G": self.G, "inverter": self.inverter}

    def _c(self, n: int) -> torch.Tensor:
        if not self.c_dim:
            return torch.zeros(n, 0, device=self.device)
        assert self.label is not None  # a conditional generator is refused without a label
        return F.one_hot(torch.full((n,), self.label, device=self.device), self.c_dim).float()

    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim] on the model's device -> w [N, w_dim]."""
        mapping = self.G.mapping
        assert callable(mapping)  # the StyleGAN convention: a mapping module
        return mapping(z, self._c(len(z)))[:, 0]

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] -> raw synthesis output (about [-1, 1]), keeping the graph."""
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        synthesis = self.G.synthesis
        assert callable(synthesis)  # the StyleGAN convention: a synthesis module
        return synthesis(ws, **self._synthesis_kwargs)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z ~ N(0, I) (on CPU, so a seed gives the same w on every device) and map it to W."""
        if n < 0:
            raise ConfigError(f"n must be non-negative, got {n} instead")
        z = torch.randn(n, self.z_dim, generator=generator)
        self.G.eval()
        with torch.no_grad():
            return self.map_z(z.to(self.device)).float().cpu()

    def prior_mean(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of w, estimated from mapped samples (only the cheap mapping network runs).

        A tracked ``w_avg`` is not used: it is a slow moving average that lags behind after short runs.
        """
        generator = generator or torch.Generator().manual_seed(0)
        return self.sample_prior(PRIOR_MEAN_SAMPLES, generator).mean(0, keepdim=True)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inverter(x)

    def _decode(self, w: torch.Tensor) -> torch.Tensor:
        return ((self.synthesize(w).float() + 1) / 2).clamp(0, 1)


@register_adapter("stylegan-w")
class StyleGANW(WSpaceModel):
    """The reference StyleGAN-style generator of latentmap, in W space."""

    def __init__(self, name: str, image_shape: Iterable[int], latent_dim: int, *, z_dim: int | None = None,
                 channels: Sequence[int] | None = None, mapping_layers: int = 4,
                 inverter_channels: Sequence[int] | None = None, inverter_hidden: int = 256,
                 metadata: dict[str, Any] | None = None) -> None:
        image_shape = tuple(int(s) for s in image_shape)
        self.channels = list(channels or default_style_channels(image_shape))
        self.mapping_layers = int(mapping_layers)
        self.inverter_channels = list(inverter_channels or default_channels(image_shape))
        self.inverter_hidden = int(inverter_hidden)
        z_dim = int(z_dim or latent_dim)
        G = StyleGenerator(z_dim, int(latent_dim), image_shape, self.channels, self.mapping_layers)
        inverter = InversionNetwork(image_shape, self.inverter_channels, self.inverter_hidden, int(latent_dim))
        super().__init__(name, G, inverter, image_shape, metadata=metadata)

    def architecture(self) -> dict[str, Any]:
        """The sizes and widths that rebuild the generator and the inverter."""
        return {"z_dim": self.z_dim, "channels": self.channels, "mapping_layers": self.mapping_layers,
                "inverter_channels": self.inverter_channels, "inverter_hidden": self.inverter_hidden}

    @classmethod
    def from_architecture(cls, name: str, image_shape: Iterable[int], latent_dim: int, architecture: dict[str, Any],
                          metadata: dict[str, Any] | None = None) -> LatentModel:
        """An untrained model of the architecture :meth:`architecture` recorded."""
        return cls(name, image_shape, latent_dim, metadata=metadata, **architecture)
