"""The one model registry: adapters by kind, and model sources for specs that are not checkpoints.

An adapter registers itself with ``@register_adapter(kind)``, so a checkpoint whose config
says ``"kind": kind`` loads through it. Sources (models people already have: StyleGAN-style
pickles, ``py:module:factory`` specs, pythae folders, ...) register a predicate and a loader
with ``@register_model_source``; :func:`load_model` tries them in order, then the checkpoint
format. Adding a kind or a source is one new file, no if/elif chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from latentmap.errors import CheckpointError, ConfigError, LatentmapError, UnknownKindError
from latentmap.io.checkpoint import read_config, read_weights

if TYPE_CHECKING:
    import torch

    from latentmap.models.base import LatentModel


class ModelLoader(Protocol):
    """What a model source registers: ``loader(spec, device=None, allow_pickle=False) -> LatentModel``."""

    def __call__(self, spec: str, device: str | torch.device | None = None,
                 allow_pickle: bool = False) -> LatentModel: ...


AdapterT = TypeVar("AdapterT", bound="type[LatentModel]")
LoaderT = TypeVar("LoaderT", bound=ModelLoader)

ADAPTERS: dict[str, type[LatentModel]] = {}
"""Adapter classes by kind (``vae``, ``split-vae``, ``gan``, ``stylegan-w``, ...), filled by ``register_adapter``."""
# (name, predicate(spec) -> bool, loader)
MODEL_SOURCES: list[tuple[str, Callable[[str], bool], ModelLoader]] = []
# source name -> spec_path(spec) -> the path a spec of that source loads from (recorded instead of a prefixed spec)
SOURCE_PATHS: dict[str, Callable[[str], str]] = {}


def register_adapter(kind: str) -> Callable[[AdapterT], AdapterT]:
    """Class decorator: make an adapter loadable by ``kind`` from a checkpoint's config."""

    def decorator(cls: AdapterT) -> AdapterT:
        if kind in ADAPTERS and ADAPTERS[kind] is not cls:
            raise ConfigError(f"adapter kind '{kind}' is already registered by {ADAPTERS[kind].__name__}")
        cls.kind = kind
        ADAPTERS[kind] = cls
        return cls

    return decorator


def adapter_class(kind: str) -> type[LatentModel]:
    """The adapter class registered for a model ``kind`` (``vae``, ``split-vae``, ``gan``, ...)."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise UnknownKindError(
            f"unknown model kind '{kind}'; registered kinds: {', '.join(sorted(ADAPTERS)) or 'none'}"
        ) from None


def register_model_source(name: str, predicate: Callable[[str], bool],
                          spec_path: Callable[[str], str] | None = None) -> Callable[[LoaderT], LoaderT]:
    """Decorator: ``loader(spec, device=None, allow_pickle=False)`` handles specs matching ``predicate``.

    ``spec_path(spec)``, for sources whose specs carry a prefix (``diffusers:PATH``), gives the plain path that
    outputs record: a path is kept relative to an output's folder, and the predicate must accept it too."""

    def decorator(loader: LoaderT) -> LoaderT:
        MODEL_SOURCES.append((name, predicate, loader))
        if spec_path is not None:
            SOURCE_PATHS[name] = spec_path
        return loader

    return decorator


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device | None = None) -> LatentModel:
    """A latentmap checkpoint folder (config.json + sha256-checked safetensors) through its adapter."""
    folder = Path(path)
    config = read_config(folder)
    cls = adapter_class(config["kind"])
    tensors = read_weights(folder, config)
    try:
        model = cls.from_checkpoint(folder, config, tensors)
    except LatentmapError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:  # an architecture the modules cannot take
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint '{folder}': its architecture does not build a '{config['kind']}' "
                              f"model: {detail}") from exc
    return model.to(device).eval()


def load_model(spec: str | os.PathLike[str] | LatentModel, device: str | torch.device | None = None, *,
               allow_pickle: bool = False) -> LatentModel:
    """Load a model from a checkpoint folder, a shipped model's name (``fmnist-vae-a``, see
    :mod:`latentmap.models.shipped`) or any registered source (see ``register_model_source``)."""
    from latentmap.models.base import LatentModel
    from latentmap.models.shipped import resolve_model_spec

    if isinstance(spec, LatentModel):
        return spec.to(device) if device is not None else spec
    text = str(resolve_model_spec(str(spec)))
    loader = next((load for _name, predicate, load in MODEL_SOURCES if predicate(text)), None)
    model = loader(text, device=device, allow_pickle=allow_pickle) if loader else load_checkpoint(text, device=device)
    model.provenance = model_provenance(spec)  # what outputs record of it (latentmap.io.model_record)
    return model


