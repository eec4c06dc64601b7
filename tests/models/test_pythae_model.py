import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.conformance import check_adapter
from tests.helpers.planted import SLOTS, planted_pythae_folder
from latentmap import load_dataset, load_model
from latentmap.errors import CheckpointError, DependencyError, UnsafeLoadError


def test_pythae_folder_without_pythae_installed(tmp_path, monkeypatch):
    folder = tmp_path / "final_model"
    folder.mkdir()
    (folder / "model_config.json").write_text("{}")
    (folder / "model.pt").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "pythae", None)
    monkeypatch.setitem(sys.modules, "pythae.models", None)
    with pytest.raises(DependencyError, match=r"pip install 'latentmap\[pythae\]'"):
        load_model(folder)


@pytest.fixture(scope="module")
def pythae_vae_folder(tmp_path_factory):
    pythae_models = pytest.importorskip("pythae.models")
    from pythae.data.datasets import DatasetOutput

    torch.manual_seed(0)
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 28, 28), latent_dim=4))
    images = load_dataset("fashion-mnist", "test").batch(range(256))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        for start in range(0, len(images), 64):
            out = model(DatasetOutput(data=images[start:start + 64]))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(float(out.loss.detach()))
    assert sum(losses[-4:]) < sum(losses[:4])  # the tiny VAE did learn
    folder = tmp_path_factory.mktemp("pythae") / "my-vae"
    model.save(str(folder))
    return folder, model.eval(), images[:6]


def test_pythae_vae_is_a_vae_like_latentmap_model(pythae_vae_folder, tmp_path):
    folder, original, images = pythae_vae_folder
    model = load_model(folder)
    assert model.kind == "pythae" and model.name == "my-vae" and model.vae_like
    assert model.latent_dim == 4 and model.image_shape == (1, 28, 28)
    check_adapter(model, images, tmp_path, save=False)
    with torch.no_grad():
        enc = original.encoder(images)
        mu, logvar = model.encode_stats(images)
        torch.testing.assert_close(mu, enc["embedding"])
        torch.testing.assert_close(logvar, enc["log_covariance"])
        torch.testing.assert_close(model.decode(mu), original.decoder(mu)["reconstruction"])
    with pytest.raises(CheckpointError, match="pythae folder"):
        model.save(tmp_path / "copy")


def test_pythae_custom_networks_need_the_trust_flag(pythae_vae_folder, tmp_path):
    folder, _, _ = pythae_vae_folder
    custom = tmp_path / "custom"
    shutil.copytree(folder, custom)
    (custom / "encoder.pkl").write_bytes(b"never unpickled without the flag")
    with pytest.raises(UnsafeLoadError, match="custom encoder as pickles"):
        load_model(custom)


def test_pythae_models_declare_their_own_objective_and_family(tmp_path):
    """Every pythae model is kind 'pythae'; the relocation type comes from pythae's own class and config."""
    pythae_models = pytest.importorskip("pythae.models")
    from latentmap.evaluation.relocation import relocation_type

    def saved(name, model):
        model.save(str(tmp_path / name))
        return load_model(tmp_path / name)

    config = dict(input_dim=(1, 28, 28), latent_dim=4)
    ae_a = saved("ae-a", pythae_models.AE(pythae_models.AEConfig(**config)))
    ae_b = saved("ae-b", pythae_models.AE(pythae_models.AEConfig(**config)))
    wae = saved("wae", pythae_models.WAE_MMD(pythae_models.WAE_MMD_Config(**config)))
    vae = saved("vae", pythae_models.VAE(pythae_models.VAEConfig(**config)))
    assert ae_a.kind == wae.kind == vae.kind == "pythae"
    assert (ae_a.objective, wae.objective, vae.objective) == ("autoencoder", "autoencoder", "vae")
    assert ae_a.family == "pythae-AE" and wae.family == "pythae-WAE_MMD"
    assert relocation_type(ae_a, ae_b) == 1
    assert relocation_type(ae_a, wae) == 2  # same deterministic objective, another pythae model
    from latentmap.evaluation.relocation import relocation_kind

    assert relocation_kind(ae_a, wae)[1] == "same objective, different families (pythae-AE, pythae-WAE_MMD)"
    assert relocation_type(wae, vae) == 3


# ---------------------------------------------------------------- consent: every pickle pythae would unpickle


