"""Comparisons of estimators across an atlas, against hand-built atlases."""

import math

import pytest

from latentmap.evaluation.comparison import linearity_gap
from test_frames import atlas


def test_linearity_gap_by_pair_and_by_type_by_hand():
    """linear ratios 1.5 (a -> b) and 2.5 (b -> a), mlp 1.25 and 1.75: gaps 0.25 and 0.75, one type."""
    pairs, types = linearity_gap(atlas(), "linear", "mlp")
    records = pairs.to_dict("records")
    assert [{k: v for k, v in r.items() if not k.startswith("gap_")} for r in records] == [
        {"type": 1, "source": "a", "target": "b", "ratio[linear]": 1.5, "ratio[mlp]": 1.25, "gap": 0.25},
        {"type": 1, "source": "b", "target": "a", "ratio[linear]": 2.5, "ratio[mlp]": 1.75, "gap": 0.75}]
    assert all(math.isnan(r["gap_low"]) and math.isnan(r["gap_high"]) for r in records)  # no per-image errors
    (row,) = types.to_dict("records")
    assert {k: v for k, v in row.items() if k != "type_name"} == pytest.approx(
        {"type": 1, "pairs": 2, "mean_ratio_linear": 2.0, "mean_ratio_nonlinear": 1.5, "mean_gap": 0.5,
         "min_gap": 0.25, "max_gap": 0.75}, rel=1e-12)
    assert row["type_name"] and (pairs.attrs, types.attrs) == ({"linear": "linear", "nonlinear": "mlp"},) * 2
