"""Checkpoint folders: ``config.json`` + ``*.safetensors``, verified by sha256, never unpickled.

This module reads and writes the format; ``latentmap.models.registry.load_model`` turns a
folder (or any other registered model source) into an adapter.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentmap.io.atomic import atomic_directory
from latentmap.errors import CheckpointError
from latentmap.io.schema import Field, validate_config, validate_fields

if TYPE_CHECKING:
    import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "latentmap-checkpoint"
FORMAT_VERSION = 1

# ``model`` below is a LatentModel adapter: latentmap.models sits above io/, so it is not imported here (Any).


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_config(model: Any) -> dict[str, Any]:
    """The ``config.json`` of ``model`` without its weights' digests: format, name, kind, sizes, architecture,
    version, then the model's metadata (dataset, seed, training metrics...)."""
    from latentmap.version import __version__

    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "kind": model.kind,
        "image_shape": list(model.image_shape),
        "latent_dim": model.latent_dim,
        "architecture": model.architecture(),
        "latentmap_version": __version__,
    }
    for key, value in model.metadata.items():
        config.setdefault(key, value)
    return config


def save_checkpoint(model: Any, path: str | os.PathLike[str], *, overwrite: bool = True,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically; returns the path."""
    from safetensors.torch import save_file

    folder = Path(path)
    config = build_config(model)
    with atomic_directory(folder, overwrite=overwrite, kind="checkpoint") as tmp:
        save_file(model.state_tensors(), str(tmp / WEIGHTS_NAME))
        config["weights"] = {WEIGHTS_NAME: sha256_file(tmp / WEIGHTS_NAME)}
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=json_default) + "\n")
    return folder


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for the arrays, tensors and paths that configs record."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def read_json_object(file: str | os.PathLike[str], fields: dict[str, Field] | None = None) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; malformed content is a CheckpointError.

    Untrusted files are read safely: nesting too deep for the parser (``[[[[...]]]]``) is malformed content,
    not a RecursionError, and ``fields`` (name -> :class:`latentmap.io.schema.Field`) checks the type and range
    of each field present (dotted names reach into objects: ``"statistics.sectors"``)."""
    try:
        data = json.loads(Path(file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CheckpointError(f"{file} is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    if fields:
        validate_fields(data, fields, file)
    return data


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``config.json`` of the checkpoint folder ``path``; CheckpointError (one line) when the folder,
    the file or a field is missing or wrong, or a newer latentmap wrote it."""
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"checkpoint '{folder}' does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint '{folder}' must be a folder with {CONFIG_NAME} and *.safetensors")
    cfg_file = folder / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"checkpoint '{folder}' has no {CONFIG_NAME}")
    config = read_json_object(cfg_file)
    validate_config(config, cfg_file)
    version = config.get("format_version")
    if version is not None and version > FORMAT_VERSION:  # a newer latentmap's format: refused as maps are
        raise CheckpointError(f"{cfg_file} has checkpoint format version {version}; this latentmap reads "
                              f"version {FORMAT_VERSION} (a newer latentmap wrote it: upgrade to load it)")
    return config


def read_weights(path: str | os.PathLike[str], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Verify every listed weights file against its sha256 and load them (safetensors only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    weights = config.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"the config of '{folder}' lists no weights files")
    tensors: dict[str, torch.Tensor] = {}
    for name, expected in weights.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint '{folder}' is missing its weights file '{name}'")
        actual = sha256_file(file)
        if actual != expected:
            raise CheckpointError(
                f"weights file '{file}' is corrupted or was changed: sha256 {actual[:12]}..., config.json says {str(expected)[:12]}..."
            )
        try:
            tensors.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read weights file '{file}': {exc}") from exc
    return tensors


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``config.json`` (not yet whether it is valid)."""
    return (Path(path) / CONFIG_NAME).is_file()


def model_fingerprint(model: Any) -> str:
    """sha256 of what makes a loaded model compute what it does, whatever it was loaded from: its config
    (kind, sizes, objective, ``architecture()``, the digest of the code or pickle it came from) and every
    tensor of every network (name, dtype, shape and bytes, in a fixed order)."""
    import torch

    provenance = getattr(model, "provenance", None) or {}
    config = {"kind": model.kind, "latent_dim": int(model.latent_dim), "image_shape": list(model.image_shape),
              "objective": model.objective, "architecture": model.architecture(),
              "source_sha256": provenance.get("source_sha256")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for mod_name, module in sorted(model.modules().items()):
        for key, tensor in sorted(module.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"\n{mod_name}.{key} {tensor.dtype} {list(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def weights_digest(spec: object) -> str | None:
    """What maps written before model fingerprints recorded as ``sha256``: a file's sha256, or one over a
    checkpoint's recorded weight digests; None for anything else. Kept to check those maps."""
    path = Path(str(spec))
    if path.is_file():
        return sha256_file(path)
    cfg = path / CONFIG_NAME
    if cfg.is_file():
        try:
            weights = read_json_object(cfg).get("weights")
        except CheckpointError:
            return None
        if isinstance(weights, dict) and weights:
            joined = "\n".join(f"{name}:{digest}" for name, digest in sorted(weights.items()))
            return hashlib.sha256(joined.encode()).hexdigest()
    return None
