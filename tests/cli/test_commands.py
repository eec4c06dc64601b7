import shutil
import sys
from unittest import mock

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from latentmap.cli.main import main
from latentmap.io.atomic import write_output_marker


@pytest.fixture
def runner():
    return CliRunner()


def test_help_lists_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "datasets", "models", "demo"):
        assert name in result.output


def test_datasets_list(runner):
    result = runner.invoke(main, ["datasets", "list"])
    assert result.exit_code == 0
    assert "digits" in result.output and "yes" in result.output


def test_models_list(runner, tiny_vae_checkpoint):
    result = runner.invoke(main, ["models", "list", str(tiny_vae_checkpoint.parent)])
    assert result.exit_code == 0, result.output
    line = [s for s in result.output.splitlines() if s.startswith("tiny-vae")][0]
    assert "vae" in line and " 8 " in line and "fashion-mnist" in line


def test_models_list_empty_dir_exit_2(runner, tmp_path):
    result = runner.invoke(main, ["models", "list", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no checkpoint" in result.output


def test_train_cli_writes_checkpoint(runner, tmp_path):
    out = tmp_path / "m"
    result = runner.invoke(main, ["train", "vae", "--dataset", "digits", "--latent-dim", "3", "--epochs", "1",
                                  "--train-images", "64", "--test-images", "16", "--hidden", "8",
                                  "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test MSE" in result.output and (out / "config.json").is_file()


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "npy:/no/such.npy"], "does not exist"),
    (["--channels", "a,b"], "comma-separated"),
    (["--epochs", "0"], "0"),
    (["--device", "tpu"], "device must be"),
])
def test_train_bad_input_exit_2_nothing_written(runner, tmp_path, args, message):
    out = tmp_path / "m"
    result = runner.invoke(main, ["train", "vae", "--out", str(out), "--no-progress", "--epochs", "1",
                                  "--train-images", "32"] + args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_demo_on_tiny_checkpoint(runner, tmp_path, tiny_vae_checkpoint):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from latentmap import load_dataset, load_model

    ckdir = tmp_path / "cks"
    shutil.copytree(tiny_vae_checkpoint, ckdir / "tiny-vae")
    shipped_support = ROOT / "support_sets" / "fmnist-svae"
    if (shipped_support / "manifest.json").is_file():  # loading it beside the checkpoints spares a 60,000-image build
        shutil.copytree(shipped_support, tmp_path / "support_sets" / "fmnist-svae")
    out = tmp_path / "report"
    result = runner.invoke(main, ["demo", "--checkpoints", str(ckdir), "--out", str(out), "--images", "64"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file() and (out / "reconstruction_tiny-vae.png").is_file()
    csv = (out / "reconstruction_mse.csv").read_text().splitlines()
    assert csv[0].startswith("model,kind,latent_dim,test_mse") and csv[1].startswith("tiny-vae,vae,8,")
    # the table's MSE: the checkpoint's reconstructions of the first 64 test images, recomputed in numpy
    model = load_model(tiny_vae_checkpoint, device="cpu")
    x = load_dataset("fashion-mnist", "test").batch(np.arange(64))
    recon = model.decode(model.encode(x))
    table = pd.read_csv(out / "reconstruction_mse.csv")
    assert table.loc[0, "test_images"] == 64
    assert table.loc[0, "test_mse"] == pytest.approx(float(((recon.double() - x.double()) ** 2).mean()), rel=1e-5)
    # the grid: originals on top, reconstructions below, 12 evenly spaced images; 28-pixel cells, 2-pixel
    # padding, scaled 2x, right of a margin that labels the rows
    grid = np.asarray(Image.open(out / "reconstruction_tiny-vae.png").convert("L"), dtype=np.float64)
    margin = grid.shape[1] - 2 * (12 * 30 + 2)
    assert grid.shape[0] == 2 * (2 * 30 + 2) and margin > 0 and (grid[:, :margin] < 128).sum() > 20
    columns = np.linspace(0, 63, 12).round().astype(int)
    for row, images in enumerate((x, recon)):
        for j, k in enumerate(columns):
            top, left = 2 * (2 + row * 30), margin + 2 * (2 + j * 30)
            cell = grid[top:top + 56:2, left:left + 56:2]
            np.testing.assert_allclose(cell, images[k, 0].double().numpy() * 255, atol=1.0)


def test_demo_bad_checkpoints_keeps_previous_report(runner, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("previous")
    write_output_marker(out, "report")  # an earlier demo report
    result = runner.invoke(main, ["demo", "--checkpoints", str(tmp_path / "none"), "--out", str(out), "--overwrite"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert (out / "index.html").read_text() == "previous"
    # without the marker the folder is someone else's: refused before any work, and left alone
    (out / ".latentmap-output.json").unlink()
    result = runner.invoke(main, ["demo", "--out", str(out), "--overwrite"])
    assert result.exit_code == 2 and "was not written by latentmap" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]


def test_quiet_holds_for_its_own_invocation_only():
    from latentmap.batching import progress_shown
    from tests.helpers.progress import Terminal

    shown = []
    for args in (["-q", "models", "list"], ["models", "list"]):
        assert CliRunner().invoke(main, args).exit_code == 0
        with mock.patch.object(sys, "stderr", Terminal()):
            shown.append(progress_shown(True))
    assert shown == [False, True]  # a later invocation in the same process shows its bars again
