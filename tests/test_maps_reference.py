"""Map-side numbers against independent references (scikit-learn, hand formulas on hand-built cases)."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from latentmap.errors import UnderdeterminedError
from latentmap.maps.linear import LinearMap
from latentmap.maps.mlp import MLPMap
from latentmap.maps.piecewise import PiecewiseLinearMap
from latentmap.maps.registry import parse_estimator
from latentmap.maps.validation import leave_one_out_r2


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_leave_one_out_r2_is_sklearn_leave_one_out_ridge(bias, alpha):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    # targets with very different column means and spreads: R² is per column, about each column's own mean
    y = x @ rng.normal(size=(3, 2)) + rng.normal(scale=0.5, size=(9, 2)) + np.array([5.0, -40.0])
    y[:, 1] *= 10
    pred = cross_val_predict(Ridge(alpha=alpha, fit_intercept=bias, solver="svd"), x, y, cv=LeaveOneOut())
    expected = r2_score(y, pred, multioutput="uniform_average")
    assert leave_one_out_r2(x, y, bias=bias, alpha=alpha) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_leave_one_out_r2_is_undefined_below_three_pairs_and_for_interpolating_fits():
    x = np.arange(6.0).reshape(3, 2) ** 2
    assert leave_one_out_r2(x[:2], x[:2], bias=True, alpha=0.0) is None
    # 3 pairs, 2 slopes + an intercept: every pair fixes its own prediction
    assert leave_one_out_r2(x, np.ones((3, 1)) * np.arange(3)[:, None], bias=True, alpha=0.0) is None


def test_declared_intervals_accept_exactly_their_range():
    """An open interval (MLP lr > 0) and a closed one (ridge alpha >= 0), checked value by value; the message
    names the parameter and the value, as scikit-learn's constraints describe themselves."""
    from latentmap.errors import ConfigError
    from latentmap.maps.checks import check_constraints
    from latentmap.maps.mlp import MLPMap

    for good in (0.5, np.float32(0.25), 1e-12, 3):
        check_constraints(MLPMap(lr=good))
    for bad in (0, 0.0, -0.1, "0.5", None, math.nan):
        with pytest.raises(ConfigError, match="lr must be"):
            check_constraints(MLPMap(lr=bad))
    for good in (0, 0.0, 1e300, "auto"):
        check_constraints(LinearMap(alpha=good))
    for bad in (-1e-9, "fast", None):
        with pytest.raises(ConfigError, match=r"alpha must be .*got"):
            check_constraints(LinearMap(alpha=bad))


def test_anchor_defaults_apply_only_to_anchor_fits():
    spec = parse_estimator("linear")
    plain, anchored = spec.make(), spec.make(anchors=True)
    assert plain.bias is True and plain.alpha == type(plain)().alpha
    assert anchored.bias is False and anchored.alpha == "auto"
    # what the spec sets wins over the anchor defaults
    assert parse_estimator("linear:bias=true").make(anchors=True).bias is True


def test_piecewise_with_no_pairs_says_so():
    with pytest.raises(UnderdeterminedError, match="seen no latent pairs"):
        PiecewiseLinearMap(n_cells=2).fit_batches([])


def test_piecewise_needs_as_many_pairs_as_cells_and_no_more():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    with pytest.raises(UnderdeterminedError, match="need at least 4"):
        PiecewiseLinearMap(n_cells=4, alpha=1.0).fit(x[:3], x[:3])
    m = PiecewiseLinearMap(n_cells=4, alpha=1.0).fit(x, 2 * x)
    assert m._centres.shape == (4, 2)
    # four cells for four points: every point is its own centre
    assert sorted(map(tuple, m._centres.tolist())) == sorted(map(tuple, x.tolist()))


