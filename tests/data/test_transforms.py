"""Models whose images differ in shape: image transforms, maps across them, the CLI, the padded dataset, the inverter."""

import html
import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from tests.helpers import external as hx
from latentmap import LinearMap, load_dataset, load_model
from latentmap.cli.main import main
from latentmap.data.transforms import canonical_spec, image_transform, transformed_dataset
from latentmap.errors import ConfigError, ShapeMismatchError
from latentmap.evaluation.atlas import build_atlas
from latentmap.evaluation.relocation import evaluate_relocation, relocation_rows
from latentmap.maps.fitting import FitSource, fit_map, pair_transform
from latentmap.models.wrapped import wrap


# --------------------------------------------------------------------------- transforms against PIL / numpy

def _rand(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))


@pytest.mark.parametrize("size", [(14, 14), (32, 32), (20, 36)])
def test_resize_matches_pil_bilinear(size):
    x = _rand((3, 1, 28, 28))
    out = image_transform("resize", (1, 28, 28), (1, *size))(x)
    for k in range(3):
        ref = np.asarray(Image.fromarray(x[k, 0].numpy(), mode="F").resize((size[1], size[0]), Image.BILINEAR))
        np.testing.assert_allclose(out[k, 0].numpy(), ref, atol=2e-6)


def test_area_resize_is_the_mean_of_blocks():
    x = _rand((2, 3, 28, 28), seed=1)
    out = image_transform("resize=area", (3, 28, 28), (3, 14, 7))(x)
    ref = x.numpy().reshape(2, 3, 14, 2, 7, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)


def test_pad_and_crop_against_numpy():
    x = _rand((2, 1, 28, 28), seed=2)
    padded = image_transform("pad", (1, 28, 28), (1, 32, 33))(x)
    np.testing.assert_array_equal(padded.numpy(), np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 3))))
    grey_pad = image_transform("pad=0.5", (1, 28, 28), (1, 30, 30))(x)
    np.testing.assert_array_equal(grey_pad.numpy(), np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)),
                                                           constant_values=0.5))
    cropped = image_transform("center-crop", (1, 28, 28), (1, 20, 25))(x)
    np.testing.assert_array_equal(cropped.numpy(), x.numpy()[:, :, 4:24, 1:26])
    # the same spec undoes itself: pad 28 -> 32, then back 32 -> 28 is a crop
    back = image_transform("pad", (1, 32, 33), (1, 28, 28))(padded)
    assert torch.equal(back, x)


