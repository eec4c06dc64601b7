"""What an output records of each model it used, and how a recorded model is found and checked again.

A record holds the model's name, kind, sizes, objective and family, where it came from (``origin``: a
shipped name, a checkpoint folder, a pythae folder, a pickle, a ``py:`` spec, ... and ``spec``, the
name, path or spec as the loader takes it), the ``fingerprint`` of its weights and config
(:func:`latentmap.io.checkpoint.model_fingerprint`, the same for every origin) and the fingerprint
of its networks' architecture. A shipped model is found again by its name among the shipped
models only, never in the working folder (``shipped:NAME``); a path is kept relative to the output's
folder. Records of maps written before fingerprints (``path`` and an optional ``sha256``) still load.

This module only reads and writes records; ``latentmap.models.registry`` loads the model a record
names (``load_recorded_model``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from latentmap.errors import CheckpointError, ConfigError
from latentmap.io.checkpoint import model_fingerprint, weights_digest

SHIPPED_PREFIX = "shipped:"
SHIPPED = "shipped"
MEMORY = "memory"  # built in memory: nothing to load it from
# origins whose spec is not a path (a shipped name, a py:module:factory spec)
NOT_PATHS = (SHIPPED, "py", MEMORY)
SHORT = 12  # hex digits of a fingerprint shown in reports


def architecture_fingerprint(model: Any) -> str:  # model: a LatentModel adapter (models/ is above io/)
    """sha256 of the networks' architecture, independent of their weights: every module's path and class,
    every parameter's and buffer's name and shape, the latent size and the image shape."""
    items = [f"latent_dim {int(model.latent_dim)}", f"image_shape {list(model.image_shape)}"]
    for mod_name, module in model.modules().items():
        for path, sub in module.named_modules():
            cls = type(sub)
            items.append(f"module {mod_name}.{path} {cls.__module__}.{cls.__qualname__}")
        items += [f"tensor {mod_name}.{key} {list(t.shape)}" for key, t in module.state_dict().items()]
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()


def model_record(model: Any, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a loaded model; ``provenance`` ({"origin", "spec"}) defaults to the one its loader set. A model
    with spatial latents adds their layout, ``latent_shape`` (C, h, w)."""
    prov = provenance or getattr(model, "provenance", None) or {"origin": MEMORY}
    record = {"name": model.name, "kind": model.kind, "latent_dim": int(model.latent_dim),
              "image_shape": list(model.image_shape), "objective": model.objective, "family": model.family,
              "origin": str(prov.get("origin", MEMORY))}
    shape = tuple(getattr(model, "latent_shape", None) or (model.latent_dim,))
    if len(shape) > 1:  # a spatial latent (C, h, w), flattened in C order
        record["latent_shape"] = [int(s) for s in shape]
    if prov.get("spec") is not None:
        record["spec"] = str(prov["spec"])
    record["fingerprint"] = model_fingerprint(model)
    record["architecture_fingerprint"] = architecture_fingerprint(model)
    return record


def short_fingerprint(record: dict[str, Any]) -> str:
    """The first hex digits of a record's fingerprint (of the sha256 of an older map), '' when it has none."""
    return str(record.get("fingerprint") or record.get("sha256") or "")[:SHORT]


def relative_record(record: dict[str, Any], folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The record as an output in ``folder`` stores it: an existing path relative to that folder, so the
    output works from any working folder and moves with the models beside it."""
    key = "spec" if "origin" in record else "path"  # "path": a record from before fingerprints
    recorded = record.get(key)
    if not recorded or record.get("origin") in NOT_PATHS or not Path(recorded).exists():
        return dict(record)
    return {**record, key: os.path.relpath(Path(recorded).resolve(), Path(folder).resolve())}


def resolve_model_record(record: dict[str, Any], folder: str | os.PathLike[str]) -> str:
    """The spec that loads the model a record in ``folder`` names: ``shipped:NAME`` for a shipped model, a
    path relative to ``folder``, or the spec as recorded."""
    name = record.get("name", "?")
    if "origin" not in record:
        return _legacy_spec(record, folder)
    origin, spec = record["origin"], record.get("spec")
    if origin == MEMORY or not spec:
        raise ConfigError(f"'{folder}' records no way to load its model '{name}' (it was built in memory); "
                          "pass the model explicitly")
    if origin == SHIPPED:
        return SHIPPED_PREFIX + spec
    if origin in NOT_PATHS or Path(spec).is_absolute():
        return spec
    return os.path.normpath(Path(folder) / spec)


def _legacy_spec(record: dict[str, Any], folder: str | os.PathLike[str]) -> str:
    """A map written before fingerprints: its path beside the map folder; a bare name that is not there was
    a shipped model's name; anything else as recorded."""
    recorded = record.get("path")
    if not recorded:
        raise ConfigError(f"'{folder}' records no path for its model '{record.get('name', '?')}'; "
                          "pass it explicitly")
    beside = Path(os.path.normpath(Path(folder) / recorded))
    if not Path(recorded).is_absolute() and beside.exists():
        return str(beside)
    if len(Path(recorded).parts) == 1 and not Path(recorded).is_absolute():
        return SHIPPED_PREFIX + recorded
    return str(recorded)


def check_model_record(record: dict[str, Any], model: Any, spec: object, folder: str | os.PathLike[str]) -> None:
    """Refuse (one line) a model that is not the one the output in ``folder`` recorded: its fingerprint, or
    for an older map the recorded sha256 of its files, must match."""
    expected, what = record.get("fingerprint"), "fingerprint"
    actual = model_fingerprint(model) if expected else None
    if not expected and record.get("sha256"):
        expected, what, actual = record["sha256"], "sha256", weights_digest(spec)
    if expected and actual and actual != expected:
        raise CheckpointError(f"model '{record.get('name', model.name)}' ({spec}) is not the one '{folder}' was made "
                              f"with: {what} {actual[:SHORT]}..., '{folder}' records {str(expected)[:SHORT]}...")
