"""The LPIPS loading path. The backbone placed in the temporary hub cache here is randomly
initialized: it checks where weights are looked up and how they are loaded, nothing about
perceptual quality (real LPIPS needs torchvision's ImageNet weights)."""

import pytest
import torch
from torchvision import models

from latentmap import invert, wrap
from latentmap.errors import ConfigError, DependencyError
from latentmap.evaluation.lpips_metric import backbone_filename, hub_weights_path, load_lpips, lpips_distance


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _alexnet_features_file(path):
    torch.manual_seed(0)
    state = {k: v for k, v in models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_missing_weights_give_a_clear_error(empty_hub):
    with pytest.raises(DependencyError) as info:
        load_lpips()
    message = str(info.value)
    assert "--lpips PATH" in message and backbone_filename("alex") in message and str(empty_hub) in message
    assert "\n" not in message
    with pytest.raises(DependencyError, match="does not exist"):
        load_lpips(empty_hub / "nowhere.pth")


def test_weights_in_the_hub_cache_are_found_and_loaded(empty_hub):
    assert hub_weights_path("alex") == empty_hub / "alexnet-owt-7be5be79.pth"
    state = _alexnet_features_file(hub_weights_path("alex"))
    metric = load_lpips(device="cpu")
    # the backbone holds exactly the weights of the file, not a random or downloaded one
    torch.testing.assert_close(metric.lpips.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(metric.lpips.net.slice5, "10").weight, state["features.10.weight"])
    x, y = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    d = lpips_distance(x, y, device="cpu")
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(lpips_distance(x, x, device="cpu"), torch.zeros(3))
    torch.testing.assert_close(lpips_distance(y, x, device="cpu"), d)


def test_weights_at_a_given_path_and_wrong_files(empty_hub, tmp_path):
    path = tmp_path / "mine.pth"
    _alexnet_features_file(path)
    assert load_lpips(path, device="cpu").source == path
    state = torch.load(path, weights_only=True)
    wrong = tmp_path / "wrong-shape.pth"
    torch.save({**state, "features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(DependencyError, match="do not fit"):
        load_lpips(wrong)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("features.10.")}, partial)
    with pytest.raises(DependencyError, match="lack 'features.10.weight'"):
        load_lpips(partial)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(DependencyError, match="cannot read"):
        load_lpips(junk)
    with pytest.raises(ConfigError, match="backbone must be one of"):
        load_lpips(path, net="resnet")


def test_invert_with_mse_plus_lpips_uses_the_given_weights(empty_hub, tmp_path):
    path = tmp_path / "mine.pth"
    _alexnet_features_file(path)
    torch.manual_seed(0)
    model = wrap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 4)),
                 torch.nn.Sequential(torch.nn.Linear(4, 784), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28))),
                 image_shape=(1, 28, 28))
    x = model.decode(torch.randn(3, 4))
    result = invert(model, x, steps=10, lr=0.05, init="prior-mean", loss="mse+lpips", lpips_weights=path)
    assert result.loss_name == "mse+lpips" and (result.loss < result.initial_loss).all()


def test_backbone_file_names_are_torchvisions():
    assert [backbone_filename(n) for n in ("alex", "vgg", "squeeze")] == [
        "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth", "squeezenet1_1-b8a52dc0.pth"]
