"""Adapters and reference architectures; importing this package registers every kind."""

from .base import ADAPTERS, LatentModel, VAELikeModel, adapter_class, register_adapter
from .gan import GANModel
from .split_vae import SplitVAE
from .stylegan import StyleGANW, WSpaceModel
from .vae import ConvVAE

# external_stylegan, wrapped and pythae_model register model sources in ``latentmap.checkpoint``,
# which imports this package first; ``latentmap/__init__`` imports them once it is loaded.

__all__ = ["ADAPTERS", "LatentModel", "VAELikeModel", "adapter_class", "register_adapter", "ConvVAE", "SplitVAE",
           "GANModel", "StyleGANW", "WSpaceModel"]
