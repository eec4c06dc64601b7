import json

import numpy as np
import pytest
import torch

from latentmap import load_dataset, load_model
from latentmap.errors import ConfigError
from latentmap.training import TrainSettings, train


def _tiny_run_splits():
    """The images of the tiny_vae_checkpoint run (seed 0, 400 train, 100 test), drawn by hand: one seeded
    numpy Generator picks the training images, then the test images, without replacement, in index order."""
    rng = np.random.default_rng(0)
    train_idx = np.sort(rng.choice(60000, 400, replace=False))
    test_idx = np.sort(rng.choice(10000, 100, replace=False))
    return (load_dataset("fashion-mnist", "train").batch(train_idx),
            load_dataset("fashion-mnist", "test").batch(test_idx))


def _mse(model, x) -> float:
    """Mean per-pixel squared error of the model's reconstructions, in numpy float64."""
    recon = model.decode(model.encode(x)).double().numpy()
    return float(((recon - x.double().numpy()) ** 2).mean())


def test_tiny_training_records_everything(tiny_vae_checkpoint):
    cfg = json.loads((tiny_vae_checkpoint / "config.json").read_text())
    assert cfg["kind"] == "vae" and cfg["dataset"] == "fashion-mnist" and cfg["seed"] == 0
    assert len(cfg["training"]["log"]) == 1 and cfg["training"]["log"][0]["mse"] > 0
    metrics = cfg["metrics"]
    assert metrics["test_images"] == 100 and cfg["training"]["train_images"] == 400
    # test_mse is the saved model's reconstruction MSE on the run's test images, recomputed here
    model = load_model(tiny_vae_checkpoint, device="cpu")
    train_x, test_x = _tiny_run_splits()
    test_mse, train_mse = _mse(model, test_x), _mse(model, train_x)
    assert abs(train_mse / test_mse - 1) > 1e-3  # the two splits are told apart by the check below
    assert metrics["test_mse"] == pytest.approx(test_mse, rel=1e-5)
    assert len(metrics["var_mu"]) == len(metrics["mean_sigma2"]) == 8
    assert (tiny_vae_checkpoint / "model.safetensors").is_file()
    # reconstructions.png: the first 16 test images over their reconstructions; samples.png: an 8 x 8 grid of
    # decoded N(0, I) draws with the run's seed
    with torch.no_grad():
        recon = model.decode(model.encode(test_x[:16]))
        samples = model.decode(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
    cells = _grid_cells(tiny_vae_checkpoint / "reconstructions.png", 2, 16)
    np.testing.assert_allclose(cells[0], test_x[:16, 0].double().numpy() * 255, atol=1.0)
    np.testing.assert_allclose(cells[1], recon[:, 0].double().numpy() * 255, atol=1.0)
    cells = _grid_cells(tiny_vae_checkpoint / "samples.png", 8, 8)
    np.testing.assert_allclose(cells.reshape(64, 28, 28), samples[:, 0].double().numpy() * 255, atol=1.0)
    model = load_model(tiny_vae_checkpoint)
    assert model.name == "tiny-vae" and model.latent_dim == 8


def _grid_cells(path, rows: int, cols: int) -> np.ndarray:
    """The 28 x 28 cells [rows, cols, 28, 28] (0-255) of an image grid: 2-pixel padding, scaled 2x; checks its size."""
    from PIL import Image

    grid = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert grid.shape == (2 * (rows * 30 + 2), 2 * (cols * 30 + 2))
    return np.stack([np.stack([grid[2 * (2 + i * 30):2 * (2 + i * 30) + 56:2, 2 * (2 + j * 30):2 * (2 + j * 30) + 56:2]
                               for j in range(cols)]) for i in range(rows)])


def test_training_learns_and_is_seeded(tmp_path):
    kwargs = dict(kind="split-vae", latent_dim=4, train_images=256, test_images=64, batch_size=64,
                  progress=False, device="cpu", options={"hidden": 32})
    a = train(TrainSettings(out=str(tmp_path / "a"), epochs=2, **kwargs))
    b = train(TrainSettings(out=str(tmp_path / "b"), epochs=2, **kwargs))
    log = a.metadata["training"]["log"]
    assert log[1]["mse"] < log[0]["mse"]  # it learns
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(a.encode(x), b.encode(x))  # same seed, same weights


def test_settings_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        train(TrainSettings(kind="vae", out=str(tmp_path / "x"), epochs=0))
    assert not (tmp_path / "x").exists()


def test_cli_gamma_min_is_recorded(tmp_path):
    from click.testing import CliRunner

    from latentmap.cli.main import main

    out = tmp_path / "g"
    result = CliRunner().invoke(main, ["train", "vae", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1",
                                       "--train-images", "32", "--test-images", "8", "--hidden", "8",
                                       "--gamma-min", "0.02", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["settings"]["options"]["gamma_min"] == 0.02
    assert cfg["training"]["log"][0]["gamma"] >= 0.02