def test_grey_and_rgb_against_pil_and_numpy():
    rgb = (_rand((2, 3, 8, 8), seed=3) * 255).round() / 255
    grey = image_transform("grey", (3, 8, 8), (1, 8, 8))(rgb)
    for k in range(2):
        pil = Image.fromarray((rgb[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), "RGB").convert("L")
        np.testing.assert_allclose(grey[k, 0].numpy() * 255, np.asarray(pil, dtype=np.float64), atol=0.51)
    g = _rand((2, 1, 8, 8), seed=4)
    np.testing.assert_array_equal(image_transform("rgb", (1, 8, 8), (3, 8, 8))(g).numpy(),
                                  np.repeat(g.numpy(), 3, axis=1))


def test_auto_converts_channels_resizes_the_shorter_side_and_crops():
    x = _rand((1, 3, 64, 48), seed=5)
    t = image_transform("auto", (3, 64, 48), (1, 32, 32))
    assert [op[0] for op in t.ops] == ["grey", "resize", "center"] and t.ops[1][1] == (43, 32)
    grey = image_transform("grey", (3, 64, 48), (1, 64, 48))(x)
    ref = image_transform("center-crop", (1, 43, 32), (1, 32, 32))(image_transform("resize", (1, 64, 48),
                                                                                   (1, 43, 32))(grey))
    torch.testing.assert_close(t(x), ref)


@pytest.mark.parametrize("spec", ["auto", "pad", "resize", "resize=area", "center-crop", "grey", "rgb", "identity"])
def test_equal_shapes_are_the_identity(spec):
    t = image_transform(spec, (1, 28, 28), (1, 28, 28))
    x = _rand((2, 1, 28, 28))
    assert t.identity and t(x) is x


@pytest.mark.parametrize("spec,fragment", [("bogus", "unknown image transform step"), ("pad=2", "[0, 1]"),
                                           ("auto,pad", "stands alone"), ("resize=cubic", "bilinear or area"),
                                           ("", "non-empty"), ("grey=1", "unknown")])
def test_bad_specs_are_config_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        canonical_spec(spec)


def test_a_spec_that_cannot_reach_the_target_says_what_to_add():
    with pytest.raises(ShapeMismatchError, match="add rgb"):
        image_transform("pad", (1, 28, 28), (3, 32, 32))
    with pytest.raises(ShapeMismatchError, match="add resize, pad or center-crop"):
        image_transform("grey", (3, 28, 28), (1, 32, 32))
    assert image_transform("rgb,pad", (1, 28, 28), (3, 32, 32))(_rand((1, 1, 28, 28))).shape == (1, 3, 32, 32)


# --------------------------------------------------------------------------- a 4x4 -> 6x6 pair with a known answer

class _CropEncoder(nn.Module):
    """mu = E (crop(x) - 0.5): the 4x4 model's encoder on the centre of a 6x6 image (no crop for 4x4)."""

    def __init__(self, enc, side):
        super().__init__()
        self.register_buffer("enc", enc)
        self.side = side

    def forward(self, x):
        m = (self.side - 4) // 2
        return ((x[:, :, m:m + 4, m:m + 4].flatten(1).double() - 0.5) @ self.enc.T).float()


class _PadDecoder(nn.Module):
    def __init__(self, dec, side):
        super().__init__()
        self.register_buffer("dec", dec)
        self.side = side

    def forward(self, z):
        x = (0.5 + z.double() @ self.dec.T).float().reshape(len(z), 1, 4, 4)
        m = (self.side - 4) // 2
        return nn.functional.pad(x, (m, m, m, m))


def padded_pair(d=5):
    """A (4x4) and B (6x6, the same model on zero-padded images): through 'pad', A -> B is the identity map."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(16, d)))
    dec = torch.from_numpy(0.05 * q)
    enc = torch.linalg.pinv(dec)
    a = wrap(_CropEncoder(enc, 4), _PadDecoder(dec, 4), image_shape=(1, 4, 4), name="small")
    b = wrap(_CropEncoder(enc, 6), _PadDecoder(dec, 6), image_shape=(1, 6, 6), name="large")
    return a, b


def _images(n=200, seed=0):
    return _rand((n, 1, 4, 4), seed=seed).mul(0.6).add(0.2)


def test_without_a_transform_the_pair_is_refused():
    a, b = padded_pair()
    with pytest.raises(ShapeMismatchError, match="--image-transform"):
        fit_map(a, b, FitSource("dataset", 200, data=_images()), LinearMap())


def test_pair_fits_through_pad_and_relocates_like_the_target(tmp_path):
    a, b = padded_pair()
    m = fit_map(a, b, FitSource("dataset", 200, data=_images()), LinearMap(), image_transform="pad")
    np.testing.assert_allclose(m.coef_, np.eye(5), atol=1e-5)
    assert m.image_transform_ == {"spec": "pad", "from": [1, 4, 4], "to": [1, 6, 6]}
    test = _images(100, seed=1)
    r = evaluate_relocation(a, b, m, test, lpips="off")  # the map's own transform, by default
    assert r.relocated_mse == pytest.approx(r.target_mse, rel=1e-4) and r.ratio == pytest.approx(1.0, abs=1e-4)
    # A is judged on its 16 pixels, B on 36 of which the 20 padded ones are reproduced exactly
    assert r.source_mse == pytest.approx(r.target_mse * 36 / 16, rel=1e-4)
    by_hand = ((b.decode(m.transform(a.encode(test))) - nn.functional.pad(test, (1, 1, 1, 1))) ** 2).mean()
    assert r.relocated_mse == pytest.approx(float(by_hand), rel=1e-5)
    rows = relocation_rows(a, b, m, test[:3])
    assert [tuple(row.shape) for row in rows] == [(3, 1, 6, 6)] * 4
    m.save(tmp_path / "m", source=a, target=b)
    loaded = LinearMap.load(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "map.json").read_text())["image_transform"] == m.image_transform_
    assert pair_transform(loaded).spec == "pad"
    assert evaluate_relocation(a, b, loaded, test, lpips="off").ratio == pytest.approx(r.ratio, rel=1e-9)


def test_reverse_direction_and_samples_fit():
    a, b = padded_pair()
    m = fit_map(b, a, FitSource("samples", 300, seed=0), LinearMap(), image_transform="pad")
    np.testing.assert_allclose(m.coef_, np.eye(5), atol=1e-4)
    assert m.image_transform_["from"] == [1, 6, 6] and m.image_transform_["to"] == [1, 4, 4]


def test_equal_shapes_change_nothing(tmp_path):
    a, _ = padded_pair()
    c, _ = padded_pair(d=5)
    c.name = "small-2"
    data = FitSource("dataset", 200, data=_images())
    plain = fit_map(a, c, data, LinearMap())
    through = fit_map(a, c, data, LinearMap(), image_transform="auto")
    assert not hasattr(through, "image_transform_") and np.array_equal(plain.coef_, through.coef_)
    through.save(tmp_path / "m", source=a, target=c)
    assert "image_transform" not in json.loads((tmp_path / "m" / "map.json").read_text())
    r1 = evaluate_relocation(a, c, plain, _images(50, 1), lpips="off")
    r2 = evaluate_relocation(a, c, plain, _images(50, 1), lpips="off", image_transform="resize")
    assert r1.to_dict() == r2.to_dict()


def test_atlas_serves_each_model_its_own_shape():
    a, b = padded_pair()
    test = _images(60, seed=3)
    with pytest.warns(UserWarning, match="skipping model 'large'"):
        with pytest.raises(ConfigError, match="at least 2 models"):
            build_atlas([a, b], test, FitSource("dataset", 200, data=_images()), lpips="off")
    with pytest.warns(UserWarning, match="image transform 'pad'"):
        atlas = build_atlas([a, b], test, FitSource("dataset", 200, data=_images()), lpips="off",
                            image_transform="pad")
    assert {(r.source, r.target) for r in atlas.results} == {("small", "large"), ("large", "small")}
    assert all(r.ratio == pytest.approx(1.0, abs=1e-4) for r in atlas.results)
    info = {m["name"]: m for m in atlas.models}
    assert "image_transform" not in info["small"] and info["large"]["image_transform"]["to"] == [1, 6, 6]


def test_transformed_dataset_keeps_labels():
    ds = load_dataset("digits", "test")
    t = transformed_dataset(ds, image_transform("pad", ds.image_shape, (1, 12, 12)))
    assert t.image_shape == (1, 12, 12) and torch.equal(t.labels, ds.labels)
    assert torch.equal(t.batch([0, 5])[:, :, 2:10, 2:10], ds.batch([0, 5]))


# --------------------------------------------------------------------------- the padded dataset

def test_builtin_datasets_take_pad():
    plain, padded = load_dataset("digits", "train"), load_dataset("digits?pad=3", "train")
    assert padded.image_shape == (1, 14, 14)
    x = padded.batch([0, 1])
    assert torch.equal(x[:, :, 3:11, 3:11], plain.batch([0, 1])) and float(x[:, :, :3].abs().sum()) == 0
    with pytest.raises(ConfigError, match="pad must be a non-negative integer"):
        load_dataset("digits?pad=-1", "train")


# --------------------------------------------------------------------------- the CLI on a 32x32 and a 28x28 VAE

@pytest.fixture(scope="module")
def vae32(tmp_path_factory):
    """A VAE trained for one epoch on 300 Fashion-MNIST images padded to 32x32."""
    from latentmap.training import TrainSettings, train

    out = tmp_path_factory.mktemp("ckpt32") / "tiny-vae-32"
    train(TrainSettings(kind="vae", out=str(out), dataset="fashion-mnist?pad=2", latent_dim=6, epochs=1,
                        train_images=300, test_images=50, batch_size=64, progress=False, device="cpu"))
    return out


def _run(*argv):
    return CliRunner().invoke(main, [str(a) for a in argv])


def test_padded_dataset_round_trips_through_the_checkpoint(vae32):
    model = load_model(vae32)
    assert model.image_shape == (1, 32, 32) and model.metadata["dataset"] == "fashion-mnist?pad=2"


def test_cli_fits_and_evaluates_32_to_28_with_the_recorded_transform(vae32, tiny_vae_checkpoint, tmp_path):
    out = tmp_path / "map"
    res = _run("map", "fit", "--source", vae32, "--target", tiny_vae_checkpoint, "--dataset", "fashion-mnist",
               "--fit-images", 300, "--image-transform", "pad", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    record = json.loads((out / "map.json").read_text())["image_transform"]
    assert record == {"spec": "pad", "from": [1, 32, 32], "to": [1, 28, 28]}
    report = tmp_path / "eval"
    res = _run("map", "eval", "--map", out, "--dataset", "fashion-mnist", "--images", 60, "--lpips", "off",
               "--out", report, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "image transform 'pad'" in res.output
    rel = json.loads((report / "relocation.json").read_text())
    assert rel["image_transform"] == record
    # by hand: A gets the padded test images, B the images as they are
    a, b, m = load_model(vae32), load_model(tiny_vae_checkpoint), LinearMap.load(out)
    x = load_dataset("fashion-mnist", "test").random_subset(60, 0).all_images()
    with torch.no_grad():
        relocated = b.decode(m.transform(a.encode(nn.functional.pad(x, (2, 2, 2, 2)))))
    assert rel["relocated_mse"] == pytest.approx(float(((relocated - x) ** 2).mean()), rel=1e-4)


def test_cli_default_is_auto_with_a_warning_and_atlas_works(vae32, tiny_vae_checkpoint, tmp_path):
    res = _run("map", "fit", "--source", tiny_vae_checkpoint, "--target", vae32, "--dataset", "fashion-mnist",
               "--fit-images", 300, "--out", tmp_path / "m", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "--image-transform auto" in res.output
    assert json.loads((tmp_path / "m" / "map.json").read_text())["image_transform"]["spec"] == "auto"
    res = _run("map", "atlas", "--models", f"{vae32},{tiny_vae_checkpoint}", "--dataset", "fashion-mnist",
               "--fit-images", 300, "--images", 40, "--lpips", "off", "--image-transform", "pad",
               "--out", tmp_path / "atlas", "--no-progress")
    assert res.exit_code == 0, res.output
    atlas = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert len(atlas["results"]) == 2 and not atlas["skipped"]
    by_name = {m["name"]: m for m in atlas["models"]}
    assert by_name["tiny-vae-32"]["image_transform"]["spec"] == "pad"
    saved = json.loads((tmp_path / "atlas" / "maps" / "tiny-vae-32__tiny-vae" / "map.json").read_text())
    assert saved["image_transform"] == {"spec": "pad", "from": [1, 32, 32], "to": [1, 28, 28]}
    assert (tmp_path / "atlas" / "grids" / "tiny-vae-32__tiny-vae.png").is_file()


@pytest.mark.parametrize("command", ["fit", "eval", "atlas"])
@pytest.mark.parametrize("spec", ["bogus", "pad=7"])
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(command, spec, tiny_vae_checkpoint, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = {"fit": ["map", "fit", "--source", tiny_vae_checkpoint, "--target", tiny_vae_checkpoint,
                    "--dataset", "digits"],
            "eval": ["map", "eval", "--map", tmp_path / "nomap"],
            "atlas": ["map", "atlas", "--models", f"{tiny_vae_checkpoint},{tiny_vae_checkpoint}"]}[command]
    res = _run(*argv, "--image-transform", spec, "--out", tmp_path / "out")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "--image-transform" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_transform_that_cannot_serve_the_pair_exits_2(vae32, tiny_vae_checkpoint, tmp_path):
    res = _run("map", "fit", "--source", vae32, "--target", tiny_vae_checkpoint, "--dataset", "fashion-mnist",
               "--fit-images", 50, "--image-transform", "grey", "--out", tmp_path / "m")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "add resize, pad or center-crop" in lines[0], res.output
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- inverter on own samples only

class PaddedSynthesis(hx.TinySynthesis):
    """The tiny synthesis network's 28x28 images on a 32x32 black canvas."""

    def forward(self, ws, noise_mode="random", force_fp32=False):
        return nn.functional.pad(super().forward(ws, noise_mode, force_fp32), (2, 2, 2, 2), value=-1.0)


def generator_32():
    torch.manual_seed(0)
    g = hx.TinyStyleGenerator(img_resolution=32)
    g.synthesis = PaddedSynthesis(g.w_dim, g.num_ws, 1, 32)
    return g


@pytest.mark.filterwarnings("ignore::latentmap.models.external_stylegan.PickleWarning")
def test_inverter_trains_on_own_samples_only(tmp_path):
    path = tmp_path / "g32.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"G_ema": generator_32(), "D": None}, fh)
    base = ["train", "inverter", "--model", path, "--trust-pickle", "--inverter-steps", 40, "--inverter-batch-size",
            16, "--device", "cpu", "--no-progress"]
    res = _run(*base, "--out", tmp_path / "refused")  # Fashion-MNIST is 28x28: refused, with the ways out
    assert res.exit_code == 2 and "--own-samples-only" in res.output and not (tmp_path / "refused").exists()
    assert "--image-transform auto" in res.output
    (tmp_path / "no-data").mkdir()  # an empty data folder: any read of a dataset would fail
    res = _run(*base, "--own-samples-only", "--inverter-eval-samples", 64, "--data-dir", tmp_path / "no-data",
               "--out", tmp_path / "small")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "small" / "config.json").read_text())["metrics"]["inverter"]["own_samples"] == 64
    res = _run(*base, "--own-samples-only", "--data-dir", tmp_path / "no-data", "--out", tmp_path / "inv")
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "inv" / "config.json").read_text())
    inv = config["metrics"]["inverter"]
    assert inv["own_samples"] == 256 and "real_test_image_mse" not in inv and "test_mse" not in config["metrics"]
    assert config["training"]["inverter"]["real_images"].startswith("none")
    assert "dataset" not in config or config["dataset"] is None
    # the record holds what the run used: no dataset, epochs or training images it never read
    assert not {"dataset", "data_dir", "test_images", "epochs", "latent_dim", "train_images"} & set(
        config["training"]["settings"])
    assert "nan" not in res.output and "real images not measured" in res.output
    model = load_model(tmp_path / "inv", allow_pickle=True)
    assert model.image_shape == (1, 32, 32) and model.has_trained_encoder


