"""StyleGAN-style generators people already have (official StyleGAN2/3 pickles and alike), in W space.

Any object with ``mapping(z, c)``, ``synthesis(ws)`` and the attributes ``z_dim``, ``w_dim``
and ``num_ws`` works. Such generators usually come as pickles, and unpickling runs code stored
in the file: it happens only when the caller passes ``allow_pickle=True`` (CLI: ``--trust-pickle``),
with a warning. The W inverter trained for one (``latentmap train inverter``) is saved as a
checkpoint holding only the inverter; the generator stays in its file, pinned by sha256.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from latentmap.errors import CheckpointError, ConfigError, UnsafeLoadError
from latentmap.models.registry import register_adapter
from latentmap.models.conv import default_channels
from latentmap.models.gan import InversionNetwork
from latentmap.models.stylegan import WSpaceModel

KIND = "external-stylegan"
INVERTER_MAX_SIDE = 64  # larger images are area-resized before the inverter's convolutions


class PickleWarning(UserWarning):
    """Emitted whenever latentmap unpickles a file the caller allowed it to."""


def check_convention(G: object, what: str = "generator") -> None:
    """Raise ``ConfigError`` unless ``G`` follows the StyleGAN2/3 generator convention."""
    missing = [name for name in ("mapping", "synthesis") if not callable(getattr(G, name, None))]
    missing += [name for name in ("z_dim", "w_dim", "num_ws") if not isinstance(getattr(G, name, None), int)]
    if missing:
        raise ConfigError(f"{what} of type {type(G).__name__} does not follow the StyleGAN convention: "
                          f"it lacks {', '.join(missing)} (needs mapping(z, c), synthesis(ws), z_dim, w_dim, num_ws)")


def read_generator_pickle(path: str | os.PathLike[str], *, allow_pickle: bool = False, key: str | None = None
                          ) -> nn.Module:
    """Unpickle a StyleGAN-style generator (a dict holding 'G_ema'/'G', or the generator itself).

    ``allow_pickle`` is the caller's consent to run the code a pickle holds (UnsafeLoadError without it); ``key``
    names the dict entry to take instead of 'G_ema', then 'G'."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"generator file '{path}' does not exist")
    if not allow_pickle:
        raise UnsafeLoadError(
            f"'{path}' is a pickle, and loading a pickle runs code stored in it; pass allow_pickle=True "
            "(CLI: --trust-pickle) only if you trust where the file comes from")
    warnings.warn(f"unpickling '{path}': this runs code stored in the file", PickleWarning, stacklevel=2)
    try:
        if path.suffix.lower() in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with open(path, "rb") as fh:
                obj = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError, RuntimeError) as exc:
        raise CheckpointError(f"cannot unpickle '{path}': {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              " (official StyleGAN pickles need their dnnlib and torch_utils packages importable)"
                              ) from exc
    if isinstance(obj, dict):
        keys = [key] if key else ["G_ema", "G"]
        found = next((k for k in keys if k in obj), None)
        if found is None:
            raise ConfigError(f"pickle '{path}' holds a dict without {' or '.join(repr(k) for k in keys)}; "
                              f"its keys: {', '.join(map(str, obj))}")
        obj = obj[found]
    check_convention(obj, f"the object in '{path}'")
    return obj


def infer_image_shape(G: Any) -> tuple[int, ...]:
    """(C, H, W) from ``img_channels``/``img_resolution``, else from one synthesis pass.

    ``G`` is any generator of the StyleGAN convention (:func:`check_convention`); the classes of unpickled ones carry
    no type information."""
    c, r = getattr(G, "img_channels", None), getattr(G, "img_resolution", None)
    if isinstance(c, int) and isinstance(r, int):
        return c, r, r
    with torch.no_grad():
        device = next((p.device for p in G.parameters()), torch.device("cpu")) if isinstance(G, nn.Module) \
            else torch.device("cpu")
        ws = torch.zeros(1, G.num_ws, G.w_dim, device=device)
        return tuple(int(s) for s in G.synthesis(ws).shape[1:])