@pytest.mark.parametrize("slot", [slot for slot in SLOTS if slot != "weights"])
def test_a_planted_pickle_in_any_network_slot_is_refused_without_the_flag(slot, tmp_path):
    sentinel = tmp_path / "planted-code-ran"
    folder = planted_pythae_folder(tmp_path, slot, sentinel)
    with pytest.raises(UnsafeLoadError, match="--trust-pickle") as refused:
        load_model(folder)
    assert SLOTS[slot][2] in str(refused.value)
    assert not sentinel.exists()


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_a_planted_model_pt_never_runs_flag_or_not(allow_pickle, tmp_path, monkeypatch):
    pytest.importorskip("pythae.models")
    original_load = torch.load
    # torch's own tensors-only default turned off: only latentmap's explicit weights_only keeps model.pt inert
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    sentinel = tmp_path / "planted-code-ran"
    folder = planted_pythae_folder(tmp_path, "weights", sentinel)
    with pytest.raises(UnsafeLoadError, match="tensors only"):
        load_model(folder, allow_pickle=allow_pickle)
    assert not sentinel.exists()
    assert torch.load is original_load


@pytest.mark.parametrize("flags,files,expected", [
    ({}, [], []),
    ({"uses_default_encoder": True, "uses_default_metric": True}, [], []),
    ({"uses_default_metric": False}, [], ["metric"]),
    ({"uses_default_discriminator": "no"}, [], ["discriminator"]),
    ({"uses_default_decoder": 0, "uses_default_encoder": "0"}, [], ["encoder", "decoder"]),
    ({"uses_default_metric": None}, [], ["metric"]),
    ({"uses_default_prior": False}, [], ["prior"]),  # a network a later pythae may add
    ({}, ["discriminator.pkl"], ["discriminator"]),  # a pickle lying there counts, whatever the flags say
])
def test_pickled_networks_errs_on_the_side_of_asking(flags, files, expected, tmp_path):
    from latentmap.io.pythae_folder import pickled_networks

    (tmp_path / "model_config.json").write_text(json.dumps({"name": "VAEConfig", **flags}))
    for file in files:
        (tmp_path / file).write_bytes(b"")
    assert pickled_networks(tmp_path) == [(name, f"{name}.pkl") for name in expected]


def test_every_pickle_pythae_loads_is_one_latentmap_knows():
    """pythae's loaders open <network>.pkl under `not model_config.uses_default_<network>`: both lists are known."""
    pythae = pytest.importorskip("pythae")
    from latentmap.io.pythae_folder import NETWORKS

    opened, flags = set(), set()
    for file in (Path(pythae.__file__).parent / "models").rglob("*.py"):
        text = file.read_text()
        opened |= set(re.findall(r'open\(\s*os\.path\.join\(\s*\w+,\s*"(\w+)\.pkl"\s*\),\s*"rb"', text))
        flags |= set(re.findall(r"if not model_config\.uses_default_(\w+)", text))
    assert {"encoder", "decoder", "metric", "discriminator"} <= opened
    assert opened <= set(NETWORKS) and flags <= set(NETWORKS)


@pytest.fixture(scope="module")
def pythae_custom_folders(tmp_path_factory):
    """Folders pythae itself saved with custom networks in every pickled slot: {slot: (folder, model)}."""
    pythae_models = pytest.importorskip("pythae.models")
    from pythae.models.nn.default_architectures import (Decoder_AE_MLP, Discriminator_MLP, Encoder_VAE_MLP,
                                                        Metric_MLP)

    root = tmp_path_factory.mktemp("pythae-custom")
    torch.manual_seed(0)
    config = dict(input_dim=(1, 28, 28), latent_dim=4)
    made = {}
    c = pythae_models.RHVAEConfig(**config)
    made["metric"] = pythae_models.RHVAE(c, metric=Metric_MLP(c))
    c = pythae_models.VAEGANConfig(**config)
    c.discriminator_input_dim = c.input_dim
    made["discriminator-vaegan"] = pythae_models.VAEGAN(c, discriminator=Discriminator_MLP(c))
    c = pythae_models.Adversarial_AE_Config(**config)
    c.discriminator_input_dim = c.latent_dim
    made["discriminator-aae"] = pythae_models.Adversarial_AE(c, discriminator=Discriminator_MLP(c))
    c = pythae_models.VAEConfig(**config)
    made["encoder-decoder"] = pythae_models.VAE(c, encoder=Encoder_VAE_MLP(c), decoder=Decoder_AE_MLP(c))
    out = {}
    for slot, model in made.items():
        model.save(str(root / slot))
        out[slot] = (root / slot, model.eval())
    return out