# --------------------------------------------------------------------------- the demo with a 32x32 model

def test_demo_shows_a_32x32_model_in_reconstructions_and_atlas(vae32, tiny_vae_checkpoint, tmp_path, monkeypatch):
    import shutil

    import latentmap.demo.relocation as relocation_section
    import latentmap.demo.support_set as support_section
    from latentmap.demo.story import run_demo

    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(tiny_vae_checkpoint, checkpoints / "tiny-vae")
    shutil.copytree(vae32, checkpoints / "tiny-vae-32")
    train = load_dataset("fashion-mnist", "train").random_subset(240, 0)
    monkeypatch.setattr(support_section, "load_dataset", lambda spec, split, data_dir=None: train)
    monkeypatch.setattr(support_section, "FALLBACK_GAIN_IMAGES", 50)
    monkeypatch.setattr(relocation_section, "DEMO_FIT_IMAGES", 300)
    result = run_demo(checkpoints, tmp_path / "report", test_images=40, device="cpu")
    rows = {r["model"]: r for r in result.summary["reconstruction"]}
    assert set(rows) == {"tiny-vae", "tiny-vae-32"}
    # the 32x32 model is judged on the zero-padded test images
    model = load_model(vae32)
    x = nn.functional.pad(load_dataset("fashion-mnist", "test").batch(np.arange(40)), (2, 2, 2, 2))
    with torch.no_grad():
        expected = float(((model.reconstruct(x) - x) ** 2).mean())
    assert rows["tiny-vae-32"]["test_mse"] == pytest.approx(expected, rel=1e-4)
    pairs = {(p["source"], p["target"]) for p in result.summary["relocation_atlas"]["pairs"]}
    assert pairs == {("tiny-vae", "tiny-vae-32"), ("tiny-vae-32", "tiny-vae")}
    page = html.unescape((result.out / "index.html").read_text())
    assert "through the image transform 'pad'" in page and (result.out / "reconstruction_tiny-vae-32.png").is_file()


