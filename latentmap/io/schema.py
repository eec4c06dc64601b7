"""One typed schema, with ranges, for every field of a checkpoint's config.json.

``validate_config`` runs at load time, before any module is built, so a config with a
wrong-typed or out-of-range field (``"latent_dim": "abc"``, negative channels) is a one-line
CheckpointError naming the file, the field, what was expected and what was found.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from latentmap.errors import CheckpointError

MAX_SIZE = 1 << 16  # generous upper bound for sizes (latent size, channels, pixels per side)
MAX_SEED = 2**63 - 1  # the largest seed: every seed in [0, MAX_SEED] gives torch, numpy and scikit-learn valid seeds
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Field:
    """``kind``: int | float | str | bool | dict | list | int-list | shape | weights; numbers within [low, high]."""

    kind: str
    required: bool = False
    low: float | None = None
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when it fits)."""
        k = self.kind
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"an integer, got {value!r}"
            return self._range(value)
        if k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"a number, got {value!r}"
            return self._range(value)
        if k in ("str", "bool", "dict", "list"):
            expected = {"str": str, "bool": bool, "dict": dict, "list": list}[k]
            return None if isinstance(value, expected) else f"a {k}, got {value!r}"
        if k in ("int-list", "shape"):
            if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int)
                                                               for v in value):
                return f"a non-empty list of integers, got {value!r}"
            if k == "shape" and len(value) != 3:
                return f"[channels, height, width], got {value!r}"
            if k == "shape" and value[0] not in (1, 3):
                return f"1 or 3 channels, got {value[0]}"
            bad = [v for v in value if self._range(v)]
            return f"integers in [{self.low:g}, {self.high:g}], got {value!r}" if bad else None
        if k == "weights":
            if not isinstance(value, dict) or not value:
                return f"a non-empty object of file name -> sha256, got {value!r}"
            for name, digest in value.items():
                if "/" in name or "\\" in name or name.startswith(".") or not str(digest).strip():
                    return f"plain file names inside the folder, got {name!r}"
                if not isinstance(digest, str) or not SHA256.match(digest):
                    return f"a 64-character hex sha256 for '{name}', got {digest!r}"
            return None
        raise ValueError(f"unknown field kind {k}")

    def _range(self, value: Any) -> str | None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            if self.high is None:
                return f"a value >= {self.low:g}, got {value!r}"
            if self.low is None:
                return f"a value <= {self.high:g}, got {value!r}"
            return f"a value in [{self.low:g}, {self.high:g}], got {value!r}"
        return None


CONFIG_FIELDS = {
    "kind": Field("str", required=True),
    "latent_dim": Field("int", required=True, low=1, high=MAX_SIZE),
    "image_shape": Field("shape", required=True, low=1, high=MAX_SIZE),
    "name": Field("str"),
    "format": Field("str"),
    "format_version": Field("int", low=1, high=1000),
    "latentmap_version": Field("str"),
    "weights": Field("weights"),
    "architecture": Field("dict"),
    "dataset": Field("str"),
    "seed": Field("int"),
    "metrics": Field("dict"),
    "training": Field("dict"),
}
ARCHITECTURE_FIELDS = {
    "channels": Field("int-list", low=1, high=MAX_SIZE),
    "inverter_channels": Field("int-list", low=1, high=MAX_SIZE),
    "hidden": Field("int", low=1, high=MAX_SIZE),
    "inverter_hidden": Field("int", low=1, high=MAX_SIZE),
    "z_dim": Field("int", low=1, high=MAX_SIZE),
    "w_dim": Field("int", low=1, high=MAX_SIZE),
    "num_ws": Field("int", low=1, high=1024),
    "mapping_layers": Field("int", low=0, high=64),
    "label": Field("int", low=0),
}
METRIC_FIELDS = {"test_mse": Field("float", low=0), "train_mse": Field("float", low=0)}


def validate_config(config: dict[str, Any], file: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every known field of a checkpoint config; raise CheckpointError on the first problem."""
    for section, fields, where in ((config, CONFIG_FIELDS, ""),
                                   (config.get("architecture") or {}, ARCHITECTURE_FIELDS, "architecture."),
                                   (config.get("metrics") or {}, METRIC_FIELDS, "metrics.")):
        if not isinstance(section, dict):
            continue  # reported by the top-level check of that field
        for key, field in fields.items():
            if key not in section:
                if field.required:
                    raise CheckpointError(f"{file} lacks the field '{where}{key}'")
                continue
            if section[key] is None and not field.required:
                continue
            problem = field.problem(section[key])
            if problem:
                raise CheckpointError(f"{file}: field '{where}{key}' must be {problem}")
    return config


def validate_fields(data: dict[str, Any], fields: dict[str, Field], file: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the fields of ``data`` named in ``fields`` (dotted names reach into objects; absent or null ones
    pass unless required); raise CheckpointError naming the file and the field on the first problem."""
    for key, field in fields.items():
        section: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or section.get(parts[-1]) is None:
            if field.required:
                raise CheckpointError(f"{file} lacks the field '{key}'")
            continue
        problem = field.problem(section[parts[-1]])
        if problem:
            raise CheckpointError(f"{file}: field '{key}' must be {problem}")
    return data
