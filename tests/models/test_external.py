import json
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.helpers import external as hx
from tests.helpers.conformance import check_adapter
from latentmap import load_dataset, load_model, wrap
from latentmap.cli.main import main
from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnsafeLoadError
from latentmap.models.external_stylegan import ExternalStyleGAN, PickleWarning
from latentmap.models.wrapped import WrappedModel
from latentmap.training.inverter import evaluate_inverter, train_inverter


@pytest.fixture
def generator_pickle(tmp_path):
    path = tmp_path / "tiny-stylegan.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"G_ema": hx.make_stylegan(), "D": None}, fh)
    return path


def test_pickles_are_refused_without_the_trust_flag(generator_pickle):
    with pytest.raises(UnsafeLoadError, match="allow_pickle=True .*--trust-pickle"):
        load_model(generator_pickle)


def test_cli_refuses_pickles_without_trust_and_writes_nothing(generator_pickle, tmp_path):
    out = tmp_path / "inv"
    result = CliRunner().invoke(main, ["train", "inverter", "--model", str(generator_pickle), "--out", str(out),
                                       "--device", "cpu", "--no-progress"])
    assert result.exit_code == 2
    assert "--trust-pickle" in result.output and "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".inv*"))


def test_trusted_pickle_is_a_w_space_model(generator_pickle, tmp_path):
    with pytest.warns(PickleWarning, match="runs code"):
        model = load_model(generator_pickle, allow_pickle=True)
    assert isinstance(model, ExternalStyleGAN) and model.kind == "external-stylegan"
    assert model.latent_dim == 6 and model.z_dim == 8 and model.image_shape == (1, 28, 28)
    # decode(w) is the generator's own synthesis of w broadcast to every layer, with constant noise,
    # mapped from [-1, 1] to [0, 1]: recomputed on a fresh copy of the pickled generator
    G = hx.make_stylegan().eval()
    assert all(torch.equal(v, model.G.state_dict()[k]) for k, v in G.state_dict().items())
    w = model.sample_prior(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = torch.stack([w] * G.num_ws, dim=1)  # [N, num_ws, w_dim]
        expected = ((G.synthesis(ws, noise_mode="const") + 1) / 2).clamp(0, 1)
        noisy = ((G.synthesis(ws, noise_mode="random") + 1) / 2).clamp(0, 1)
    assert (noisy - expected).abs().max() > 1e-3  # random noise would be told apart
    torch.testing.assert_close(model.decode(w), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.decode(w), model.decode(w), rtol=0, atol=0)  # and so deterministic
    # sample_prior maps z ~ N(0, I) (drawn with the generator) through G's mapping: w is one row of ws
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(w, G.mapping(z, None)[:, 0], rtol=1e-6, atol=1e-6)
    # a fresh inverter is random: encoding through it is refused until it is trained
    assert not model.has_trained_encoder
    with pytest.raises(ConfigError, match="no trained W inverter.*train inverter"):
        model.encode(torch.rand(2, 1, 28, 28))
    from latentmap.training.inverter import train_inverter

    train_inverter(model, steps=3, batch_size=4)
    assert model.has_trained_encoder
    with pytest.warns(PickleWarning):
        check_adapter(model, torch.rand(5, 1, 28, 28), tmp_path,
                      loader=lambda p: load_model(p, allow_pickle=True))
    saved = tmp_path / f"conformance-{model.name}"
    with pytest.raises(UnsafeLoadError):  # the saved inverter refers to the pickle: trust needed again
        load_model(saved)
    config = json.loads((saved / "config.json").read_text())
    assert set(k.split(".")[0] for k in __import__("safetensors.torch").torch.load_file(
        str(saved / "model.safetensors"))) == {"inverter"}
    assert config["generator"]["source"] == str(generator_pickle.resolve())


def test_changed_generator_file_is_detected(generator_pickle, tmp_path):
    with pytest.warns(PickleWarning):
        model = load_model(generator_pickle, allow_pickle=True)
    model.save(tmp_path / "inv")
    with open(generator_pickle, "wb") as fh:
        pickle.dump({"G_ema": hx.TinyStyleGenerator(w_dim=6)}, fh)
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "inv", allow_pickle=True)


def test_pickle_without_the_convention_is_rejected(tmp_path):
    path = tmp_path / "other.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"G_ema": torch.nn.Linear(2, 2)}, fh)
    with pytest.warns(PickleWarning), pytest.raises(ConfigError, match="StyleGAN convention"):
        load_model(path, allow_pickle=True)