def model_provenance(spec: object) -> dict[str, str]:
    """Where :func:`load_model` takes ``spec`` from: {"origin": "shipped" | a registered source's name |
    "checkpoint", "spec": the shipped name, path or spec}, with "source_sha256", the digest of the code file of a
    ``py:`` spec or of a pickle (their code is part of what the model computes)."""
    from latentmap.io.checkpoint import sha256_file
    from latentmap.models.shipped import resolve_model_spec, shipped_name

    name = shipped_name(spec)
    if name is not None:
        return {"origin": "shipped", "spec": name}
    text = str(resolve_model_spec(str(spec)))
    origin = next((src for src, predicate, _load in MODEL_SOURCES if predicate(text)), "checkpoint")
    out = {"origin": origin, "spec": SOURCE_PATHS[origin](text) if origin in SOURCE_PATHS else text}
    code = _py_spec_file(text) if origin == "py" else Path(text) if Path(text).is_file() else None
    if code is not None and code.is_file():
        out["source_sha256"] = sha256_file(code)
    return out


def _py_spec_file(spec: str) -> Path | None:
    """The source file of the module a ``py:module:factory`` spec imported (None when it has none, or has not been
    imported: this never imports anything, which only loading with the trust flag may do)."""
    import sys

    module = sys.modules.get(spec[3:].partition(":")[0])
    origin = getattr(module, "__file__", None)
    return Path(origin) if origin else None


def record_model(model: LatentModel, spec: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The record an output keeps of ``model`` (latentmap.io.model_record): from where its loader found it,
    else from ``spec`` (the folder a model trained in memory was saved to), else as built in memory."""
    from latentmap.io.model_record import model_record

    if getattr(model, "provenance", None) is None and spec is not None:
        model.provenance = model_provenance(spec)
    return model_record(model)


def load_recorded_model(record: dict[str, Any], folder: str | os.PathLike[str],
                        device: str | torch.device | None = None, *,
                        allow_pickle: bool = False) -> tuple[LatentModel, str]:
    """(model, spec) of a model an output in ``folder`` records; refused in one line when its fingerprint (or
    an older map's sha256) no longer matches."""
    from latentmap.io.model_record import check_model_record, resolve_model_record

    spec = resolve_model_record(record, folder)
    model = load_model(spec, device=device, allow_pickle=allow_pickle)
    check_model_record(record, model, spec, folder)
    return model, spec


def is_model_spec(spec: str) -> bool:
    """Whether ``spec`` names something :func:`load_model` can try: a registered source or a checkpoint folder."""
    from latentmap.io.checkpoint import is_checkpoint

    text = str(spec)
    return any(predicate(text) for _name, predicate, _loader in MODEL_SOURCES) or is_checkpoint(text)


def expand_model_specs(specs: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """(model specs, notes): comma-separated lists split, globs expanded, a folder of models opened.

    Files and folders a glob or folder brings in that are not models (a README beside the
    checkpoints) are left out with a note; a name the user gave explicitly is kept as it is, so
    loading it reports what is wrong with it.
    """
    import glob

    out: list[str] = []
    notes: list[str] = []
    for spec in specs:
        for item in (s.strip() for s in str(spec).split(",")):
            if not item:
                continue
            if glob.has_magic(item):
                matches = sorted(glob.glob(item))
                if not matches:
                    raise ConfigError(f"no model matches '{item}'")
                for match in matches:
                    (out.append(match) if is_model_spec(match) else
                     notes.append(f"left out '{match}': not a model latentmap can load"))
                continue
            path = Path(item)
            if path.is_dir() and not is_model_spec(item):
                children = [str(p) for p in sorted(path.iterdir()) if is_model_spec(str(p))]
                if children:
                    out += children
                    continue
            out.append(item)
    return list(dict.fromkeys(out)), notes
