import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.helpers.conformance import check_adapter
from tests.conftest import CHECKPOINTS
from tests.helpers.generators import train_tiny
from latentmap import load_model
from latentmap.cli.main import main
from latentmap.evaluation.metrics import per_image_mse
from latentmap.models.gan import DCGANGenerator, GANModel, recalibrate_batchnorm


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "tiny-gan"
    model = train_tiny("gan", out)
    return model, out


def test_conformance(tiny_gan, tmp_path):
    model, _ = tiny_gan
    images = torch.rand(6, *model.image_shape)
    check_adapter(model, images, tmp_path)


def test_inverter_beats_prior_mean_on_own_samples(tiny_gan):
    model, _ = tiny_gan
    x = model.sample(200, torch.Generator().manual_seed(7))
    inverted = per_image_mse(model.reconstruct(x), x).mean()
    at_mean = per_image_mse(model.decode(torch.zeros(len(x), model.latent_dim)), x).mean()
    assert inverted < 0.3 * at_mean, (float(inverted), float(at_mean))


def _run_test_images(train_images: int, test_images: int, seed: int = 0) -> torch.Tensor:
    """The test images of a training run, drawn by hand: one seeded numpy Generator picks the training
    images, then the test images, without replacement, in index order."""
    from latentmap import load_dataset

    rng = np.random.default_rng(seed)
    rng.choice(60000, train_images, replace=False)
    return load_dataset("fashion-mnist", "test").batch(np.sort(rng.choice(10000, test_images, replace=False)))


def _grid_cells(path, rows: int, cols: int) -> np.ndarray:
    """The 28 x 28 cells [rows, cols, 28, 28] (0-255) of an image grid: 2-pixel padding, scaled 2x; checks its size."""
    from PIL import Image

    grid = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert grid.shape == (2 * (rows * 30 + 2), 2 * (cols * 30 + 2))
    return np.stack([np.stack([grid[2 * (2 + i * 30):2 * (2 + i * 30) + 56:2, 2 * (2 + j * 30):2 * (2 + j * 30) + 56:2]
                               for j in range(cols)]) for i in range(rows)])


def _inversion_mse(model, x) -> float:
    """Mean per-pixel squared error of G(E(x)) against x, in float64."""
    with torch.no_grad():
        recon = model.decode(model.encode(x))
    return float((recon.double().cpu() - x.double().cpu()).pow(2).mean())


