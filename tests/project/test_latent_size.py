"""The latent-size experiment's table (experiments/latent_size.py) from hand-built runs."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("latent_size", Path(__file__).parents[2] / "experiments/latent_size.py")
latent_size = importlib.util.module_from_spec(spec)
spec.loader.exec_module(latent_size)


def _run(d, seed, **values):
    row = {"latent_dim": d, "seed": seed, **{m: 0.0 for m in latent_size.METRICS}}
    row.update(values)
    return row


def test_table_gives_mean_and_spread_over_seeds():
    runs = [_run(2, 0, test_mse=0.04, void_fraction=0.01, inactive=0), _run(2, 1, test_mse=0.06, void_fraction=0.03),
            _run(64, 0, test_mse=0.02, void_fraction=0.5, inactive=50), _run(64, 1, test_mse=0.02, void_fraction=0.7,
                                                                              inactive=54)]
    table = latent_size.summarize(runs)
    assert table["latent_dim"].tolist() == [2, 64] and table["seeds"].tolist() == [2, 2]
    assert table["test_mse_mean"].tolist() == pytest.approx([0.05, 0.02])
    assert table["void_fraction_spread"].tolist() == pytest.approx([0.01, 0.1])  # population std over seeds
    assert table["inactive_mean"].tolist() == pytest.approx([0, 52])
    md = latent_size.markdown(table).splitlines()
    assert len(md) == 4 and md[3].startswith("| 64 | 2 | 0.0200 | 52.0 |")
    assert "0.600 ± 0.100" in md[3]


def test_measure_one_model(tiny_vae_checkpoint):
    import numpy as np
    import torch

    from latentmap import load_dataset, load_model
    from latentmap.evaluation.geometry import void_fraction

    model = load_model(str(tiny_vae_checkpoint), device="cpu")
    test = load_dataset("fashion-mnist", "test").random_subset(100, 0)
    row = latent_size.measure(model, test, model, points=60, seed=0)
    assert row["points"] == 60 and 0 <= row["inactive"] <= 8
    codes = model.encode_all(test.random_subset(60, 0)).double().numpy()
    samples = model.sample_prior(60, torch.Generator().manual_seed(1)).double().numpy()
    assert row["void_fraction"] == void_fraction(samples, codes).fraction
    assert all(0 <= row[m] <= 1 for m in ("precision", "recall", "coverage")) and np.isfinite(row["density"])
