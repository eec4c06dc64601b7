"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with the backbone weights found explicitly.

LPIPS compares deep features of an ImageNet-trained backbone. The package ships only its
small linear layers; the backbone comes from torchvision's ImageNet weights, which are read
from the torch hub cache or from a path the user gives, and never downloaded here. Without
them the metric fails with a message saying how to provide them: a randomly initialized
backbone would give numbers that look like LPIPS and mean nothing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from latentmap.device import resolve_device
from latentmap.errors import ConfigError, DependencyError

NETS = ("alex", "vgg", "squeeze")
MIN_SIDE = 64  # AlexNet's strided first layers shrink 28x28 images to nothing: upsample small images


def _torchvision_weights(net: str) -> Any:  # a torchvision WeightsEnum member (torchvision has no types here)
    from torchvision import models

    if net not in NETS:
        raise ConfigError(f"LPIPS backbone must be one of {', '.join(NETS)}, got '{net}' instead")
    return {"alex": models.AlexNet_Weights.IMAGENET1K_V1, "vgg": models.VGG16_Weights.IMAGENET1K_V1,
            "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1}[net]


def backbone_filename(net: str = "alex") -> str:
    """The file name torchvision gives the backbone's weights in the hub cache (e.g. alexnet-owt-7be5be79.pth)."""
    return _torchvision_weights(net).url.rsplit("/", 1)[-1]


def hub_weights_path(net: str = "alex") -> Path:
    """Where the torch hub cache keeps the ``net`` backbone's ImageNet weights (whether or not the file exists)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone_filename(net)


def portable_text(text: str) -> str:
    """``text`` with this machine's torch hub folder written as ``$TORCH_HOME/hub``, for notes that go into
    reports: a report reads the same on every machine."""
    hub = str(Path(torch.hub.get_dir()))
    return text.replace(hub, "$TORCH_HOME/hub") if hub and hub != "." else text


def find_backbone_weights(weights: str | os.PathLike[str] | None = None, net: str = "alex") -> Path:
    """The weights file to use: ``weights`` if given, else the torch hub cache; a clear error if neither."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise DependencyError(f"LPIPS backbone weights file '{path}' does not exist")
        return path
    path = hub_weights_path(net)
    if path.is_file():
        return path
    url = _torchvision_weights(net).url
    raise DependencyError(
        f"LPIPS needs torchvision's ImageNet weights for its '{net}' backbone, and '{path}' does not exist; "
        f"download {url} where there is internet and put it there (or under $TORCH_HOME/hub/checkpoints), "
        "or pass its path with --lpips PATH (lpips_weights=PATH in Python)")


class LPIPSMetric(nn.Module):
    """Per-image LPIPS distance between image batches in [0, 1] (grey images are repeated to RGB)."""

    def __init__(self, lpips_module: nn.Module, source: Path, net: str) -> None:
        super().__init__()
        self.lpips = lpips_module.eval()
        self.source, self.net = source, net
        for p in self.lpips.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ConfigError(f"LPIPS needs images with 1 or 3 channels, got {x.shape[1]}")
        side = min(x.shape[2:])
        if side < MIN_SIDE:
            x = F.interpolate(x, scale_factor=MIN_SIDE / side, mode="bilinear", align_corners=False)
        return x * 2 - 1

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of every pair of images x[i], y[i] ([N, C, H, W] in [0, 1]): a tensor [N]."""
        if x.shape != y.shape:
            raise ConfigError(f"LPIPS compares equally shaped batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.lpips(self._prepare(x), self._prepare(y)).flatten()


_CACHE: dict[tuple[str, str, str], LPIPSMetric] = {}


def load_lpips(weights: str | os.PathLike[str] | None = None, net: str = "alex",
               device: torch.device | str | None = None) -> LPIPSMetric:
    """The LPIPS metric with the backbone from ``weights`` or the hub cache, on ``device``."""
    import lpips

    _torchvision_weights(net)  # validates the name
    path = find_backbone_weights(weights, net)
    device = resolve_device(device)
    key = (str(path.resolve()), net, str(device))
    if key in _CACHE:
        return _CACHE[key]
    try:
        # weights_only: a state dict of tensors, never arbitrary pickled objects
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise DependencyError(f"cannot read LPIPS backbone weights '{path}': {str(exc).splitlines()[0]}") from exc
    if not isinstance(state, dict):
        raise DependencyError(f"LPIPS backbone weights '{path}' must be a state dict of torchvision's {net} model")
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    # pnet_rand builds the backbone without downloading; its layers are then filled from the file
    with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        module = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    target: dict[str, torch.Tensor] = {}
    for slice_name, part in module.net.named_children():
        for key in part.state_dict():
            if key not in features:
                raise DependencyError(f"LPIPS backbone weights '{path}' lack 'features.{key}': "
                                      f"not a state dict of torchvision's {net} model")
            target[f"{slice_name}.{key}"] = features[key]
    try:
        module.net.load_state_dict(target, strict=True)
    except RuntimeError as exc:
        raise DependencyError(f"LPIPS backbone weights '{path}' do not fit torchvision's {net} model: "
                              f"{str(exc).splitlines()[0]}") from exc
    metric = LPIPSMetric(module, path, net).to(device)
    _CACHE[key] = metric
    return metric


def lpips_distance(x: torch.Tensor, y: torch.Tensor, *, weights: str | os.PathLike[str] | None = None,
                   net: str = "alex", batch_size: int = 256, device: torch.device | str | None = None) -> torch.Tensor:
    """LPIPS between two image batches in [0, 1], per image, on CPU."""
    metric = load_lpips(weights, net, device)
    dev = next(metric.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(metric(x[s:s + batch_size].to(dev).float(), y[s:s + batch_size].to(dev).float()).cpu())
    return torch.cat(out) if out else torch.empty(0)