def test_checkpoint_records_inverter_metrics_and_grids(tiny_gan):
    model, out = tiny_gan
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "gan" and config["latent_dim"] == 8
    inv = config["metrics"]["inverter"]
    # recomputed from the saved checkpoint: real = the run's 64 test images; own = 256 prior samples (the
    # default of --inverter-eval-samples) drawn in batches of 250 from a generator seeded 1234
    saved = load_model(out, device="cpu")
    real = _run_test_images(256, 64)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        own_x = torch.cat([saved.decode(saved.sample_prior(n, generator)) for n in (250, 6)])
    own, real_mse = _inversion_mse(saved, own_x), _inversion_mse(saved, real)
    assert inv["own_samples"] == 256 and inv["real_test_images"] == 64
    assert inv["own_samples_image_mse"] == pytest.approx(own, rel=1e-5)
    assert inv["real_test_image_mse"] == pytest.approx(real_mse, rel=1e-5)
    assert config["metrics"]["test_mse"] == pytest.approx(real_mse, rel=1e-5)
    assert own < real_mse
    assert len(config["training"]["log"]) == 1 and config["training"]["inverter"]["inverter_steps"] == 100
    # samples.png: an 8 x 8 grid of prior samples (the run's seed, 0); inversions.png: 12 prior samples (seed 1),
    # their inversions, the first 12 test images of the run and their inversions
    with torch.no_grad():
        samples = saved.decode(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
        own12 = saved.decode(torch.randn(12, 8, generator=torch.Generator().manual_seed(1)))
        rows = [own12, saved.decode(saved.encode(own12)), real[:12], saved.decode(saved.encode(real[:12]))]
    cells = _grid_cells(out / "samples.png", 8, 8)
    np.testing.assert_allclose(cells.reshape(64, 28, 28), samples[:, 0].double().numpy() * 255, atol=1.0)
    cells = _grid_cells(out / "inversions.png", 4, 12)
    for i, images in enumerate(rows):
        np.testing.assert_allclose(cells[i], images[:, 0].double().numpy() * 255, atol=1.0)
    reloaded = load_model(out)
    assert not any(k.startswith("discriminator") for k in reloaded.state_tensors())  # training-only, not shipped


def test_recalibrated_batchnorm_matches_training_mode_statistics():
    torch.manual_seed(0)
    g = DCGANGenerator(4, (1, 28, 28), [8, 16])
    batches = [torch.randn(128, 4) for _ in range(4)]
    g.train()
    with torch.no_grad():
        for _ in range(3):  # a few momentum updates: running stats far from the batch statistics
            g(torch.randn(4, 4) * 5)
    z = torch.randn(256, 4)
    g.eval()
    before = g(z)
    recalibrate_batchnorm(g, batches)
    g.eval()
    after = g(z)
    g.train()
    with torch.no_grad():
        target = g(z)
    assert (after - target).abs().mean() < 0.2 * (before - target).abs().mean()


def test_gan_architecture_round_trip():
    model = GANModel("g", (1, 28, 28), 6, channels=[8, 16], inverter_hidden=32)
    rebuilt = GANModel.from_architecture("g", (1, 28, 28), 6, model.architecture())
    assert rebuilt.architecture() == model.architecture() == {"channels": [8, 16], "inverter_channels": [8, 16],
                                                              "inverter_hidden": 32}


def test_cli_train_gan_and_usage_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-gan"
    result = runner.invoke(main, ["train", "gan", "--latent-dim", "4", "--epochs", "1", "--train-images", "64",
                                  "--test-images", "16", "--batch-size", "32", "--channels", "8,16", "--hidden", "16",
                                  "--inverter-steps", "5", "--inverter-batch-size", "16", "--device", "cpu",
                                  "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["settings"]["lr"] == 2e-4  # the GAN default, not the VAE's 1e-3
    assert config["training"]["inverter"]["inverter_steps"] == 5

    bad = runner.invoke(main, ["train", "gan", "--model", "x", "--out", str(tmp_path / "no")])
    assert bad.exit_code == 2 and "--model" in bad.output and not (tmp_path / "no").exists()
    missing = runner.invoke(main, ["train", "inverter", "--out", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "needs --model" in missing.output


@pytest.mark.skipif(not (CHECKPOINTS / "fmnist-gan" / "config.json").is_file(), reason="shipped GAN not trained yet")
def test_shipped_gan(tmp_path):
    from latentmap import load_dataset

    model = load_model(CHECKPOINTS / "fmnist-gan")
    assert model.kind == "gan" and model.latent_dim == 64
    images = load_dataset("fashion-mnist", "test").batch(range(8))
    check_adapter(model, images, tmp_path)
    _check_shipped_generator_expressiveness(model)
    assert (CHECKPOINTS / "fmnist-gan" / "samples.png").is_file()


def _check_shipped_generator_expressiveness(model):
    """The inverter reproduces the generator's own samples far better than real images (docs/guide/models.md),
    recomputed on 500 seeded prior samples and 500 evenly spaced test images, and evaluate_inverter agrees."""
    from latentmap import load_dataset
    from latentmap.training.inverter import evaluate_inverter

    test = load_dataset("fashion-mnist", "test").subset(np.arange(0, 10000, 20))
    with torch.no_grad():
        own_x = model.decode(model.sample_prior(500, torch.Generator().manual_seed(5)))
    own, real = _inversion_mse(model, own_x), _inversion_mse(model, test.all_images())
    assert own < 0.5 * real, (own, real)
    metrics = evaluate_inverter(model, test, samples=500, batch_size=500, generator=torch.Generator().manual_seed(5))
    assert metrics["own_samples_image_mse"] == pytest.approx(own, rel=1e-4)
    assert metrics["real_test_image_mse"] == pytest.approx(real, rel=1e-4)
