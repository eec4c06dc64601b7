"""Comparisons of estimators across an atlas, against hand-built atlases."""

import math

import pytest

from latentmap.evaluation.comparison import linearity_gap
from tests.io.test_frames import atlas


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


def test_similarity_prediction_is_scipys_spearman_over_ordered_and_unordered_pairs():
    """Three models: six ordered pairs against CKA/SVCCA, and three unordered pairs against the geometric mean
    of both directions' ratios, each rho and p-value scipy's spearmanr."""
    import numpy as np
    from scipy.stats import spearmanr

    from latentmap.evaluation.atlas import AtlasResult
    from latentmap.evaluation.comparison import similarity_prediction
    from tests.io.test_frames import relocation

    ratio = {("a", "b"): 1.5, ("a", "c"): 3.0, ("b", "a"): 2.0, ("b", "c"): 1.2, ("c", "a"): 4.0, ("c", "b"): 1.1}
    cka = np.array([[1.0, 0.9, 0.3], [0.9, 1.0, 0.6], [0.3, 0.6, 1.0]])
    svcca = np.array([[1.0, 0.5, 0.7], [0.4, 1.0, 0.8], [0.2, 0.1, 1.0]])
    result = AtlasResult([relocation(s, t, r) for (s, t), r in ratio.items()], [{"name": n} for n in "abc"],
                         {"kind": "samples", "count": 10}, {}, estimators={"linear": {"estimator": "linear"}},
                         similarity={"names": ["a", "b", "c"], "cka": cka.tolist(), "svcca": svcca.tolist()})
    rows = similarity_prediction(result).to_dict("records")
    index = {"a": 0, "b": 1, "c": 2}
    ordered = list(ratio)
    unordered = [("a", "b"), ("a", "c"), ("b", "c")]
    geometric = [np.sqrt(ratio[(s, t)] * ratio[(t, s)]) for s, t in unordered]
    expected = []
    for kind, matrix in (("cka", cka), ("svcca", svcca)):
        for of, pairs, values in (("A -> B", ordered, [ratio[p] for p in ordered]),
                                  ("both directions (geometric mean)", unordered, geometric)):
            ref = spearmanr([matrix[index[s], index[t]] for s, t in pairs], values)
            expected.append({"estimator": "linear", "similarity": kind, "ratio_of": of,
                             "spearman_rho": ref.statistic, "p_value": ref.pvalue, "pairs": len(pairs)})
    assert len(rows) == len(expected) == 4
    for got, want in zip(rows, expected):
        assert {k: got[k] for k in ("estimator", "similarity", "ratio_of", "pairs")} == \
            {k: want[k] for k in ("estimator", "similarity", "ratio_of", "pairs")}
        assert got["spearman_rho"] == pytest.approx(want["spearman_rho"], rel=1e-12)
        assert got["p_value"] == pytest.approx(want["p_value"], rel=1e-9)