PICKLED_FILES = {"metric": ["metric.pkl"], "discriminator-vaegan": ["discriminator.pkl"],
                 "discriminator-aae": ["discriminator.pkl"], "encoder-decoder": ["encoder.pkl", "decoder.pkl"]}


@pytest.mark.parametrize("slot", list(PICKLED_FILES))
def test_custom_networks_load_with_the_flag_and_only_with_it(pythae_custom_folders, slot):
    folder, original = pythae_custom_folders[slot]
    with pytest.raises(UnsafeLoadError, match="--trust-pickle"):
        load_model(folder)
    with pytest.warns(UserWarning, match="unpickling the custom") as caught:
        model = load_model(folder, allow_pickle=True)
    assert all(file in str(caught[0].message) for file in PICKLED_FILES[slot])
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(images), original.encoder(images)["embedding"])


@pytest.mark.parametrize("slot", list(PICKLED_FILES))
def test_models_info_names_the_pickled_networks(pythae_custom_folders, slot):
    from click.testing import CliRunner

    from latentmap.cli.main import main

    folder, _ = pythae_custom_folders[slot]
    result = CliRunner().invoke(main, ["models", "info", str(folder)])
    assert result.exit_code == 0, result.output
    pickled = next(line for line in result.output.splitlines() if line.startswith("pickled:"))
    assert all(file in pickled for file in PICKLED_FILES[slot]) and "--trust-pickle" in pickled
    networks = [line for line in result.output.splitlines() if line.startswith("networks:")]
    assert not any(slot.split("-")[0] in line for line in networks)  # a pickled network is never called a default
    listed = CliRunner().invoke(main, ["models", "list", str(folder)])
    assert listed.exit_code == 0 and "needs --trust-pickle" in listed.output


def test_models_info_of_default_networks_asks_for_nothing(pythae_vae_folder):
    from click.testing import CliRunner

    from latentmap.cli.main import main

    folder, _, _ = pythae_vae_folder
    result = CliRunner().invoke(main, ["models", "info", str(folder)])
    assert result.exit_code == 0, result.output
    assert "encoder, decoder: pythae defaults" in result.output and "--trust-pickle" not in result.output


def test_support_set_sizes_load_pickled_networks_only_with_the_flag(pythae_custom_folders):
    from latentmap.support.build import target_size_for

    folder, _ = pythae_custom_folders["metric"]
    with pytest.raises(UnsafeLoadError, match="--trust-pickle"):
        target_size_for([str(folder)])
    with pytest.warns(UserWarning, match="metric.pkl"):
        assert target_size_for([str(folder)], allow_pickle=True) == (4, {"metric": 4})


def test_a_map_follows_its_recorded_pythae_models_only_with_the_flag(pythae_custom_folders, tmp_path):
    """`map eval` loads the models map.json records: pickled networks there need the flag as on the command line."""
    from click.testing import CliRunner

    from latentmap.cli.main import main

    source, target = (str(pythae_custom_folders[slot][0]) for slot in ("metric", "discriminator-vaegan"))
    runner = CliRunner()
    fit = runner.invoke(main, ["map", "fit", "--source", source, "--target", target, "--samples", "64",
                               "--out", str(tmp_path / "map"), "--trust-pickle", "--no-progress"])
    assert fit.exit_code == 0, fit.output
    refused = runner.invoke(main, ["map", "eval", "--map", str(tmp_path / "map"), "--images", "16", "--lpips", "off",
                                   "--out", str(tmp_path / "eval"), "--no-progress"])
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert refused.exit_code == 2 and len(lines) == 1 and "(metric.pkl)" in lines[0] and "--trust-pickle" in lines[0]
    assert not (tmp_path / "eval").exists()
    trusted = runner.invoke(main, ["map", "eval", "--map", str(tmp_path / "map"), "--images", "16", "--lpips", "off",
                                   "--out", str(tmp_path / "eval"), "--no-progress", "--trust-pickle"])
    assert trusted.exit_code == 0, trusted.output
    assert (tmp_path / "eval" / "index.html").is_file()


def test_the_same_pythae_networks_through_a_py_factory_are_type_1_to_the_folder(pythae_vae_folder, monkeypatch):
    """The wrapped modules' family is unknown; their networks are the folder's, so the pair is Type 1."""
    from tests.helpers import external as helpers_external
    from latentmap.evaluation.relocation import relocation_kind

    folder, _, images = pythae_vae_folder
    monkeypatch.setattr(helpers_external, "PYTHAE_FOLDER", folder)
    wrapped = load_model("py:tests.helpers.external:pythae_networks", allow_pickle=True)
    native = load_model(folder)
    assert wrapped.family is None and native.family == "pythae-VAE"
    torch.testing.assert_close(wrapped.encode(images), native.encode(images))
    assert relocation_kind(wrapped, native) == (1, "same architecture and objective, different training")
    assert relocation_kind(native, wrapped)[0] == 1


