"""Device selection shared by the library and the CLI."""

from __future__ import annotations

import re

import torch

from latentmap.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device=None) -> torch.device:
    """Turn ``None``/``"auto"``/``"cpu"``/``"cuda[:i]"``/``torch.device`` into a usable device.

    Anything else (``mps``, ``meta``, a CUDA index that does not exist here) is a ConfigError:
    latentmap runs models on the CPU or on CUDA GPUs.
    """
    spec = "auto" if device is None else str(device).strip()
    if not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '{spec}' instead")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{spec}' was requested but CUDA is not available here; use --device cpu or auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device '{spec}' does not exist: this machine has {torch.cuda.device_count()} CUDA "
                              "device(s)")
    return torch.device(spec)
