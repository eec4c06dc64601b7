"""The autoencoders of latent diffusion (diffusers' ``AutoencoderKL`` and ``VQModel``) as latentmap models.

``diffusers:PATH`` names a folder written by ``save_pretrained`` (config.json and the weights), or a pipeline
folder, whose ``vae/`` (or ``vqvae/``) subfolder is then read; a folder whose config.json names one of the two
classes loads without the prefix too. Nothing is downloaded (``local_files_only=True``). Needs the extra
``latentmap[diffusers]``.

Latents are spatial, C x h x w, and latentmap keeps them flat: ``encode`` returns [N, C*h*w] in C order and
``latent_shape`` says (C, h, w). They are the latents a diffusion model of that autoencoder sees: the
posterior mean (``sample_posterior=True``: a draw from the posterior) normalised as diffusers' pipelines do,
``(m - latents_mean) * scaling_factor / latents_std`` where the config has per-channel statistics, else
``(m - shift_factor) * scaling_factor``; ``decode`` inverts that. Images go in as latentmap's [0, 1] and the
networks see diffusers' [-1, 1]. With ``force_upcast`` in the config the networks run in float32 even where
latentmap's forward pass would use bfloat16. A VQModel encodes as its forward does: the unquantized latents,
which its decode quantizes (``quantize=True``: the quantized latents instead; both decode the same way).

Safetensors weights load freely; weights only in pickle form (``diffusion_pytorch_model.bin``) need the trust
flag, decided from the folder's listing before diffusers reads anything.

A checkpoint that latentmap trains (``latentmap train kl``) is a ``save_pretrained`` folder whose config.json
also carries latentmap's checkpoint fields (kind ``diffusers``, sizes, dataset, metrics, the sha256 of the
weights): diffusers reads it as its own folder, latentmap as a checkpoint, and both build the same model.

What a folder holds, read without loading anything, is :mod:`latentmap.models.diffusers_folder`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import CheckpointError, ConfigError, DependencyError, ShapeMismatchError
from latentmap.io.checkpoint import CONFIG_NAME, read_json_object
from latentmap.models.base import LatentModel
from latentmap.models.diffusers_folder import (CLASSES, INSTALL, KIND, KL, PICKLE_SUFFIX, SAFE_SUFFIX, SUBFOLDERS, VQ,
                                               WEIGHTS_STEM, check_diffusers_consent, folder_of, image_size,
                                               is_diffusers_folder, latent_shape_of, read_diffusers_config,
                                               weights_files, weights_variant)
from latentmap.models.registry import register_adapter, register_model_source

if TYPE_CHECKING:  # from their modules: diffusers' top level gives type checkers its placeholder classes
    from diffusers.models.autoencoders import AutoencoderKL, VQModel

# keys latentmap adds to the config.json of a checkpoint it trained (diffusers ignores them)
LATENTMAP_KEYS = ("format", "format_version", "name", "kind", "image_shape", "latent_dim", "latent_shape",
                  "architecture", "latentmap_version", "weights", "dataset", "seed", "training", "metrics")


def import_diffusers() -> ModuleType:
    """The diffusers package, or a one-line DependencyError that says how to install it."""
    try:
        import diffusers
    except ImportError as exc:
        raise DependencyError(f"loading diffusers autoencoders needs diffusers: {INSTALL}") from exc
    return diffusers


# ---------------------------------------------------------------- the adapter


@register_adapter(KIND)
class DiffusersAutoencoder(LatentModel):
    """A diffusers ``AutoencoderKL`` or ``VQModel`` behind the LatentModel interface (flat C x h x w latents)."""

    def __init__(self, name: str, vae: AutoencoderKL | VQModel, *, source: str | None = None,
                 sample_posterior: bool = False, quantize: bool = False, seed: int = 0,
                 metadata: dict[str, Any] | None = None) -> None:
        self.class_name = type(vae).__name__
        if self.class_name not in CLASSES:
            raise ConfigError(f"vae must be a diffusers {' or '.join(CLASSES)}, got {self.class_name} instead")
        self.vae = vae.float()
        # the class's own arguments only: diffusers keeps unknown keys of a config.json (latentmap's) in its config
        accepted = inspect.signature(type(vae).__init__).parameters
        self.config = {k: v for k, v in dict(vae.config).items() if k in accepted and k != "self"}
        self.source = source
        self.sample_posterior = bool(sample_posterior)
        self.quantize = bool(quantize)
        self.generator = torch.Generator().manual_seed(int(seed))  # for sample_posterior only
        shape = latent_shape_of(self.config)
        super().__init__(name, (int(self.config.get("in_channels", 3)), *image_size(self.config)),
                         int(shape[0] * shape[1] * shape[2]), metadata=metadata, latent_shape=shape)
        self.vae_like = self.class_name == KL  # a Gaussian posterior: encode_stats
        self._set_normalisation()

    def _set_normalisation(self) -> None:
        """Per-channel offset and scale of z = (m - offset) * scale, as diffusers' pipelines normalise latents."""
        c = self.latent_shape[0]
        factor = float(self.config.get("scaling_factor") or 1.0)
        mean, std = self.config.get("latents_mean"), self.config.get("latents_std")
        if mean is not None and std is not None:
            if len(mean) != c or len(std) != c:
                raise CheckpointError(f"latents_mean and latents_std of '{self.name}' must have {c} values, one a "
                                      f"latent channel, got {len(mean)} and {len(std)}")
            offset, scale = torch.tensor(mean, dtype=torch.float32), factor / torch.tensor(std, dtype=torch.float32)
        else:
            offset = torch.full((c,), float(self.config.get("shift_factor") or 0.0))
            scale = torch.full((c,), factor)
        self.offset, self.scale = offset.view(1, c, 1, 1), scale.view(1, c, 1, 1)

    @property
    def encoding(self) -> str:
        """Which latents ``encode`` gives, in words (``models info`` shows it)."""
        if self.class_name == VQ:
            return ("quantized: through the codebook (quantize=True)" if self.quantize else
                    "unquantized: the encoder's latents, which decode quantizes, as VQModel's forward does")
        return "a draw from the posterior (sample_posterior=True)" if self.sample_posterior else "the posterior mean"

    @property
    def objective(self) -> str:
        """"vae" for an AutoencoderKL, "autoencoder" for a VQModel, unless the checkpoint records one."""
        return str(self.metadata.get("objective") or ("vae" if self.class_name == KL else "autoencoder"))

    @property
    def family(self) -> str:
        """``diffusers-AutoencoderKL`` or ``diffusers-VQModel``."""
        return f"diffusers-{self.class_name}"

    @property
    def has_prior(self) -> bool:
        """False: the KL term of a latent-diffusion autoencoder is weighted too lightly to make N(0, I) its prior,
        and a VQModel has none, so benchmarks sample a distribution fitted on encodings."""
        return False

    def modules(self) -> dict[str, torch.nn.Module]:
        """The diffusers network, whole."""
        return {"vae": self.vae}

    def architecture(self) -> dict[str, Any]:
        """The diffusers class and config, the latent layout and which latents ``encode`` gives."""
        return {"class": self.class_name, "config": self.config, "latent_shape": list(self.latent_shape),
                "encode": ("quantized" if self.quantize else "unquantized") if self.class_name == VQ else
                ("posterior sample" if self.sample_posterior else "posterior mean")}

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        """float32 throughout when the config asks for it (force_upcast), else latentmap's forward precision."""
        if self.config.get("force_upcast"):
            return torch.autocast(self.device.type, enabled=False)
        return contextlib.nullcontext()

    def _normalise(self, m: torch.Tensor) -> torch.Tensor:
        return (m.float() - self.offset.to(m.device)) * self.scale.to(m.device)

    def _check(self, m: torch.Tensor) -> torch.Tensor:
        if tuple(m.shape[1:]) != self.latent_shape:
            raise ShapeMismatchError(f"the encoder of '{self.name}' gives latents of shape {tuple(m.shape[1:])}, "
                                     f"its config says {self.latent_shape}")
        return m

    def _raw_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The networks' own latents for images in [0, 1]: (mean, logvar) for a KL autoencoder, (latents, None)
        for a VQModel (quantized when ``quantize``)."""
        with self._precision():
            out = self.vae.encode(x.float() * 2 - 1)
            if self.class_name == KL:
                return self._check(out.latent_dist.mean.float()), out.latent_dist.logvar.float()
            h = self._check(out.latents.float())
            return (self.vae.quantize(h)[0].float() if self.quantize else h), None

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self._raw_posterior(x)
        if self.sample_posterior and logvar is not None:
            noise = torch.randn(mean.shape, generator=self.generator).to(mean.device)
            mean = mean + torch.exp(0.5 * logvar) * noise
        return self._normalise(mean).reshape(len(x), -1)

    def encode_stats(self, x: torch.Tensor | np.ndarray, *, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the posterior in the normalised latent space, each [N, latent_dim]."""
        if not self.vae_like:
            raise ConfigError(f"model '{self.name}' is a VQModel: its encoder has no posterior variance")
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad):
            mean, logvar = self._raw_posterior(x)
            assert logvar is not None  # vae_like: an AutoencoderKL, whose posterior has a logvar
            logvar = logvar + 2 * torch.log(self.scale.to(logvar.device))
            return self._normalise(mean).reshape(len(x), -1), logvar.reshape(len(x), -1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        m = z.reshape(len(z), *self.latent_shape) / self.scale.to(z.device) + self.offset.to(z.device)
        with self._precision():
            images = self.vae.decode(m.float()).sample
        return ((images.float() + 1) / 2).clamp(0, 1)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True,
             extra_files: dict[str, bytes] | None = None) -> None:
        """``save_pretrained`` into ``path`` (safetensors), atomically, with latentmap's checkpoint fields added to
        its config.json: the folder loads in diffusers as it is, and in latentmap by name or path."""
        save_checkpoint_folder(self, path, overwrite=overwrite, extra_files=extra_files)

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike[str], config: dict[str, Any],
                        tensors: dict[str, torch.Tensor]) -> LatentModel:
        """A checkpoint latentmap trained: the network built from config.json's diffusers keys, its verified
        weights loaded (the same model ``diffusers:FOLDER`` gives)."""
        diffusers = import_diffusers()
        name = config.get("_class_name")
        if name not in CLASSES:
            raise CheckpointError(f"checkpoint '{folder}' of kind '{KIND}' names no diffusers autoencoder "
                                  f"(_class_name {name!r})")
        own = {k: v for k, v in config.items() if k not in LATENTMAP_KEYS}
        vae = getattr(diffusers, name).from_config(own)
        try:
            vae.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights of '{folder}' do not fit its {name}: "
                                  f"{str(exc).strip().splitlines()[0]}") from exc
        metadata: dict[str, Any] = {k: config[k] for k in ("dataset", "seed", "training", "metrics")
                                    if k in config}
        return cls(config.get("name") or Path(folder).name, vae, source=str(folder), metadata=metadata)


