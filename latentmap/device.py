"""Device selection shared by the library and the CLI."""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from typing import Any

import torch

from latentmap.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``None``/``"auto"``/``"cpu"``/``"cuda[:i]"``/``torch.device`` into a usable device.

    Anything else (``mps``, ``meta``, a CUDA index that does not exist here) is a ConfigError:
    latentmap runs models on the CPU or on CUDA GPUs.
    """
    spec = "auto" if device is None else str(device).strip()
    if not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '{spec}' instead")
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # torchrun: one GPU per local rank
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0) % max(torch.cuda.device_count(), 1)}"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{spec}' was requested but CUDA is not available here; use --device cpu or auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device '{spec}' does not exist: this machine has {torch.cuda.device_count()} CUDA "
                              "device(s)")
    return torch.device(spec)


# --------------------------------------------------------------------------- precision of model forward passes

PRECISIONS = ("fp32", "bf16")
_PRECISION = {"value": "fp32"}


def set_precision(precision: str) -> None:
    """The precision of model forward passes in this process: "fp32" or "bf16" (the CLI's ``--precision``).

    bf16 runs encoders and decoders under ``torch.autocast`` on CUDA devices only (a CPU keeps fp32);
    statistics (XᵀX, sums, information gains, metric sums) are float64 whatever is chosen.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r} instead")
    _PRECISION["value"] = precision


def get_precision() -> str:
    """The precision of model forward passes set in this process ("fp32" unless ``set_precision`` said "bf16")."""
    return _PRECISION["value"]


def forward_precision(device: torch.device | str) -> AbstractContextManager[Any]:
    """The context for a model's forward pass on ``device``: autocast to bfloat16 on CUDA when bf16 is set."""
    import contextlib

    if _PRECISION["value"] == "bf16" and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
