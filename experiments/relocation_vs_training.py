"""Type 1 relocation as training goes on: two VAEs trained side by side from different seeds.

After each epoch an affine map A -> B is fitted on 5,000 training images and judged on 2,000
evenly spaced test images; one JSON line per epoch (own MSE of A and B, relocated MSE, ratio,
latent R², gamma). The models are the package's own `vae` adapter and balanced loss; with
``--gamma G`` the loss's gamma is held at G from the first step (a KL weight G / MSE larger than
the balanced loss's).

    python experiments/relocation_vs_training.py --latent-dim 32 --epochs 10
    python experiments/relocation_vs_training.py --latent-dim 64 --gamma 0.06 --epochs 10

One thread per run: two runs side by side on two cores take about 3 minutes an epoch each.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from latentmap import FitSource, LinearMap, adapter_class, evaluate_relocation, fit_map, load_dataset
from latentmap.losses import BalancedVAELoss  # the training loss of the reference VAEs, not part of the public face

FIT_IMAGES, TEST_EVERY, BATCH = 5000, 5, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--gamma", type=float, default=0.0, help="hold gamma at this value (0: the balanced loss)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = load_dataset("fashion-mnist", "train")
    fit_images = train.random_subset(FIT_IMAGES, 0)
    test = load_dataset("fashion-mnist", "test")
    test = test.subset(np.arange(0, len(test), TEST_EVERY))
    x_all = train.all_images()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        model = adapter_class("vae")(f"vae-{seed}", train.image_shape, args.latent_dim)
        params = [p for m in model.modules().values() for p in m.parameters()]
        loss = BalancedVAELoss(gamma_init=args.gamma or 1.0, gamma_floor=args.gamma or 1e-6)
        runs.append((model, torch.optim.Adam(params, lr=1e-3), loss, torch.Generator().manual_seed(seed)))

    for epoch in range(1, args.epochs + 1):
        start = time.time()
        for model, optimizer, loss_fn, gen in runs:
            _train_epoch(model, optimizer, loss_fn, x_all, gen)
        (a, *_), (b, *_) = runs[0], runs[1]
        with torch.no_grad():
            linear_map = fit_map(a, b, FitSource("dataset", len(fit_images), name="fashion-mnist", data=fit_images),
                                 LinearMap(), batch_size=500)
            r = evaluate_relocation(a, b, linear_map, test, batch_size=500, lpips="off")
        print(json.dumps({"latent_dim": args.latent_dim, "gamma": runs[0][2].gamma, "epoch": epoch,
                          "A": round(r.source_mse, 5), "B": round(r.target_mse, 5),
                          "relocated": round(r.relocated_mse, 5), "ratio": round(r.ratio, 3),
                          "latent_r2": round(r.latent_r2, 3), "seconds": round(time.time() - start)}), flush=True)


def _train_epoch(model, optimizer, loss_fn, x_all, gen) -> None:
    for m in model.modules().values():
        m.train()
    order = torch.randperm(len(x_all), generator=gen)
    for s in range(0, len(x_all), BATCH):
        x = x_all[order[s:s + BATCH]]
        x_hat, mu, logvar = model.train_forward(x)
        optimizer.zero_grad()
        loss_fn(x, x_hat, mu, logvar).loss.backward()
        optimizer.step()
    for m in model.modules().values():
        m.eval()


if __name__ == "__main__":
    main()
