"""Relocation evaluation and the atlas, side by side with bare model passes doing the same work.

On the shipped models and Fashion-MNIST (maps fitted on ``--fit-images`` training images, judged on
``--images`` test images, LPIPS off):

* ``evaluate_relocation`` A -> B (fmnist-vae-a -> fmnist-svae) without and with the cycle, against bare
  passes doing the same model work (per image: encode A, encode B, decode A, decode B, decode B of the
  mapped latent; with the cycle also encode B, decode A) with no metrics: target >= 90% of their speed
  without the cycle; also the mapping alone (encode A -> matmul -> decode B), for scale;
* ``build_atlas`` over every shipped model (no cycle), against the minimum number of passes it needs:
  each model encodes the fit images once, encodes and decodes each test image once (its own
  reconstruction, shared by all its pairs), and each ordered pair decodes its mapped latents once:
  target >= 80% of their speed.

The methods alternate over ``--rounds`` rounds; the best time of each counts.

Usage: .venv/bin/python benchmarks/bench_eval.py [--images 2000] [--fit-images 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

SHIPPED = ("fmnist-vae-a", "fmnist-vae-b", "fmnist-svae", "fmnist-gan", "fmnist-stylegan")
PAIR = ("fmnist-vae-a", "fmnist-svae")


def bare_relocation(a, b, m, test, batch_size, cycle, reverse):
    for x in test.iter_batches(batch_size):
        z_a, z_b = a.encode(x), b.encode(x)
        a.decode(z_a)
        b.decode(z_b)
        mapped = b.decode(m.transform(z_a))
        if cycle:
            a.decode(reverse.transform(b.encode(mapped)))


def mapping_only(a, b, m, test, batch_size):
    for x in test.iter_batches(batch_size):
        b.decode(m.transform(a.encode(x)))


def bare_atlas(models, fit_data, test, maps, batch_size):
    for x in fit_data.iter_batches(batch_size):
        for model in models:
            model.encode(x)
    for x in test.iter_batches(batch_size):
        enc = [model.encode(x) for model in models]
        for model, z in zip(models, enc):
            model.decode(z)
        for i, j in itertools.permutations(range(len(models)), 2):
            models[j].decode(maps[(i, j)].transform(enc[i]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--fit-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="300 images, 1 round: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.fit_images, args.rounds = 300, 300, 1
    import warnings

    from latentmap import FitSource, build_atlas, evaluate_relocation, fit_all_pairs, load_dataset, load_model

    warnings.simplefilter("ignore")
    info = common.machine()
    models = [load_model(name, device=args.device) for name in SHIPPED]
    by_name = {m.name: m for m in models}
    fit_data = load_dataset("fashion-mnist", "train").evenly_spaced_subset(args.fit_images)
    test = load_dataset("fashion-mnist", "test").evenly_spaced_subset(args.images)
    fit = FitSource("dataset", len(fit_data), name="fashion-mnist", split="train", data=fit_data)
    print(f"Relocation evaluation and atlas: {len(test)} test images, maps fitted on {len(fit_data)}; "
          f"device {models[0].device}")
    print(common.machine_line(info))
    maps = fit_all_pairs(models, fit, batch_size=args.batch_size)
    ia, ib = SHIPPED.index(PAIR[0]), SHIPPED.index(PAIR[1])
    a, b, m, rev = by_name[PAIR[0]], by_name[PAIR[1]], maps[(ia, ib)], maps[(ib, ia)]
    bs = args.batch_size
    runs = {
        "evaluate_relocation, no cycle": lambda: evaluate_relocation(a, b, m, test, batch_size=bs, lpips="off",
                                                                     cycle=False),
        "bare passes, no cycle": lambda: bare_relocation(a, b, m, test, bs, False, rev),
        "evaluate_relocation, cycle": lambda: evaluate_relocation(a, b, m, test, reverse_map=rev, batch_size=bs,
                                                                  lpips="off", cycle=True),
        "bare passes, cycle": lambda: bare_relocation(a, b, m, test, bs, True, rev),
        "mapping only (encode -> matmul -> decode)": lambda: mapping_only(a, b, m, test, bs),
        "build_atlas, 5 models, no cycle": lambda: build_atlas(models, test, fit, batch_size=bs, lpips="off",
                                                                cycle=False),
        "bare atlas passes (the minimum)": lambda: bare_atlas(models, fit_data, test, maps, bs),
    }
    best = {k: float("inf") for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    n = len(test)
    pairs = [("evaluate_relocation, no cycle", "bare passes, no cycle"),
             ("evaluate_relocation, cycle", "bare passes, cycle"),
             ("build_atlas, 5 models, no cycle", "bare atlas passes (the minimum)")]
    rows = []
    for name, seconds in best.items():
        ref = next((b_ for a_, b_ in pairs if a_ == name), None)
        rows.append({"method": name, "seconds": seconds, "images_per_s": n / seconds,
                     "vs_bare": (best[ref] / seconds) if ref else None})
    print(common.table(rows, [("method", "method", ""), ("seconds", "seconds", ".2f"),
                              ("images_per_s", "images/s", ",.0f"), ("vs_bare", "speed vs bare", ".3f")]))
    reloc = best["bare passes, no cycle"] / best["evaluate_relocation, no cycle"]
    atlas = best["bare atlas passes (the minimum)"] / best["build_atlas, 5 models, no cycle"]
    targets = [("relocation evaluation (no cycle) >= 90% of bare passes", reloc >= 0.9, f"{reloc:.1%}"),
               ("atlas >= 80% of the minimum passes", atlas >= 0.8, f"{atlas:.1%}")]
    return common.finish("bench_eval" + ("_quick" if args.quick else ""),
                         {"benchmark": "evaluation", "machine": info, "device": str(models[0].device),
                          "images": n, "fit_images": len(fit_data), "rows": rows}, targets)


if __name__ == "__main__":
    sys.exit(main())
