"""Any pair of torch modules as a LatentModel: ``latentmap.wrap`` and the ``py:module:factory`` spec.

The encoder may return a tensor, a (mu, logvar) pair, or an object with mean/logvar fields
(attributes or dict keys, under the usual names); the decoder a tensor or an object with a
reconstruction field. The latent size is read from one probe pass of the encoder.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from torch import nn

from latentmap.io.checkpoint import CONFIG_NAME, read_config, read_weights, register_model_source
from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnsafeLoadError
from latentmap.models.base import LatentModel, register_adapter

MEAN_NAMES = ("mean", "mu", "embedding", "loc", "z")
LOGVAR_NAMES = ("logvar", "log_var", "log_covariance", "log_variance")
RECON_NAMES = ("reconstruction", "recon", "x_hat", "images", "sample")


def _field(out, names):
    for name in names:
        if isinstance(out, dict) and name in out:
            return out[name]
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return None


def split_encoder_output(out) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def decoder_images(out) -> torch.Tensor:
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

    def __init__(self, name, encoder: nn.Module, decoder: nn.Module, image_shape, *, kind: str = "external",
                 latent_dim: int | None = None, output_range=(0.0, 1.0), factory: str | None = None, metadata=None):
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
        if factory:  # kept in config.json however the model is saved
            self.metadata["external"] = {"factory": factory, "kind": self.kind}
        self._device = device
        with torch.no_grad():
            x = decoder_images(decoder(torch.zeros(2, self.latent_dim, device=device)))
        if tuple(x.shape[1:]) != shape:
            raise ShapeMismatchError(f"decoder of '{name}' makes images of shape {tuple(x.shape[1:])}, "
                                     f"image_shape is {shape}")

    def modules(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def architecture(self):
        return {"output_range": list(self.output_range)}

    def encode_stats(self, x, *, grad: bool = False):
        if not self.vae_like:
            raise ConfigError(f"model '{self.name}' has an encoder without a posterior variance (no logvar)")
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad):
            mean, logvar = split_encoder_output(self.encoder(x))
            return mean.float(), logvar.float()

    def _encode(self, x):
        return split_encoder_output(self.encoder(x))[0].float()

    def _decode(self, z):
        lo, hi = self.output_range
        return ((decoder_images(self.decoder(z)).float() - lo) / (hi - lo)).clamp(0, 1)

    def save(self, path, *, overwrite: bool = True) -> None:
        if not self.factory:
            raise CheckpointError(f"model '{self.name}' was wrapped from modules in memory; only models built by a "
                                  "py:module:factory spec can be saved (the checkpoint names the factory)")
        self.metadata["external"] = {"factory": self.factory, "kind": self.kind}  # kind may have been changed
        super().save(path, overwrite=overwrite)

    @classmethod
    def from_checkpoint(cls, folder, config, tensors):
        raise UnsafeLoadError(f"checkpoint '{folder}' imports and runs code to rebuild its modules; "
                              "load it with load_model(path, allow_pickle=True) (CLI: --trust-pickle)")


def wrap(encoder: nn.Module, decoder: nn.Module, *, image_shape, kind: str = "external", name: str = "wrapped",
         latent_dim: int | None = None, output_range=(0.0, 1.0)) -> WrappedModel:
    """Turn an encoder/decoder pair of torch modules into a :class:`LatentModel`."""
    return WrappedModel(name, encoder, decoder, image_shape, kind=kind, latent_dim=latent_dim,
                        output_range=output_range)


# ---------------------------------------------------------------- py:package.module:factory
def call_factory(spec: str):
    """Import ``package.module`` and call ``factory()`` for ``py:package.module:factory``."""
    target = spec[3:] if spec.startswith("py:") else spec
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model spec must look like py:package.module:factory, got '{spec}' instead")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import '{module_name}' for model spec '{spec}': {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"'{module_name}' has no callable '{attr}' (model spec '{spec}')")
    return factory()


def model_from_factory_result(result, spec: str, name: str | None = None) -> LatentModel:
    """A factory may return a LatentModel, a StyleGAN-style generator, or encoder/decoder modules
    as (encoder, decoder[, image_shape]) or a dict with encoder, decoder, image_shape[, kind, name, output_range]."""
    name = name or spec.rsplit(":", 1)[-1]
    if isinstance(result, LatentModel):
        return result
    if callable(getattr(result, "mapping", None)) and callable(getattr(result, "synthesis", None)):
        from latentmap.models.external_stylegan import ExternalStyleGAN

        return ExternalStyleGAN(name, result, source=spec)
    if isinstance(result, dict):
        parts = dict(result)
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        parts = {"encoder": result[0], "decoder": result[1]}
        if len(result) == 3:
            parts["image_shape"] = result[2]
    else:
        raise ConfigError(f"factory of '{spec}' returned {type(result).__name__}; expected (encoder, decoder), "
                          "(encoder, decoder, image_shape), a dict, a LatentModel or a StyleGAN-style generator")
    if "encoder" not in parts or "decoder" not in parts:
        raise ConfigError(f"factory of '{spec}' must give both an encoder and a decoder")
    shape = parts.get("image_shape") or getattr(parts["encoder"], "image_shape", None) \
        or getattr(parts["decoder"], "image_shape", None)
    if shape is None:
        raise ConfigError(f"factory of '{spec}' must give image_shape (a third element, a dict key, or an "
                          "image_shape attribute of a module)")
    model = WrappedModel(parts.get("name", name), parts["encoder"], parts["decoder"], shape,
                         kind=parts.get("kind", "external"), output_range=parts.get("output_range", (0.0, 1.0)),
                         factory=spec)
    return model


@register_model_source("py", lambda spec: spec.startswith("py:"))
def load_py_spec(spec: str, device=None, allow_pickle: bool = False) -> LatentModel:
    """``py:package.module:factory``: the user names the code to run, so no trust flag is needed."""
    model = model_from_factory_result(call_factory(spec), spec)
    return model.to(device).eval() if device is not None else model.eval()


def _is_wrapped_checkpoint(spec: str) -> bool:
    cfg = Path(spec) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return isinstance(json.loads(cfg.read_text()).get("external"), dict)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


@register_model_source("wrapped-checkpoint", _is_wrapped_checkpoint)
def load_wrapped_checkpoint(spec: str, device=None, allow_pickle: bool = False) -> LatentModel:
    """A saved wrapped model: run its factory again (only with the trust flag), then load the weights."""
    folder = Path(spec)
    config = read_config(folder)
    factory = config["external"].get("factory")
    if not allow_pickle:
        raise UnsafeLoadError(f"checkpoint '{folder}' imports and runs '{factory}' to rebuild its modules; pass "
                              "allow_pickle=True (CLI: --trust-pickle) only if you trust that code")
    model = model_from_factory_result(call_factory(factory), factory, name=config.get("name"))
    if not isinstance(model, WrappedModel):
        raise CheckpointError(f"factory '{factory}' no longer returns an encoder/decoder pair")
    if model.latent_dim != config["latent_dim"] or list(model.image_shape) != list(config["image_shape"]):
        raise CheckpointError(f"factory '{factory}' now builds a model with latents of size {model.latent_dim} and "
                              f"images {model.image_shape}; checkpoint '{folder}' has {config['latent_dim']} and "
                              f"{tuple(config['image_shape'])}")
    model.kind = config["external"].get("kind", model.kind)
    model.metadata.update({k: v for k, v in config.items() if k in ("dataset", "seed", "training", "metrics")})
    model.load_state_tensors(read_weights(folder, config))
    return model.to(device).eval() if device is not None else model.eval()
