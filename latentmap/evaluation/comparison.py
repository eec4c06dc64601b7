"""Comparisons across an atlas's pairs and estimators: the linearity gap, and how well similarity predicts the ratio.

* **Linearity gap** of a pair: ratio(linear map) − ratio(MLP map) on the same test images, with a
  paired bootstrap interval; per relocation type, the mean, smallest and largest gap over its pairs.
  Both ratios divide by B's own reconstruction MSE, so the gap is the relocated MSE the linear map
  adds over the MLP, in units of B's own error: not a share of anything (it can exceed 1, or be
  negative where the MLP does worse); what remains of the MLP's ratio above 1 is information (or
  decoder behaviour) a map of the latents alone does not recover.
* **Similarity as a predictor**: Spearman's rank correlation, over ordered pairs, between the
  linear CKA (or SVCCA) of the two spaces and each estimator's ratio. Similarity is symmetric and the
  ratio is not, so both directions of a pair share one similarity value.

Functions take an ``AtlasResult`` (latentmap.evaluation.atlas) and return pandas frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from latentmap.evaluation.distribution import bootstrap_difference_interval
from latentmap.evaluation.relocation import RELOCATION_TYPES
from latentmap.evaluation.similarity import spearman

if TYPE_CHECKING:
    import pandas as pd

# ``atlas`` below is an AtlasResult: latentmap.evaluation.atlas imports this module, so it is typed Any here.

LINEAR_ESTIMATORS = ("linear",)
NONLINEAR_ESTIMATORS = ("mlp",)


def _first_of(atlas: Any, names: Iterable[str]) -> str | None:
    return next((label for label, info in atlas.estimators.items() if info["estimator"] in names), None)


def similarity_frame(atlas: Any) -> pd.DataFrame:
    """One row per ordered pair: source, target, type, cka, svcca, then ``ratio[LABEL]`` for every estimator."""
    import pandas as pd

    names = atlas.similarity.get("names", [])
    index = {n: k for k, n in enumerate(names)}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in atlas.results:
        row = rows.setdefault((r.source, r.target), {"source": r.source, "target": r.target, "type": r.type})
        i, j = index.get(r.source), index.get(r.target)
        for kind in ("cka", "svcca"):
            row[kind] = float(atlas.similarity[kind][i][j]) if i is not None and j is not None else math.nan
        row[f"ratio[{r.estimator}]"] = r.ratio
    return pd.DataFrame(list(rows.values()))


def similarity_prediction(atlas: Any) -> pd.DataFrame:
    """Per estimator and similarity measure: Spearman's rho (and p-value) of similarity against ratio over pairs.

    Two rows per measure: against the ratio of each ordered pair A -> B, and against the geometric mean of
    the ratios of both directions over unordered pairs (a symmetric similarity cannot tell A -> B from
    B -> A; the ratio is relative to the target's own error, so the two directions can differ widely).
    A negative rho means more similar spaces relocate better, as one would hope a similarity measure says.
    """
    import numpy as np
    import pandas as pd

    frame = similarity_frame(atlas)
    rows = []
    for label in atlas.estimators:
        column = f"ratio[{label}]"
        if column not in frame:
            continue
        ratio = {(s, t): v for s, t, v in zip(frame["source"], frame["target"], frame[column])}
        both = frame[[s < t and (t, s) in ratio for s, t in zip(frame["source"], frame["target"])]]
        symmetric = [float(np.sqrt(ratio[(s, t)] * ratio[(t, s)])) for s, t in zip(both["source"], both["target"])]
        for kind in ("cka", "svcca"):
            for of, sim, values in (("A -> B", frame[kind], frame[column]),
                                    ("both directions (geometric mean)", both[kind], symmetric)):
                rho, p, n = spearman(sim, values)
                rows.append({"estimator": label, "similarity": kind, "ratio_of": of, "spearman_rho": rho,
                             "p_value": p, "pairs": n})
    return pd.DataFrame(rows)


def linearity_gap(atlas: Any, linear: str | None = None,
                  nonlinear: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(per-pair frame, per-type frame) of ratio(linear) − ratio(nonlinear), or None when either is missing.

    ``linear``/``nonlinear`` are estimator labels; by default the first ``linear`` and the first ``mlp`` of the atlas.
    """
    import pandas as pd

    linear = linear or _first_of(atlas, LINEAR_ESTIMATORS)
    nonlinear = nonlinear or _first_of(atlas, NONLINEAR_ESTIMATORS)
    if linear is None or nonlinear is None or linear == nonlinear:
        return None
    by_key = {(r.estimator, r.source, r.target): r for r in atlas.results}
    rows = []
    for r in atlas.results_of(linear):
        other = by_key.get((nonlinear, r.source, r.target))
        if other is None:
            continue
        own, rel_lin = atlas.per_image.get((linear, r.source, r.target), (None, None))
        _, rel_non = atlas.per_image.get((nonlinear, r.source, r.target), (None, None))
        low, high = (bootstrap_difference_interval(own, rel_lin, rel_non, seed=atlas.seed) if own is not None
                     else (math.nan, math.nan))
        rows.append({"type": r.type, "source": r.source, "target": r.target, f"ratio[{linear}]": r.ratio,
                     f"ratio[{nonlinear}]": other.ratio, "gap": r.ratio - other.ratio, "gap_low": low,
                     "gap_high": high})
    pairs = pd.DataFrame(rows)
    if pairs.empty:
        return None
    types = (pairs.groupby("type")
             .agg(pairs=("gap", "size"), mean_ratio_linear=(f"ratio[{linear}]", "mean"),
                  mean_ratio_nonlinear=(f"ratio[{nonlinear}]", "mean"), mean_gap=("gap", "mean"),
                  min_gap=("gap", "min"), max_gap=("gap", "max"))
             .reset_index())
    types.insert(1, "type_name", [RELOCATION_TYPES.get(int(t), "") for t in types["type"]])
    types.attrs.update(linear=linear, nonlinear=nonlinear)
    pairs.attrs.update(linear=linear, nonlinear=nonlinear)
    return pairs, types
