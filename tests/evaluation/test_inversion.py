import pytest
import torch

from latentmap import invert, wrap
from latentmap.errors import ConfigError, DependencyError, ShapeMismatchError
from latentmap.evaluation.inversion import prior_mean
from latentmap.models.gan import GANModel
from latentmap.models.stylegan import StyleGANW


def _toy_model():
    """A small smooth decoder (a fixed random network), enough to test the optimizer."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 6))
    decoder = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.Tanh(), torch.nn.Linear(64, 28 * 28),
                                  torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28)))
    return wrap(encoder, decoder, image_shape=(1, 28, 28), name="toy")


def _targets(model, n=8, seed=0):
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return model.decode(z), z


@pytest.mark.parametrize("init", ["encoder", "prior-mean"])
def test_invert_lowers_the_loss_of_every_image(init):
    model = _toy_model()
    x, _ = _targets(model)
    result = invert(model, x, steps=60, lr=0.05, init=init)
    assert result.latents.shape == (8, 6) and result.loss.shape == result.initial_loss.shape == (8,)
    assert (result.loss < result.initial_loss).all()
    assert result.curve.shape == (61,) and result.curve[-1] < result.curve[0]
    # the returned loss is that of the returned latents
    recon = model.decode(result.latents)
    torch.testing.assert_close(((recon - x) ** 2).flatten(1).mean(1), result.loss, rtol=1e-4, atol=1e-7)


def test_invert_returns_the_best_latents_seen_not_the_last():
    """With a large step the loss of most images goes up again before the end: the result keeps the best."""
    model = _toy_model()
    x, _ = _targets(model)
    seen, decode = [], model.decode

    def spy(z, **kwargs):  # every decode of the optimization, scored here per image in float64
        out = decode(z, **kwargs)
        seen.append(((out.detach().double() - x.double()) ** 2).flatten(1).mean(1))
        return out

    model.decode = spy
    result = invert(model, x, steps=30, lr=0.5, init="encoder")
    del model.decode
    losses = torch.stack(seen)  # [steps + 1, images]
    assert losses.shape == (31, 8)
    best = losses.min(0).values
    assert int((losses[-1] > 1.5 * best).sum()) >= 3  # the case is what it claims: the last step is worse
    # the returned latents reproduce the best loss observed for each image, recomputed independently
    recon = model.decode(result.latents).double()
    torch.testing.assert_close(((recon - x.double()) ** 2).flatten(1).mean(1), best, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(result.loss.double(), best, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(result.initial_loss.double(), losses[0], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(result.curve.double(), losses.mean(1), rtol=1e-4, atol=1e-9)


def test_invert_is_deterministic_and_batch_independent():
    model = _toy_model()
    x, _ = _targets(model)
    a = invert(model, x, steps=20, init="prior-mean", seed=3)
    b = invert(model, x, steps=20, init="prior-mean", seed=3)
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    half = invert(model, x[:4], steps=20, init="prior-mean", seed=3)
    torch.testing.assert_close(half.latents, a.latents[:4], rtol=1e-5, atol=1e-6)


def test_invert_does_not_touch_model_parameters():
    model = _toy_model()
    x, _ = _targets(model, 4)
    before = {k: v.clone() for k, v in model.state_tensors().items()}
    invert(model, x, steps=5)
    after = model.state_tensors()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for m in model.modules().values() for p in m.parameters())


def test_invert_optimizes_w_for_stylegan():
    torch.manual_seed(0)
    model = StyleGANW("s", (1, 28, 28), 8, z_dim=6, channels=[8, 8, 8], inverter_channels=[8, 8], inverter_hidden=8)
    x = model.decode(model.sample_prior(4, torch.Generator().manual_seed(5)))
    result = invert(model, x, steps=30, lr=0.05, init="prior-mean")
    assert result.latents.shape == (4, model.latent_dim)
    assert (result.loss < result.initial_loss).all()
    # starts from the mean of W, not from 0
    torch.testing.assert_close(prior_mean(model, torch.Generator().manual_seed(0)),
                               model.prior_mean(torch.Generator().manual_seed(0)))


def test_prior_mean_of_gaussian_models_is_zero():
    assert torch.equal(prior_mean(GANModel("g", (1, 28, 28), 5, channels=[8, 8])), torch.zeros(1, 5))
    assert torch.equal(prior_mean(_toy_model()), torch.zeros(1, 6))


def test_invert_errors(monkeypatch, tmp_path):
    model = _toy_model()
    x, _ = _targets(model, 2)
    with pytest.raises(ConfigError, match="init must be one of"):
        invert(model, x, init="zeros")
    with pytest.raises(ConfigError, match="loss must be one of"):
        invert(model, x, loss="l1")
    with pytest.raises(ShapeMismatchError):
        invert(model, torch.rand(2, 1, 27, 28))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: no backbone weights
    with pytest.raises(DependencyError, match="--lpips PATH"):
        invert(model, x, loss="mse+lpips")


def test_cli_invert_writes_latents_losses_and_grid(tmp_path):
    import json

    import numpy as np
    from click.testing import CliRunner

    from latentmap.cli.main import main

    out = tmp_path / "inv"
    args = ["invert", "--model", "py:tests.helpers.external:make_autoencoder", "--trust-code", "--images", "5", "--steps", "15",
            "--split", "test", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 5 and summary["final_loss_mean"] < summary["initial_loss_mean"]
    assert np.load(out / "latents.npy").shape == (5, 5)
    assert len((out / "losses.csv").read_text().splitlines()) == 6 and (out / "inversions.png").is_file()

    no_weights = CliRunner(env={"TORCH_HOME": str(tmp_path / "empty")}).invoke(
        main, args[:-1] + [str(tmp_path / "lp"), "--loss", "mse+lpips"])
    assert no_weights.exit_code == 2 and "--lpips PATH" in no_weights.output
    assert not (tmp_path / "lp").exists()


def test_auto_init_starts_from_the_encoder_only_when_it_is_trained(monkeypatch):
    model = _toy_model()
    x, _ = _targets(model, n=2)
    assert invert(model, x, steps=1).init == "encoder"
    monkeypatch.setattr(type(model), "has_trained_encoder", property(lambda self: False))
    assert invert(model, x, steps=1).init == "prior-mean"