def save_checkpoint_folder(model: DiffusersAutoencoder, path: str | os.PathLike[str], *, overwrite: bool = True,
                           extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``model`` as a save_pretrained folder whose config.json is also a latentmap checkpoint config."""
    import json

    from latentmap.io.atomic import atomic_directory
    from latentmap.io.checkpoint import build_config, json_default, sha256_file

    path = Path(path)
    with atomic_directory(path, overwrite=overwrite, kind="checkpoint") as tmp:
        model.vae.save_pretrained(str(tmp), safe_serialization=True)
        weights = tmp / f"{WEIGHTS_STEM}{SAFE_SUFFIX}"
        if not weights.is_file():
            raise CheckpointError(f"save_pretrained wrote no single {weights.name} for '{model.name}' (sharded?)")
        config = {**read_json_object(tmp / CONFIG_NAME), **build_config(model),
                  "latent_shape": list(model.latent_shape), "weights": {weights.name: sha256_file(weights)}}
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=json_default) + "\n")
    return path


@register_model_source(KIND, is_diffusers_folder, spec_path=lambda spec: str(folder_of(spec)))
def load_diffusers_folder(spec: str, device: str | torch.device | None = None,
                          allow_pickle: bool = False) -> DiffusersAutoencoder:
    """``diffusers:PATH`` (or a diffusers autoencoder folder): read with diffusers' own ``from_pretrained``,
    offline, once consent covers the weights it reads."""
    folder = folder_of(spec)
    config = read_diffusers_config(folder)
    form = check_diffusers_consent(folder, allow_pickle)
    diffusers = import_diffusers()
    safe, pickled = weights_files(folder)
    files, suffix = (safe, SAFE_SUFFIX) if form == "safetensors" else (pickled, PICKLE_SUFFIX)
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # latentmap's own keys in a checkpoint's config.json are not news
    try:
        vae = getattr(diffusers, config["_class_name"]).from_pretrained(
            str(folder), local_files_only=True, use_safetensors=form == "safetensors",
            variant=weights_variant(files, suffix), torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"diffusers cannot load '{folder}': {detail}") from exc
    finally:
        diffusers_logging.set_verbosity(level)
    metadata: dict[str, Any] = {k: config[k] for k in ("dataset", "seed", "training", "metrics") if k in config}
    name = str(config.get("name") or (folder.parent.name if folder.name in SUBFOLDERS else folder.name))
    model = DiffusersAutoencoder(name, vae, source=str(folder), metadata=metadata)
    return model.to(device).eval()
