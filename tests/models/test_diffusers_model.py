"""diffusers autoencoders (AutoencoderKL, VQModel) behind the model interface: ``diffusers:PATH``, flat C x h x w
latents checked against diffusers' own encode/decode, consent for pickled weights, fingerprints, ``models info``,
the commands on a diffusers folder, and ``latentmap train kl``."""

import json
import sys

import pytest
import torch
from click.testing import CliRunner

from tests.helpers.conformance import check_adapter, random_images
from latentmap import load_model
from latentmap.cli.main import main
from latentmap.errors import CheckpointError, DependencyError, UnsafeLoadError
from latentmap.io.checkpoint import model_fingerprint

diffusers = pytest.importorskip("diffusers")

TINY = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(4, 4, 8), layers_per_block=1,
            norm_num_groups=4, sample_size=28)


def tiny_kl(seed=0, **config):
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(**{**TINY, "latent_channels": 2, **config}).eval()


def tiny_vq(seed=0):
    torch.manual_seed(seed)
    return diffusers.VQModel(**{**TINY, "latent_channels": 3, "num_vq_embeddings": 16}).eval()


def saved(vae, folder, **kwargs):
    vae.save_pretrained(str(folder), **kwargs)
    return folder


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def kl_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    return saved(tiny_kl(0), root / "kl-a"), saved(tiny_kl(1), root / "kl-b")


# ---------------------------------------------------------------- against diffusers' own encode and decode


@pytest.mark.parametrize("config", [{}, {"scaling_factor": 0.5, "shift_factor": 0.25},
                                    {"scaling_factor": 0.7, "latents_mean": [0.1, -0.2], "latents_std": [2.0, 0.5]}])
