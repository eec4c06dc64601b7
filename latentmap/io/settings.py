"""One way to build a settings dataclass from defaults and keyword overrides (the benchmark and builder settings)."""

from __future__ import annotations

from dataclasses import fields, replace

from latentmap.errors import ConfigError


class SettingsOf:
    """Mixin for frozen settings dataclasses: ``Settings.of(settings, **options)`` is ``settings`` (default: the
    defaults) with ``options`` replaced, each a field of the class; an unknown name is one ConfigError line."""

    WHAT = "settings"  # how an error names them: "unknown expressiveness settings: ..."

    @classmethod
    def of(cls, settings=None, **options):
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown {cls.WHAT}: {', '.join(unknown)}")
        return replace(settings or cls(), **options)