@register_adapter(KIND)
class ExternalStyleGAN(WSpaceModel):
    """A StyleGAN-convention generator ``G`` with a (trainable) W inverter; only the inverter is saved.

    ``G`` is any object of the convention (:func:`check_convention`: unpickled or built by a user's factory, so of
    no known type); ``image_shape`` defaults to what ``G`` says or makes. ``source``, ``source_sha256`` and ``key``
    say where ``G`` came from (a file or a ``py:`` spec), for the checkpoint; ``label`` is the class a conditional
    generator draws; the ``inverter_*`` arguments shape the inverter (``inverter_size``: the side images are
    resized to first, by default at most ``INVERTER_MAX_SIDE``)."""

    def __init__(self, name: str, G: Any, image_shape: Iterable[int] | None = None, *, source: str | None = None,
                 source_sha256: str | None = None, key: str | None = None, label: int | None = None,
                 inverter_channels: Sequence[int] | None = None, inverter_hidden: int = 256,
                 inverter_size: int | None = None, metadata: dict[str, Any] | None = None):
        check_convention(G)
        shape = tuple(int(s) for s in (image_shape or infer_image_shape(G)))
        if inverter_size is None and max(shape[1:]) > INVERTER_MAX_SIDE:
            inverter_size = INVERTER_MAX_SIDE
        side_shape = (shape[0], inverter_size, inverter_size) if inverter_size else shape
        self.inverter_channels = list(inverter_channels or default_channels(side_shape))
        self.inverter_hidden, self.inverter_size = int(inverter_hidden), inverter_size
        inverter = InversionNetwork(shape, self.inverter_channels, self.inverter_hidden, int(G.w_dim), inverter_size)
        super().__init__(name, G, inverter, shape, label=label, metadata=metadata)
        self.generator_source: dict[str, str | None] = {"source": source, "sha256": source_sha256, "key": key}
        #: set when the inverter's weights come from training (a checkpoint, or train_inverter)
        self.inverter_trained = False
        if source:  # kept in config.json however the model is saved
            self.metadata["generator"] = dict(self.generator_source)

    @property
    def has_trained_encoder(self) -> bool:
        """Whether the inverter's weights come from training (``encode`` refuses otherwise)."""
        return self.inverter_trained

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.inverter_trained:  # a randomly initialised inverter gives meaningless latents: refuse
            raise ConfigError(f"model '{self.name}' has no trained W inverter, so it cannot encode images; train one "
                              f"with `latentmap train inverter --model {self.generator_source['source'] or 'G.pkl'} "
                              "--trust-code`, then load that checkpoint (or invert with --init prior-mean)")
        return super()._encode(x)

    # only the inverter is ours to save: the generator's architecture lives in its own code
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The inverter's parameters and buffers, keyed ``inverter.parameter``, contiguous on CPU."""
        return {f"inverter.{k}": v.detach().cpu().contiguous() for k, v in self.inverter.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load the inverter's tensors (from :meth:`state_tensors`) and mark it trained; CheckpointError when
        ``tensors`` hold anything else or do not fit."""
        inverter_only = {k: v for k, v in tensors.items() if k.startswith("inverter.")}
        if len(inverter_only) != len(tensors):
            raise CheckpointError(f"weights of model '{self.name}' may hold only the inverter")
        try:
            self.inverter.load_state_dict({k[len("inverter."):]: v for k, v in inverter_only.items()}, strict=True)
            self.inverter_trained = True
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit the inverter of model '{self.name}': "
                                  f"{str(exc).splitlines()[0]}") from exc

    def architecture(self) -> dict[str, Any]:
        """The inverter's constructor arguments and the label: the generator's own architecture lives in its code."""
        return {"inverter_channels": self.inverter_channels, "inverter_hidden": self.inverter_hidden,
                "inverter_size": self.inverter_size, "label": self.label}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Save the inverter as a checkpoint referring to the generator's file or ``py:`` spec (CheckpointError for
        an in-memory generator, which a checkpoint could not refer to)."""
        if not self.generator_source["source"]:
            raise CheckpointError(f"model '{self.name}' wraps an in-memory generator; only generators loaded from a "
                                  "file or a py: spec can be saved (the checkpoint refers to them)")
        super().save(path, overwrite=overwrite)

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike[str], config: Mapping[str, Any],
                        tensors: Mapping[str, torch.Tensor]) -> NoReturn:
        """Always UnsafeLoadError: the generator must be unpickled or imported, which needs the caller's consent
        (``load_model(path, allow_pickle=True)``)."""
        raise UnsafeLoadError(f"checkpoint '{folder}' refers to a generator that must be unpickled or imported; "
                              "load it with load_model(path, allow_pickle=True) (CLI: --trust-pickle)")


