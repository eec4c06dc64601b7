"""One global affine map against one affine map per label, between two checkpoints.

Fits A -> B on 20,000 training images (globally, and separately on the images of each label),
then relocates 4,000 test images, each through the map of its own label in the second case.
Prints B's own MSE, the ratio relocated / own for both, overall and per label:

    python experiments/per_label_maps.py checkpoints/fmnist-vae-a checkpoints/fmnist-vae-b

A per-label map is an oracle (it is told each test image's label); the gap between the two
ratios is what a single linear map loses to the differences between the labels' regions.
"""

from __future__ import annotations

import argparse

import torch

from latentmap import LinearMap, load_dataset, load_model, per_image_mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=4000)
    args = parser.parse_args()
    a, b = load_model(args.source, device="cpu"), load_model(args.target, device="cpu")
    train = load_dataset(args.dataset, "train").random_subset(args.fit_images, 0)
    test = load_dataset(args.dataset, "test").random_subset(args.test_images, 1)
    x_fit, x_test = train.all_images(), test.all_images()
    fit_labels, test_labels = train.labels, test.labels
    with torch.no_grad():
        za, zb, za_test = a.encode_all(x_fit), b.encode_all(x_fit), a.encode_all(x_test)
        own = per_image_mse(b.decode_all(b.encode_all(x_test)), x_test)
        global_map = LinearMap().fit(za, zb)
        relocated_global = per_image_mse(b.decode_all(global_map.transform(za_test)), x_test)
        relocated_per_label = torch.empty_like(relocated_global)
        for label in fit_labels.unique().tolist():
            fit_rows, test_rows = fit_labels == label, test_labels == label
            label_map = LinearMap(alpha=1e-3).fit(za[fit_rows], zb[fit_rows])
            relocated_per_label[test_rows] = per_image_mse(
                b.decode_all(label_map.transform(za_test[test_rows])), x_test[test_rows])
    def ratio(relocated, rows=slice(None)):
        return float(relocated[rows].mean() / own[rows].mean())

    print(f"{a.name} -> {b.name}: B's own MSE {own.mean():.5f}; ratio with one global map "
          f"{ratio(relocated_global):.3f}, with one map per label {ratio(relocated_per_label):.3f}")
    print(f"{'label':>14s} {'own MSE':>8s} {'global':>7s} {'per label':>9s}")
    for label in test_labels.unique().tolist():
        rows = test_labels == label
        print(f"{test.label_name(label):>14s} {own[rows].mean():8.5f} {ratio(relocated_global, rows):7.3f} "
              f"{ratio(relocated_per_label, rows):9.3f}")


if __name__ == "__main__":
    main()
