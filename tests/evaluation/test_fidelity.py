"""Fidelity and diversity against the field's own code: the reference ``prdc`` package (Naeem et al.) and the
Fréchet distance of pytorch-fid / torch-fidelity (numpy's unbiased covariance, scipy's matrix square root)."""

import numpy as np
import pytest
from scipy import linalg

from latentmap.errors import ConfigError
from latentmap.evaluation import fidelity as fidelity_module
from latentmap.evaluation.fidelity import fidelity_diversity, frechet_distance, knn_radii, prdc
from tests.helpers.references import fid_formula


@pytest.fixture
def compute_prdc():
    """The reference implementation (pip install prdc, in the dev extra); its tests skip without it."""
    return pytest.importorskip("prdc").compute_prdc


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_equals_the_reference_package(k, monkeypatch, compute_prdc):
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(400, 6)), rng.normal(0.3, 1.3, size=(250, 6))
    monkeypatch.setattr(fidelity_module, "_CHUNK", 61)  # chunked distances give the full answer
    ours, ref = prdc(real, fake, k=k), compute_prdc(real, fake, nearest_k=k)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-15), key
    # distinct sets score distinctly: the comparison is not between two constants
    assert len({round(float(v), 6) for v in ref.values()}) == 4
    np.testing.assert_allclose(knn_radii(real, k), np.sort(np.linalg.norm(real[:, None] - real[None], axis=2), 1)[:, k],
                               rtol=1e-12)


def test_fidelity_diversity_rows_equal_the_reference_package_and_formula(compute_prdc):
    """The path every report takes (real radii computed once for several generators) against prdc and pytorch-fid."""
    rng = np.random.default_rng(7)
    real = rng.normal(size=(300, 5))
    sets = {"near": (rng.normal(0.1, 1.0, size=(200, 5)), "a"), "far": (rng.normal(1.0, 0.5, size=(150, 5)), "b")}
    result = fidelity_diversity(real, sets, space="s", fd_name="FD", k=4)
    assert [r.name for r in result.rows] == ["near", "far"] and result.real_images == 300 and result.k == 4
    for row in result.rows:
        features = sets[row.name][0]
        ref = compute_prdc(real, features, nearest_k=4)
        for key in ("precision", "recall", "density", "coverage"):
            assert getattr(row, key) == pytest.approx(float(ref[key]), abs=1e-15), (row.name, key)
        assert row.frechet == pytest.approx(fid_formula(real, features), rel=1e-9)
        assert row.images == len(features)


def test_frechet_distance_uses_the_unbiased_covariance_of_pytorch_fid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(0.4, 1.5, size=(64, 4))
    value = frechet_distance(a, b)
    assert value == pytest.approx(fid_formula(a, b), rel=1e-9)
    # the biased (divided by n) covariance gives a measurably different number on 64 points
    biased = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    wrong = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(biased[0] + biased[1])
                  - 2 * np.trace(np.real(linalg.sqrtm(biased[0] @ biased[1]))))
    assert abs(value - wrong) > 1e-3 * value
    # hand-built: one-dimensional Gaussians, FD = (m1 - m2)^2 + (s1 - s2)^2 with unbiased standard deviations
    x, y = np.array([[0.0], [2.0], [4.0]]), np.array([[1.0], [2.0]])
    assert frechet_distance(x, y) == pytest.approx((2 - 1.5) ** 2 + (2.0 - np.sqrt(0.5)) ** 2, rel=1e-12)
    assert frechet_distance(a, a + 2.0) == pytest.approx(4 * 4, rel=1e-9)  # a shift of 2 in 4 dimensions
    with pytest.raises(ConfigError, match="at least 2 generated"):
        frechet_distance(a, b[:1])
