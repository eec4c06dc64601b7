import json

import pytest
import torch

from tests.helpers.conformance import check_adapter
from tests.conftest import CHECKPOINTS
from tests.helpers.generators import train_tiny
from latentmap import load_model
from tests.models.test_gan import _check_shipped_generator_expressiveness, _inversion_mse, _run_test_images
from latentmap.models.stylegan import ModulatedConv, StyleGANW, StyleGenerator


@pytest.fixture(scope="module")
def tiny_stylegan(tmp_path_factory):
    out = tmp_path_factory.mktemp("sg") / "tiny-stylegan"
    return train_tiny("stylegan", out, latent_dim=8, z_dim=6), out


def test_generator_follows_the_official_convention():
    G = StyleGenerator(6, 8, (1, 28, 28), [16, 16, 8])
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_channels, G.img_resolution) == (6, 8, 0, 1, 28)
    ws = G.mapping(torch.randn(3, 6), None)
    assert ws.shape == (3, G.num_ws, 8)
    assert torch.equal(ws[:, 0], ws[:, -1])  # one w broadcast to every layer
    assert G.synthesis(ws).shape == (3, 1, 28, 28)
    assert G.num_ws == 2 * 3 + 1  # two convs per resolution plus the last toRGB


def test_demodulation_cancels_a_uniform_style_scale():
    torch.manual_seed(0)
    conv = ModulatedConv(4, 5, w_dim=3)
    x, w = torch.randn(2, 4, 6, 6), torch.zeros(2, 3)
    with torch.no_grad():
        conv.affine.weight.zero_()
        conv.affine.bias.fill_(1.0)
        one = conv(x, w)
        conv.affine.bias.fill_(3.0)
        three = conv(x, w)
        conv.affine.bias[0] = 0.1  # a non-uniform style does change the output
        other = conv(x, w)
    torch.testing.assert_close(one, three, rtol=1e-4, atol=1e-5)
    assert (other - one).abs().max() > 1e-2


def test_conformance(tiny_stylegan, tmp_path):
    model, _ = tiny_stylegan
    assert model.kind == "stylegan-w" and model.latent_dim == 8 and model.z_dim == 6
    check_adapter(model, torch.rand(6, *model.image_shape), tmp_path)


def test_prior_samples_are_mapped_z(tiny_stylegan):
    model, _ = tiny_stylegan
    w = model.sample_prior(5, torch.Generator().manual_seed(3))
    z = torch.randn(5, model.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(w, model.map_z(z))
    mean = model.prior_mean(torch.Generator().manual_seed(1))
    estimate = model.sample_prior(4000, torch.Generator().manual_seed(2)).mean(0)
    assert mean.shape == (1, 8)
    assert (mean[0] - estimate).norm() < 0.1 * w.std(0).norm()
    torch.testing.assert_close(model.prior_mean(torch.Generator().manual_seed(1)), mean)  # seeded


def test_w_inverter_beats_the_mean_of_w(tiny_stylegan):
    model, out = tiny_stylegan
    w = model.sample_prior(200, torch.Generator().manual_seed(11))
    w_hat = model.encode(model.decode(w))
    err = (w_hat - w).pow(2).mean()
    spread = (w - w.mean(0)).pow(2).mean()
    assert err < 0.5 * spread, (float(err), float(spread))
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["z_dim"] == 6 and config["training"]["r1_gamma"] == 0.5
    # the recorded inverter metrics, recomputed from the saved checkpoint (see test_gan for the recipe)
    saved = load_model(out, device="cpu")
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        own_x = torch.cat([saved.decode(saved.sample_prior(n, generator)) for n in (250, 6)])  # 256: the default
    own, real = _inversion_mse(saved, own_x), _inversion_mse(saved, _run_test_images(256, 64))
    inv = config["metrics"]["inverter"]
    assert inv["own_samples_image_mse"] == pytest.approx(own, rel=1e-5)
    assert inv["real_test_image_mse"] == pytest.approx(real, rel=1e-5)
    assert config["metrics"]["test_mse"] == pytest.approx(real, rel=1e-5)
    assert own < real


def test_architecture_rebuilds_same_shapes():
    model = StyleGANW("s", (1, 28, 28), 8, z_dim=5, channels=[16, 16, 8], inverter_channels=[8, 16], inverter_hidden=16)
    rebuilt = StyleGANW.from_architecture("s", (1, 28, 28), 8, model.architecture())
    assert {k: v.shape for k, v in rebuilt.state_tensors().items()} == \
        {k: v.shape for k, v in model.state_tensors().items()}


def test_modulated_conv_equals_per_sample_modulated_weights():
    """The batched implementation against the textbook one (a grouped conv with one weight per sample)."""
    import math

    import torch.nn.functional as F

    torch.manual_seed(0)
    conv = ModulatedConv(4, 5, w_dim=3, upsample=True)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 3)
    with torch.no_grad():
        styles = conv.affine(w)
        weight = conv.weight[None] * conv.scale * styles[:, None, :, None, None]
        weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        ref = F.conv2d(up.reshape(1, -1, 12, 12), weight.reshape(-1, 4, 3, 3), padding=1, groups=2).view(2, 5, 12, 12)
        ref = F.leaky_relu(ref + conv.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
        torch.testing.assert_close(conv(x, w), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not (CHECKPOINTS / "fmnist-stylegan" / "config.json").is_file(),
                    reason="shipped StyleGAN not trained yet")
def test_shipped_stylegan(tmp_path):
    from latentmap import load_dataset

    model = load_model(CHECKPOINTS / "fmnist-stylegan")
    assert model.kind == "stylegan-w" and model.latent_dim == 64
    check_adapter(model, load_dataset("fashion-mnist", "test").batch(range(8)), tmp_path)
    _check_shipped_generator_expressiveness(model)