def test_models_trained_on_variants_of_one_dataset_default_to_the_plain_one():
    from types import SimpleNamespace

    from latentmap.data.choice import dataset_for

    a = SimpleNamespace(name="a", metadata={"dataset": "fashion-mnist"})
    b = SimpleNamespace(name="b", metadata={"dataset": "fashion-mnist?pad=2"})
    spec, notes = dataset_for([a, b])
    assert spec == "fashion-mnist" and any("variants of fashion-mnist" in n for n in notes)
    with pytest.raises(ConfigError, match="different datasets"):
        dataset_for([a, SimpleNamespace(name="c", metadata={"dataset": "digits"})])


# --------------------------------------------------------------------------- every command takes --image-transform

IMAGE_COMMANDS = [("invert",), ("diagnose",), ("bench", "expressiveness"), ("bench", "coverage"),
                  ("bench", "fidelity"), ("train",), ("support-set", "build"), ("support-set", "compare"),
                  ("map", "fit"), ("map", "eval"), ("map", "atlas")]


@pytest.mark.parametrize("command", IMAGE_COMMANDS, ids=" ".join)
def test_every_command_that_feeds_images_takes_the_transform(command):
    res = _run(*command, "--help")
    assert res.exit_code == 0 and "--image-transform" in res.output


def test_one_resolver_proposes_the_spec_that_works():
    from latentmap.data.transforms import resolve_input

    from types import SimpleNamespace

    model = SimpleNamespace(name="rgb32", image_shape=(3, 32, 32))
    expected = (r"expects images of shape \(3, 32, 32\), the test images are \(1, 28, 28\): "
                r"pass --image-transform auto \(rgb, resize to 32x32\)")
    with pytest.raises(ShapeMismatchError, match=expected):
        resolve_input(None, (1, 28, 28), model, "the test images")
    with pytest.raises(ShapeMismatchError, match="--image-transform auto"):
        resolve_input("identity", (1, 28, 28), model)
    with pytest.raises(ShapeMismatchError, match="add rgb"):
        resolve_input("pad", (1, 28, 28), model)
    assert resolve_input("auto", (1, 28, 28), model).to_shape == (3, 32, 32)
    assert resolve_input(None, (3, 32, 32), model).identity
    with pytest.raises(ShapeMismatchError, match="no image transform turns 4 channels into 3"):
        resolve_input(None, (4, 32, 32), model)


