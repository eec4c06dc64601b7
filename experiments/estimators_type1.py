"""Every map estimator on one pair of models: relocated/own ratio on the test split, as a table.

Encodes the training and test images with both models once (cached in ``runs/cache/``), fits
each estimator on a seeded random subset of the training pairs, relocates every test image
(Dec_B(M(Enc_A x))) and prints, per estimator: the ratio mean(relocated MSE) / mean(B's own MSE)
with its 95% bootstrap interval, the per-image ratio's median and 90th percentile, and the fit
time:

    python experiments/estimators_type1.py                     # fmnist-vae-a -> fmnist-vae-b, 20,000 fit pairs
    python experiments/estimators_type1.py --fit-images 60000 --estimators linear,piecewise:64,mlp
    python experiments/estimators_type1.py --oracle            # adds one map per garment class (told the label)

Estimator specs as in ``latentmap map atlas --estimators`` (latentmap.maps.registry).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from latentmap import (LinearMap, bootstrap_ratio_interval, load_dataset, load_model, parse_estimators,
                       per_image_mse, ratio_quantiles)

DEFAULT = ("linear,piecewise:4,piecewise:8,piecewise:16,piecewise:64,soft-piecewise:4,soft-piecewise:8,"
           "soft-piecewise:16,soft-piecewise:64,mlp,ortho,l-ortho,adam")


def latents(source: str, target: str, dataset: str, cache: Path) -> dict:
    """Encodings of the whole train and test splits by both models, and B's own per-image test MSE."""
    if cache.is_file():
        return dict(np.load(cache))
    a, b = load_model(source, device="cpu"), load_model(target, device="cpu")
    train, test = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    out = {}
    with torch.no_grad():
        xt = test.all_images()
        out["za_test"], out["zb_test"] = a.encode_all(xt).numpy(), b.encode_all(xt).numpy()
        out["own_test"] = per_image_mse(b.decode_all(torch.from_numpy(out["zb_test"])), xt).numpy()
        out["test_labels"] = np.asarray(test.labels)
        x = train.all_images()
        out["za_train"], out["zb_train"] = a.encode_all(x).numpy(), b.encode_all(x).numpy()
        out["train_labels"] = np.asarray(train.labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def relocated_mse(b, z_mapped: np.ndarray, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return per_image_mse(b.decode_all(torch.as_tensor(z_mapped, dtype=torch.float32), progress=False), x).numpy()


def oracle_per_label(c: dict, rows: np.ndarray) -> np.ndarray:
    """Mapped test latents through one affine map per label (fitted on the same training rows)."""
    out = np.empty_like(c["zb_test"])
    for label in np.unique(c["test_labels"]):
        fit_rows = rows[c["train_labels"][rows] == label]
        m = LinearMap(alpha=1e-3).fit(c["za_train"][fit_rows], c["zb_train"][fit_rows])
        test_rows = c["test_labels"] == label
        out[test_rows] = m.transform(c["za_test"][test_rows])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="fmnist-vae-a")
    parser.add_argument("--target", default="fmnist-vae-b")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--estimators", default=DEFAULT)
    parser.add_argument("--oracle", action="store_true", help="add one affine map per label (an oracle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="latent cache (default runs/cache/SOURCE__TARGET.npz)")
    args = parser.parse_args()
    specs = parse_estimators(args.estimators)
    cache = Path(args.cache or f"runs/cache/{Path(args.source).name}__{Path(args.target).name}.npz")
    c = latents(args.source, args.target, args.dataset, cache)
    b = load_model(args.target, device="cpu")
    x_test = load_dataset(args.dataset, "test").all_images()
    own = c["own_test"].astype(np.float64)
    n_train = len(c["za_train"])
    rows = np.sort(np.random.default_rng(args.seed).permutation(n_train)[:min(args.fit_images, n_train)])
    za, zb = c["za_train"][rows], c["zb_train"][rows]
    print(f"{Path(args.source).name} -> {Path(args.target).name}: fit on {len(rows)} training pairs, judged on "
          f"{len(own)} test images; B's own MSE {own.mean():.5f}")
    print(f"{'estimator':34s} {'ratio':>6s} {'95% interval':>15s} {'median':>6s} {'p90':>6s} {'latent R2':>9s} "
          f"{'fit s':>6s}")
    runs = [(s.label, lambda s=s: s.make(overrides={"seed": args.seed}).fit(za, zb)) for s in specs]
    for label, fit in runs:
        start = time.time()
        m = fit()
        seconds = time.time() - start
        mapped = m.transform(c["za_test"])
        _report(label, own, relocated_mse(b, mapped, x_test), m.score(c["za_test"], c["zb_test"]), seconds,
                m.fit_metrics_.get("best_epoch"))
    if args.oracle:
        mapped = oracle_per_label(c, rows)
        from sklearn.metrics import r2_score

        _report("oracle: one map per label", own, relocated_mse(b, mapped, x_test), r2_score(c["zb_test"], mapped), 0)


def _report(label, own, relocated, r2, seconds, note=None) -> None:
    ratio = relocated.mean() / own.mean()
    low, high = bootstrap_ratio_interval(own, relocated, seed=0)
    median, p90 = ratio_quantiles(own, relocated)
    print(f"{label:34s} {ratio:6.3f} [{low:6.3f}, {high:6.3f}] {median:6.3f} {p90:6.3f} {r2:9.4f} {seconds:6.1f}"
          + (f"  (best epoch {note})" if note is not None else ""), flush=True)


if __name__ == "__main__":
    main()
