"""Voids of a plain autoencoder, a VAE and the Split-VAE on the same data, under several samplers.

For each model and sampler (the prior, or N(0, I) as a placeholder where the model has none; one Gaussian and a
10-component mixture fitted on ``--fit-images`` training encodings), ``--points`` samples are drawn and measured:

- the void fraction against the codes of as many held-out images (``latentmap.void_fraction``);
- precision, recall, density and coverage (k = 5) of all samples, and of those in voids and those near the data,
  in the latent space of a neutral reference model (``--reference``).

The models are trained first, for example (about 3 minutes each on 2 CPU cores)::

    for kind in ae vae split-vae; do
      latentmap train $kind --dataset mnist --latent-dim 16 --epochs 3 --seed 0 --out runs/cmp-$kind
    done
    python experiments/voids_compare.py --models ae=runs/cmp-ae,vae=runs/cmp-vae,split-vae=runs/cmp-split-vae \
        --reference runs/latent-size/reference --out runs/voids-compare.json

One JSON line per model and sampler on stdout, and all of them in ``--out``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from latentmap import PriorSampler, fit_sampler, knn_radii, load_dataset, load_model, prdc, void_fraction

SAMPLERS = ("prior", "gaussian", "gmm")


def measure(model, sampler_name, subset, train, real_features, real_radii, reference, points, fit_images):
    """One row: the void fraction of ``points`` samples and their fidelity, overall, in voids and near the data."""
    codes = model.encode_all(subset).double()
    if sampler_name == "prior":
        sampler = PriorSampler(model)
    else:
        sampler = fit_sampler(model, sampler_name, data=train, fit_images=fit_images, seed=0)
    samples = sampler.sample(points, torch.Generator().manual_seed(1)).double()
    voids = void_fraction(samples.numpy(), codes.numpy())
    generated = reference.encode_all(model.decode_all(samples.float())).double().numpy()
    label = sampler_name + ("" if sampler_name != "prior" or model.has_prior else " (placeholder N(0, I))")
    row = {"model": model.name, "sampler": label, "void_fraction": voids.fraction, "threshold": voids.threshold,
           **prdc(real_features, generated, 5, real_radii=real_radii)}
    for group, idx in (("void", np.flatnonzero(voids.in_void)), ("near", np.flatnonzero(~voids.in_void))):
        row[f"{group}_n"] = int(len(idx))
        if len(idx) > 5:  # fewer samples than neighbours say nothing
            scores = prdc(real_features, generated[idx], 5, real_radii=real_radii)
            row[f"{group}_precision"], row[f"{group}_density"] = scores["precision"], scores["density"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="Comma-separated NAME=PATH of the models to compare.")
    parser.add_argument("--reference", required=True, help="The model whose latent space measures fidelity.")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--points", type=int, default=1000, help="Held-out codes and samples per model.")
    parser.add_argument("--fit-images", type=int, default=4000, help="Training encodings the samplers are fitted on.")
    parser.add_argument("--out", required=True, help="JSON file of every row.")
    args = parser.parse_args(argv)
    reference = load_model(args.reference, device="cpu")
    subset = load_dataset(args.dataset, "test").random_subset(args.points, 0)
    train = load_dataset(args.dataset, "train")
    real_features = reference.encode_all(subset).double().numpy()
    real_radii = knn_radii(real_features, 5)
    rows = []
    for item in args.models.split(","):
        _, _, path = item.partition("=")
        model = load_model(path, device="cpu")
        for name in SAMPLERS:
            rows.append(measure(model, name, subset, train, real_features, real_radii, reference, args.points,
                                args.fit_images))
            print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
