"""Data loading: reading a folder of images in the process against torch DataLoader workers, side by side.

A folder of ``--images`` PNG files (64x64x3, written once from ``synthetic:``) is read batch by batch,
alone and while a 64x64 VAE encodes every batch, with 0 (in the process), 1 and 2 DataLoader workers
(pinned memory when CUDA is there). Prints images per second and the speed-up over 0 workers; the
automatic choice (``latentmap.batching.loader_workers``: workers only when a GPU does the model work)
must be within 10% of the best measured setting.

Usage: .venv/bin/python benchmarks/bench_loader.py [--images 2000] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    from latentmap import adapter_class, batching, load_dataset  # batching: the loader settings this benchmark varies

    ConvVAE = adapter_class("vae")

    info = common.machine()
    print(f"Data loading: a folder of {args.images} PNG images 64x64x3, in the process vs DataLoader workers")
    print(common.machine_line(info))
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        synth = load_dataset(f"synthetic:{args.images}x64x64x3", "all")
        for start in range(0, len(synth), 500):
            batch = (synth.batch(np.arange(start, min(start + 500, len(synth)))) * 255).round().byte()
            for k, img in enumerate(batch.permute(0, 2, 3, 1).numpy()):
                Image.fromarray(img).save(Path(tmp) / f"{start + k:06d}.png")
        data = load_dataset(f"folder:{tmp}", "all")
        torch.manual_seed(0)
        model = ConvVAE("loader-vae", (3, 64, 64), 128).to(args.device)
        auto = batching.loader_workers(data)
        settings = [0, 1, 2]
        best = {}
        for _ in range(args.rounds):
            for workers in settings:
                batching.set_loader_workers(workers)
                for what in ("read", "read + encode"):
                    t0 = time.perf_counter()
                    for x in batching.image_batches(data, args.batch_size)[0]:
                        if what != "read":
                            model.encode(x)
                    dt = time.perf_counter() - t0
                    best[(workers, what)] = min(best.get((workers, what), float("inf")), dt)
        batching.set_loader_workers(None)
    rows = []
    for workers in settings:
        for what in ("read", "read + encode"):
            t = best[(workers, what)]
            rows.append({"setting": f"{workers} workers, {what}" + (" (automatic choice)" if workers == auto else ""),
                         "seconds": t, "images_per_s": args.images / t, "speedup": best[(0, what)] / t})
    print(common.table(rows, [("setting", "setting", ""), ("seconds", "seconds", ".2f"),
                              ("images_per_s", "images/s", ",.0f"), ("speedup", "x 0 workers", ".2f")]))
    fastest = min(best[(w, "read + encode")] for w in settings)
    chosen = best[(min(auto, 2), "read + encode")]
    targets = [("the automatic worker count is within 10% of the best (read + encode)", chosen <= 1.1 * fastest,
                f"automatic ({auto} workers): {chosen:.2f} s, best {fastest:.2f} s")]
    return common.finish("bench_loader", {"benchmark": "data loading", "machine": info, "images": args.images,
                                          "auto_workers": auto, "rows": rows}, targets)


if __name__ == "__main__":
    sys.exit(main())
