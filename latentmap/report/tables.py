"""Tables people read: numbers to three significant digits and column headers in words, with units.

CSV and JSON keep every column under its machine name and full precision; only the HTML shows
``display_frame(frame)``: known column names become the labels below, unknown snake_case names
lose their underscores, floats are written by :func:`sig`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

MSE = "MSE"
# said once under a table that shows such a column
UNIT_NOTES = {"MSE": "MSE: mean squared error per pixel, intensities in [0, 1].",
              "SSIM": "SSIM: structural similarity, 1 = identical.",
              "R²": "R²: share of the target latents' variance the map explains (1 = all)."}
# machine name -> header shown in the HTML (units in the header, not in every cell)
COLUMN_LABELS = {
    "model": "model", "kind": "kind", "latent_dim": "latent size", "n_images": "images", "test_images": "test images",
    "test_mse": f"test {MSE}", "mse": f"reconstruction {MSE}",
    "inverter_mse_own_samples": f"inverter {MSE}, own samples",
    "inverter_mse_real_test": f"inverter {MSE}, real test images",
    "own_real_gap": "real / own samples (inverter MSE)",
    # relocation
    "type": "type", "source": "source A", "target": "target B", "estimator": "estimator",
    "source_mse": f"A's own {MSE}", "target_mse": f"B's own {MSE}", "relocated_mse": f"relocated {MSE}",
    "ratio": "ratio (relocated / B's own)", "ratio_low": "ratio, 95% low", "ratio_high": "ratio, 95% high",
    "image_ratio_median": "per-image ratio, median", "image_ratio_p90": "per-image ratio, 90th pct",
    "latent_mse": "latent MSE", "latent_r2": "latent R²", "relocated_ssim": "relocated SSIM",
    "target_ssim": "B's own SSIM", "cycle_mse": f"cycle A→B→A {MSE}",
    "cycle_ratio": "cycle ratio (cycle / A's own)",
    "relocated_lpips": "relocated LPIPS", "target_lpips": "B's own LPIPS", "label": "label", "name": "label name",
    # anchors
    "strategy": "anchor strategy", "size": "anchors", "relocated_mse_std": "relocated MSE, std over seeds",
    "relocated_mse_min": "relocated MSE, min over seeds", "relocated_mse_max": "relocated MSE, max over seeds",
    "support_pairwise_mse": "mean pairwise MSE of the anchors", "seeds": "seeds",
    "vs_random": "relocated MSE / random anchors'", "fit_images": "fit images",
    "target_reconstruction_mse": f"B's own {MSE}",
    # diagnostics
    "inactive_variables": "inactive variables", "variance_law_mean": "Var(mu) + E[σ²], mean",
    "mean_variance": "variance of the encodings, mean", "mean_radius": "encodings' radius, mean",
    "prior_mean_radius": "prior samples' radius, mean", "sqrt_d": "√d",
    "outside_prior_99": "share of encodings beyond the prior's 99% radius",
    "components_90": "PCA components for 90%", "components_99": "PCA components for 99%",
    "variance_loss": "variance loss Δ_var", "prior": "compared with",
    # interpolation
    "pair": "pair", "path": "path", "partner": "carried into",
    "midpoint_radius": "radius at the midpoint / prior's typical",
    "carried_path_mse": f"carried path vs own path, {MSE}",
    # model records
    "origin": "loaded from", "spec": "name, path or spec", "fingerprint": "fingerprint (sha256, first 12 hex)",
}


MISSING = "–"  # how a missing number is written: an en dash


def sig(value: Any, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros kept (1.50, 0.00684, 123, 6,000, 1.23e-05).

    The one number formatter of every table, sentence and legend. An en dash for a missing value
    (None, NaN); integers (counts) are written in full (12,345), floats rounded (12,300).
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == 0:
        return "0"
    rounded = float(f"{v:.{digits}g}")
    magnitude = math.floor(math.log10(abs(rounded)))
    if magnitude >= digits:  # 6,000 rather than 6e+03
        return f"{rounded:,.0f}"
    if magnitude < -4:
        return f"{v:.{digits - 1}e}"
    return f"{rounded:.{max(0, digits - 1 - magnitude)}f}"


def interval(value: object, low: float | None, high: float | None, digits: int = 3) -> str:
    """A value and its interval, each by :func:`sig` ("3.70 (3.41–4.00)"); the value alone when the interval is
    missing."""
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return sig(value, digits)
    if float(low) > float(high):  # printed as is, it would read as an interval the other way round
        raise ValueError(f"an interval must have low <= high, got low {low} and high {high}")
    return f"{sig(value, digits)} ({sig(low, digits)}–{sig(high, digits)})"


def overlap_clause(best: tuple[str, float | None, float | None],
                   others: Sequence[tuple[str, float | None, float | None]]) -> str:
    """"; its interval overlaps those of b, c, so that order is not settled" for the ``others`` ((name, low, high)) whose interval meets ``best``'s
    ((name, low, high)); empty when none does or ``best`` has no interval (a missing bound: never overlapping)."""
    def known(*values: float | None) -> bool:
        return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)

    _, low, high = best
    if low is None or high is None or not known(low, high):
        return ""
    names = [name for name, lo, hi in others
             if lo is not None and hi is not None and known(lo, hi) and lo <= high and low <= hi]
    if not names:
        return ""
    return (f"; its interval overlaps {'that' if len(names) == 1 else 'those'} of {', '.join(names)}, so that "
            "order is not settled")


def percent(value: float | None, digits: int = 2) -> str:
    """A share in [0, 1] as a percentage with ``digits`` significant digits, trailing zeros kept (1.8%, 5.0%, 72%,
    100%, 0.050%); 0% for nothing; an en dash for a missing one. The one percent formatter of the reports."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    pct = 100 * float(value)
    if pct == 0 or abs(float(f"{pct:.{digits}g}")) >= 10 ** (digits - 1):  # whole numbers: 72%, 100%
        return f"{float(f'{pct:.{digits}g}'):g}%"
    return f"{pct:#.{digits}g}%"


