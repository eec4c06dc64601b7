"""Results as tables in notebooks: ``to_frame()`` to pandas and ``_repr_html_`` from it, as pandas and scikit-learn do.

A result class inherits :class:`FrameRepr` and implements ``to_frame()`` (its natural table: one row per
pair, model, generator, image, ...) and, optionally, ``_frame_caption()``; Jupyter then shows the table
with a caption naming the models and the short fingerprint of each one whose weights' sha256 is recorded.
:class:`MapRepr` does the same for a map estimator: its hyperparameters and, once fitted, its fit metrics.

Torch-free, and pandas is imported only when a table is asked for, so every layer may use this module.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS = 60  # a longer table shows its head and tail in a notebook; to_frame() has every row
FINGERPRINT_CHARS = 12


def short_fingerprint(digest: object) -> str | None:
    """The first 12 hex digits of a sha256 (a ``sha256:`` prefix dropped); None for none."""
    if not digest:
        return None
    text = str(digest)
    return text.split(":", 1)[1][:FINGERPRINT_CHARS] if text.startswith("sha256:") else text[:FINGERPRINT_CHARS]


def model_label(model: object) -> str:
    """A model named in a caption: its name, and its short fingerprint where the record holds one.

    ``model`` is a name, or a record such as a map folder's or an atlas's (``name``, ``sha256`` or
    ``fingerprint``)."""
    if not isinstance(model, dict):
        return str(model)
    name = str(model.get("name", "?"))
    digest = short_fingerprint(model.get("fingerprint") or model.get("sha256"))
    return f"{name} [{digest}]" if digest else name


def caption(title: str, models: Iterable[object] | None = ()) -> str:
    """``title``, then ``models: a [0123456789ab], b`` when any model is named."""
    labels = [model_label(m) for m in models or ()]
    return f"{title}; models: {', '.join(labels)}" if labels else title


def frame_html(frame: pd.DataFrame, title: str = "", max_rows: int = MAX_ROWS) -> str:
    """A pandas frame as an HTML table with ``title`` as its caption (escaped)."""
    table = frame.to_html(max_rows=max_rows, float_format=_float, na_rep="", border=0, classes="latentmap")
    if title:
        start = table.index(">", table.index("<table")) + 1
        table = f"{table[:start]}\n  <caption>{html.escape(title)}</caption>{table[start:]}"
    return f"<div>{table}</div>"


def _float(value: float) -> str:
    return f"{value:.4g}"


def records_frame(rows: Iterable[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    """A pandas frame of dict rows, with ``columns`` (in order) even when there is no row."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=columns)


class FrameRepr:
    """Mixin: ``_repr_html_`` (Jupyter) renders ``to_frame()`` as a table under ``_frame_caption()``.

    A result whose frame is one wide row (``_one_row = True``) shows it as a column of values, one line per field.
    """

    _one_row = False

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - each result class gives its own
        """The result as a pandas frame (each result class gives its own)."""
        raise NotImplementedError

    def _frame_caption(self) -> str:
        return type(self).__name__

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        if self._one_row and len(frame) == 1:
            frame = frame.T.set_axis(["value"], axis=1)
        return frame_html(frame, self._frame_caption())


class MapRepr:
    """Mixin for map estimators (ahead of scikit-learn's ``BaseEstimator`` among the bases): a notebook shows the
    estimator's hyperparameters and, once fitted, its sizes and fit metrics (``fit_metrics_``)."""

    if TYPE_CHECKING:  # given by the estimator class and scikit-learn's BaseEstimator, later in the bases
        estimator_name: str | None
        fit_metrics_: dict[str, Any]

        def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def to_frame(self) -> pd.DataFrame:
        """One row per hyperparameter, then (fitted) per learned size and fit metric: ``part``, ``name``, ``value``."""
        rows = [{"part": "parameter", "name": k, "value": _cell(v)} for k, v in sorted(self.get_params().items())]
        if getattr(self, "fit_metrics_", None) is not None:
            for name in ("n_features_in_", "n_targets_", "n_samples_seen_"):
                if getattr(self, name, None) is not None:
                    rows.append({"part": "fitted", "name": name, "value": _cell(getattr(self, name))})
            rows += [{"part": "fit metric", "name": k, "value": _cell(v)} for k, v in self.fit_metrics_.items()]
        return records_frame(rows, ["part", "name", "value"])

    def _repr_html_(self) -> str:
        name = self.estimator_name or type(self).__name__
        fitted = getattr(self, "fit_metrics_", None) is not None
        return frame_html(self.to_frame(), f"{type(self).__name__} ({name}), {'fitted' if fitted else 'not fitted'}")


def _cell(value: Any) -> Any:
    """A value as one table cell: numbers and words as they are, anything else as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)  # numpy scalars, 0-d tensors
    except (TypeError, ValueError):
        return str(value)