def test_encode_and_decode_equal_diffusers_own_with_its_normalisation(config, tmp_path):
    vae = tiny_kl(0, **config)
    model = load_model(f"diffusers:{saved(vae, tmp_path / 'vae')}")
    x = random_images(5, (1, 28, 28))
    factor = config.get("scaling_factor", 0.18215)
    mean = torch.tensor(config.get("latents_mean", [config.get("shift_factor", 0.0)] * 2)).view(1, 2, 1, 1)
    std = torch.tensor(config.get("latents_std", [1.0, 1.0])).view(1, 2, 1, 1)
    with torch.no_grad():
        posterior = vae.encode(x * 2 - 1).latent_dist  # diffusers sees [-1, 1]
        expected = (posterior.mean - mean) * factor / std
        z = model.encode(x)
        assert model.latent_shape == (2, 7, 7) and z.shape == (5, 2 * 7 * 7)
        torch.testing.assert_close(z, expected.reshape(5, -1), rtol=0, atol=1e-6)  # C-order flattening
        images = ((vae.decode(expected * std / factor + mean).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(model.decode(z), images, rtol=0, atol=1e-5)
        mu, logvar = model.encode_stats(x)
        torch.testing.assert_close(logvar, (posterior.logvar + 2 * torch.log(factor / std)).reshape(5, -1),
                                   rtol=0, atol=1e-5)
    assert model.vae_like and not model.has_prior and model.objective == "vae"


def test_a_diffusers_autoencoder_passes_the_adapter_conformance(kl_folders, tmp_path):
    model = load_model(f"diffusers:{kl_folders[0]}")
    check_adapter(model, random_images(6, (1, 28, 28)), tmp_path)  # saved as a latentmap checkpoint, reloaded


def test_posterior_samples_are_the_option_not_the_default(kl_folders):
    from latentmap.models.diffusers_model import DiffusersAutoencoder

    vae = diffusers.AutoencoderKL.from_pretrained(str(kl_folders[0]))
    x = random_images(3, (1, 28, 28))
    mean = DiffusersAutoencoder("m", vae).encode(x)
    drawn = DiffusersAutoencoder("s", vae, sample_posterior=True, seed=3)
    first = drawn.encode(x)
    assert not torch.allclose(first, mean) and torch.equal(
        DiffusersAutoencoder("s", vae, sample_posterior=True, seed=3).encode(x), first)  # seeded
    assert drawn.architecture()["encode"] == "posterior sample" and "posterior sample" != \
        DiffusersAutoencoder("m", vae).architecture()["encode"]


def test_vq_model_encodes_as_its_forward_and_quantizes_on_request(tmp_path):
    vq = tiny_vq()
    folder = saved(vq, tmp_path / "vq")
    model = load_model(f"diffusers:{folder}")
    x = random_images(4, (1, 28, 28))
    with torch.no_grad():
        forward = ((vq(x * 2 - 1).sample + 1) / 2).clamp(0, 1)
        h = vq.encode(x * 2 - 1).latents
        torch.testing.assert_close(model.reconstruct(x), forward, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.encode(x), (h * 0.18215).reshape(4, -1), rtol=0, atol=1e-6)
        model.quantize = True
        quantized = model.encode(x).reshape(4, 3, 7, 7) / 0.18215
        codebook = vq.quantize.embedding.weight  # every quantized position is a codebook vector
        vectors = quantized.permute(0, 2, 3, 1).reshape(-1, 3)
        assert torch.cdist(vectors, codebook).min(dim=1).values.max() < 1e-5
        torch.testing.assert_close(model.reconstruct(x), forward, rtol=0, atol=1e-5)
    assert not model.vae_like and model.objective == "autoencoder" and model.architecture()["encode"] == "quantized"


# ---------------------------------------------------------------- folders, consent, dependencies


def test_a_pipeline_folder_loads_its_vae_subfolder_and_records_that_path(kl_folders, tmp_path):
    import shutil

    pipeline = tmp_path / "pipe"
    shutil.copytree(kl_folders[0], pipeline / "vae")
    (pipeline / "model_index.json").write_text("{}")
    model = load_model(f"diffusers:{pipeline}")
    assert model.provenance == {"origin": "diffusers", "spec": str(pipeline / "vae")}
    again = load_model(model.provenance["spec"])  # the recorded path loads without the prefix
    assert model_fingerprint(again) == model_fingerprint(model)


def test_pickled_weights_need_the_trust_flag(tmp_path):
    folder = saved(tiny_kl(0), tmp_path / "bin", safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(UnsafeLoadError, match=r"diffusion_pytorch_model\.bin.*--trust-pickle"):
        load_model(f"diffusers:{folder}")
    refused = invoke("diagnose", "--model", f"diffusers:{folder}", "--images", "8", "--out", tmp_path / "d")
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "--trust-pickle" in refused.output and not (tmp_path / "d").exists()
    model = load_model(f"diffusers:{folder}", allow_pickle=True)
    assert model.latent_shape == (2, 7, 7)
    info = invoke("models", "info", folder)
    assert info.exit_code == 0 and "needs --trust-pickle" in info.output


def test_safetensors_win_over_a_pickle_beside_them(kl_folders, tmp_path):
    import shutil

    folder = tmp_path / "both"
    shutil.copytree(kl_folders[0], folder)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not a pickle: never read")
    assert load_model(f"diffusers:{folder}").latent_dim == 98


def test_without_diffusers_the_error_says_how_to_install_it(kl_folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(DependencyError, match=r"pip install 'latentmap\[diffusers\]'"):
        load_model(f"diffusers:{kl_folders[0]}")


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ({"_class_name": "UNet2DModel"}, "UNet2DModel"),
                                              ({"_class_name": "AutoencoderKL"}, "holds no weights")])
def test_folders_that_are_no_autoencoder_are_one_line_errors(content, message, tmp_path):
    folder = tmp_path / "f"
    if content is not None:
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match=message):
        load_model(f"diffusers:{folder}")
    result = invoke("diagnose", "--model", f"diffusers:{folder}", "--images", "8")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output


# ---------------------------------------------------------------- latentmap's own checkpoints of a diffusers model


def test_a_saved_checkpoint_is_a_diffusers_folder_and_the_same_model_both_ways(kl_folders, tmp_path):
    model = load_model(f"diffusers:{kl_folders[0]}")
    model.save(tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["kind"] == "diffusers" and config["latent_shape"] == [2, 7, 7] and config["latent_dim"] == 98
    as_checkpoint, as_diffusers = load_model(tmp_path / "ck"), load_model(f"diffusers:{tmp_path / 'ck'}")
    assert as_checkpoint.provenance["origin"] == "checkpoint" and as_diffusers.provenance["origin"] == "diffusers"
    assert model_fingerprint(as_checkpoint) == model_fingerprint(as_diffusers) == model_fingerprint(model)
    plain = diffusers.AutoencoderKL.from_pretrained(str(tmp_path / "ck"))  # diffusers reads it as its own
    x = random_images(2, (1, 28, 28))
    with torch.no_grad():
        torch.testing.assert_close(as_checkpoint.encode(x), plain.encode(x * 2 - 1).latent_dist.mean.reshape(2, -1)
                                   * plain.config.scaling_factor, rtol=0, atol=1e-6)
    (tmp_path / "ck" / "diffusion_pytorch_model.safetensors").write_bytes(b"changed")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "ck")


def test_models_info_and_list_describe_a_diffusers_folder_from_its_files(kl_folders):
    result = invoke("models", "info", f"diffusers:{kl_folders[0]}")
    assert result.exit_code == 0, result.output
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in result.output.splitlines()}
    assert fields["kind"].startswith("diffusers AutoencoderKL")
    assert fields["latent size"].startswith("98 = 2 x 7 x 7")
    assert fields["image shape"] == "1 x 28 x 28" and fields["prior"].startswith("no prior")
    assert fields["encode"].startswith("the posterior mean") and "0.18215" in fields["latents"]
    assert f"about {390456 / 1024:.1f} KB to fit (99 x 99 float64" in fields["memory"]
    listing = invoke("models", "list", kl_folders[0].parent)
    rows = {line.split()[0]: line for line in listing.output.splitlines()[1:]}
    assert listing.exit_code == 0 and "2 x 7 x 7" in rows["kl-a"] and " 98 " in rows["kl-a"]