CALIBRATION_MARK = " (calibration)"  # appended to the name of a table's real-data row


def calibration_rows(names: Iterable[object]) -> list[int]:
    """Positions of the real-data rows (names ending in :data:`CALIBRATION_MARK`) of a shown table's name column."""
    return [i for i, name in enumerate(names) if str(name).endswith(CALIBRATION_MARK)]


def column_label(name: object) -> str:
    """The header shown for column ``name``: a known label, else a snake_case name without underscores
    (other names, such as a pair "model_a -> model_b", as they are)."""
    text = str(name)
    if text in COLUMN_LABELS:
        return COLUMN_LABELS[text]
    return text.replace("_", " ") if re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)+", text) else text


def unit_notes(columns: Iterable[object]) -> list[str]:
    """The unit notes of the shown headers (each said once)."""
    labels = [column_label(c) for c in columns]
    return [note for key, note in UNIT_NOTES.items() if any(key in label.split() or label.endswith(key)
                                                            for label in labels)]


_NUMBER = re.compile(r"^[-−+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?%?( \(.*\))?$|^[–-]?$|^−?∞$|^\[.*\]$"
                     r"|^\d[\d,.]*–\d[\d,.]*$")  # the last: a range, "1.25–1.46"
MAX_ALIGNED_COLUMNS = 24  # text columns beyond this many stay right-aligned


def text_columns(shown: pd.DataFrame) -> list[int]:
    """1-based positions of the columns holding text rather than numbers (left-aligned in the HTML)."""
    out = []
    for i, col in enumerate(shown.columns, start=1):
        cells = [str(v) for v in shown[col].tolist()]
        if any(not _NUMBER.match(c.strip()) for c in cells):
            out.append(i)
    return [i for i in out if i <= MAX_ALIGNED_COLUMNS]


def display_frame(frame: pd.DataFrame, float_format: str | Callable[[float], str] | None = None,
                  labels: bool = True) -> pd.DataFrame:
    """A copy of ``frame`` as strings for HTML: floats by :func:`sig` (or ``float_format``), readable headers.

    ``float_format`` may be a format string ("{:.3f}") or a callable; integer columns stay whole.
    """
    formatter: Callable[[float], str] = (sig if float_format is None else float_format if callable(float_format)
                                         else float_format.format)
    shown = frame.copy()
    for col in shown.columns:
        series = shown[col]
        if pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_float_dtype(series):
            shown[col] = series.map(lambda v: "" if pd.isna(v) else formatter(v))
        elif pd.api.types.is_integer_dtype(series):
            shown[col] = series.map(sig)
        elif series.dtype == object:  # mixed columns: numbers in them too (None stays empty)
            shown[col] = series.map(lambda v: formatter(v) if isinstance(v, float) and not pd.isna(v)
                                    else "" if v is None or (isinstance(v, float) and pd.isna(v)) else v)
    if labels:
        shown.columns = [column_label(c) for c in shown.columns]
    return shown


def models_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per model record (latentmap.io.model_record): what it is, where it came from, its short fingerprint."""
    from latentmap.io.model_record import NOT_PATHS, short_fingerprint
    from latentmap.io.paths import shown_path

    # a path without this machine's folders: a report reads the same on another machine
    def spec(r: dict[str, Any]) -> str:
        text = r.get("spec") or r.get("path") or ""
        return text if not text or r.get("origin") in NOT_PATHS else shown_path(text)

    return pd.DataFrame([{"model": r.get("name"), "kind": r.get("kind"), "latent_dim": r.get("latent_dim"),
                          "origin": r.get("origin", "path"), "spec": spec(r),
                          "fingerprint": short_fingerprint(r)} for r in records])
