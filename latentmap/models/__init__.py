"""Adapters and reference architectures; importing this package registers every kind."""

from .base import ADAPTERS, LatentModel, VAELikeModel, adapter_class, register_adapter
from .split_vae import SplitVAE
from .vae import ConvVAE

__all__ = ["ADAPTERS", "LatentModel", "VAELikeModel", "adapter_class", "register_adapter", "ConvVAE", "SplitVAE"]
