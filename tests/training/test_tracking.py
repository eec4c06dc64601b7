"""Trajectories of fixed images during training (``latentmap train ... --track N``)."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.data.images import TensorImageDataset
from latentmap.errors import ConfigError
from latentmap.training.tracking import Trajectories, TrajectoryRecorder, choose_tracked


def test_choose_tracked_takes_one_per_class_in_turn():
    labels = np.array([3, 3, 1, 0, 1, 0, 2, 3])
    idx = choose_tracked(labels, 4)
    assert sorted(labels[idx].tolist()) == [0, 1, 2, 3]
    assert idx.tolist() == [3, 2, 6, 0]  # the first image of classes 0, 1, 2, 3
    assert choose_tracked(labels, 6).tolist() == [3, 2, 6, 0, 5, 4]  # then the second of each
    assert choose_tracked(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ConfigError):
        choose_tracked(labels, 0)


class _Affine:
    """A stand-in VAE encoder: mu = mean pixel * a + b per variable, logvar = log(s) (set by the test)."""

    vae_like = True
    device = torch.device("cpu")

    def __init__(self):
        self.a, self.s, self.m = torch.tensor([1.0, -2.0]), 1.0, torch.nn.Linear(1, 1)

    def modules(self):
        return {"m": self.m}

    def encode_stats(self, x):
        p = x.mean((1, 2, 3))[:, None]
        return p * self.a, torch.full((len(x), 2), float(np.log(self.s)))


def test_recorder_records_means_variances_and_the_probe_statistics():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 4, 4, generator=gen)
    ds = TensorImageDataset("t", images, torch.arange(40) % 4)
    model = _Affine()
    model.m.train()
    rec = TrajectoryRecorder(model, ds, 4, every=3, steps_per_epoch=6, probe=20)
    for step in range(1, 8):
        model.s = 1.0 / (step + 1)
        rec.step(step)
    traj = rec.finish(7)
    assert model.m.training  # the training mode is given back after every record
    assert traj.steps.tolist() == [0, 3, 6, 7]
    np.testing.assert_allclose(traj.epochs, [0, 0.5, 1.0, 7 / 6])
    p = images.mean((1, 2, 3))
    np.testing.assert_allclose(traj.mu[0], (p[rec.indices][:, None] * model.a).numpy(), rtol=1e-6)
    np.testing.assert_allclose(traj.var[1], 1 / 4, rtol=1e-6)
    # E[sigma^2] and Var(mu) over the first 20 images, averaged over both variables
    expected_var_mu = float(np.mean(np.var((p[:20, None] * model.a).numpy().astype(np.float64), axis=0)))
    np.testing.assert_allclose(traj.var_mu, expected_var_mu, rtol=1e-6)
    np.testing.assert_allclose(traj.mean_sigma2, [1, 1 / 4, 1 / 7, 1 / 8], rtol=1e-6)
    np.testing.assert_allclose(traj.law, traj.var_mu + traj.mean_sigma2)
    assert traj.sigma2_drop(1.0) == pytest.approx(7.0)
    assert sorted(traj.labels.tolist()) == [0, 1, 2, 3]


def test_cli_track_writes_trajectories_and_figures(tmp_path):
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["train", "vae", "--dataset", "digits", "--latent-dim", "2", "--epochs", "2",
                                       "--train-images", "64", "--test-images", "40", "--hidden", "8",
                                       "--batch-size", "16", "--track", "10", "--track-every", "3",
                                       "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("trajectories.npz", "trajectories.csv", "trajectory_stats.csv", "trajectories.png",
                 "trajectories.gif"):
        assert (out / name).stat().st_size > 0, name
    traj = Trajectories.load(out / "trajectories.npz")
    assert traj.steps.tolist() == [0, 3, 6, 8]  # 4 steps per epoch, 2 epochs: every 3 steps and the last
    assert traj.mu.shape == (4, 10, 2) and traj.has_variance
    assert sorted(traj.labels.tolist()) == list(range(10))  # one image per class of the held-out split
    rows = (out / "trajectories.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 10
    assert (out / "trajectories.gif").read_bytes()[:6] == b"GIF89a"
    assert traj.mean_sigma2[0] == pytest.approx(1.0, abs=0.3)  # logvar starts near 0


def test_cli_track_refuses_generators_without_encoder(tmp_path):
    result = CliRunner().invoke(main, ["train", "gan", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1",
                                       "--train-images", "32", "--track", "10", "--out", str(tmp_path / "g"),
                                       "--no-progress"])
    assert result.exit_code == 2
    assert "--track needs an encoder" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plain_autoencoder_trains_on_the_mse_and_tracks_its_latent(tmp_path):
    out = tmp_path / "ae"
    result = CliRunner().invoke(main, ["train", "ae", "--dataset", "digits", "--latent-dim", "3", "--epochs", "1",
                                       "--train-images", "64", "--test-images", "40", "--hidden", "8",
                                       "--batch-size", "16", "--track", "5", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    from latentmap import load_model

    model = load_model(str(out), device="cpu")
    assert model.kind == "ae" and not model.has_prior and not getattr(model, "vae_like", False)
    assert model.metadata["training"]["log"][0]["kl"] == 0.0
    assert model.metadata["training"]["loss"] == "mean squared error"
    traj = Trajectories.load(out / "trajectories.npz")
    assert traj.mu.shape == (2, 5, 3) and not traj.has_variance and np.isnan(traj.var).all()
    assert np.isnan(traj.mean_sigma2).all() and np.isfinite(traj.var_mu).all()
    x = load_dataset_batch()
    np.testing.assert_allclose(traj.mu[-1], model.encode(x[traj.indices]).numpy(), rtol=1e-5, atol=1e-6)


def load_dataset_batch():
    from latentmap.training.common import TrainSettings, load_splits

    _, test = load_splits(TrainSettings(kind="ae", out="-", dataset="digits", train_images=64, test_images=40))
    return test.all_images()


def test_plain_autoencoder_passes_the_adapter_conformance(tmp_path):
    from tests.helpers.conformance import check_adapter, random_images

    from latentmap.models import ADAPTERS, ConvAE

    assert ADAPTERS["ae"] is ConvAE
    model = ConvAE("ae", (1, 28, 28), 3, channels=[4, 8], hidden=16)
    assert not model.has_prior and model.objective == "autoencoder"
    check_adapter(model, random_images(4, (1, 28, 28)), tmp_path)
