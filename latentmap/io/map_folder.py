"""Map folders: ``map.json`` (hyperparameters, model records, fit source, fit metrics, sha256) + ``map.safetensors``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentmap.errors import CheckpointError, ShapeMismatchError
from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import json_default, read_json_object, read_weights, sha256_file
from latentmap.io.model_record import model_record, relative_record
from latentmap.io.schema import Field

MAP_CONFIG_NAME = "map.json"
MAP_WEIGHTS_NAME = "map.safetensors"
MAP_FORMAT = "latentmap-map"
MAP_FORMAT_VERSION = 2  # 2: coef stored as [n_targets, n_features], as sklearn; 1 stored its transpose
# 3: a map of another estimator than the linear one (map.json names it under "estimator"; its own tensors)
ESTIMATOR_FORMAT_VERSION = 3
LINEAR_ESTIMATOR = "linear"
MAP_FIELDS = {key: Field(kind) for key, kind in {  # what loading relies on: a wrong type is one line naming it
    "format": "str", "format_version": "int", "estimator": "str", "hyperparameters": "dict", "source": "dict",
    "target": "dict", "fit_source": "dict", "fit_metrics": "dict", "fit_metrics.alpha": "float",
    "n_samples_seen": "int", "image_transform": "dict", "weights": "weights"}.items()}
MAY_BE_INFINITE = ("alphas",)  # a piecewise map's penalty per cell: inf means "the global map alone"


def describe_model(model: Any) -> dict[str, Any]:
    """What a map records of one of its models: a LatentModel's record (latentmap.io.model_record), a record
    already made (a dict, at least name and latent_dim), or nothing for None."""
    if model is None:
        return {}
    if isinstance(model, dict):
        return dict(model)
    return model_record(model)


def _image_transform(linear_map: Any) -> dict[str, Any]:
    """{"image_transform": {"spec", "from", "to"}} for a map fitted through an image transform (models working
    on images of different shapes), else nothing: a map without the field applies no transform."""
    record = getattr(linear_map, "image_transform_", None) or getattr(linear_map, "info_", {}).get("image_transform")
    return {"image_transform": dict(record)} if record else {}


def save_map(linear_map: Any, path: str | os.PathLike[str], *, source: Any = None, target: Any = None,
             fit_source: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
             overwrite: bool = True) -> Path:
    """Write a fitted map's folder atomically; the models' latent sizes must match the map.

    ``linear_map`` is a fitted estimator of latentmap.maps (above io/, so typed Any here); ``source`` and
    ``target`` are its models as :func:`describe_model` takes them."""
    from safetensors.torch import save_file

    from latentmap.version import __version__

    src, tgt = (relative_record(describe_model(m), path) for m in (source, target))
    for side, info, size in (("source", src, linear_map.n_features_in_), ("target", tgt, linear_map.n_targets_)):
        if info.get("latent_dim") is not None and int(info["latent_dim"]) != size:
            raise ShapeMismatchError(f"map has {side} latents of size {size}, {side} model "
                                     f"'{info.get('name')}' has {info['latent_dim']}")
    estimator = linear_map.estimator_name
    config = {"format": MAP_FORMAT, "latentmap_version": __version__, "estimator": estimator,
              "format_version": MAP_FORMAT_VERSION if estimator == LINEAR_ESTIMATOR else ESTIMATOR_FORMAT_VERSION,
              "hyperparameters": linear_map.get_params(), "source": src, "target": tgt,
              "fit_source": dict(fit_source or {}), "fit_metrics": dict(getattr(linear_map, "fit_metrics_", {})),
              "n_samples_seen": linear_map.n_samples_seen_, **_image_transform(linear_map), **(extra or {})}
    folder = Path(path)
    with atomic_directory(folder, overwrite=overwrite, kind="map") as tmp:
        tensors = linear_map.state_tensors()
        save_file(tensors, str(tmp / MAP_WEIGHTS_NAME))
        config["weights"] = {MAP_WEIGHTS_NAME: sha256_file(tmp / MAP_WEIGHTS_NAME)}
        (tmp / MAP_CONFIG_NAME).write_text(json.dumps(config, indent=2, default=json_default) + "\n")
    return folder


def read_map(path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(map.json, coef [n_targets, n_features], intercept [n_targets]) of a linear map's folder, sha256-checked."""
    folder = Path(path)
    info, tensors = read_map_state(folder)
    estimator = info.get("estimator", LINEAR_ESTIMATOR)
    if estimator != LINEAR_ESTIMATOR:
        raise CheckpointError(f"map folder '{folder}' holds a '{estimator}' map, not a linear one; load it with "
                              "latentmap.load_map")
    if "coef" not in tensors or "intercept" not in tensors:
        raise CheckpointError(f"map folder '{folder}' lacks the coef or intercept tensor")
    coef = tensors["coef"].numpy()
    coef = coef.T.copy() if info.get("format_version") == 1 else coef
    intercept = tensors["intercept"].numpy()
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],):
        raise CheckpointError(f"map folder '{folder}' holds coef {coef.shape} and intercept {intercept.shape}, "
                              "which do not fit together")
    return info, coef, intercept


def read_map_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(map.json, its tensors by name) of any estimator's map folder, sha256-checked."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"map folder '{folder}' does not exist" if not folder.exists()
                              else f"map '{folder}' must be a folder with {MAP_CONFIG_NAME}")
    cfg_file = folder / MAP_CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"map folder '{folder}' has no {MAP_CONFIG_NAME}")
    info = read_json_object(cfg_file, MAP_FIELDS)
    if info.get("format") != MAP_FORMAT:
        raise CheckpointError(f"{cfg_file} is not a latentmap map (format {info.get('format')!r})")
    version = info.get("format_version")
    if version not in (1, MAP_FORMAT_VERSION, ESTIMATOR_FORMAT_VERSION):
        raise CheckpointError(f"{cfg_file} has map format version {version!r}; this latentmap reads 1 to "
                              f"{ESTIMATOR_FORMAT_VERSION}")
    tensors = read_weights(folder, info)  # checks the sha256 recorded in map.json
    for name, tensor in tensors.items():  # a checksum proves the file unchanged, not its numbers sound
        if not tensor.dtype.is_floating_point:
            continue
        bad = torch.isnan(tensor) if name in MAY_BE_INFINITE else ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise CheckpointError(f"map folder '{folder}' holds {int(bad.sum())} non-finite values (NaN or inf) in "
                                  f"its '{name}' tensor; refit the map")
    return info, tensors
