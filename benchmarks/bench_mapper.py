"""LinearMap benchmark: streaming partial_fit vs one-shot numpy lstsq, side by side on the same data.

Prints, for one seeded data set of N latent pairs (d_source -> d_target):

* time and peak extra memory (RSS) of
  - LinearMap streaming: pairs arrive in batches (as from two encoders), float64 statistics;
  - numpy.linalg.lstsq on the whole float64 [N, d+1] design matrix, which has to be in memory;
  and their ratios. Each method runs in its own fresh process, so peak RSS is its own.
* accuracy of the coefficients against a float64 reference: LinearMap given float32 batches
  vs the same normal equations accumulated in float32.

Usage: .venv/bin/python benchmarks/bench_mapper.py [--n 60000] [--d-source 64] [--d-target 32] [--batch 1024]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np


def batches(n, d_x, d_y, batch, seed=0, dtype=np.float64):
    """The same pairs every time: y = x W + b + noise, x with non-zero means (like real latents)."""
    rng_w = np.random.default_rng(1000 + seed)
    w = rng_w.normal(size=(d_x, d_y)) / np.sqrt(d_x)
    b = rng_w.normal(size=d_y)
    for k, start in enumerate(range(0, n, batch)):
        rng = np.random.default_rng([seed, k])
        m = min(batch, n - start)
        x = rng.normal(size=(m, d_x)) * rng_w.uniform(0.1, 2.0, size=d_x) + 3.0
        y = x @ w + b + 0.1 * rng.normal(size=(m, d_y))
        yield x.astype(dtype), y.astype(dtype)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_streaming(args, queue):
    import torch

    from latentmap import LinearMap

    torch.set_num_threads(args.threads)
    LinearMap().fit(*next(batches(200, args.d_source, args.d_target, 200, seed=99)))  # warm up kernels
    base = _rss_mb()
    t0 = time.perf_counter()
    m = LinearMap(bias=True)
    for x, y in batches(args.n, args.d_source, args.d_target, args.batch):
        m.partial_fit(x, y)
    m.solve()
    queue.put({"seconds": time.perf_counter() - t0, "extra_mb": _rss_mb() - base,
               "coef": m.coef_, "intercept": m.intercept_})


def _run_lstsq(args, queue):
    np.linalg.lstsq(np.ones((200, 3)), np.ones((200, 2)), rcond=None)  # warm up LAPACK
    base = _rss_mb()
    t0 = time.perf_counter()
    xs, ys = zip(*batches(args.n, args.d_source, args.d_target, args.batch))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    del xs, ys
    design = np.hstack([x, np.ones((len(x), 1))])
    sol = np.linalg.lstsq(design, y, rcond=None)[0]
    queue.put({"seconds": time.perf_counter() - t0, "extra_mb": _rss_mb() - base,
               "coef": sol[:-1], "intercept": sol[-1]})


def _run_generation_only(args, queue):
    base = _rss_mb()
    t0 = time.perf_counter()
    for _ in batches(args.n, args.d_source, args.d_target, args.batch):
        pass
    queue.put({"seconds": time.perf_counter() - t0, "extra_mb": _rss_mb() - base})


def _in_fresh_process(fn, args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=fn, args=(args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def accuracy(args) -> dict:
    """Coefficient error of float64 vs float32 accumulation, both fed float32 batches."""
    from latentmap import LinearMap

    pairs = list(batches(args.n, args.d_source, args.d_target, args.batch, dtype=np.float32))
    x = np.concatenate([p[0] for p in pairs]).astype(np.float64)
    y = np.concatenate([p[1] for p in pairs]).astype(np.float64)
    ref = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0][:-1]
    m = LinearMap().fit_batches(pairs)
    # the textbook alternative: raw sums XᵀX, Xᵀy in float32, then centered and solved
    n, sx, sy = 0, np.zeros(args.d_source, np.float32), np.zeros(args.d_target, np.float32)
    sxx = np.zeros((args.d_source, args.d_source), np.float32)
    sxy = np.zeros((args.d_source, args.d_target), np.float32)
    for xb, yb in pairs:
        n += len(xb)
        sx += xb.sum(0)
        sy += yb.sum(0)
        sxx += xb.T @ xb
        sxy += xb.T @ yb
    cxx = sxx - np.outer(sx, sx) / np.float32(n)
    cxy = sxy - np.outer(sx, sy) / np.float32(n)
    naive = np.linalg.solve(cxx.astype(np.float64), cxy.astype(np.float64))
    return {"float64": _rel(m.coef_, ref), "float32": _rel(naive, ref)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--d-source", type=int, default=64)
    parser.add_argument("--d-target", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    print(f"{args.n} pairs, {args.d_source} -> {args.d_target}, affine map, batches of {args.batch}")
    gen = _in_fresh_process(_run_generation_only, args)
    stream = _in_fresh_process(_run_streaming, args)
    lstsq = _in_fresh_process(_run_lstsq, args)
    agree = _rel(stream["coef"], lstsq["coef"])
    net_s, net_l = stream["seconds"] - gen["seconds"], lstsq["seconds"] - gen["seconds"]
    print(f"{'method':34s} {'seconds':>8s} {'minus data':>10s} {'peak extra MB':>14s}")
    print(f"{'data generation alone':34s} {gen['seconds']:8.3f} {'':>10s} {gen['extra_mb']:14.1f}")
    print(f"{'LinearMap.partial_fit (streaming)':34s} {stream['seconds']:8.3f} {net_s:10.3f} {stream['extra_mb']:14.1f}")
    print(f"{'numpy.linalg.lstsq (all in memory)':34s} {lstsq['seconds']:8.3f} {net_l:10.3f} {lstsq['extra_mb']:14.1f}")
    print(f"speed ratio lstsq/streaming (fit time without data generation): {net_l / max(net_s, 1e-9):.2f}x   "
          f"memory ratio lstsq/streaming: {lstsq['extra_mb'] / max(stream['extra_mb'], 0.1):.1f}x")
    print(f"coefficients agree to {agree:.2e} (relative Frobenius norm)")
    acc = accuracy(args)
    print(f"float32 batches, error vs float64 lstsq: float64 statistics {acc['float64']:.2e}, "
          f"float32 raw sums {acc['float32']:.2e} ({acc['float32'] / max(acc['float64'], 1e-300):.0e}x worse)")


if __name__ == "__main__":
    main()