def _argv_for(command, vae32, tmp_path):
    common = ["--dataset", "fashion-mnist", "--no-progress"]
    return {
        "invert": ["invert", "--model", vae32, "--images", 4, "--steps", 1, "--lpips", "off", *common],
        "diagnose": ["diagnose", "--model", vae32, "--images", 40, *common],
        "support-set build": ["support-set", "build", "--model", vae32, "--split", "test", "--size", 6,
                              "--gain-images", 100, "--pairs", 100, *common],
        "bench expressiveness": ["bench", "expressiveness", str(vae32), "--images", 12, "--samples", 12,
                                 "--fit-images", 50, "--refine-images", 0, "--bootstrap", 100, "--lpips", "off",
                                 *common],
    }[command]


@pytest.mark.parametrize("command", ["invert", "diagnose", "support-set build", "bench expressiveness"])
def test_commands_refuse_another_shape_with_the_way_out_and_take_the_transform(command, vae32, tmp_path):
    argv = _argv_for(command, vae32, tmp_path)
    res = _run(*argv, "--out", tmp_path / "refused")
    assert res.exit_code == 2 and "--image-transform auto" in res.output, res.output
    assert "(1, 32, 32)" in res.output and "(1, 28, 28)" in res.output
    assert not (tmp_path / "refused").exists()
    res = _run(*argv, "--image-transform", "pad", "--out", tmp_path / "ok")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ok").is_dir()
    if command == "bench expressiveness":  # the report says how the images reached the model
        assert "image transform 'pad'" in html.unescape((tmp_path / "ok" / "index.html").read_text())
    if command == "support-set build":  # the set's images are in the model's shape, and it says how they got there
        manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
        assert manifest["dataset"]["image_transform"] == {"spec": "pad", "from": [1, 28, 28], "to": [1, 32, 32]}


