"""Support-set numbers against hand computations on hand-built cases."""

import math

import pandas as pd
import pytest

from latentmap.support.anchors import summarize


def test_anchor_summary_is_the_hand_computed_means_over_pairs_then_seeds():
    rows = []
    # relocated_mse per (strategy, size, seed) is the mean over two model pairs: 1 + seed + size/10 (+ 1 for random)
    for strategy in ("random", "sectors"):
        for size in (20, 10):
            for seed in (0, 1):
                base = 1 + seed + size / 10 + (strategy == "random")
                for delta in (-0.5, 0.5):
                    rows.append({"strategy": strategy, "size": size, "seed": seed, "relocated_mse": base + delta,
                                 "latent_r2": 0.5 + delta / 10, "support_pairwise_mse": 0.01 * size})
    s = summarize(pd.DataFrame(rows))
    # size first, then the strategies in the order the report lists them (sectors before random)
    assert list(zip(s["size"], s["strategy"])) == [(10, "sectors"), (10, "random"), (20, "sectors"), (20, "random")]
    first = s.iloc[0]  # sectors, size 10: per-seed means 2 and 3
    assert first["relocated_mse"] == pytest.approx(2.5)
    assert first["relocated_mse_std"] == pytest.approx(math.sqrt(0.5))  # sample std of (2, 3)
    assert (first["relocated_mse_min"], first["relocated_mse_max"]) == (pytest.approx(2.0), pytest.approx(3.0))
    assert first["latent_r2"] == pytest.approx(0.5) and first["seeds"] == 2
    assert first["support_pairwise_mse"] == pytest.approx(0.1)
    assert first["vs_random"] == pytest.approx(2.5 / 3.5)
    assert s.iloc[1]["vs_random"] == pytest.approx(1.0)
    assert s.iloc[2]["relocated_mse"] == pytest.approx(3.5) and s.iloc[2]["vs_random"] == pytest.approx(3.5 / 4.5)
