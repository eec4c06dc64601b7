"""Latent samplers fitted on encodings, against numpy moments on hand-built latents."""

import numpy as np
import pytest
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.samplers import GaussianSampler
from tests.helpers.progress import labels, recorded_bars


def test_a_gaussian_sampler_fits_on_two_encodings_but_not_on_one():
    z = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    s = GaussianSampler.fit(z)
    np.testing.assert_allclose(s.mean.numpy(), [1.0, 3.0])
    np.testing.assert_allclose(s.covariance.numpy(), np.cov(z.numpy(), rowvar=False, bias=True), atol=1e-12)
    assert s.name == "gaussian fit on 2 encodings"
    with pytest.raises(ConfigError) as caught:
        GaussianSampler.fit(z[:1])
    assert str(caught.value) == "a fitted sampler needs at least 2 encodings of shape [N, d], got (1, 2)"


def test_a_gaussian_sampler_of_a_models_encodings_is_their_numpy_mean_and_covariance_and_says_of_what():
    from latentmap.evaluation.samplers import fit_sampler
    from tests.evaluation.test_relocation import affine_model, make_images

    model = affine_model("syn-a", 3)
    images = make_images(20, seed=4, model=model)
    s = fit_sampler(model, "gaussian", data=images, batch_size=8)
    z = model.encode(images).double().numpy()
    np.testing.assert_allclose(s.mean.numpy(), z.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.covariance.numpy(), np.cov(z, rowvar=False, bias=True), rtol=1e-6, atol=1e-9)
    assert s.name == "gaussian fit on 20 encodings of images"
    assert fit_sampler(model, "gaussian", data=images, data_name="the train split").name == (
        "gaussian fit on 20 encodings of the train split")


def test_fitting_a_sampler_shows_the_encoding_of_its_fit_images_only_when_asked():
    from latentmap.evaluation.samplers import fit_sampler
    from tests.evaluation.test_relocation import affine_model, make_images

    model = affine_model("syn-a", 3)
    images = make_images(20, seed=4, model=model)
    with recorded_bars() as bars:
        fit_sampler(model, "gaussian", data=images, batch_size=8, progress=True)
        assert labels(bars) == ["encode syn-a"]
        fit_sampler(model, "gaussian", data=images, batch_size=8)
    assert len(bars) == 1
