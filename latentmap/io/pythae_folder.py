"""pythae model folders as files: what one holds and what loading it would unpickle, read without pythae or torch.

pythae keeps a model in a folder: ``model_config.json``, ``model.pt`` (a torch state dict) and,
for every network that is not one of pythae's defaults, a cloudpickle of it. Its loader unpickles
``<network>.pkl`` whenever the config sets ``uses_default_<network>`` to false: the encoder and
the decoder (every model), the metric (RHVAE), the discriminator (VAEGAN, Adversarial_AE).

:func:`pickled_networks` lists those files from the config and the folder alone, before anything
is loaded, so consent is decided on everything the loader would unpickle. It errs on the side of
asking: pythae reads the flags through pydantic, which also takes ``"false"``, ``"no"``, ``0`` or
``"0"`` as false, so anything but a literal JSON ``true`` (or the flag left out: pythae's default)
counts as a pickled network; so does a ``<network>.pkl`` lying in the folder, and any other
``uses_default_*`` flag a later pythae may add.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from latentmap.errors import CheckpointError

PYTHAE_CONFIG = "model_config.json"
PYTHAE_WEIGHTS = "model.pt"
DEFAULT_FLAG = "uses_default_"
#: the networks pythae's loaders rebuild from a pickle when the config says they are custom
NETWORKS = ("encoder", "decoder", "metric", "discriminator")


def is_pythae_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding pythae's ``model_config.json`` and ``model.pt``."""
    folder = Path(str(path))
    return (folder / PYTHAE_CONFIG).is_file() and (folder / PYTHAE_WEIGHTS).is_file()


def read_pythae_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``model_config.json`` of a pythae folder as a dict; CheckpointError when it is not a JSON object."""
    file = Path(str(folder)) / PYTHAE_CONFIG
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from exc
    except RecursionError:  # a hostile config nested past the parser's depth
        raise CheckpointError(f"{file} is not valid JSON: nested too deeply") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(config).__name__} instead")
    return config


def pickled_networks(folder: str | os.PathLike[str], config: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(network, file name) for every pickle loading the pythae folder could unpickle, in the order pythae reads them.

    A network counts when its ``uses_default_<network>`` flag is anything but JSON ``true`` or absent,
    or when ``<network>.pkl`` exists in the folder."""
    folder = Path(str(folder))
    config = read_pythae_config(folder) if config is None else config
    flagged = [key[len(DEFAULT_FLAG):] for key in config if isinstance(key, str) and key.startswith(DEFAULT_FLAG)]
    networks = list(NETWORKS) + [name for name in flagged if name not in NETWORKS]
    found = []
    for name in networks:
        file = f"{name}.pkl"
        if config.get(DEFAULT_FLAG + name, True) is not True or (folder / file).exists():
            found.append((name, file))
    return found