# ---------------------------------------------------------------- the commands on diffusers folders


def test_map_fit_eval_atlas_bench_and_diagnose_run_on_diffusers_folders(kl_folders, tmp_path):
    a, b = (f"diffusers:{folder}" for folder in kl_folders)
    fit = invoke("map", "fit", "--source", a, "--target", b, "--dataset", "fashion-mnist", "--fit-images", "150",
                 "--out", tmp_path / "map", "--no-progress", "--device", "cpu")
    assert fit.exit_code == 0, fit.output
    record = json.loads((tmp_path / "map" / "map.json").read_text())
    assert record["source"]["origin"] == "diffusers" and record["source"]["latent_shape"] == [2, 7, 7]
    assert "diffusers:" not in record["source"]["spec"]  # a plain path, kept relative to the map
    ev = invoke("map", "eval", "--map", tmp_path / "map", "--images", "16", "--lpips", "off",
                "--out", tmp_path / "eval", "--no-progress", "--device", "cpu")
    assert ev.exit_code == 0, ev.output
    atlas = invoke("map", "atlas", "--models", f"{a},{b}", "--fit-images", "150", "--images", "16", "--lpips", "off",
                   "--out", tmp_path / "atlas", "--no-progress", "--device", "cpu")
    assert atlas.exit_code == 0, atlas.output
    assert (tmp_path / "atlas" / "index.html").is_file()
    bench = invoke("bench", "expressiveness", a, "--images", "16", "--samples", "16", "--refine-images", "2",
                   "--steps", "2", "--bootstrap", "200", "--fit-images", "200", "--lpips", "off",
                   "--out", tmp_path / "expr", "--no-progress", "--device", "cpu")
    assert bench.exit_code == 0, bench.output
    diagnose = invoke("diagnose", "--model", a, "--images", "40", "--no-tsne", "--out", tmp_path / "diag",
                      "--no-progress", "--device", "cpu")
    assert diagnose.exit_code == 0, diagnose.output


