import shutil
import sys

import pytest
import torch

from conformance import check_adapter
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


def test_the_same_pythae_networks_through_a_py_factory_are_type_1_to_the_folder(pythae_vae_folder, monkeypatch):
    """The wrapped modules' family is unknown; their networks are the folder's, so the pair is Type 1."""
    import helpers_external
    from latentmap.evaluation.relocation import relocation_kind

    folder, _, images = pythae_vae_folder
    monkeypatch.setattr(helpers_external, "PYTHAE_FOLDER", folder)
    wrapped = load_model("py:helpers_external:pythae_networks", allow_pickle=True)
    native = load_model(folder)
    assert wrapped.family is None and native.family == "pythae-VAE"
    torch.testing.assert_close(wrapped.encode(images), native.encode(images))
    assert relocation_kind(wrapped, native) == (1, "same architecture and objective, different training")
    assert relocation_kind(native, wrapped)[0] == 1
