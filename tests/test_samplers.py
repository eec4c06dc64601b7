"""Latent samplers fitted on encodings, against numpy moments on hand-built latents."""

import numpy as np
import pytest
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.samplers import GaussianSampler


def test_a_gaussian_sampler_fits_on_two_encodings_but_not_on_one():
    z = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    s = GaussianSampler.fit(z)
    np.testing.assert_allclose(s.mean.numpy(), [1.0, 3.0])
    np.testing.assert_allclose(s.covariance.numpy(), np.cov(z.numpy(), rowvar=False, bias=True), atol=1e-12)
    assert s.name == "gaussian fit on 2 encodings"
    with pytest.raises(ConfigError) as caught:
        GaussianSampler.fit(z[:1])
    assert str(caught.value) == "a fitted sampler needs at least 2 encodings of shape [N, d], got (1, 2)"
