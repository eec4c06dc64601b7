"""Model sources: specs that are not latentmap checkpoints of a plain kind.

``py:package.module:factory`` (code the user names), saved wrapped models (their factory is run
again, with the trust flag), StyleGAN-style generator pickles (with the trust flag) and the
inverter checkpoints trained for them. Each registers a predicate and a loader with the model
registry; the adapters themselves live in ``wrapped.py`` and ``external_stylegan.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentmap.constants import PICKLE_SUFFIXES
from latentmap.errors import CheckpointError, ConfigError, UnsafeLoadError
from latentmap.io.checkpoint import CONFIG_NAME, read_config, read_weights, sha256_file
from latentmap.models.base import LatentModel
from latentmap.models.external_stylegan import KIND, ExternalStyleGAN, read_generator_pickle
from latentmap.models.registry import register_model_source
from latentmap.models.wrapped import WrappedModel

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def _working_folder_importable() -> Iterator[str]:
    """Within the block the working folder is on the import path (last, so it shadows no installed package),
    as ``python -m`` would have it: ``py:mymodels:make`` finds a ``mymodels.py`` beside the user."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield cwd
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def call_factory(spec: str) -> Any:
    """Import ``package.module`` and call ``factory()`` for ``py:package.module:factory``; the module is looked
    up on the Python path, then in the working folder. Returns whatever the user's factory returns."""
    target = spec[3:] if spec.startswith("py:") else spec
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model spec must look like py:package.module:factory, got '{spec}' instead")
    with _working_folder_importable() as cwd:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.split(".")[0] == exc.name.split(".")[0]:
                raise ConfigError(f"cannot import '{module_name}' for model spec '{spec}': no module "
                                  f"'{exc.name}' in the working folder ({cwd}) or on the Python path; run from "
                                  "the folder that holds it, or add that folder to PYTHONPATH") from exc
            raise ConfigError(f"cannot import '{module_name}' for model spec '{spec}': {exc}") from exc
        except ImportError as exc:
            raise ConfigError(f"cannot import '{module_name}' for model spec '{spec}': {exc}") from exc
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"'{module_name}' has no callable '{attr}' (model spec '{spec}')")
        return factory()


def model_from_factory_result(result: object, spec: str, name: str | None = None) -> LatentModel:
    """A factory may return a LatentModel, a StyleGAN-style generator, or encoder/decoder modules
    as (encoder, decoder[, image_shape]) or a dict with encoder, decoder, image_shape[, kind, name, output_range,
    objective, family]. ``name`` defaults to the factory's name in ``spec``."""
    name = name or spec.rsplit(":", 1)[-1]
    if isinstance(result, LatentModel):
        return result
    if callable(getattr(result, "mapping", None)) and callable(getattr(result, "synthesis", None)):
        return ExternalStyleGAN(name, result, source=spec)
    parts: dict[str, Any]
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
    # "objective" and "family" say what the modules are, for the relocation type of pairs with this model
    declared = {"objective": parts["objective"]} if parts.get("objective") else {}
    return WrappedModel(parts.get("name", name), parts["encoder"], parts["decoder"], shape,
                        kind=parts.get("kind", "external"), output_range=parts.get("output_range", (0.0, 1.0)),
                        factory=spec, metadata=declared, family=parts.get("family"))


@register_model_source("py", lambda spec: spec.startswith("py:"))
def load_py_spec(spec: str, device: str | torch.device | None = None, allow_pickle: bool = False) -> LatentModel:
    """``py:package.module:factory``: imports and runs the named code, so it needs the same consent as a pickle."""
    if not allow_pickle:
        raise UnsafeLoadError(f"model spec '{spec}' imports and runs code; pass allow_pickle=True "
                              "(CLI: --trust-code) only if you trust that code")
    model = model_from_factory_result(call_factory(spec), spec)
    return model.to(device).eval() if device is not None else model.eval()


def _is_wrapped_checkpoint(spec: str) -> bool:
    cfg = Path(spec) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return isinstance(json.loads(cfg.read_text()).get("external"), dict)
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return False


@register_model_source("wrapped-checkpoint", _is_wrapped_checkpoint)
def load_wrapped_checkpoint(spec: str, device: str | torch.device | None = None, allow_pickle: bool = False
                            ) -> LatentModel:
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
    # a wrapped model's kind is its own: what its config recorded
    model.kind = config["external"].get("kind", model.kind)
    model.metadata.update({k: v for k, v in config.items() if k in ("dataset", "seed", "training", "metrics")})
    model.load_state_tensors(read_weights(folder, config))
    return model.to(device).eval() if device is not None else model.eval()


def _is_pickle_file(spec: str) -> bool:
    path = Path(spec)
    return path.suffix.lower() in PICKLE_SUFFIXES and path.is_file()


def _is_external_checkpoint(spec: str) -> bool:
    cfg = Path(spec) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("kind") == KIND
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return False  # the checkpoint loader reports malformed configs


@register_model_source("stylegan-pickle", _is_pickle_file)
def load_generator_pickle(spec: str, device: str | torch.device | None = None, allow_pickle: bool = False,
                          **options: Any) -> ExternalStyleGAN:
    """A StyleGAN-style pickle as a W-space model with a fresh (untrained) inverter; ``options["key"]`` names the
    pickled dict's entry that holds the generator."""
    path = Path(spec).resolve()
    G = read_generator_pickle(path, allow_pickle=allow_pickle, key=options.get("key"))
    model = ExternalStyleGAN(path.stem, G, source=str(path), source_sha256=sha256_file(path), key=options.get("key"))
    model.to(device).eval()
    return model


@register_model_source("external-stylegan-checkpoint", _is_external_checkpoint)
def load_external_checkpoint(spec: str, device: str | torch.device | None = None, allow_pickle: bool = False
                             ) -> ExternalStyleGAN:
    """An inverter checkpoint: re-read its generator (verified by sha256), then the inverter weights."""
    folder = Path(spec)
    config = read_config(folder)
    gen = config.get("generator") or {}
    source = gen.get("source")
    if not source:
        raise CheckpointError(f"{folder / CONFIG_NAME} does not say where its generator comes from ('generator.source')")
    if str(source).startswith("py:"):
        if not allow_pickle:
            raise UnsafeLoadError(f"checkpoint '{folder}' imports and runs '{source}' to build its generator; pass "
                                  "allow_pickle=True (CLI: --trust-pickle) only if you trust that code")
        G = call_factory(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"generator '{path}' of checkpoint '{folder}' does not exist")
        if gen.get("sha256") and sha256_file(path) != gen["sha256"]:
            raise CheckpointError(f"generator '{path}' changed since checkpoint '{folder}' was trained on it "
                                  "(sha256 differs); its inverter no longer fits")
        G = read_generator_pickle(path, allow_pickle=allow_pickle, key=gen.get("key"))
    metadata = {k: v for k, v in config.items() if k not in ("name", "kind", "image_shape", "latent_dim",
                                                             "architecture", "weights", "format", "format_version")}
    model = ExternalStyleGAN(config.get("name", folder.name), G, config["image_shape"], source=source,
                             source_sha256=gen.get("sha256"), key=gen.get("key"), metadata=metadata,
                             **config.get("architecture", {}))
    if model.latent_dim != config["latent_dim"]:
        raise CheckpointError(f"generator of checkpoint '{folder}' has w_dim {model.latent_dim}, "
                              f"config.json says {config['latent_dim']}")
    model.load_state_tensors(read_weights(folder, config))
    model.to(device).eval()
    return model