def test_a_map_refuses_a_diffusers_folder_whose_weights_changed(kl_folders, tmp_path):
    import shutil

    source, target = tmp_path / "a", tmp_path / "b"
    shutil.copytree(kl_folders[0], source)
    shutil.copytree(kl_folders[1], target)
    fit = invoke("map", "fit", "--source", f"diffusers:{source}", "--target", f"diffusers:{target}", "--dataset",
                 "fashion-mnist", "--fit-images", "120", "--out", tmp_path / "map", "--no-progress", "--device", "cpu")
    assert fit.exit_code == 0, fit.output
    saved(tiny_kl(7), target)  # other weights, same architecture, same folder
    result = invoke("map", "eval", "--map", tmp_path / "map", "--images", "8", "--lpips", "off",
                    "--out", tmp_path / "eval", "--no-progress")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "is not the one" in result.output and "fingerprint" in result.output and not (tmp_path / "eval").exists()


# ---------------------------------------------------------------- latentmap train kl


def test_train_kl_writes_a_diffusers_checkpoint_with_its_measured_numbers(tmp_path):
    out = tmp_path / "kl"
    result = invoke("train", "kl", "--channels", "4,4,8", "--latent-channels", "2", "--train-images", "96",
                    "--test-images", "32", "--batch-size", "32", "--epochs", "1", "--seed", "3", "--device", "cpu",
                    "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    model = load_model(out)
    config = json.loads((out / "config.json").read_text())
    assert model.latent_shape == (2, 7, 7) and config["_class_name"] == "AutoencoderKL"
    assert config["training"]["settings"]["options"]["latent_channels"] == 2
    import numpy as np

    from latentmap import load_dataset
    from latentmap.evaluation.metrics import reconstruction_mse

    rng = np.random.default_rng(3)  # the seeded subsets the trainer drew: training images first, then test images
    train = load_dataset("fashion-mnist", "train").random_subset(96, rng)
    test = load_dataset("fashion-mnist", "test").random_subset(32, rng)
    assert config["metrics"]["test_mse"] == pytest.approx(reconstruction_mse(model, test), rel=1e-5)
    # scaling_factor: the posterior means of the training images have unit standard deviation
    assert float(model.encode(train.batch(range(96))).double().std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
    refused = invoke("train", "kl", "--latent-dim", "16", "--out", tmp_path / "x")
    assert refused.exit_code == 2 and "--latent-channels" in refused.output
    refused = invoke("train", "vae", "--latent-channels", "4", "--out", tmp_path / "y")
    assert refused.exit_code == 2 and "only used with `latentmap train kl`" in refused.output


def test_a_flattened_map_that_cannot_fit_in_memory_is_refused_before_any_work(kl_folders, tmp_path, monkeypatch):
    from latentmap.resources import MEMORY_ENV, flattened_map_bytes

    assert flattened_map_bytes(98, 98) == 8 * (3 * 99 * 99 + 2 * 99 * 98)  # by hand: 390 KB
    monkeypatch.setenv(MEMORY_ENV, str(100_000))
    a, b = (f"diffusers:{folder}" for folder in kl_folders)
    for argv in (["map", "fit", "--source", a, "--target", b, "--dataset", "fashion-mnist", "--out", tmp_path / "m"],
                 ["map", "atlas", "--models", f"{a},{b}", "--out", tmp_path / "atlas"]):
        result = invoke(*argv, "--no-progress", "--device", "cpu")
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert "98 = 2 x 7 x 7 flattened" in result.output and f"{390456 / 1024:.1f} KB" in result.output
        assert not (tmp_path / "m").exists() and not (tmp_path / "atlas").exists()


def test_an_rgb_autoencoder_takes_grayscale_images_through_the_image_transform(tmp_path):
    torch.manual_seed(0)
    rgb = diffusers.AutoencoderKL(**{**TINY, "in_channels": 3, "out_channels": 3, "sample_size": 32,
                                     "latent_channels": 2})
    spec = f"diffusers:{saved(rgb, tmp_path / 'rgb')}"
    assert load_model(spec).image_shape == (3, 32, 32) and load_model(spec).latent_shape == (2, 8, 8)
    refused = invoke("diagnose", "--model", spec, "--images", "16", "--out", tmp_path / "d", "--no-progress")
    assert refused.exit_code == 2 and "--image-transform auto" in refused.output
    result = invoke("diagnose", "--model", spec, "--images", "16", "--image-transform", "auto", "--no-geometry",
                    "--no-tsne", "--out", tmp_path / "d", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
