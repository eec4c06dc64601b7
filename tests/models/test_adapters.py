import json

import pytest
import torch

from tests.helpers.conformance import check_adapter, random_images
from latentmap import load_model
from latentmap.io.checkpoint import sha256_file
from latentmap import errors
from latentmap.errors import CheckpointError, ConfigError, LatentmapError, UnknownKindError
from latentmap.models import ADAPTERS, ConvVAE, SplitVAE
from latentmap.models.registry import register_adapter


@pytest.mark.parametrize("cls,shape", [(ConvVAE, (1, 28, 28)), (SplitVAE, (1, 28, 28)), (ConvVAE, (3, 16, 16)),
                                       (SplitVAE, (1, 8, 8))])
def test_reference_models_conform(cls, shape, tmp_path):
    torch.manual_seed(0)
    model = cls("m", shape, 6, hidden=32)
    check_adapter(model, random_images(7, shape), tmp_path)


def test_split_vae_blends_mask_and_two_images():
    torch.manual_seed(0)
    model = SplitVAE("s", (1, 8, 8), 4, hidden=16)
    z = torch.randn(3, 4)
    mask, img1, img2 = model.decode_parts(z)
    assert mask.shape == (3, 1, 8, 8) and img1.shape == img2.shape == (3, 1, 8, 8)
    torch.testing.assert_close(model.decode(z), mask * img1 + (1 - mask) * img2)


def test_registry_lists_kinds_and_rejects_duplicates():
    assert ADAPTERS["vae"] is ConvVAE and ADAPTERS["split-vae"] is SplitVAE
    with pytest.raises(ConfigError, match="already registered"):
        register_adapter("vae")(type("Other", (ConvVAE,), {}))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = ConvVAE("saved", (1, 8, 8), 3, hidden=16)
    model.save(tmp_path / "ck")
    return model, tmp_path / "ck"


def test_config_contents(saved):
    model, path = saved
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["kind"] == "vae" and cfg["latent_dim"] == 3 and cfg["image_shape"] == [1, 8, 8]
    assert cfg["architecture"] == {"channels": [32], "hidden": 16}
    assert cfg["weights"] == {"model.safetensors": sha256_file(path / "model.safetensors")}
    assert cfg["latentmap_version"]


def test_missing_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "absent")


def test_missing_weights(saved):
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing its weights file"):
        load_model(path)


def test_hash_mismatch(saved):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or was changed"):
        load_model(path)


def test_unknown_kind(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["kind"] = "diffusion"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownKindError, match="unknown model kind 'diffusion'"):
        load_model(path)


def test_weights_that_do_not_fit(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["architecture"]["hidden"] = 24
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_model(path)


def test_invalid_json(saved):
    _, path = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)


def test_checkpoint_error_is_oserror():
    assert issubclass(CheckpointError, LatentmapError)
    assert issubclass(CheckpointError, OSError)


@pytest.mark.parametrize("error,builtin", [
    (errors.DatasetError, ValueError), (errors.DatasetNotFoundError, FileNotFoundError),
    (errors.ShapeMismatchError, ValueError), (errors.NonFiniteError, ValueError), (errors.CheckpointError, OSError),
    (errors.UnknownKindError, KeyError), (errors.NotFittedError, AttributeError),
    (errors.UnderdeterminedError, ValueError), (errors.ConfigError, ValueError),
    (errors.UnsafeLoadError, PermissionError), (errors.DependencyError, ImportError),
    (errors.SupportSetError, ValueError)])
def test_errors_derive_from_latentmap_error_and_from_the_builtin(error, builtin):
    """Every deliberate error derives from LatentmapError *and* from the built-in a caller would catch
    (docs/outputs-and-errors.md)."""
    assert issubclass(error, LatentmapError)
    assert issubclass(error, builtin)


def test_every_error_class_has_a_builtin_base_besides_latentmap_error():
    import inspect

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, LatentmapError) and c is not LatentmapError]
    assert len(classes) >= 12
    for cls in classes:
        builtin = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
        assert builtin, f"{cls.__name__} derives from no built-in exception besides Exception"


def test_failed_save_keeps_previous(saved, monkeypatch):
    model, path = saved
    before = sha256_file(path / "model.safetensors")
    other = ConvVAE("saved", (1, 8, 8), 3, hidden=16)

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        other.save(path)
    assert sha256_file(path / "model.safetensors") == before
    assert [p.name for p in path.parent.iterdir()] == ["ck"]  # no temporary leftovers