# ---------------------------------------------------------------- what `models info` says, VQ-VAE encoding, samplers

def _saved_pythae(folder, name, config_name, **extra):
    pythae_models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    config = getattr(pythae_models, config_name)(input_dim=(1, 28, 28), latent_dim=4, **extra)
    model = getattr(pythae_models, name)(config)
    model.save(str(folder))
    return model.eval()


def _info(*argv):
    from click.testing import CliRunner

    from latentmap.cli.main import main

    result = CliRunner().invoke(main, ["models", "info", *map(str, argv)])
    assert result.exit_code == 0, result.output
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in result.output.splitlines()}


@pytest.mark.parametrize("name,config_name,prior", [("AE", "AEConfig", False), ("WAE_MMD", "WAE_MMD_Config", False),
                                                    ("RAE_L2", "RAE_L2_Config", False),
                                                    ("VQVAE", "VQVAEConfig", False), ("VAE", "VAEConfig", True)])
def test_models_info_shows_a_prior_only_where_there_is_one(name, config_name, prior, tmp_path):
    extra = {"num_embeddings": 16} if name == "VQVAE" else {}
    _saved_pythae(tmp_path / "m", name, config_name, **extra)
    fields = _info(tmp_path / "m")
    assert fields["prior"].startswith("standard normal") if prior else fields["prior"].startswith(
        "no prior: a sampler is fitted on encodings")
    assert load_model(tmp_path / "m").has_prior is prior
    # pythae is installed here: no install advice, its version instead
    assert "pip install" not in fields["kind"] and "pythae 0." in fields["kind"]
    assert ("encode" in fields) is (name == "VQVAE")
    assert "BROKEN" not in fields["weights"]


def test_models_info_reports_a_truncated_model_pt_as_broken(pythae_vae_folder, tmp_path):
    folder, _, _ = pythae_vae_folder
    copy = tmp_path / "cut"
    shutil.copytree(folder, copy)
    data = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(data[: len(data) // 2])
    assert "BROKEN" in _info(copy)["weights"] and "BROKEN" not in _info(folder)["weights"]


def test_vq_vae_encodes_through_the_quantizer_as_pythae_forward(tmp_path):
    from pythae.data.datasets import DatasetOutput

    original = _saved_pythae(tmp_path / "vq", "VQVAE", "VQVAEConfig", num_embeddings=8)
    model = load_model(tmp_path / "vq")
    images = load_dataset("fashion-mnist", "test").batch(range(16))
    with torch.no_grad():
        expected = original(DatasetOutput(data=images)).recon_x
        ours = model.decode(model.encode(images))
        torch.testing.assert_close(ours, expected.clamp(0, 1))
        assert model.quantize and model.encoding.startswith("quantized")
        assert "quantizer" in model.modules()  # moves with the model, and its codebook is fingerprinted
        from latentmap.io.checkpoint import model_fingerprint

        quantized_fingerprint = model_fingerprint(model)
        model.quantize = False  # the unquantized embedding, on request
        assert model_fingerprint(model) != quantized_fingerprint
        torch.testing.assert_close(model.encode(images), original.encoder(images).embedding)
        assert not torch.allclose(model.decode(model.encode(images)), ours)
    assert "quantized" in _info(tmp_path / "vq")["encode"]


def test_invert_own_samples_follow_the_bench_sampler_rule(tmp_path):
    from click.testing import CliRunner

    from latentmap.cli.main import main

    _saved_pythae(tmp_path / "ae", "AE", "AEConfig")
    result = CliRunner().invoke(main, ["invert", "--model", str(tmp_path / "ae"), "--own-samples", "--images", 4,
                                       "--steps", 1, "--lpips", "off", "--dataset", "fashion-mnist", "--no-progress",
                                       "--out", str(tmp_path / "inv")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "inv" / "summary.json").read_text())
    assert "GMM" in summary["source"] and "encodings" in summary["source"]  # not N(0, I): an AE has no prior
    result = CliRunner().invoke(main, ["invert", "--model", str(tmp_path / "ae"), "--own-samples", "--images", 4,
                                       "--steps", 1, "--lpips", "off", "--sampler", "prior", "--no-progress",
                                       "--out", str(tmp_path / "inv-prior")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "inv-prior" / "summary.json").read_text())["source"] == "own samples (prior)"