def test_fidelity_turns_generated_and_real_images_into_the_reference_shape(vae32, tiny_vae_checkpoint, tmp_path):
    argv = ["bench", "fidelity", str(vae32), "--reference", tiny_vae_checkpoint, "--dataset", "fashion-mnist",
            "--images", 40, "--samples", 20, "--no-calibration", "--no-progress"]
    res = _run(*argv, "--out", tmp_path / "refused")
    assert res.exit_code == 2 and "--image-transform auto" in res.output, res.output
    res = _run(*argv, "--image-transform", "pad", "--out", tmp_path / "ok")
    assert res.exit_code == 0, res.output


def test_train_takes_the_transform_only_where_it_measures_real_images(tmp_path):
    res = _run("train", "vae", "--image-transform", "pad", "--out", tmp_path / "v")
    assert res.exit_code == 2 and "--image-transform is only used with `latentmap train inverter`" in res.output
    res = _run("train", "inverter", "--model", "x.pkl", "--own-samples-only", "--image-transform", "pad",
               "--out", tmp_path / "i")
    assert res.exit_code == 2 and "--image-transform" in res.output and not (tmp_path / "i").exists()


@pytest.mark.filterwarnings("ignore::latentmap.models.external_stylegan.PickleWarning")
def test_inverter_is_measured_on_real_images_through_the_transform(tmp_path):
    path = tmp_path / "g32.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"G_ema": generator_32(), "D": None}, fh)
    res = _run("train", "inverter", "--model", path, "--trust-pickle", "--inverter-steps", 5, "--inverter-batch-size",
               8, "--inverter-eval-samples", 16, "--test-images", 24, "--image-transform", "pad", "--device", "cpu",
               "--no-progress", "--out", tmp_path / "inv")
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "inv" / "config.json").read_text())
    inv = config["metrics"]["inverter"]
    assert inv["own_samples"] == 16 and inv["real_test_images"] == 24
    assert config["training"]["settings"]["options"]["image_transform"] == "pad"
    # by hand: the padded test images, through the inverter and the generator
    model = load_model(tmp_path / "inv", allow_pickle=True)
    x = nn.functional.pad(load_dataset("fashion-mnist", "test").random_subset(24, 0).all_images(), (2, 2, 2, 2))
    with torch.no_grad():
        mse = float(((model.decode(model.encode(x)) - x) ** 2).mean())
    assert inv["real_test_image_mse"] == pytest.approx(mse, rel=1e-4)
