"""The one fit loop (latentmap.maps.fitting.fit_pairs): one pair is the one-pair case of many, anchor fits are judged
by their exact leave-one-out R² (against scikit-learn's LeaveOneOut), and convolutional estimators get the models'
latent shapes."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from latentmap.errors import UnderdeterminedError
from latentmap.evaluation.atlas import build_atlas
from latentmap.maps.fitting import FitSource, fit_all_pairs, fit_map, fit_pairs, latent_shape
from latentmap.maps.linear import LinearMap
from latentmap.maps.piecewise import PiecewiseLinearMap

from tests.evaluation.test_relocation import affine_model, known_pair, make_images, on_images
from tests.helpers.progress import labels, recorded_bars


def _models():
    a, b, _, _ = known_pair()
    c = affine_model("syn-c", 6, seed=5, tag="c")  # unrelated to a: the map is far from exact
    return a, b, c


def _loo_r2(x, y, estimator) -> float:
    """scikit-learn's leave-one-out predictions, scored as R² averaged over target variables."""
    pred = cross_val_predict(estimator, x, y, cv=LeaveOneOut())
    return r2_score(y, pred, multioutput="uniform_average")


def test_atlas_on_anchors_reports_the_leave_one_out_r2_of_sklearn():
    """An atlas fitted on a few anchor images gives every least-squares pair the leave-one-out R² that scikit-learn's
    cross_val_predict(LinearRegression(), X, Y, cv=LeaveOneOut()) gives on the anchors' latents."""
    a, b, c = _models()
    anchors = make_images(20, seed=8, model=a, noise=0.05)
    atlas = build_atlas([a, b, c], make_images(30, seed=9, model=a), on_images(anchors),
                        lambda: LinearMap(bias=True, alpha=0.0), lpips="off", bootstrap=0)
    latents = {m.name: m.encode(anchors).double().numpy() for m in (a, b, c)}
    for (source, target), m in atlas.maps.items():
        want = _loo_r2(latents[source], latents[target], LinearRegression())
        assert m.fit_metrics_["loo_r2"] == pytest.approx(want, rel=1e-9, abs=1e-12), (source, target)
    got = {(r.source, r.target): r.extra["fit_metrics"]["loo_r2"] for r in atlas.results}
    assert got[("syn-a", "syn-c")] < 0.99 < got[("syn-a", "syn-b")]  # unrelated pair held out worse


def test_anchor_defaults_give_the_leave_one_out_r2_of_the_chosen_ridge():
    """The anchors' default map (bias-free, ridge penalty by GCV): leave-one-out with the penalty GCV chose."""
    a, _, c = _models()
    anchors = make_images(15, seed=3, model=a, noise=0.05)
    fit = on_images(anchors)
    m = fit_map(a, c, fit)
    assert (m.bias, m.alpha) == (False, "auto") and m.alpha_ > 0
    x, y = a.encode(anchors).double().numpy(), c.encode(anchors).double().numpy()
    want = _loo_r2(x, y, Ridge(alpha=m.alpha_, fit_intercept=False, solver="svd"))
    assert m.fit_metrics_["loo_r2"] == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kind", ["images", "dataset", "samples"])
def test_one_pair_is_the_one_pair_case_of_every_pair(kind):
    """fit_map(A, B) equals the (A, B) map of fit_pairs over three models and two estimators, bit for bit: the same
    batches reach the same statistics."""
    a, b, c = _models()
    images = make_images(40, seed=4, model=a, noise=0.05)
    fit = FitSource("samples", 40, seed=2) if kind == "samples" else FitSource(kind, 40, data=images)
    one = fit_map(a, c, fit, LinearMap(bias=True, alpha=0.0), batch_size=16)
    many = fit_pairs([a, b, c], fit, {"linear": lambda: LinearMap(bias=True, alpha=0.0),
                                      "cells": lambda: PiecewiseLinearMap(2, kmeans_sample=20)}, batch_size=16)
    assert set(many["linear"]) == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}
    assert np.array_equal(many["linear"][(0, 2)].coef_, one.coef_)
    assert np.array_equal(many["linear"][(0, 2)].intercept_, one.intercept_)
    assert many["linear"][(0, 2)].fit_metrics_ == one.fit_metrics_
    assert ("loo_r2" in one.fit_metrics_) == (kind == "images")
    assert np.array_equal(fit_all_pairs([a, b, c], fit, lambda: LinearMap(bias=True, alpha=0.0),
                                        batch_size=16)[(0, 2)].coef_, one.coef_)
    # and the map is the least-squares map of the pairs themselves
    if kind != "samples":
        x, y = a.encode(images).double().numpy(), c.encode(images).double().numpy()
        ref = LinearRegression().fit(x, y)
        np.testing.assert_allclose(one.coef_, ref.coef_, rtol=1e-8, atol=1e-8 * np.abs(ref.coef_).max())


def test_a_failing_pair_is_named():
    a, b, _ = _models()
    with pytest.raises(UnderdeterminedError, match=r"^map syn-a -> syn-b: fitting an affine map .* got 6"):
        fit_map(a, b, on_images(make_images(6, seed=1, model=a)), LinearMap(bias=True))


class ShapedMap(LinearMap):
    """A least-squares map that declares the latent shapes a convolutional estimator needs, and records them."""

    def __init__(self, bias=True, alpha=0.0, method="lstsq", source_shape=None, target_shape=None):
        super().__init__(bias=bias, alpha=alpha, method=method)
        self.source_shape = source_shape
        self.target_shape = target_shape

    def _accumulate(self, x, y):
        assert x.ndim == y.ndim == 2  # latents stay flat in the loop
        self.shapes_seen_ = (self.source_shape, self.target_shape)
        super()._accumulate(x, y)


def test_estimators_with_shape_parameters_get_the_models_latent_shapes():
    a, b, c = _models()
    c._latent_shape = (6, 1, 1)  # a spatial latent: [C, h, w], flat [N, 6] in the loop
    assert (latent_shape(a), latent_shape(c)) == ((6,), (6, 1, 1))
    fit = FitSource("dataset", 30, data=make_images(30, seed=6, model=a))
    maps = fit_pairs([a, b, c], fit, {"shaped": ShapedMap, "given": lambda: ShapedMap(target_shape=(3, 2, 1)),
                                      "plain": LinearMap})
    assert maps["shaped"][(0, 2)].get_params()["source_shape"] == (6,)
    assert maps["shaped"][(0, 2)].shapes_seen_ == ((6,), (6, 1, 1))  # set before the first batch
    assert maps["shaped"][(2, 1)].shapes_seen_ == ((6, 1, 1), (6,))
    assert maps["given"][(0, 2)].shapes_seen_ == ((6,), (3, 2, 1))  # a shape the caller gave is kept
    np.testing.assert_array_equal(maps["shaped"][(0, 2)].coef_, maps["plain"][(0, 2)].coef_)
    assert torch.equal(torch.as_tensor(maps["plain"][(2, 0)].coef_), torch.as_tensor(maps["shaped"][(2, 0)].coef_))


def test_fitting_one_pair_shows_its_bar_only_when_asked():
    a, b, _, _ = known_pair()
    fit = on_images(make_images(20, seed=1, model=a))
    with recorded_bars() as bars:
        fit_map(a, b, fit, LinearMap(), batch_size=8, progress=True)
        fit_map(a, b, fit, LinearMap(), batch_size=8)
    assert labels(bars) == ["fit syn-a -> syn-b"] and bars[0].total == 3
