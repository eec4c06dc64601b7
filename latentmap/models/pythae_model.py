"""pythae model folders (``AutoModel``) as latentmap models; needs the extra ``latentmap[pythae]``.

encode = the encoder's embedding, decode = the decoder's reconstruction, and for VAEs the
posterior comes from log_covariance (pythae's log-variance). Folders of models with custom
networks hold them as pickles (encoder.pkl, decoder.pkl, and for RHVAE metric.pkl, for VAEGAN and
Adversarial_AE discriminator.pkl), which run code when loaded: loading such a folder needs the
trust flag, decided from model_config.json and the folder's files before pythae reads anything
(latentmap.io.pythae_folder). Default networks are rebuilt from model_config.json, and model.pt
is read with ``torch.load(weights_only=True)`` whatever the environment says, flag or not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentmap.errors import CheckpointError, DependencyError, UnsafeLoadError
from latentmap.io.pythae_folder import is_pythae_folder, pickled_networks
from latentmap.models.registry import register_adapter, register_model_source
from latentmap.models.wrapped import WrappedModel



@register_adapter("pythae")
class PythaeModel(WrappedModel):
    """A loaded pythae model; saved models stay in pythae's own folder format.

    ``pythae_model`` is the object pythae's ``AutoModel`` loaded (pythae has no type information); ``source`` is the
    folder it came from; ``quantize`` picks a VQ-VAE's encoding (see :attr:`encoding`)."""

    def __init__(self, name: str, pythae_model: Any, source: str | None = None, metadata: dict[str, Any] | None = None,
                 quantize: bool = True):
        config = pythae_model.model_config
        # a VQ-VAE encodes through its quantizer by default, as pythae's own forward does before decoding;
        # quantize=False gives the unquantized embedding instead (both decode; pythae trains the quantized one)
        self.quantize = bool(quantize)
        image_shape = tuple(getattr(config, "input_dim", None) or ())
        if len(image_shape) != 3:
            raise CheckpointError(f"pythae model '{name}' has input_dim {getattr(config, 'input_dim', None)}; "
                                  "latentmap needs image models with input_dim (C, H, W)")
        self.pythae_model = pythae_model
        super().__init__(name, pythae_model.encoder, pythae_model.decoder, image_shape, kind="pythae",
                         metadata=metadata)
        self.source = source
        self.metadata.setdefault("pythae", {"model_name": getattr(config, "name", type(pythae_model).__name__),
                                            "source": source})

    @property
    def pythae_name(self) -> str:
        """pythae's own model name (VAE, BetaVAE, AE, RAE_L2, WAE_MMD, VQVAE, ...)."""
        return str(getattr(self.pythae_model, "model_name", type(self.pythae_model).__name__))

    @property
    def vector_quantized(self) -> bool:
        """Whether the model has a quantizer between encoder and decoder (pythae's VQ-VAE)."""
        return isinstance(getattr(self.pythae_model, "quantizer", None), torch.nn.Module)

    @property
    def encoding(self) -> str:
        """Which path ``encode`` takes, in words (``models info`` shows it for a VQ-VAE)."""
        if not self.vector_quantized:
            return "the encoder's embedding"
        return ("quantized: through the quantizer, as pythae's forward" if self.quantize else
                "unquantized: the encoder's embedding before the quantizer")

    def modules(self) -> dict[str, nn.Module]:
        """The encoder and the decoder, and a VQ-VAE's quantizer."""
        # a VQ-VAE's codebook is part of what encode computes: it moves with the model and is fingerprinted
        modules = super().modules()
        if self.vector_quantized:
            modules["quantizer"] = self.pythae_model.quantizer
        return modules

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = super()._encode(x)
        if self.vector_quantized and self.quantize:
            z = self._quantized(z)
        return z

    def _quantized(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The quantizer's output for the encoder's embeddings, shaped as pythae's VQVAE.forward hands it to the
        decoder (a vector embedding goes through as [N, 1, D, 1] and back)."""
        flat = embeddings.ndim == 2
        e = embeddings.reshape(len(embeddings), 1, 1, -1) if flat else embeddings
        quantized = self.pythae_model.quantizer(e.permute(0, 2, 3, 1)).quantized_vector
        return (quantized.reshape(len(embeddings), -1) if flat else quantized).float()

    @property
    def objective(self) -> str:
        """"vae" for a model with a posterior variance, else "autoencoder" (unless the metadata records one)."""
        # a pythae model with a posterior variance trains a variational objective; AE, RAE, WAE
        # and VQ-VAE train deterministic autoencoders with other regularisers
        return str(self.metadata.get("objective") or ("vae" if self.vae_like else "autoencoder"))

    @property
    def family(self) -> str:
        """``pythae-`` and pythae's model name."""
        return f"pythae-{self.pythae_name}"

    @property
    def has_prior(self) -> bool:
        """True for the variational models only."""
        # only the variational models were trained to decode N(0, I); AE, RAE, WAE and VQ-VAE sample a
        # distribution fitted on their encodings instead, as pythae's own samplers do
        return bool(self.vae_like)

    def architecture(self) -> dict[str, Any]:
        """pythae's model config, the networks' class names and, for a VQ-VAE, the encoding path."""
        config = self.pythae_model.model_config
        fields = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
        return {"pythae_config": {k: v for k, v in fields.items() if k != "name"},
                "encoder": type(self.pythae_model.encoder).__name__,
                "decoder": type(self.pythae_model.decoder).__name__,
                **({"encode": "quantized" if self.quantize else "unquantized"} if self.vector_quantized else {})}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Always CheckpointError: a pythae model stays in its pythae folder."""
        raise CheckpointError(f"model '{self.name}' is a pythae model: keep it in its pythae folder "
                              f"({self.source or 'save it with pythae'}) and load that")


def _is_pythae_folder(spec: str) -> bool:
    return is_pythae_folder(spec)


class _WeightsRefused(UnsafeLoadError):
    """model.pt held more than tensors, and torch.load(weights_only=True) refused it."""


_TORCH_LOAD_LOCK = threading.RLock()  # a trusted pickle that loads another pythae folder re-enters


@contextlib.contextmanager
def _tensors_only_torch_load() -> Iterator[None]:
    """Within the block, a torch.load that names no ``weights_only`` gets ``weights_only=True``.

    pythae reads model.pt with a bare ``torch.load(path)``: torch's default restricts that to tensors,
    but the environment can turn the default off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD), and then a
    planted model.pt would run code. An explicit ``weights_only=True`` holds whatever the environment
    says. Callers that pass ``weights_only`` themselves keep their choice."""
    import torch

    original = torch.load

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if "weights_only" not in kwargs:
            kwargs["weights_only"] = True
            try:
                return original(f, *args, **kwargs)
            except pickle.UnpicklingError as exc:
                if isinstance(f, (str, os.PathLike)):  # a weights file, not a tensor inside a trusted pickle
                    raise _WeightsRefused(os.fspath(f)) from exc
                raise
        return original(f, *args, **kwargs)

    with _TORCH_LOAD_LOCK:
        torch.load = load
        try:
            yield
        finally:
            torch.load = original


def check_pythae_consent(folder: str | os.PathLike[str], allow_pickle: bool = False) -> list[tuple[str, str]]:
    """The pickles loading ``folder`` would unpickle (see latentmap.io.pythae_folder.pickled_networks);
    UnsafeLoadError when there are any and the caller did not allow them. Reads only model_config.json
    and the folder's listing: nothing is loaded."""
    folder = Path(folder)
    pickled = pickled_networks(folder)
    if pickled and not allow_pickle:
        names = " and ".join(name for name, _ in pickled)
        files = ", ".join(file for _, file in pickled)
        raise UnsafeLoadError(
            f"pythae folder '{folder}' holds its custom {names} as pickles ({files}), and loading a pickle runs "
            "code stored in it; pass allow_pickle=True (CLI: --trust-pickle) only if you trust its source")
    return pickled


