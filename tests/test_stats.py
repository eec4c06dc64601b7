"""The float64 moment accumulator against numpy on hand-built data."""

import numpy as np
import pytest
import torch

from latentmap.stats import Moments


@pytest.mark.filterwarnings("error")  # e.g. torch resizing a chunk buffer of the wrong shape
def test_moments_of_bfloat16_pairs_in_several_chunks_are_numpys_float64_moments():
    """bfloat16 latents take the torch path (numpy has no bfloat16), fed in three uneven batches."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(size=(50, 3))).bfloat16()
    y = torch.from_numpy(rng.normal(size=(50, 2))).bfloat16()
    m = Moments(full=True)
    for a, b in ((0, 7), (7, 31), (31, 50)):
        m.update(x[a:b], y[a:b])
    xd, yd = x.double().numpy(), y.double().numpy()
    xc, yc = xd - xd.mean(0), yd - yd.mean(0)
    assert m.n == 50
    np.testing.assert_allclose(m.mean_x.cpu().numpy(), xd.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.mean_y.cpu().numpy(), yd.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.cxx.cpu().numpy(), xc.T @ xc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.cxy.cpu().numpy(), xc.T @ yc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.covariance().numpy(), np.cov(xd, rowvar=False, bias=True), rtol=1e-12, atol=1e-12)
