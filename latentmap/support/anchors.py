"""Deprecated home of the anchor-strategy comparison: it is an evaluation, now :mod:`latentmap.evaluation.anchors`.

Old imports (``from latentmap.support.anchors import compare_anchors``) keep working with a DeprecationWarning;
the names resolve lazily, so this module imports nothing from the evaluation layer itself.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

NEW_HOME = "latentmap.evaluation.anchors"


def __getattr__(name: str) -> Any:
    module = importlib.import_module(NEW_HOME)
    if not hasattr(module, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"latentmap.support.anchors.{name} moved to {NEW_HOME}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(module, name)