@pytest.mark.filterwarnings("ignore::latentmap.models.external_stylegan.PickleWarning")
def test_train_inverter_cli_on_a_trusted_pickle(generator_pickle, tmp_path):
    out = tmp_path / "inverter"
    result = CliRunner().invoke(main, ["train", "inverter", "--model", str(generator_pickle), "--trust-pickle",
                                       "--inverter-steps", "60", "--inverter-batch-size", "32", "--inverter-lr", "3e-3",
                                       "--test-images", "32", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "external-stylegan"
    with pytest.warns(PickleWarning):
        trained = load_model(out, allow_pickle=True)
        fresh = load_model(generator_pickle, allow_pickle=True)
    assert trained.has_trained_encoder and not fresh.has_trained_encoder
    # the recorded metrics, recomputed from the saved inverter: real = the 32 test images drawn with seed 0
    # (sorted); own = 256 prior samples (the default of --inverter-eval-samples) drawn in batches of 250 from a
    # generator seeded 1234
    real_x = load_dataset("fashion-mnist", "test").batch(np.sort(np.random.default_rng(0).choice(10000, 32,
                                                                                                 replace=False)))
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        own_x = torch.cat([trained.decode(trained.sample_prior(n, generator)) for n in (250, 6)])
        own, real = (float(((trained.decode(trained.encode(x)).double() - x.double()) ** 2).mean())
                     for x in (own_x, real_x))
    inv = config["metrics"]["inverter"]
    assert inv["own_samples_image_mse"] == pytest.approx(own, rel=1e-5)
    assert inv["real_test_image_mse"] == pytest.approx(real, rel=1e-5)
    assert config["metrics"]["test_mse"] == pytest.approx(real, rel=1e-5)
    fresh.inverter_trained = True  # only to measure the random inverter as the baseline
    # training helps: the latent error on the generator's own w, by hand, before and after
    w = fresh.sample_prior(200, torch.Generator().manual_seed(3))
    with torch.no_grad():
        before, after = (float((m.encode(m.decode(w)) - w).pow(2).mean()) for m in (fresh, trained))
    assert after < 0.5 * before
    assert evaluate_inverter(trained, samples=200)["own_samples_latent_mse"] < \
        0.5 * evaluate_inverter(fresh, samples=200)["own_samples_latent_mse"]


def test_inverter_training_refuses_models_without_an_inverter():
    with pytest.raises(ConfigError, match="no inversion network"):
        train_inverter(wrap(hx.Encoder(), hx.make_decoder(), image_shape=(1, 28, 28)), steps=1)


# ---------------------------------------------------------------- wrap and py: specs
@dataclass
class Posterior:
    mean: torch.Tensor
    logvar: torch.Tensor


class FieldEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = hx.Encoder(stats=True)

    def forward(self, x):
        return Posterior(*self.inner(x))


@pytest.mark.parametrize("encoder,vae_like", [(hx.Encoder(), False), (hx.Encoder(stats=True), True),
                                              (FieldEncoder(), True)])
def test_wrap_encoder_output_forms(encoder, vae_like, tmp_path):
    model = wrap(encoder, hx.make_decoder(), image_shape=(1, 28, 28), kind="vae" if vae_like else "ae", name="w")
    assert model.vae_like is vae_like and model.latent_dim == 5 and model.kind == ("vae" if vae_like else "ae")
    check_adapter(model, torch.rand(4, 1, 28, 28), tmp_path, save=False)
    with pytest.raises(CheckpointError, match="py:module:factory"):
        model.save(tmp_path / "no")


def test_wrap_checks_shapes_and_output_range():
    with pytest.raises(ShapeMismatchError, match="latent_dim is 4, but the encoder returns latents of size 5"):
        wrap(hx.Encoder(), hx.make_decoder(), image_shape=(1, 28, 28), latent_dim=4)
    with pytest.raises(ShapeMismatchError, match="makes images of shape"):
        wrap(hx.Encoder(), torch.nn.Sequential(torch.nn.Linear(5, 10), torch.nn.Unflatten(1, (1, 2, 5))),
             image_shape=(1, 28, 28))
    tanh = torch.nn.Sequential(torch.nn.Linear(5, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28)))
    model = wrap(hx.Encoder(), tanh, image_shape=(1, 28, 28), output_range=(-1, 1))
    z = torch.randn(3, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z), (tanh(z) + 1) / 2)


