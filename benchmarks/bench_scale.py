"""Scale proof: the CelebA-size path end to end on synthetic images, with times and peak memory.

Without CelebA: ``--dataset synthetic:N x 64 x 64 x 3`` (seeded images made per index, never held in
memory) and two untrained models of CelebA-like sizes, saved as checkpoints: a 150-d Split-VAE and a
512-d VAE (the latent size of a StyleGAN's W), convolution widths ``--channels``. Each step runs as the
user would run it, through the CLI, in its own process (wall time; peak resident memory of the process):

1. ``latentmap support-set build`` of the 150-d model on a 20,000-image split, the information gain on
   ``--gain-images`` of them (the CLI's default 2,000; ``--gain-images 20000`` for all of them);
2. ``latentmap map fit`` 150 -> 512 on 200,000 image pairs, streamed through both encoders.

Targets: every step completes; memory is bounded (peak below ``--max-memory-gib``, default 4 GiB, while
the 200,000 images alone would take 9.2 GiB as float32).

Usage: .venv/bin/python benchmarks/bench_scale.py [--support-images 20000] [--fit-pairs 200000] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

SHAPE = (3, 64, 64)


def make_models(folder: Path, channels: list[int]) -> tuple[Path, Path]:
    import torch

    from latentmap import adapter_class

    SplitVAE, ConvVAE = adapter_class("split-vae"), adapter_class("vae")

    torch.manual_seed(0)
    a = SplitVAE("synthetic-svae-150", SHAPE, 150, channels=channels, hidden=256,
                 metadata={"dataset": "synthetic"})
    b = ConvVAE("synthetic-vae-512", SHAPE, 512, channels=channels, hidden=512, metadata={"dataset": "synthetic"})
    pa, pb = folder / "svae-150", folder / "vae-512"
    a.save(pa)
    b.save(pb)
    return pa, pb


def run_cli(args: list[str]) -> dict:
    """Run ``latentmap ARGS`` in a child; wall time and the child's peak resident memory."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "latentmap", "--quiet", *args],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"latentmap {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    lines = out.stdout.strip().splitlines()
    return {"seconds": seconds, "peak_bytes": int(lines[-1]), "output": lines[:-1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--support-images", type=int, default=20000)
    parser.add_argument("--gain-images", type=int, default=2000)
    parser.add_argument("--fit-pairs", type=int, default=200000)
    parser.add_argument("--channels", default="16,32,64,128")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-memory-gib", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="2,000 / 200 / 20,000 images: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.support_images, args.gain_images, args.fit_pairs = 2000, 200, 20000
    info = common.machine()
    print("Scale proof on synthetic 64x64x3 images (untrained 150-d Split-VAE and 512-d VAE)")
    print(common.machine_line(info))
    rows = []
    common_args = ["--device", args.device, "--precision", args.precision, "--batch-size", str(args.batch_size),
                   "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        pa, pb = make_models(tmp, [int(c) for c in args.channels.split(",")])
        support = f"synthetic:{args.support_images}x64x64x3"
        r = run_cli(["support-set", "build", "--model", str(pa), "--dataset", support, "--split", "all",
                     "--gain-images", str(args.gain_images), "--out", str(tmp / "support"), *common_args])
        rows.append({"step": f"support-set build, 150-d, {args.support_images:,} images "
                             f"(information gain on {args.gain_images:,})", "images": args.support_images, **r})
        fit = f"synthetic:{args.fit_pairs}x64x64x3"
        r = run_cli(["map", "fit", "--source", str(pa), "--target", str(pb), "--dataset", fit, "--fit-split", "all",
                     "--out", str(tmp / "map"), *common_args])
        rows.append({"step": f"map fit 150 -> 512 on {args.fit_pairs:,} pairs", "images": args.fit_pairs, **r})
    for r in rows:
        r["peak_gib"] = r["peak_bytes"] / 2**30
        r["minutes"] = r["seconds"] / 60
    print(common.table(rows, [("step", "step", ""), ("minutes", "minutes", ".1f"), ("peak_gib", "peak GiB", ".2f")]))
    def images_gib(n):  # what the step's images would take in memory at once, as float32
        return n * 3 * 64 * 64 * 4 / 2**30

    targets = [(f"{r['step']}: peak memory below {args.max_memory_gib:g} GiB", r["peak_gib"] <= args.max_memory_gib,
                f"{r['peak_gib']:.2f} GiB (the {r['images']:,} images as float32: {images_gib(r['images']):.1f} GiB)")
               for r in rows]
    return common.finish("bench_scale" + ("_quick" if args.quick else ""),
                         {"benchmark": "scale", "machine": info, "args": vars(args),
                          "rows": [{k: v for k, v in r.items() if k != "output"} for r in rows]}, targets)


if __name__ == "__main__":
    sys.exit(main())
