"""Support-set numbers against hand computations on hand-built cases."""

import math

import pandas as pd
import pytest

from latentmap.evaluation.anchors import summarize


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


def test_image_statistics_against_scipy_and_by_hand():
    from types import SimpleNamespace

    import numpy as np
    import torch
    from scipy.spatial.distance import pdist

    from latentmap.support.build import image_statistics, mean_pairwise_mse

    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 3, 3, generator=g)
    flat = images.flatten(1).double().numpy()
    assert mean_pairwise_mse(images) == pytest.approx(pdist(flat, "sqeuclidean").mean() / 9, rel=1e-12)
    # a pool of two distinct images: every random pair is that pair
    pool_images = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)])
    dataset = SimpleNamespace(batch=lambda idx: pool_images[torch.as_tensor(idx)])
    stats = image_statistics(images, dataset, np.array([0, 1]), pairs=7, seed=0)
    assert stats["dataset_random_pairs_mse"] == pytest.approx(0.25)
    assert stats["support_pairwise_mse"] == pytest.approx(round(mean_pairwise_mse(images), 6))
    assert stats["pairwise_mse_ratio"] == pytest.approx(round(mean_pairwise_mse(images) / 0.25, 6))
    assert stats["random_pairs"] == 7
    # one support image: no pairs, no ratio
    lone = image_statistics(images[:1], dataset, np.array([0, 1]), pairs=7, seed=0)
    assert lone["support_pairwise_mse"] is None and lone["pairwise_mse_ratio"] is None


def test_information_gain_record_ranks_variables_and_rounds_gains_to_8_decimals():
    """Gains [0.1, 0.123456789123, 0.1 (a tie), 0.5]: ranking by gain, ties in variable order; 8 decimals."""
    import numpy as np

    from latentmap.support.info_gain import InformationGain

    info = InformationGain(np.array([0.1, 0.123456789123, 0.1, 0.5]), 40, batch_size=16, threads=2)
    assert info.to_dict() == {"images": 40, "ranking": [3, 1, 0, 2], "gains": [0.5, 0.12345679, 0.1, 0.1],
                              "batch_size": 16, "threads": 2}