def test_py_spec_models_and_their_checkpoints(tmp_path):
    with pytest.raises(UnsafeLoadError, match="--trust-code"):  # a py: spec runs code: consent first
        load_model("py:tests.helpers.external:make_autoencoder")
    model = load_model("py:tests.helpers.external:make_autoencoder", allow_pickle=True)
    assert isinstance(model, WrappedModel) and model.factory == "py:tests.helpers.external:make_autoencoder"
    check_adapter(model, torch.rand(4, 1, 28, 28), tmp_path, loader=lambda p: load_model(p, allow_pickle=True))
    with pytest.raises(UnsafeLoadError, match="imports and runs"):
        load_model(tmp_path / f"conformance-{model.name}")

    vae = load_model("py:tests.helpers.external:make_vae_dict", allow_pickle=True)
    assert vae.kind == "vae" and vae.vae_like and vae.name == "dict-vae"
    check_adapter(vae, torch.rand(4, 1, 28, 28), tmp_path, loader=lambda p: load_model(p, allow_pickle=True))

    sg = load_model("py:tests.helpers.external:make_stylegan", allow_pickle=True)
    assert isinstance(sg, ExternalStyleGAN) and sg.latent_dim == 6


@pytest.mark.parametrize("spec,message", [("py:tests.helpers.external", "py:package.module:factory"),
                                          ("py:no_such_module_x:f", "cannot import"),
                                          ("py:tests.helpers.external:missing", "no callable"),
                                          ("py:tests.helpers.external:make_nothing", "returned int")])
def test_bad_py_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_model(spec, allow_pickle=True)


@pytest.mark.filterwarnings("ignore::latentmap.models.external_stylegan.PickleWarning")
def test_map_and_support_set_commands_take_the_trust_flag(generator_pickle, tiny_vae_checkpoint, tmp_path):
    runner = CliRunner()
    fit = ["map", "fit", "--source", str(generator_pickle), "--target", str(tiny_vae_checkpoint), "--samples", "40",
           "--device", "cpu", "--out", str(tmp_path / "map")]
    refused = runner.invoke(main, fit)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output and not (tmp_path / "map").exists()
    result = runner.invoke(main, fit + ["--trust-pickle"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "map" / "map.json").read_text())
    assert info["source"]["latent_dim"] == 6 and info["target"]["latent_dim"] == 8

    build = ["support-set", "build", "--model", str(generator_pickle), "--split", "test", "--size", "8",
             "--strategy", "random", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "support")]
    refused = runner.invoke(main, build)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output and not (tmp_path / "support").exists()
    result = runner.invoke(main, build + ["--trust-pickle"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "support" / "images.npy").is_file()


# ---------------------------------------------------------------- a py: module in the working folder, models info

def test_py_spec_finds_a_module_in_the_working_folder_and_models_info_loads_it_with_the_flag(tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner

    from latentmap.cli.main import main

    (tmp_path / "mymodels_here.py").write_text(
        "from tests.helpers.external import make_autoencoder\n\n\ndef make():\n    return make_autoencoder()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mymodels_here", raising=False)
    assert str(tmp_path) not in sys.path
    with pytest.raises(UnsafeLoadError, match="--trust-code"):  # still consent first
        load_model("py:mymodels_here:make")
    model = load_model("py:mymodels_here:make", allow_pickle=True)
    assert model.latent_dim == 5 and str(tmp_path) not in sys.path  # the lookup leaves the import path as it was
    monkeypatch.delitem(sys.modules, "mymodels_here", raising=False)
    result = CliRunner().invoke(main, ["models", "info", "py:mymodels_here:make"])
    assert result.exit_code == 0, result.output
    assert "--trust-code" in result.output and "no such file" not in result.output
    result = CliRunner().invoke(main, ["models", "info", "py:mymodels_here:make", "--trust-code"])
    assert result.exit_code == 0, result.output
    assert "latent size: 5" in result.output and "image shape: 1 x 28 x 28" in result.output
    missing = CliRunner().invoke(main, ["models", "info", "py:not_here_at_all:make", "--trust-code"])
    assert missing.exit_code == 2 and "working folder" in missing.output and "PYTHONPATH" in missing.output


@pytest.mark.filterwarnings("ignore::latentmap.models.external_stylegan.PickleWarning")
def test_models_info_of_a_pickle_shows_its_latent_size_only_with_the_flag(tmp_path):
    import pickle

    from click.testing import CliRunner

    from latentmap.cli.main import main

    path = tmp_path / "g.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"G_ema": hx.make_stylegan()}, fh)
    plain = CliRunner().invoke(main, ["models", "info", str(path)])
    assert plain.exit_code == 0 and "--trust-pickle" in plain.output and "unknown until loaded" not in plain.output
    trusted = CliRunner().invoke(main, ["models", "info", str(path), "--trust-pickle"])
    assert trusted.exit_code == 0, trusted.output
    assert "latent size: 6 (W space)" in trusted.output and "mapping(z)" in trusted.output
