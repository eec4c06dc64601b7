"""Device selection shared by the library and the CLI."""

from __future__ import annotations

import torch

from latentmap.errors import ConfigError


def resolve_device(device=None) -> torch.device:
    """Turn ``None``/``"auto"``/``"cpu"``/``"cuda[:i]"``/``torch.device`` into a usable device."""
    if isinstance(device, torch.device):
        spec = str(device)
    else:
        spec = "auto" if device in (None, "auto") else str(device)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{spec}' was requested but CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got '{spec}' instead") from exc
