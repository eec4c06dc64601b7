"""The one model registry: adapters by kind, and model sources for specs that are not checkpoints.

An adapter registers itself with ``@register_adapter(kind)``, so a checkpoint whose config
says ``"kind": kind`` loads through it. Sources (models people already have: StyleGAN-style
pickles, ``py:module:factory`` specs, pythae folders, ...) register a predicate and a loader
with ``@register_model_source``; :func:`load_model` tries them in order, then the checkpoint
format. Adding a kind or a source is one new file, no if/elif chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from latentmap.errors import ConfigError, UnknownKindError
from latentmap.io.checkpoint import read_config, read_weights

ADAPTERS: dict[str, type] = {}
# (name, predicate(spec) -> bool, loader(spec, device=None, allow_pickle=False) -> LatentModel)
MODEL_SOURCES: list[tuple[str, Callable[[str], bool], Callable]] = []


def register_adapter(kind: str):
    """Class decorator: make an adapter loadable by ``kind`` from a checkpoint's config."""

    def decorator(cls):
        if kind in ADAPTERS and ADAPTERS[kind] is not cls:
            raise ConfigError(f"adapter kind '{kind}' is already registered by {ADAPTERS[kind].__name__}")
        cls.kind = kind
        ADAPTERS[kind] = cls
        return cls

    return decorator


def adapter_class(kind: str) -> type:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise UnknownKindError(
            f"unknown model kind '{kind}'; registered kinds: {', '.join(sorted(ADAPTERS)) or 'none'}"
        ) from None


def register_model_source(name: str, predicate: Callable[[str], bool]):
    """Decorator: ``loader(spec, device=None, allow_pickle=False)`` handles specs matching ``predicate``."""

    def decorator(loader):
        MODEL_SOURCES.append((name, predicate, loader))
        return loader

    return decorator


def load_checkpoint(path, device=None):
    """A latentmap checkpoint folder (config.json + sha256-checked safetensors) through its adapter."""
    folder = Path(path)
    config = read_config(folder)
    cls = adapter_class(config["kind"])
    tensors = read_weights(folder, config)
    model = cls.from_checkpoint(folder, config, tensors)
    return model.to(device).eval()


def load_model(spec, device=None, *, allow_pickle: bool = False):
    """Load a model from a checkpoint folder or any registered source (see ``register_model_source``)."""
    from latentmap.models.base import LatentModel

    if isinstance(spec, LatentModel):
        return spec.to(device) if device is not None else spec
    text = str(spec)
    for _name, predicate, loader in MODEL_SOURCES:
        if predicate(text):
            return loader(text, device=device, allow_pickle=allow_pickle)
    return load_checkpoint(text, device=device)
