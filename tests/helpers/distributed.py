"""Importable pieces for the torch.distributed tests: small seeded `py:` models and a rank that dies."""

import os
import sys

import numpy as np
import torch
from torch import nn

SHAPE = (1, 28, 28)
ENCODED = [0]  # rows encoded by this process's models so far


class _Encoder(nn.Module):
    def __init__(self, latent_dim: int, die_on_rank: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, latent_dim))
        self.calls, self.die_on_rank = 0, die_on_rank

    def forward(self, x):
        self.calls += 1
        ENCODED[0] += len(x)
        if self.die_on_rank is not None and int(os.environ.get("RANK", "-1")) == self.die_on_rank and self.calls >= 2:
            sys.stdout.flush()
            os._exit(3)  # a rank lost mid-run, without any cleanup
        return self.net(x)


class BatchSensitive(nn.Module):
    """``net`` plus 1e-6 of the mean of the call's rows: each row's value depends on the other rows of its call,
    as a float32 kernel's rounding can (but always, on any machine), so a pass over batches other than one
    process's shows up in the numbers."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x)
        return out + 1e-6 * out.mean(0, keepdim=True)


def _model(seed: int, latent_dim: int, die_on_rank=None, batch_sensitive: bool = False):
    torch.manual_seed(seed)
    encoder = _Encoder(latent_dim, die_on_rank)
    decoder = nn.Sequential(nn.Linear(latent_dim, 784), nn.Sigmoid(), nn.Unflatten(1, SHAPE))
    if batch_sensitive:
        encoder, decoder = BatchSensitive(encoder), BatchSensitive(decoder)
    return encoder, decoder, SHAPE


def model_a():
    return _model(0, 6)


def model_b():
    return _model(1, 5, batch_sensitive=True)


def model_a_dying():
    return _model(0, 6, die_on_rank=1)


def info_gain_script(out: str, images: int, shutdown: bool = True) -> None:
    """Information gain of model_b (batch-sensitive) on synthetic images, 4 images per decode call; rank 0 (or the
    single process) saves the gains."""
    from latentmap import distributed
    from latentmap.data.datasets import load_dataset
    from latentmap.models.registry import load_model
    from latentmap.support.info_gain import information_gain

    distributed.init()
    model = load_model("py:tests.helpers.distributed:model_b", device="cpu", allow_pickle=True)
    data = load_dataset(f"synthetic:{images}", "all")
    info = information_gain(model, data, batch_size=16, chunk_rows=4 * (model.latent_dim + 1))
    if distributed.is_main():
        np.save(out, np.concatenate([info.gains, [info.n_images]]))
    if shutdown:
        distributed.shutdown()


def collectives_script(out: str) -> None:
    """gather_rows and all_reduce_named on uneven parts (rank 1 has no rows, fewer labels, other keys); every
    rank writes what it got to OUT-RANK.json."""
    import json

    from latentmap import distributed

    distributed.init()
    r = distributed.rank()
    rows = np.arange(6, dtype=np.float64).reshape(3, 2) + 10 * r if r == 0 else None
    flags = torch.tensor([True, False, r == 0])[: 3 - 2 * r]
    named = {"sum": torch.full((2,), float(r + 1)), "by_label": torch.ones(4 - 2 * r, 3) * (r + 1)}
    if r == 1:
        named["only_1"] = torch.tensor(5.0)
    total = distributed.all_reduce_named(named)
    got = {"rows": distributed.gather_rows(rows).tolist(), "flags": distributed.gather_rows(flags).tolist(),
           "empty": distributed.gather_rows(np.zeros((0, 2))).shape,
           "named": {k: v.tolist() for k, v in total.items()},
           "mapped": distributed.map_shards(lambda x: x * 2, torch.arange(5), 2).tolist()}
    with open(f"{out}-{r}.json", "w") as fh:
        json.dump(got, fh)


def commands_script(spec: str) -> None:
    """Run the steps of the JSON file ``spec`` in this one process (one rank of torchrun, or alone): ["cli", ARGS]
    runs ``latentmap ARGS``; ["info_gain", OUT, N] and ["collectives", OUT] the scripts above."""
    import json

    from tests.helpers.distributed import ENCODED  # the module the `py:` models come from (not __main__)
    from latentmap import distributed
    from latentmap.cli.main import main

    encoded = []  # rows each step encoded in this process
    for step in json.load(open(spec)):
        before = ENCODED[0]
        if step[0] == "cli":
            main.main(step[1], standalone_mode=False)
        elif step[0] == "info_gain":
            info_gain_script(step[1], int(step[2]), shutdown=False)
        else:
            collectives_script(step[1])
        sys.stdout.flush()
        encoded.append(ENCODED[0] - before)
    with open(f"{spec}.encoded-{distributed.rank()}.json", "w") as fh:
        json.dump(encoded, fh)
    distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "steps":
        commands_script(sys.argv[2])
    else:
        info_gain_script(sys.argv[1], int(sys.argv[2]))