@register_model_source("pythae", _is_pythae_folder)
def load_pythae_folder(spec: str, device: str | torch.device | None = None, allow_pickle: bool = False
                       ) -> PythaeModel:
    """A pythae folder through pythae's AutoModel, once consent covers every pickle it would unpickle;
    model.pt is read as tensors only, with or without the flag."""
    folder = Path(spec)
    pickled = check_pythae_consent(folder, allow_pickle)
    try:
        from pythae.models import AutoModel
    except ImportError as exc:
        raise DependencyError(f"'{folder}' is a pythae model folder; loading it needs pythae: "
                              "pip install 'latentmap[pythae]'") from exc
    if pickled:
        warnings.warn(f"unpickling the custom {' and '.join(n for n, _ in pickled)} of '{folder}' "
                      f"({', '.join(f for _, f in pickled)}): this runs code stored there", UserWarning, stacklevel=2)
    try:
        with _tensors_only_torch_load():
            model = AutoModel.load_from_folder(str(folder))
    except _WeightsRefused as exc:
        raise UnsafeLoadError(f"'{exc}' holds objects other than tensors, and loading them would "
                              "run code stored in the file; latentmap reads pythae weights as tensors only "
                              "(--trust-pickle covers the networks' pickles, never model.pt), so it was refused"
                              ) from exc
    except (pickle.UnpicklingError, ImportError) as exc:  # a pickled network the caller trusted does not unpickle
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"pythae cannot unpickle the networks of '{folder}': {detail}") from exc
    except (FileNotFoundError, KeyError, RuntimeError, NameError, EOFError, ValueError, TypeError,
            AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"pythae cannot load '{folder}': {detail}") from exc
    name = folder.name if folder.name not in ("final_model", "checkpoint") else folder.parent.name
    loaded = PythaeModel(name, model, source=str(folder))
    loaded.to(device).eval()
    return loaded
