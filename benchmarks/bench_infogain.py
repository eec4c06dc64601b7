"""Information gain, side by side: the batched function against a per-variable loop and decode-only throughput.

On the shipped Split-VAE (``fmnist-svae``, 64 latent variables) and 2,000 Fashion-MNIST test images,
every method needs (d + 1)·N decodes (each image's d zeroed variants and the image's own latent):

* decode-only: the decoder alone on random latents. A short scan of chunk sizes from 16 to 4,096 rows (best
  of repeated calls each) picks the fastest chunk; the ceiling is then the decoder run over the same
  (d + 1)·N rows, a sustained run like the information gain's own, at that chunk and at the rule's rows
  (the faster of the two counts: a short scan on a busy machine can pick a poor chunk);
* ``information_gain`` (the rows per decode call from the device type's memory budget, see decode_rows;
  a fixed rule, never a timing, so the gains are the same on every run and rank). It and the sustained
  decode-only run alternate for ``--rounds`` rounds; the ratio is the median of the per-round ratios, so
  load that comes and goes hits both alike;
* ``information_gain`` with a fixed 2,048-row chunk (the former CPU default);
* a per-variable loop: for each variable, every 64-image batch decoded with that variable zeroed.

Target: the batched function reaches >= 95% of the best decode-only throughput.

Usage: .venv/bin/python benchmarks/bench_infogain.py [--images 2000] [--model fmnist-svae] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

DECODE_ROWS = (16, 32, 64, 65, 128, 130, 256, 260, 512, 520, 1024, 2048, 4096)
TARGET = 0.95


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_only(model, rows_list, min_seconds: float = 0.6) -> dict[int, float]:
    """Rows per second of ``model.decode`` at each chunk size (best of repeated calls)."""
    import torch

    g = torch.Generator().manual_seed(0)
    out = {}
    for rows in rows_list:
        z = torch.randn(rows, model.latent_dim, generator=g).to(model.device)
        model.decode(z)  # warm up this shape
        best, spent = float("inf"), 0.0
        calls = 0
        while spent < min_seconds or calls < 2:
            _sync(model.device)
            t0 = time.perf_counter()
            model.decode(z)
            _sync(model.device)
            dt = time.perf_counter() - t0
            best, spent, calls = min(best, dt), spent + dt, calls + 1
        out[rows] = rows / best
    return out


def timed(device, fn):
    """(wall seconds of ``fn()``, its result), the device synchronized before and after."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def sustained_decode(model, decodes: int, rows: int) -> float:
    """Seconds the decoder alone takes for ``decodes`` random latents in calls of ``rows`` (the ceiling's run)."""
    import torch

    z = torch.randn(rows, model.latent_dim, generator=torch.Generator().manual_seed(1)).to(model.device)

    def run():
        for _ in range(decodes // rows):
            model.decode(z)
        if decodes % rows:
            model.decode(z[:decodes % rows])

    return timed(model.device, run)[0]


def per_variable_loop(model, images, batch_size: int = 64):
    """The straightforward method: for every variable (and none), decode every batch with it zeroed."""
    import torch

    d = model.latent_dim
    sums = torch.zeros(d + 1, dtype=torch.float64)
    zs = [(model.encode(x), model.check_images(x)) for x in images.iter_batches(batch_size)]
    for i in range(d + 1):
        for z, x in zs:
            zi = z.clone()
            if i < d:
                zi[:, i] = 0
            sums[i] += (model.decode(zi) - x).pow(2).flatten(1).mean(1).double().sum().cpu()
    return (sums[:d] - sums[d]) / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="fmnist-svae")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the two sustained runs")
    parser.add_argument("--quick", action="store_true", help="200 images, 3 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 200, 3
    import numpy as np

    from latentmap import load_dataset, load_model
    from latentmap.support.info_gain import decode_rows, information_gain_sums  # the internal pass this benchmark times

    info = common.machine()
    model = load_model(args.model, device=args.device)
    images = load_dataset(args.dataset, "test").evenly_spaced_subset(args.images)
    d, n = model.latent_dim, len(images)
    decodes = (d + 1) * n
    print(f"Information gain of {model.name} (d = {d}) on {n} images: {decodes:,} decodes; device {model.device}")
    print(common.machine_line(info))
    rule_rows = decode_rows(model)
    rows_list = sorted(set(DECODE_ROWS) | {rule_rows})
    scan = decode_only(model, rows_list)
    best_rows = max(rows_list, key=scan.__getitem__)

    t_ceiling, t_rules, ratios = [], [], []
    for r in range(args.rounds):
        # the scan's best chunk and the rule's rows (one run when they are the same)
        t_dec = min(sustained_decode(model, decodes, rows) for rows in {best_rows, rule_rows})
        t_rule, (sums_rule, _n, _rows) = timed(model.device, lambda: information_gain_sums(model, images))
        t_ceiling.append(t_dec)
        t_rules.append(t_rule)
        ratios.append(t_dec / t_rule)
        print(f"round {r + 1}/{args.rounds}: decode-only {t_dec:.1f} s, information_gain {t_rule:.1f} s "
              f"({t_dec / t_rule:.1%})", flush=True)
    t_dec, t_rule, ratio = (float(np.median(v)) for v in (t_ceiling, t_rules, ratios))
    t_fixed, (sums_fixed, _n, _t) = timed(model.device, lambda: information_gain_sums(model, images, chunk_rows=2048))
    t_loop, gains_loop = timed(model.device, lambda: per_variable_loop(model, images))
    ceiling = decodes / t_dec
    gains = (sums_rule / n).cpu().numpy()
    agree = float(np.max(np.abs(gains - gains_loop.numpy())) / max(np.max(np.abs(gains_loop.numpy())), 1e-30))
    chunks = " and ".join(str(r) for r in sorted({best_rows, rule_rows}))
    rows = [{"method": f"decode only, best of {chunks} rows, median of {args.rounds}", "seconds": t_dec,
             "decodes_per_s": ceiling, "vs_best": 1.0},
            {"method": f"information_gain, rule's decode rows ({rule_rows} rows), median of {args.rounds}",
             "seconds": t_rule, "decodes_per_s": decodes / t_rule, "vs_best": ratio},
            {"method": "information_gain, fixed 2048-row chunk", "seconds": t_fixed,
             "decodes_per_s": decodes / t_fixed, "vs_best": decodes / t_fixed / ceiling},
            {"method": "per-variable loop, 64-image batches", "seconds": t_loop, "decodes_per_s": decodes / t_loop,
             "vs_best": decodes / t_loop / ceiling}]
    print(common.table(rows, [("method", "method", ""), ("seconds", "seconds", ".1f"),
                              ("decodes_per_s", "decodes/s", ",.0f"), ("vs_best", "x best decode-only", ".3f")]))
    print("decode-only rows/s by chunk (scan, best of short calls): "
          + ", ".join(f"{r}: {scan[r]:,.0f}" for r in rows_list))
    print(f"gains of the batched function and of the loop agree to {agree:.1e} (relative, max)")
    targets = [(f"information_gain >= {TARGET:.0%} of the best decode-only throughput", ratio >= TARGET,
                f"{ratio:.1%} (median of {args.rounds} alternating rounds)"),
               ("batched gains equal the per-variable loop's (1e-4 relative)", agree <= 1e-4, f"{agree:.1e}")]
    return common.finish("bench_infogain" + ("_quick" if args.quick else ""),
                         {"benchmark": "information gain", "machine": info, "device": str(model.device),
                          "model": model.name, "images": n, "rows": rows,
                          "decode_only_scan": {str(r): scan[r] for r in rows_list},
                          "decode_rows": rule_rows, "rounds": {"decode_only_s": t_ceiling,
                                                               "information_gain_s": t_rules, "ratio": ratios}},
                         targets)


if __name__ == "__main__":
    sys.exit(main())
