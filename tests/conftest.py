import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("LATENTMAP_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow test: set LATENTMAP_SLOW=1"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def tiny_vae_checkpoint(tmp_path_factory):
    """A VAE trained for one epoch on 400 Fashion-MNIST images (session-wide, ~2 s)."""
    from latentmap.training import TrainSettings, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny-vae"
    train(TrainSettings(kind="vae", out=str(out), latent_dim=8, epochs=1, train_images=400, test_images=100,
                        batch_size=64, progress=False, device="cpu"))
    return out
