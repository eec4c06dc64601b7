"""Latent size and realistic samples: VAEs at several latent sizes, measured.

The question (000 in the source texts): with a larger latent space the reconstructions stay good
but generated images get worse, and most of the encoder's means sit near 0 with variances near 1.
For each latent size and seed this trains the package's own ``vae`` (balanced loss) with
``latentmap.training.train`` and measures, on the held-out split:

- test MSE of the reconstructions;
- inactive variables (Var(mu) < 0.01) and the variance law Var(mu) + E[sigma^2] (mean over variables);
- the void fraction of ``--points`` prior samples against the codes of as many held-out images (the
  same number of points for every size, as the threshold depends on it);
- precision, recall, density and coverage of as many prior samples in a fixed reference space: the
  latent space of a reference VAE (``--reference``, trained once by this script when not given).

One JSON line per run on stdout and in ``OUT/runs.jsonl``; ``OUT/latent_size.csv`` (mean and spread
over seeds per size), ``OUT/latent_size.md`` (the table for the docs) and ``OUT/latent_size.png``.

    python experiments/latent_size.py --dataset mnist --sizes 2,8,16,32,64,128 --seeds 0,1 --epochs 3 \
        --out runs/latent-size

On 2 shared CPU cores each run of 2 epochs on the 4,000 MNIST training digits takes 1-3 minutes.
Runs of several invocations with the same ``--out`` (and ``--reference``) add up in ``runs.jsonl``;
``--table-only`` rebuilds the table from all of them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METRICS = ("test_mse", "inactive", "variance_law", "void_fraction", "precision", "recall", "density", "coverage")


def measure(model, test, reference, points: int, seed: int) -> dict:
    """Every number of one trained model (see the module docstring)."""
    import torch

    from latentmap import latent_statistics, prdc, reconstruction_mse, void_fraction
    from latentmap.evaluation.metrics import INACTIVE_THRESHOLD

    subset = test.random_subset(min(points, len(test)), seed)
    codes = model.encode_all(subset).double()
    gen = torch.Generator().manual_seed(seed + 1)
    samples = model.sample_prior(len(subset), gen)
    stats = latent_statistics(model, test, batch_size=512)
    law = np.asarray(stats["var_mu"]) + np.asarray(stats["mean_sigma2"])
    real_f = reference.encode_all(subset).double().numpy()
    gen_f = reference.encode_all(model.decode_all(samples)).double().numpy()
    return {"test_mse": reconstruction_mse(model, test, batch_size=512),
            "inactive": int(np.sum(np.asarray(stats["var_mu"]) < INACTIVE_THRESHOLD)),
            "variance_law": float(law.mean()),
            "void_fraction": void_fraction(samples.double().numpy(), codes.numpy()).fraction,
            **prdc(real_f, gen_f, 5), "points": len(subset)}


def summarize(runs: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(runs)
    grouped = frame.groupby("latent_dim")[list(METRICS)]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_spread"))
    table.insert(0, "seeds", frame.groupby("latent_dim")["seed"].count())
    return table.reset_index()


def markdown(table) -> str:
    head = ["latent size", "seeds", "test MSE", "inactive", "Var(mu)+E[σ²]", "void fraction", "precision", "recall",
            "density", "coverage"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(int(r["latent_dim"])), str(int(r["seeds"])), f"{r['test_mse_mean']:.4f}",
                 f"{r['inactive_mean']:.1f}", f"{r['variance_law_mean']:.2f}"]
        cells += [f"{r[m + '_mean']:.3f} ± {r[m + '_spread']:.3f}" for m in METRICS[3:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table, path: Path) -> None:
    from latentmap.report.figures import figure_png, new_figure

    fig = new_figure(11, 3.6)
    left, mid, right = fig.subplots(1, 3)
    d = table["latent_dim"]
    left.errorbar(d, table["test_mse_mean"], table["test_mse_spread"], marker="o", label="test MSE")
    left.set_ylabel("test MSE")
    mid.errorbar(d, table["inactive_mean"], table["inactive_spread"], marker="o", color="tab:red",
                 label="inactive variables")
    mid.plot(d, d, ls=":", color="grey", label="all variables")
    mid.set_ylabel("variables")
    for m in ("void_fraction", "precision", "recall", "coverage"):
        right.errorbar(d, table[f"{m}_mean"], table[f"{m}_spread"], marker="o", label=m.replace("_", " "))
    right.set_ylabel("share")
    for ax in (left, mid, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("latent size")
        ax.legend(fontsize=9)
    path.write_bytes(figure_png(fig))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--sizes", default="2,8,16,32,64,128")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--points", type=int, default=1000, help="codes and prior samples per void fraction")
    parser.add_argument("--reference", default=None, help="reference model checkpoint (default: trained here)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/latent-size")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: rebuild the table and plot from every run in OUT/runs.jsonl")
    args = parser.parse_args()
    if args.table_only:
        write_table([json.loads(line) for line in (Path(args.out) / "runs.jsonl").read_text().splitlines()],
                    Path(args.out))
        return

    from latentmap import TrainSettings, load_dataset, load_model, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_dataset(args.dataset, "test")
    common = dict(dataset=args.dataset, epochs=args.epochs, train_images=args.train_images, progress=False,
                  device=args.device)
    if args.reference:
        reference = load_model(args.reference, device=args.device)
    else:
        reference = train(TrainSettings(kind="vae", out=str(out / "reference"), latent_dim=16, seed=1000, **common))
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.time()
            model = train(TrainSettings(kind="vae", out=str(out / f"vae-{size}-{seed}"), latent_dim=size, seed=seed,
                                        **common))
            row = {"latent_dim": size, "seed": seed, "epochs": args.epochs, "dataset": args.dataset,
                   "reference": reference.name, **measure(model, test, reference, args.points, seed),
                   "seconds": round(time.time() - start, 1)}
            runs.append(row)
            print(json.dumps(row), flush=True)
            with open(out / "runs.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
    write_table(runs, out)


def write_table(runs: list[dict], out: Path) -> None:
    table = summarize(runs)
    table.to_csv(out / "latent_size.csv", index=False)
    (out / "latent_size.md").write_text(markdown(table))
    plot(table, out / "latent_size.png")
    print(markdown(table))


if __name__ == "__main__":
    main()
