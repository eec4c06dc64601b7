"""Any pair of torch modules as a LatentModel: ``latentmap.wrap`` and the ``py:module:factory`` spec.

The encoder may return a tensor, a (mu, logvar) pair, or an object with mean/logvar fields
(attributes or dict keys, under the usual names); the decoder a tensor or an object with a
reconstruction field. The latent size is read from one probe pass of the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnsafeLoadError
from latentmap.models.base import LatentModel
from latentmap.models.registry import register_adapter

MEAN_NAMES = ("mean", "mu", "embedding", "loc", "z")
LOGVAR_NAMES = ("logvar", "log_var", "log_covariance", "log_variance")
RECON_NAMES = ("reconstruction", "recon", "x_hat", "images", "sample")


def _field(out: object, names: Sequence[str]) -> torch.Tensor | None:
    for name in names:
        if isinstance(out, dict) and name in out:
            return out[name]
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return None


def split_encoder_output(out: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean, logvar or None) from whatever an encoder returns."""
    if isinstance(out, torch.Tensor):
        return out, None
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return out[0], out[1]
    mean = _field(out, MEAN_NAMES)
    if mean is None:
        raise ShapeMismatchError(f"encoder returned {type(out).__name__}; expected a tensor, a (mu, logvar) pair, "
                                 f"or an object with one of the fields {', '.join(MEAN_NAMES)}")
    return mean, _field(out, LOGVAR_NAMES)


def decoder_images(out: object) -> torch.Tensor:
    """The images in whatever a decoder returns: the tensor itself, or its reconstruction field."""
    if isinstance(out, torch.Tensor):
        return out
    images = _field(out, RECON_NAMES)
    if images is None:
        raise ShapeMismatchError(f"decoder returned {type(out).__name__}; expected a tensor or an object with "
                                 f"one of the fields {', '.join(RECON_NAMES)}")
    return images


@register_adapter("external")
class WrappedModel(LatentModel):
    """Encoder and decoder modules supplied by the user.

    ``output_range`` is the decoder's native range (for example (-1, 1) for tanh decoders); outputs
    are mapped to [0, 1] and clamped, since decoders commonly overshoot their range slightly.
    """

    def __init__(self, name: str, encoder: nn.Module, decoder: nn.Module, image_shape: Iterable[int], *,
                 kind: str = "external", latent_dim: int | None = None, output_range: Sequence[float] = (0.0, 1.0),
                 factory: str | None = None, metadata: dict[str, Any] | None = None, family: str | None = None) -> None:
        for what, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise ConfigError(f"{what} must be a torch.nn.Module, got {type(module).__name__} instead")
        self.encoder, self.decoder = encoder, decoder
        shape = tuple(int(s) for s in image_shape)
        self.output_range = (float(output_range[0]), float(output_range[1]))
        if not self.output_range[1] > self.output_range[0]:
            raise ConfigError(f"output_range must be (low, high) with low < high, got {output_range} instead")
        encoder.eval()
        decoder.eval()
        device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
        with torch.no_grad():  # probe: latent size, posterior or not, and that the decoder fits
            mean, logvar = split_encoder_output(encoder(torch.full((2, *shape), 0.5, device=device)))
        if mean.ndim != 2:
            raise ShapeMismatchError(f"encoder must return latents of shape [N, d], got {tuple(mean.shape)}")
        if latent_dim is not None and int(latent_dim) != mean.shape[1]:
            raise ShapeMismatchError(f"latent_dim is {latent_dim}, but the encoder returns latents of size {mean.shape[1]}")
        super().__init__(name, shape, mean.shape[1], metadata=metadata)
        self.vae_like = logvar is not None  # instance-level: depends on the wrapped encoder
        self.kind = str(kind)
        self.factory = factory
        # the family of modules a user hands over is unknown unless declared: the relocation type then goes by
        # the networks' own architecture
        self.declared_family = None if family is None else str(family)
        if factory:  # kept in config.json however the model is saved
            self.metadata["external"] = {"factory": factory, "kind": self.kind}
        self._device = device
        with torch.no_grad():
            x = decoder_images(decoder(torch.zeros(2, self.latent_dim, device=device)))
        if tuple(x.shape[1:]) != shape:
            raise ShapeMismatchError(f"decoder of '{name}' makes images of shape {tuple(x.shape[1:])}, "
                                     f"image_shape is {shape}")

    @property
    def family(self) -> str | None:
        """The family given to the constructor; None (unknown) unless declared."""
        return self.declared_family

    def modules(self) -> dict[str, nn.Module]:
        """The wrapped encoder and decoder."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def architecture(self) -> dict[str, Any]:
        """The decoder's output range (the modules themselves are rebuilt by the factory)."""
        return {"output_range": list(self.output_range)}

    def encode_stats(self, x: torch.Tensor | np.ndarray, *, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) from an encoder that gives a posterior variance; ConfigError for one that does not."""
        if not self.vae_like:
            raise ConfigError(f"model '{self.name}' has an encoder without a posterior variance (no logvar)")
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad):
            mean, logvar = split_encoder_output(self.encoder(x))
            assert logvar is not None  # vae_like: the probe pass of the encoder gave a logvar
            return mean.float(), logvar.float()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return split_encoder_output(self.encoder(x))[0].float()

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self.output_range
        return ((decoder_images(self.decoder(z)).float() - lo) / (hi - lo)).clamp(0, 1)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Save as a checkpoint that names the ``py:`` factory; CheckpointError for modules wrapped in memory."""
        if not self.factory:
            raise CheckpointError(f"model '{self.name}' was wrapped from modules in memory; only models built by a "
                                  "py:module:factory spec can be saved (the checkpoint names the factory)")
        self.metadata["external"] = {"factory": self.factory, "kind": self.kind}  # kind may have been changed
        super().save(path, overwrite=overwrite)

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike[str], config: dict[str, Any],
                        tensors: dict[str, torch.Tensor]) -> LatentModel:
        """Always refused: rebuilding the modules runs code, which only ``load_model(..., allow_pickle=True)`` may."""
        raise UnsafeLoadError(f"checkpoint '{folder}' imports and runs code to rebuild its modules; "
                              "load it with load_model(path, allow_pickle=True) (CLI: --trust-pickle)")


def wrap(encoder: nn.Module, decoder: nn.Module, *, image_shape: Iterable[int], kind: str = "external",
         name: str = "wrapped", latent_dim: int | None = None, output_range: Sequence[float] = (0.0, 1.0)
         ) -> WrappedModel:
    """Turn an encoder/decoder pair of torch modules into a :class:`LatentModel`."""
    return WrappedModel(name, encoder, decoder, image_shape, kind=kind, latent_dim=latent_dim,
                        output_range=output_range)


# ---------------------------------------------------------------- py:package.module:factory