def test_mlp_validation_metrics_are_those_of_its_held_out_pairs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(3, 2, generator=g, dtype=torch.float64)) + 3.0
    m = MLPMap(hidden=(8,), max_epochs=5, patience=2, validation_fraction=0.25, seed=7).fit(x, y)
    n_val = round(40 * 0.25)
    val = torch.randperm(40, generator=torch.Generator().manual_seed(7))[:n_val]
    pred = np.asarray(m.transform(x[val]), dtype=np.float64)
    truth = y[val].numpy()
    assert m.fit_metrics_["n_validation"] == n_val and m.fit_metrics_["n_train"] == 40 - n_val
    assert m.fit_metrics_["validation_latent_mse"] == pytest.approx(float(((pred - truth) ** 2).mean()), rel=1e-5)
    assert m.fit_metrics_["validation_r2"] == pytest.approx(r2_score(truth, pred), rel=1e-5, abs=1e-6)


def test_fit_source_names_every_choice_given_at_once():
    from latentmap.errors import ConfigError
    from latentmap.maps.fitting import resolve_fit_source

    with pytest.raises(ConfigError, match="exactly one of .*; got support set and samples$"):
        resolve_fit_source(support_set="x", samples=3)
    with pytest.raises(ConfigError, match="to fit on$"):
        resolve_fit_source()


def test_fit_source_defaults_bias_free_ridge_for_anchors_only():
    from latentmap.maps.fitting import FitSource

    anchors = FitSource("support-set", 40)
    m = anchors.new_map()
    assert (m.bias, m.alpha, m.method) == (False, "auto", "lstsq")
    assert anchors.new_map(method="procrustes").alpha == 0.0
    assert anchors.new_map(bias=True, alpha=0.5).get_params()["alpha"] == 0.5
    dataset = FitSource("dataset", 1000).new_map()
    assert (dataset.bias, dataset.alpha) == (True, 0.0)


def test_linear_map_errors_word_for_word():
    """What the terminal prints for the three ways a LinearMap cannot be solved."""
    import re

    from latentmap.errors import NotFittedError
    from latentmap.maps.linear import LinearMap

    with pytest.raises(NotFittedError) as e:
        LinearMap().transform(np.zeros((1, 3)))
    assert str(e.value) == "this LinearMap is not fitted yet; call fit or partial_fit with latent pairs first"
    with pytest.raises(UnderdeterminedError) as e:
        LinearMap().fit(np.zeros((0, 3)), np.zeros((0, 2)))
    assert str(e.value) == "this LinearMap has seen no latent pairs; it needs images to fit on"
    with pytest.raises(UnderdeterminedError) as e:
        LinearMap(bias=False).fit(np.ones((2, 3)), np.ones((2, 2)))
    assert re.fullmatch(r"fitting a bias-free map from 3-dimensional latents needs at least 3 image pairs, got 2; "
                        r"use more images, set alpha > 0 \(ridge\)", str(e.value))
    with pytest.raises(UnderdeterminedError, match=r"^fitting an affine map \(bias=True\) from 3-dimensional"):
        LinearMap().fit(np.ones((2, 3)), np.ones((2, 2)))


def test_few_pairs_warning_counts_the_parameters_and_points_at_the_callers_line():
    import os

    from latentmap.maps.linear import FewPairsWarning, LinearMap

    x, y = np.random.default_rng(0).random((3, 3)), np.random.default_rng(1).random((3, 2))
    with pytest.warns(FewPairsWarning, match="fitted on 3 pairs for 4 parameters per target") as record:
        LinearMap(alpha=0.1).fit(x, y)
    with pytest.warns(FewPairsWarning, match="fitted on 3 pairs for 3 parameters per target"):
        LinearMap(alpha=0.1, bias=False).fit(x, y)
    # mutation testing wraps every function in one more frame: the warning's location cannot be checked there
    if "MUTANT_UNDER_TEST" not in os.environ:
        assert record[0].filename == __file__
        with pytest.warns(FewPairsWarning) as record:
            _ = LinearMap(alpha=0.1).partial_fit(x, y).coef_  # solved on first use
        assert record[0].filename == __file__


def test_moments_refuse_to_mix_pairs_and_single_variables():
    from latentmap.errors import ShapeMismatchError
    from latentmap.stats import Moments

    with pytest.raises(ShapeMismatchError) as e:
        Moments().update(torch.ones(2, 3), torch.ones(2, 1)).update(torch.ones(2, 3))
    assert str(e.value) == "cannot merge moments with and without a second variable y"
