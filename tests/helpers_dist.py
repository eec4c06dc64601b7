"""Importable pieces for the torch.distributed tests: small seeded `py:` models and a rank that dies."""

import os
import sys

import numpy as np
import torch
from torch import nn

SHAPE = (1, 28, 28)


class _Encoder(nn.Module):
    def __init__(self, latent_dim: int, die_on_rank: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, latent_dim))
        self.calls, self.die_on_rank = 0, die_on_rank

    def forward(self, x):
        self.calls += 1
        if self.die_on_rank is not None and int(os.environ.get("RANK", "-1")) == self.die_on_rank and self.calls >= 2:
            sys.stdout.flush()
            os._exit(3)  # a rank lost mid-run, without any cleanup
        return self.net(x)


def _model(seed: int, latent_dim: int, die_on_rank=None):
    torch.manual_seed(seed)
    encoder = _Encoder(latent_dim, die_on_rank)
    decoder = nn.Sequential(nn.Linear(latent_dim, 784), nn.Sigmoid(), nn.Unflatten(1, SHAPE))
    return encoder, decoder, SHAPE


def model_a():
    return _model(0, 6)


def model_b():
    return _model(1, 5)


def model_a_dying():
    return _model(0, 6, die_on_rank=1)


def info_gain_script(out: str, images: int) -> None:
    """Information gain of model_a on synthetic images; rank 0 (or the single process) saves the gains."""
    from latentmap import distributed
    from latentmap.data.datasets import load_dataset
    from latentmap.models.registry import load_model
    from latentmap.support.info_gain import information_gain

    distributed.init()
    model = load_model("py:helpers_dist:model_a", device="cpu", allow_pickle=True)
    data = load_dataset(f"synthetic:{images}", "all")
    info = information_gain(model, data, batch_size=16, chunk_rows=model.latent_dim + 1)
    if distributed.is_main():
        np.save(out, np.concatenate([info.gains, [info.n_images]]))
    distributed.shutdown()


if __name__ == "__main__":
    info_gain_script(sys.argv[1], int(sys.argv[2]))
