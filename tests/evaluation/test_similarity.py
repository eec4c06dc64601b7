"""Linear CKA and SVCCA against independent formulas; per-image ratio summaries and bootstrap intervals."""

import numpy as np
import pytest
import torch

from latentmap.evaluation.distribution import (bootstrap_difference_interval, bootstrap_ratio_interval,
                                               per_image_ratios, ratio_quantiles, summarize, worst_images)
from latentmap.evaluation.similarity import SimilarityAccumulator, linear_cka, spearman, svcca
from tests.helpers.references import linear_cka_hand


def rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def cka_by_hsic(x, y):
    """Kornblith et al.'s definition through centred Gram matrices (n x n), independent of the covariance form."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def test_cka_is_one_for_identical_spaces_and_invariant_to_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 4.0
    y = np.tanh(x @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(200, 5))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert base == pytest.approx(cka_by_hsic(x, y), rel=1e-10) and base == pytest.approx(linear_cka_hand(x, y), rel=1e-10)
    assert linear_cka(3.5 * x @ rotation(6, 1) - 2.0, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 0.1 * y @ rotation(5, 2)) == pytest.approx(base, rel=1e-10)
    assert linear_cka(torch.from_numpy(y), torch.from_numpy(x)) == pytest.approx(base, rel=1e-10)  # symmetric
    # not invariant to a general linear map (what separates CKA from CCA-based measures)
    assert abs(linear_cka(x @ np.diag([10, 1, 1, 1, 1, 0.1]), y) - base) > 1e-3


def test_cka_on_hand_built_orthogonal_columns():
    """Centred, orthogonal columns of lengths s1, s2 and Y their first column: YᵀX = [s1², 0], XᵀX = diag(s1², s2²),
    YᵀY = s1², so CKA = s1² / sqrt(s1⁴ + s2⁴) exactly; 1/√2 for equal lengths."""
    signs = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) + 5.0  # an offset the centring removes
    for s1, s2, expected in ((1.0, 1.0, 1 / np.sqrt(2)), (2.0, 1.0, 4 / np.sqrt(17)), (1.0, 3.0, 1 / np.sqrt(82))):
        x = signs * np.array([s1, s2])
        assert linear_cka(x, x[:, :1]) == pytest.approx(expected, rel=1e-12)
        assert linear_cka(x[:, :1], x) == pytest.approx(expected, rel=1e-12)
    # the two columns are uncorrelated: CKA 0 between them, SVCCA 0 (no shared direction), 1 with itself
    assert linear_cka(signs[:, :1], signs[:, 1:]) == pytest.approx(0.0, abs=1e-15)
    assert svcca(signs[:, :1], signs[:, 1:], keep=1.0) == pytest.approx(0.0, abs=1e-12)


def test_svcca_is_one_under_invertible_maps_and_matches_sklearn_cca():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, x @ rng.normal(size=(4, 4)) + 7.0) == pytest.approx(1.0, abs=1e-9)
    y = x[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(500, 3))
    # with every direction kept (keep=1), SVCCA is the mean canonical correlation; compare with numpy's CCA
    xc, yc = x - x.mean(0), y - y.mean(0)
    wx = np.linalg.inv(np.linalg.cholesky(xc.T @ xc)).T
    wy = np.linalg.inv(np.linalg.cholesky(yc.T @ yc)).T
    rho = np.linalg.svd((xc @ wx).T @ (yc @ wy), compute_uv=False)
    assert svcca(x, y, keep=1.0) == pytest.approx(rho.mean(), rel=1e-9)
    # keeping 99% of the variance drops the smallest direction of x, which y does not use
    assert svcca(x, y) >= svcca(x, y, keep=1.0) - 1e-9


def test_streamed_similarity_matrices_equal_the_array_functions():
    rng = np.random.default_rng(5)
    z = [rng.normal(size=(300, 4)), None, rng.normal(size=(300, 6))]
    z[1] = z[0] @ rng.normal(size=(4, 3)) + 0.5 * rng.normal(size=(300, 3))
    acc = SimilarityAccumulator([4, 3, 6])
    for s in range(0, 300, 64):
        acc.update([torch.from_numpy(v[s:s + 64]) for v in z])
    mats = acc.matrices()
    for i in range(3):
        for j in range(3):
            expect_cka = 1.0 if i == j else linear_cka(z[i], z[j])
            expect_svcca = 1.0 if i == j else svcca(z[i], z[j])
            assert mats["cka"][i, j] == pytest.approx(expect_cka, rel=1e-9)
            assert mats["svcca"][i, j] == pytest.approx(expect_svcca, rel=1e-9)
    assert mats["cka"][0, 1] > mats["cka"][0, 2]


def test_spearman_skips_missing_values():
    rho, p, n = spearman([1, 2, 3, np.nan, 5], [10, 8, 6, 1, 2])
    assert n == 4 and rho == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [2, 1])[0])


def test_per_image_summaries_and_bootstrap_intervals():
    rng = np.random.default_rng(0)
    own = rng.uniform(0.005, 0.01, size=4000)
    relocated = own * rng.uniform(1.0, 1.4, size=4000)
    ratio = relocated.mean() / own.mean()
    low, high = bootstrap_ratio_interval(own, relocated, seed=1)
    # numpy's paired percentile bootstrap: one index draw per resample (chunks of 100) for both errors of an image
    rng, boot = np.random.default_rng(1), []
    for _ in range(10):
        idx = rng.integers(0, 4000, size=(100, 4000))
        boot.append(relocated[idx].sum(1) / own[idx].sum(1))
    assert (low, high) == pytest.approx(tuple(np.percentile(np.concatenate(boot), [2.5, 97.5])), rel=1e-12)
    assert low < ratio < high
    assert (low, high) == bootstrap_ratio_interval(own, relocated, seed=1)  # seeded
    median, p90 = ratio_quantiles(own, relocated)
    assert median == pytest.approx(1.2, abs=0.02) and p90 == pytest.approx(1.36, abs=0.02)
    assert all(np.isnan(v) for v in ratio_quantiles(np.array([]), np.array([])))  # no images: NaN, no error
    # a paired difference: the same resamples for both maps give a much tighter interval than unpaired ones
    better = relocated - 0.1 * own
    d_low, d_high = bootstrap_difference_interval(own, relocated, better, seed=1)
    assert d_low == pytest.approx(0.1, abs=1e-9) and d_high == pytest.approx(0.1, abs=1e-9)
    relocated[[7, 99]] += [0.5, 1.0]
    assert worst_images(own, relocated, 2) == [99, 7]
    out = summarize(own, relocated, worst=3)
    assert out["worst_images"][:2] == [99, 7] and out["ratio_low"] < out["ratio_high"]
    assert per_image_ratios(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 2.0])).tolist() == [1.0, np.inf, 2.0]
