"""The adapter interface every generative model is put behind, and the registry of kinds.

A :class:`LatentModel` turns images into latents (``encode``) and latents into images
(``decode``). Images are float32 NCHW in [0, 1]; latents are float32 [N, latent_dim]. A model with
spatial latents (the autoencoders of latent diffusion: C x h x w) keeps them flat too, in C order, and
says their layout in ``latent_shape``, for the estimators that need it.
Subclasses implement ``_encode``/``_decode`` on device tensors; the public methods validate
input, move it to the model's device and run without gradients unless asked.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from latentmap.batching import image_batches, with_progress
from latentmap.device import forward_precision, resolve_device
from latentmap.errors import ConfigError, NonFiniteError, ShapeMismatchError

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the package also runs on 3.10

    from latentmap.data.images import ImageDataset


class LatentModel(abc.ABC):
    """An encoder/decoder pair with a latent space of size ``latent_dim``.

    ``latent_shape`` is the layout of that space: ``(latent_dim,)`` for a vector, ``(C, h, w)`` for a spatial
    latent, whose flat vector is the C-order flattening (``z.reshape(N, -1)``) of the C x h x w tensor.
    """

    # not ClassVars: the adapters of models people bring (wrapped modules, diffusers) set them per instance
    kind: str = "abstract"
    #: True for models whose encoder gives a Gaussian posterior (``encode_stats``).
    vae_like: bool = False
    #: The training objective an adapter declares ("vae", "adversarial", "autoencoder", ...); the
    #: relocation type of a pair compares these. None: "vae" for VAE-like models, else the kind.
    OBJECTIVE: ClassVar[str | None] = None
    #: The model family (architecture lineage); None: the kind.
    FAMILY: ClassVar[str | None] = None

    def __init__(self, name: str, image_shape: Iterable[int], latent_dim: int, *,
                 metadata: dict[str, Any] | None = None, latent_shape: Iterable[int] | None = None) -> None:
        self.name = str(name)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        if len(self.image_shape) != 3:
            raise ShapeMismatchError(f"image_shape must be (C, H, W), got {self.image_shape} instead")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be positive, got {self.latent_dim} instead")
        self._latent_shape = None if latent_shape is None else tuple(int(s) for s in latent_shape)
        if self._latent_shape is not None and (int(np.prod(self._latent_shape)) != self.latent_dim
                                               or min(self._latent_shape) < 1):
            raise ShapeMismatchError(f"latent_shape {self._latent_shape} must have latent_dim = {self.latent_dim} "
                                     "elements")
        #: free-form description kept in the checkpoint (dataset, seed, training log, metrics ...)
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: where load_model found it ({"origin", "spec"}); None for a model built in memory
        self.provenance: dict[str, str] | None = None
        self._device = torch.device("cpu")

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The torch modules whose parameters make up the model, by name."""

    @abc.abstractmethod
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images on the model's device -> latents (deterministic)."""

    @abc.abstractmethod
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents on the model's device -> images in [0, 1]."""

    def architecture(self) -> dict[str, Any]:
        """JSON-able constructor arguments that rebuild the modules (saved in config.json)."""
        return {}

    # ------------------------------------------------------------------ what the model is
    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The layout of the flat latent vector: ``(latent_dim,)``, or ``(C, h, w)`` for a spatial latent."""
        return getattr(self, "_latent_shape", None) or (int(self.latent_dim),)

    @property
    def objective(self) -> str:
        """Training objective: the checkpoint's recorded ``objective``, else what the adapter declares."""
        return str(self.metadata.get("objective") or self.OBJECTIVE or ("vae" if self.vae_like else self.kind))

    @property
    def family(self) -> str | None:
        """The model family (architecture lineage); None where the adapter cannot know it (modules a user wraps)."""
        return self.FAMILY or self.kind

    @property
    def has_trained_encoder(self) -> bool:
        """Whether ``encode`` gives meaningful latents (False for a generator whose inverter is untrained)."""
        return True

    @property
    def has_prior(self) -> bool:
        """Whether ``sample_prior`` draws from the distribution the decoder was trained on.

        False for deterministic autoencoders (pythae's AE, RAE, WAE, VQ-VAE), whose standard normal is only a
        placeholder: benchmarks then sample from a distribution fitted on their encodings
        (:mod:`latentmap.evaluation.samplers`).
        """
        return True

    # ------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        """The device the modules are on (CPU until :meth:`to` moves them)."""
        return self._device

    def to(self, device: str | torch.device | None = None) -> Self:
        """Move every module to ``device`` (None: the default device, see ``resolve_device``); returns the model."""
        self._device = resolve_device(device)
        for module in self.modules().values():
            module.to(self._device)
        return self

    def eval(self) -> Self:
        """Put every module in eval mode; returns the model."""
        for module in self.modules().values():
            module.eval()
        return self

    def num_parameters(self) -> int:
        """The number of parameters of all modules together."""
        return sum(p.numel() for m in self.modules().values() for p in m.parameters())

    # ------------------------------------------------------------------ validation
    def check_images(self, x: object, what: str = "images") -> torch.Tensor:
        """``x`` as a float image batch of this model's image shape on its device (uint8 scaled to [0, 1]);
        ShapeMismatchError or NonFiniteError, naming ``what``, when it is not one."""
        from latentmap.data.datasets import as_image_batch

        x = as_image_batch(x, what)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ShapeMismatchError(
                f"model '{self.name}' expects images of shape {self.image_shape}, got {tuple(x.shape[1:])}"
            )
        return x.to(self._device)

    def check_latents(self, z: object, what: str = "latents") -> torch.Tensor:
        """``z`` as float32 latents [N, latent_dim] on the model's device; ShapeMismatchError or NonFiniteError,
        naming ``what``, when they are not."""
        if isinstance(z, np.ndarray):
            z = torch.from_numpy(z)
        if not isinstance(z, torch.Tensor):
            raise ShapeMismatchError(f"{what} must be a tensor or array, got {type(z).__name__} instead")
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ShapeMismatchError(
                f"model '{self.name}' expects {what} of shape [N, {self.latent_dim}], got {tuple(z.shape)}"
            )
        z = z.to(self._device, torch.float32)
        if not torch.isfinite(z).all():
            raise NonFiniteError(f"{what} given to model '{self.name}' contain NaN or infinite values")
        return z

    # ------------------------------------------------------------------ public API
    def encode(self, x: torch.Tensor | np.ndarray, *, grad: bool = False) -> torch.Tensor:
        """Images [N, C, H, W] in [0, 1] -> latents [N, latent_dim] (posterior mean or inverter output)."""
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad), forward_precision(self._device):
            return self._encode(x).float()

    def decode(self, z: torch.Tensor | np.ndarray, *, grad: bool = False) -> torch.Tensor:
        """Latents [N, latent_dim] -> images [N, C, H, W] in [0, 1]; ``grad=True`` keeps the graph (inversion)."""
        z = self.check_latents(z)
        self.eval()
        with torch.set_grad_enabled(grad), forward_precision(self._device):
            return self._decode(z).float()

    def reconstruct(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images -> their encoding, decoded."""
        return self.decode(self.encode(x))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents from the model's prior (standard normal unless overridden), on CPU."""
        if n < 0:
            raise ConfigError(f"n must be non-negative, got {n} instead")
        return torch.randn(n, self.latent_dim, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws of :meth:`sample_prior` (seeded by ``generator``) into images."""
        return self.decode(self.sample_prior(n, generator))

    # ------------------------------------------------------------------ batched helpers
    def encode_all(self, data: ImageDataset | torch.Tensor | np.ndarray | Iterable[torch.Tensor], batch_size: int = 256,
                   device: str | torch.device | None = None, progress: bool = False) -> torch.Tensor:
        """Encode a dataset, an image tensor or an iterable of batches; returns CPU latents.

        ``device``, when given, moves the model there first; ``progress`` shows a progress bar."""
        if device is not None:
            self.to(device)
        batches, total = image_batches(data, batch_size)
        out = [self.encode(b).cpu() for b in with_progress(batches, f"encode {self.name}", progress, total)]
        return torch.cat(out) if out else torch.empty(0, self.latent_dim)

    def decode_all(self, z: torch.Tensor | np.ndarray, batch_size: int = 256, device: str | torch.device | None = None,
                   progress: bool = False) -> torch.Tensor:
        """Decode latents batch by batch; returns CPU images (``device`` and ``progress`` as for :meth:`encode_all`)."""
        if device is not None:
            self.to(device)
        z = torch.as_tensor(z)
        starts = range(0, len(z), batch_size)
        out = [self.decode(z[s:s + batch_size]).cpu()
               for s in with_progress(starts, f"decode {self.name}", progress, len(starts))]
        return torch.cat(out) if out else torch.empty(0, *self.image_shape)

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer, keyed ``module.parameter``, contiguous on CPU."""
        tensors = {}
        for mod_name, module in self.modules().items():
            for key, value in module.state_dict().items():
                tensors[f"{mod_name}.{key}"] = value.detach().cpu().contiguous()
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`state_tensors`; raises ``CheckpointError`` if they do not fit."""
        from latentmap.errors import CheckpointError

        modules = self.modules()
        grouped: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
        for key, value in tensors.items():
            mod_name, _, param = key.partition(".")
            if mod_name not in grouped:
                raise CheckpointError(f"weights contain '{key}', but model kind '{self.kind}' has no module '{mod_name}'")
            grouped[mod_name][param] = value
        for mod_name, module in modules.items():
            try:
                module.load_state_dict(grouped[mod_name], strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()
                detail = " ".join(line.strip() for line in first[:3])
                raise CheckpointError(
                    f"weights do not fit the architecture of module '{mod_name}' of model '{self.name}': {detail}"
                ) from exc

    @classmethod
    def from_architecture(cls, name: str, image_shape: Iterable[int], latent_dim: int, architecture: dict[str, Any],
                          metadata: dict[str, Any] | None = None) -> LatentModel:
        """Rebuild an untrained model from a config's architecture section."""
        raise NotImplementedError(f"adapter kind '{cls.kind}' cannot be rebuilt from a config")

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike[str], config: dict[str, Any],
                        tensors: dict[str, torch.Tensor]) -> LatentModel:
        """Build the adapter from a checkpoint's config and verified tensors."""
        metadata = {k: v for k, v in config.items()
                    if k not in ("name", "kind", "image_shape", "latent_dim", "architecture", "weights", "format",
                                 "format_version")}
        model = cls.from_architecture(config.get("name", Path(folder).name), config["image_shape"],
                                      config["latent_dim"], config.get("architecture", {}), metadata)
        model.load_state_tensors(tensors)
        return model

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Write the model as a checkpoint folder at ``path`` (config.json + safetensors), atomically."""
        from latentmap.io.checkpoint import save_checkpoint

        save_checkpoint(self, path, overwrite=overwrite)

    def describe(self) -> dict[str, Any]:
        """Name, kind and sizes, JSON-able."""
        return {"name": self.name, "kind": self.kind, "latent_dim": self.latent_dim,
                "latent_shape": list(self.latent_shape), "image_shape": list(self.image_shape)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, latent_dim={self.latent_dim}, image_shape={self.image_shape})"


class VAELikeModel(LatentModel):
    """A model whose encoder gives a diagonal Gaussian posterior: ``encode`` returns its mean."""

    vae_like = True

    @abc.abstractmethod
    def _encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images on device -> (mu, logvar), each [N, latent_dim]."""

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode_stats(x)[0]

    def encode_stats(self, x: torch.Tensor | np.ndarray, *, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> (mu, logvar) of the posterior, each [N, latent_dim] float32; ``grad=True`` keeps the graph."""
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad), forward_precision(self._device):
            mu, logvar = self._encode_stats(x)
        return mu.float(), logvar.float()
