"""The conformance check every LatentModel adapter must pass.

Call ``check_adapter(model, images, tmp_path)`` from an adapter's test module. It asserts
shapes, determinism of ``encode``, a save/load round trip that gives identical outputs,
and the bad-input errors of the interface.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentmap import load_model
from latentmap.errors import LatentmapError, NonFiniteError, ShapeMismatchError
from latentmap.models.base import LatentModel


def check_adapter(model: LatentModel, images: torch.Tensor, tmp_path, *, save: bool = True, loader=None):
    """``loader(path)`` reloads a saved model (default: ``latentmap.load_model``)."""
    n = len(images)
    assert isinstance(model.name, str) and model.name
    assert isinstance(model.kind, str) and model.kind != "abstract"
    assert model.image_shape == tuple(images.shape[1:])

    z = model.encode(images)
    assert z.shape == (n, model.latent_dim) and z.dtype == torch.float32
    assert torch.isfinite(z).all()
    torch.testing.assert_close(model.encode(images), z, rtol=0, atol=0)  # deterministic

    x = model.decode(z)
    assert x.shape == images.shape and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1, s2 = model.sample_prior(5, g1), model.sample_prior(5, g2)
    assert s1.shape == (5, model.latent_dim)
    torch.testing.assert_close(s1, s2)

    if model.vae_like:
        mu, logvar = model.encode_stats(images)
        assert mu.shape == logvar.shape == (n, model.latent_dim)
        torch.testing.assert_close(mu, z)

    batched = model.encode_all(images, batch_size=max(1, n // 3))
    torch.testing.assert_close(batched, z.cpu(), rtol=1e-5, atol=1e-5)
    decoded = model.decode_all(z, batch_size=max(1, n // 3))
    torch.testing.assert_close(decoded, x.cpu(), rtol=1e-5, atol=1e-5)

    # bad input: wrong image shape, wrong latent size, non-finite values, wrong rank
    bad = torch.zeros(2, images.shape[1], images.shape[2] + 1, images.shape[3])
    with pytest.raises(ShapeMismatchError):
        model.encode(bad)
    with pytest.raises(ShapeMismatchError):
        model.decode(torch.zeros(2, model.latent_dim + 1))
    with pytest.raises(ShapeMismatchError):
        model.decode(torch.zeros(model.latent_dim))
    nan_z = torch.zeros(2, model.latent_dim)
    nan_z[0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        model.decode(nan_z)
    nan_x = images[:2].clone()
    nan_x[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        model.encode(nan_x)
    assert issubclass(ShapeMismatchError, LatentmapError) and issubclass(ShapeMismatchError, ValueError)

    if save:
        path = tmp_path / f"conformance-{model.name}"
        model.save(path)
        reloaded = (loader or load_model)(path)
        assert reloaded.kind == model.kind and reloaded.latent_dim == model.latent_dim
        assert reloaded.image_shape == model.image_shape
        torch.testing.assert_close(reloaded.encode(images), z, rtol=0, atol=0)
        torch.testing.assert_close(reloaded.decode(z), x, rtol=0, atol=0)
    return z, x


def random_images(n: int, shape, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, *shape), dtype=np.float32))
