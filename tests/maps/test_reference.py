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


def test_an_unfitted_map_names_its_own_class():
    from latentmap.maps.checks import MapNotFittedError

    with pytest.raises(MapNotFittedError) as caught:
        MLPMap().predict(np.zeros((2, 3)))
    assert str(caught.value) == "this MLPMap is not fitted yet; call fit with latent pairs first"


def test_merging_different_latent_sizes_names_both_word_for_word():
    from latentmap.errors import ShapeMismatchError

    rng = np.random.default_rng(0)
    mine = LinearMap().partial_fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)))
    theirs = LinearMap().partial_fit(rng.normal(size=(8, 4)), rng.normal(size=(8, 5)))
    with pytest.raises(ShapeMismatchError) as caught:
        mine.merge(theirs)
    assert str(caught.value) == "cannot merge latents of size 4 -> 5 into 3 -> 2"


@pytest.mark.parametrize("side, sizes", [("source", "7 -> 2"), ("target", "3 -> 7")])
def test_a_map_folder_whose_recorded_sizes_are_not_its_tensors_is_refused(tmp_path, side, sizes):
    import json

    from latentmap.errors import CheckpointError

    rng = np.random.default_rng(1)
    LinearMap().fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2))).save(tmp_path / "m")
    config = tmp_path / "m" / "map.json"
    info = json.loads(config.read_text())
    info[side] = {**info.get(side, {}), "latent_dim": 7}
    config.write_text(json.dumps(info))
    with pytest.raises(CheckpointError) as caught:
        LinearMap.load(tmp_path / "m")
    assert str(caught.value) == f"map folder '{tmp_path / 'm'}' records latent sizes {sizes} but its tensors are 3 -> 2"


def test_piecewise_maps_with_different_cells_refuse_to_merge_word_for_word():
    from latentmap.errors import ConfigError

    rng = np.random.default_rng(2)
    mine = PiecewiseLinearMap(n_cells=2, kmeans_sample=10).partial_fit(rng.normal(size=(12, 2)),
                                                                      rng.normal(size=(12, 2)))
    theirs = PiecewiseLinearMap(n_cells=2, kmeans_sample=10).partial_fit(rng.normal(size=(12, 2)) + 5,
                                                                        rng.normal(size=(12, 2)))
    with pytest.raises(ConfigError) as caught:
        mine.merge(theirs)
    assert str(caught.value) == ("cannot merge piecewise maps with different k-means cells: fit them on the same "
                                 "first rows (or merge before the cells are computed)")


def test_soft_cell_weights_are_the_softmax_of_distances_over_temperature_times_scale():
    """Latents of spread 0.01 (scale_ ~ 1e-4, far below 1): p_k ∝ exp(−(d²_k − min d²) / (T·s²)), by hand."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=(30, 2)) * 0.01, rng.normal(size=(30, 2)) * 0.01 + 0.03])
    m = PiecewiseLinearMap(n_cells=2, alpha=0.0, soft=True, temperature=0.5).fit(x, x @ rng.normal(size=(2, 2)))
    assert m.scale_ < 1e-3
    q = x[:5] + 0.005
    d2 = ((q[:, None, :] - m.cluster_centers_[None]) ** 2).sum(-1)
    logits = -(d2 - d2.min(1, keepdims=True)) / (0.5 * m.scale_)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = m.cell_weights(q).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert got.min() < 0.5  # the weights are not the uniform blend a far larger scale would give


def test_piecewise_cells_agreed_in_a_world_of_one_are_sklearn_kmeans_of_the_held_rows():
    """What all_reduce does before adding up, in one process: cells still waiting for their sample are those of
    scikit-learn's KMeans on the rows held so far; cells already computed stay as they are."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) + 8])
    m = PiecewiseLinearMap(n_cells=2, kmeans_sample=50, seed=3).partial_fit(x, x)
    assert m._centres is None
    m._sizes_seen = (2, 2)
    m._before_all_reduce()
    expected = KMeans(2, n_init=4, random_state=3).fit(x).cluster_centers_
    np.testing.assert_allclose(m._centres.numpy(), expected, rtol=1e-12)
    assert m._held == []
    before = m._centres.clone()
    m._before_all_reduce()
    assert torch.equal(m._centres, before)


