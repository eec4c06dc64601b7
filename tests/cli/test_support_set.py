"""``latentmap support-set build|show`` through click's runner: outputs, exit codes, nothing half-written."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap import load_dataset, load_model
from latentmap.io.checkpoint import model_fingerprint
from latentmap.support.build import SupportSet, build_support_set


@pytest.fixture(scope="module")
def npy_spec(tmp_path_factory):
    """300 Fashion-MNIST test images as an npy: dataset (240 train / 60 test)."""
    images = load_dataset("fashion-mnist", "test").batch(np.arange(300)).numpy()
    path = tmp_path_factory.mktemp("data") / "fmnist300.npy"
    np.save(path, images)
    return f"npy:{path}"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def base_args(ckpt, spec, out):
    return ["support-set", "build", "--model", ckpt, "--dataset", spec, "--gain-images", 100, "--pairs", 500,
            "--seed", 4, "--device", "cpu", "--no-progress", "--out", out]


def test_build_and_show(tiny_vae_checkpoint, npy_spec, tmp_path):
    out = tmp_path / "sets" / "tiny"
    result = run(*base_args(tiny_vae_checkpoint, npy_spec, out))
    assert result.exit_code == 0, result.output
    assert "8 images, strategy sectors" in result.output and "mean pairwise MSE" in result.output
    support = SupportSet.load(out)
    manifest = support.manifest
    assert manifest["model"]["origin"] == "checkpoint" and manifest["dataset"]["split"] == "train"
    assert (out / manifest["model"]["spec"]).resolve() == Path(tiny_vae_checkpoint).resolve()
    assert manifest["model"]["fingerprint"] == model_fingerprint(load_model(tiny_vae_checkpoint))
    assert manifest["top_k"] == 3 and len(manifest["sector_populations"]) == 8
    # the CLI is the library: same settings, same images
    library = build_support_set(load_model(tiny_vae_checkpoint, device="cpu"), load_dataset(npy_spec, "train"),
                                seed=4, gain_images=100, pairs=500)
    assert support.indices == library.indices

    shown = run("support-set", "show", out, "--sectors")
    assert shown.exit_code == 0, shown.output
    stats = manifest["statistics"]
    assert f"support set {stats['support_pairwise_mse']:.4f}" in shown.output
    assert f"{stats['nonempty_sectors']} of 8 populated" in shown.output
    assert shown.output.count("  sector ") == 8


def test_for_models_sets_size_and_exclude_file(tiny_vae_checkpoint, npy_spec, tmp_path):
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "config.json").write_text(json.dumps({"kind": "vae", "image_shape": [1, 28, 28], "latent_dim": 12}))
    excluded = tmp_path / "exclude.txt"
    excluded.write_text("0 1 2\n3\n")
    out = tmp_path / "wide-set"
    result = run(*base_args(tiny_vae_checkpoint, npy_spec, out), "--for-models", f"{tiny_vae_checkpoint},{wide}",
                 "--exclude", excluded, "--exclude", "4,5")
    assert result.exit_code == 0, result.output
    manifest = SupportSet.load(out).manifest
    assert manifest["size"] == 12 and manifest["top_k"] == 3
    assert manifest["for_models"] == {"tiny-vae": 8, "wide": 12}
    assert manifest["excluded"] == [0, 1, 2, 3, 4, 5] and not set(manifest["indices"]) & set(range(6))


def test_baseline_strategy(tiny_vae_checkpoint, npy_spec, tmp_path):
    out = tmp_path / "far"
    result = run(*base_args(tiny_vae_checkpoint, npy_spec, out), "--strategy", "farthest", "--size", 10)
    assert result.exit_code == 0, result.output
    assert SupportSet.load(out).manifest["strategy"] == "farthest"
    assert "strategy farthest" in run("support-set", "show", out).output


@pytest.mark.parametrize("extra, message", [
    (["--top-k", 9], "top-k must be at most the latent dimension of 'tiny-vae' (8), got 9"),
    (["--threshold", 100], "every one of the 8 sectors is empty at threshold 100"),
    (["--size", 500], "240 usable images (0 excluded), fewer than the support-set size 500"),
    (["--exclude", "1,999"], "excluded index 999 is outside dataset"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_vae_checkpoint, npy_spec, tmp_path, extra, message):
    parent = tmp_path / "sets"
    result = run(*base_args(tiny_vae_checkpoint, npy_spec, parent / "bad"), *extra)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not parent.exists() or not any(parent.iterdir())


def test_show_missing_folder(tmp_path):
    result = run("support-set", "show", tmp_path / "nothing")
    assert result.exit_code == 2 and "has no manifest.json" in result.output


# --------------------------------------------------------------------------- demo section

@pytest.fixture()
def demo_checkpoints(tiny_vae_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_vae_checkpoint, folder / "tiny-vae")
    return folder


def test_demo_shows_shipped_support_set(demo_checkpoints, npy_spec, tmp_path):
    from latentmap.demo.story import run_demo

    shipped = build_support_set(load_model(demo_checkpoints / "tiny-vae", device="cpu"), load_dataset(npy_spec),
                                gain_images=50, pairs=100, split="train", dataset_spec=npy_spec, name="fmnist-svae")
    shipped.save(tmp_path / "support_sets" / "fmnist-svae")
    result = run_demo(demo_checkpoints, tmp_path / "report", test_images=20, device="cpu")
    page = (result.out / "index.html").read_text()
    assert '<h2 id="support-set">Support set</h2>' in page and "loaded from" in page and "support_set_contact_sheet.png" in page
    summary = result.summary["support_set"]
    assert summary["size"] == 8 and summary["support_pairwise_mse"] == shipped.manifest["statistics"][
        "support_pairwise_mse"]
    assert (result.out / "support_set_info_gain.png").is_file()


def test_demo_builds_support_set_when_absent(demo_checkpoints, npy_spec, tmp_path, monkeypatch):
    import latentmap.demo.support_set as section
    from latentmap.demo.story import run_demo

    # the fallback reads the whole Fashion-MNIST train split; 240 images keep the test fast
    monkeypatch.setattr(section, "load_dataset", lambda spec, split, data_dir=None: load_dataset(npy_spec, split))
    monkeypatch.setattr(section, "FALLBACK_GAIN_IMAGES", 50)
    result = run_demo(demo_checkpoints, tmp_path / "report", test_images=20, device="cpu")
    assert "built now from 'tiny-vae'" in result.summary["support_set"]["origin"]
    built = SupportSet.load(result.out / "support_set")
    assert len(built) == 8 and built.manifest["for_models"] == {"tiny-vae": 8}
