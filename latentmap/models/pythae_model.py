"""pythae model folders (``AutoModel``) as latentmap models; needs the extra ``latentmap[pythae]``.

encode = the encoder's embedding, decode = the decoder's reconstruction, and for VAEs the
posterior comes from log_covariance (pythae's log-variance). Folders of models with custom
networks hold them as pickles (encoder.pkl / decoder.pkl), which run code when loaded: those
need the trust flag. Default networks are rebuilt from model_config.json, and model.pt is read
by torch.load, which restricts itself to tensors.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

from latentmap.models.registry import register_model_source
from latentmap.errors import CheckpointError, DependencyError, UnsafeLoadError
from latentmap.models.registry import register_adapter
from latentmap.models.wrapped import WrappedModel

PYTHAE_CONFIG = "model_config.json"


@register_adapter("pythae")
class PythaeModel(WrappedModel):
    """A loaded pythae model; saved models stay in pythae's own folder format."""

    def __init__(self, name, pythae_model, source: str | None = None, metadata=None):
        config = pythae_model.model_config
        image_shape = tuple(getattr(config, "input_dim", None) or ())
        if len(image_shape) != 3:
            raise CheckpointError(f"pythae model '{name}' has input_dim {getattr(config, 'input_dim', None)}; "
                                  "latentmap needs image models with input_dim (C, H, W)")
        self.pythae_model = pythae_model
        super().__init__(name, pythae_model.encoder, pythae_model.decoder, image_shape, kind="pythae",
                         metadata=metadata)
        self.kind = "pythae"
        self.source = source
        self.metadata.setdefault("pythae", {"model_name": getattr(config, "name", type(pythae_model).__name__),
                                            "source": source})

    @property
    def pythae_name(self) -> str:
        """pythae's own model name (VAE, BetaVAE, AE, RAE_L2, WAE_MMD, VQVAE, ...)."""
        return str(getattr(self.pythae_model, "model_name", type(self.pythae_model).__name__))

    @property
    def objective(self) -> str:
        # a pythae model with a posterior variance trains a variational objective; AE, RAE, WAE
        # and VQ-VAE train deterministic autoencoders with other regularisers
        return str(self.metadata.get("objective") or ("vae" if self.vae_like else "autoencoder"))

    @property
    def family(self) -> str:
        return f"pythae-{self.pythae_name}"

    @property
    def has_prior(self) -> bool:
        # only the variational models were trained to decode N(0, I); AE, RAE, WAE and VQ-VAE sample a
        # distribution fitted on their encodings instead, as pythae's own samplers do
        return bool(self.vae_like)

    def architecture(self) -> dict:
        config = self.pythae_model.model_config
        fields = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
        return {"pythae_config": {k: v for k, v in fields.items() if k != "name"},
                "encoder": type(self.pythae_model.encoder).__name__,
                "decoder": type(self.pythae_model.decoder).__name__}

    def save(self, path, *, overwrite: bool = True) -> None:
        raise CheckpointError(f"model '{self.name}' is a pythae model: keep it in its pythae folder "
                              f"({self.source or 'save it with pythae'}) and load that")


def _is_pythae_folder(spec: str) -> bool:
    folder = Path(spec)
    return (folder / PYTHAE_CONFIG).is_file() and (folder / "model.pt").is_file()


@register_model_source("pythae", _is_pythae_folder)
def load_pythae_folder(spec: str, device=None, allow_pickle: bool = False) -> PythaeModel:
    folder = Path(spec)
    try:
        from pythae.models import AutoModel
    except ImportError as exc:
        raise DependencyError(f"'{folder}' is a pythae model folder; loading it needs pythae: "
                              "pip install 'latentmap[pythae]'") from exc
    try:
        config = json.loads((folder / PYTHAE_CONFIG).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / PYTHAE_CONFIG} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CheckpointError(f"{folder / PYTHAE_CONFIG} is not valid JSON: nested too deeply") from None
    custom = [part for part in ("encoder", "decoder")
              if not config.get(f"uses_default_{part}", True) or (folder / f"{part}.pkl").is_file()]
    if custom:
        if not allow_pickle:
            raise UnsafeLoadError(
                f"pythae folder '{folder}' holds its custom {' and '.join(custom)} as pickles, and loading a pickle "
                "runs code stored in it; pass allow_pickle=True (CLI: --trust-pickle) only if you trust its source")
        warnings.warn(f"unpickling the custom {' and '.join(custom)} of '{folder}': this runs code stored there",
                      UserWarning, stacklevel=2)
    try:
        model = AutoModel.load_from_folder(str(folder))
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met more than tensors
        raise UnsafeLoadError(f"'{folder / 'model.pt'}' holds objects other than tensors, and loading them would run "
                              "code stored in the file; it was refused") from exc
    except (FileNotFoundError, KeyError, RuntimeError, NameError, EOFError, ValueError, TypeError,
            AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"pythae cannot load '{folder}': {detail}") from exc
    name = folder.name if folder.name not in ("final_model", "checkpoint") else folder.parent.name
    return PythaeModel(name, model, source=str(folder)).to(device).eval()
