"""The registry of dataset kinds and the spec syntax ``KIND[:PATH][?key=value&...]``."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl

from latentmap.errors import ConfigError

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset

Loader = TypeVar("Loader", bound="Callable[..., ImageDataset]")


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset kind: its loader, where it comes from, its help line and the options it takes."""

    name: str
    loader: Callable[..., ImageDataset]  # (path=, split=, data_dir=, **options)
    describe: Callable[..., tuple[bool, str]]  # -> (available here?, where from / how to get it)
    help: str
    options: tuple[str, ...] = ()  # the ?key=value settings (or keyword options) the loader takes
    path: str = "none"  # "none": the spec takes no :PATH, "optional" or "required"


_DATASETS: dict[str, DatasetSource] = {}


def register_dataset(name: str, describe: Callable[..., tuple[bool, str]], help: str, *,
                     options: tuple[str, ...] = (), path: str = "none") -> Callable[[Loader], Loader]:
    """Decorator: register a loader ``(path=, split=, data_dir=, **options) -> ImageDataset`` as the dataset
    ``name``; ``describe(data_dir)`` says whether it is available here and where from; ``path`` says whether
    the spec takes a ``:PATH`` (``none``, ``optional`` or ``required``)."""
    if path not in ("none", "optional", "required"):
        raise ValueError(f"path must be 'none', 'optional' or 'required', got {path!r}")

    def decorator(loader: Loader) -> Loader:
        _DATASETS[name] = DatasetSource(name, loader, describe, help, tuple(options), path)
        return loader

    return decorator


def dataset_sources() -> dict[str, DatasetSource]:
    """Every registered dataset kind, by name (a copy)."""
    return dict(_DATASETS)


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``"folder:/data/celeba?crop=25,45,153,173&size=64"`` -> ("folder", "/data/celeba", {...})."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"dataset spec must be a non-empty string, got {spec!r} instead")
    head, _, query = spec.partition("?")
    kind, sep, rest = head.partition(":")
    path = rest if sep else None
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"dataset spec '{spec}' sets {', '.join(repeated)} more than once")
    return kind, path, dict(pairs)


def check_options(source: DatasetSource, path: str | None, options: dict[str, object]) -> None:
    """Refuse settings the dataset does not take, and a path where it takes none."""
    unknown = sorted(key for key in options if key not in source.options)
    if unknown:
        takes = f"it takes {', '.join(source.options)}" if source.options else "it takes none"
        raise ConfigError(f"dataset '{source.name}' has no option {', '.join(map(repr, unknown))}; {takes}")
    if path and source.path == "none":
        raise ConfigError(f"dataset '{source.name}' takes no path, got '{source.name}:{path}'")
