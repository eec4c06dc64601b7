"""Adapters and reference architectures; importing this package registers every kind."""

from latentmap.models.base import ADAPTERS, LatentModel, VAELikeModel, adapter_class, register_adapter
from latentmap.models.gan import GANModel
from latentmap.models.split_vae import SplitVAE
from latentmap.models.stylegan import StyleGANW, WSpaceModel
from latentmap.models.vae import ConvVAE

# external_stylegan, wrapped and pythae_model register model sources in ``latentmap.io.checkpoint``,
# which imports this package first; ``latentmap/__init__`` imports them once it is loaded.

__all__ = ["ADAPTERS", "LatentModel", "VAELikeModel", "adapter_class", "register_adapter", "ConvVAE", "SplitVAE",
           "GANModel", "StyleGANW", "WSpaceModel"]