def test_fit_all_pairs_is_numpy_lstsq_on_each_models_encodings():
    from latentmap.maps.fitting import fit_all_pairs
    from tests.evaluation.test_relocation import known_pair, make_images, on_images

    a, b, _, _ = known_pair()
    images = make_images(30, seed=2, model=a)
    maps = fit_all_pairs([a, b], on_images(images), LinearMap, batch_size=8)
    assert sorted(maps) == [(0, 1), (1, 0)]
    z = [m.encode(images).double().numpy() for m in (a, b)]
    for (i, j), fitted in maps.items():
        design = np.hstack([z[i], np.ones((len(images), 1))])
        solution = np.linalg.lstsq(design, z[j], rcond=None)[0]
        np.testing.assert_allclose(fitted.coef_, solution[:-1].T, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(fitted.intercept_, solution[-1], rtol=1e-6, atol=1e-8)


def test_prior_samples_are_sharded_only_when_asked(monkeypatch):
    """As rank 1 of 2: without ``shard`` every seeded draw comes (batch by batch, standard normal draws of one
    generator); with it, only the rank's batches, the last two of four."""
    from latentmap import distributed
    from latentmap.maps.fitting import FitSource
    from tests.evaluation.test_relocation import affine_model

    model = affine_model("syn-a", 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    fit = FitSource("samples", 40, seed=5)
    gen = torch.Generator().manual_seed(5)
    expected = torch.cat([torch.randn(10, 3, generator=gen) for _ in range(4)])
    every = torch.cat([z for z, _ in fit.samples_of(model, batch_size=10)])
    assert torch.equal(every, expected)
    mine = torch.cat([z for z, _ in fit.samples_of(model, batch_size=10, shard=True)])
    assert torch.equal(mine, expected[20:])


def test_fit_map_through_the_torch_distributed_path_in_a_world_of_one_is_numpy_lstsq(monkeypatch):
    """With torch.distributed reported active (one rank, sums that return their input), map fit takes the sharded
    branch: partial fits of the rank's pairs, all_reduce, one solve; the map is still the least-squares one."""
    from latentmap import distributed
    from latentmap.maps.fitting import FitSource, fit_map
    from tests.evaluation.test_relocation import known_pair, make_images

    a, b, _, _ = known_pair()
    images = make_images(30, seed=2, model=a)
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t)
    fitted = fit_map(a, b, FitSource("dataset", 30, name="toy", data=images), LinearMap(), batch_size=8)
    monkeypatch.undo()
    za, zb = a.encode(images).double().numpy(), b.encode(images).double().numpy()
    solution = np.linalg.lstsq(np.hstack([za, np.ones((30, 1))]), zb, rcond=None)[0]
    np.testing.assert_allclose(fitted.coef_, solution[:-1].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fitted.intercept_, solution[-1], rtol=1e-6, atol=1e-8)
    assert fitted.n_samples_seen_ == 30


def test_an_unknown_fit_source_kind_lists_the_kinds_word_for_word():
    from latentmap.errors import ConfigError
    from latentmap.maps.fitting import FitSource

    with pytest.raises(ConfigError) as caught:
        FitSource("pictures", 3)
    assert str(caught.value) == ("fit source kind must be one of support-set, images, dataset, samples, got "
                                 "'pictures' instead")


def test_sklearn_sees_a_streaming_map_as_fitted_once_it_holds_pairs():
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(LinearMap())
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 2))
    m = LinearMap().partial_fit(x, x @ np.array([[1.0, 2.0], [0.5, -1.0]]) + 3.0)
    check_is_fitted(m)  # pairs held, solved when first needed
    np.testing.assert_allclose(m.predict(np.zeros((1, 2))), [[3.0, 3.0]], atol=1e-12)


def test_predict_gives_float64_for_integer_latents_and_names_non_finite_ones():
    from latentmap.errors import NonFiniteError

    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m = LinearMap().fit(x, x @ np.array([[0.5], [0.25]]) + 0.125)
    out = m.predict(np.array([[1, 2], [3, 1]]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[1.125], [1.875]], atol=1e-12)
    with pytest.raises(NonFiniteError) as caught:
        m.predict(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    assert str(caught.value) == "source latents X contain NaN or infinite values (in 1 of 2 rows)"
