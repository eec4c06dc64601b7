"""One way to build a settings dataclass from defaults and keyword overrides (the benchmark and builder settings)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from latentmap.errors import ConfigError

_Settings = TypeVar("_Settings", bound="SettingsOf")


class SettingsOf:
    """Mixin for frozen settings dataclasses: ``Settings.of(settings, **options)`` is ``settings`` (default: the
    defaults) with ``options`` replaced, each a field of the class; an unknown name is one ConfigError line."""

    WHAT = "settings"  # how an error names them: "unknown expressiveness settings: ..."
    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, Any]]

    @classmethod
    def of(cls: type[_Settings], settings: _Settings | None = None, **options: Any) -> _Settings:
        """``settings`` (default: the defaults) with ``options`` replaced; an unknown name raises ConfigError."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown {cls.WHAT}: {', '.join(unknown)}")
        return replace(settings or cls(), **options)
