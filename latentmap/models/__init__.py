"""Adapters and reference architectures; importing this package registers every kind and model source."""

from latentmap.models.base import LatentModel, VAELikeModel
from latentmap.models.registry import ADAPTERS, adapter_class, load_model, register_adapter, register_model_source
from latentmap.models.gan import GANModel
from latentmap.models.split_vae import SplitVAE
from latentmap.models.stylegan import StyleGANW, WSpaceModel
from latentmap.models.vae import ConvVAE
from latentmap.models.autoencoder import ConvAE
# each registers itself
from latentmap.models import diffusers_model, external_stylegan, pythae_model, sources, wrapped  # noqa: F401

__all__ = ["ADAPTERS", "LatentModel", "VAELikeModel", "adapter_class", "load_model", "register_adapter",
           "register_model_source", "ConvAE", "ConvVAE", "SplitVAE", "GANModel", "StyleGANW", "WSpaceModel"]
