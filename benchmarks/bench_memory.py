"""Peak memory of map fitting against the number of pairs: flat for streaming, input-sized for ``fit``.

For N = 10^4, 10^5, 10^6 latent pairs (150 -> 512, float32), each in a fresh process:

* ``partial_fit`` streaming: seeded 2,000-row batches generated on the fly, so no array of N rows
  exists anywhere; the process's peak resident memory must stay flat in N (within 10%);
* ``fit`` on whole arrays: the peak extra memory above the loaded arrays (chunk-sized copies only),
  against the arrays' size;
* with ``--cli``, ``latentmap map fit --samples N`` between two shipped models (N = 2,000 and 20,000 by
  default, ``--cli-samples``): the whole command's peak resident memory, which must be flat as well.

Usage: .venv/bin/python benchmarks/bench_memory.py [--sizes 10000,100000,1000000] [--cli]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

D_X, D_Y, BATCH = 150, 512, 2000
FLAT_TOLERANCE = 0.10


def _batches(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D_X, D_Y, generator=g) / D_X ** 0.5
    for s in range(0, n, BATCH):
        m = min(BATCH, n - s)
        x = torch.randn(m, D_X, generator=g) * 0.7 + 1.5
        yield x, x @ w + 0.1 * torch.randn(m, D_Y, generator=g)


def worker(mode: str, n: int) -> None:
    import torch

    from latentmap import LinearMap

    LinearMap().fit(*next(_batches(3000)))  # warm up: imports, BLAS buffers
    if mode == "stream":
        t0 = time.perf_counter()
        m = LinearMap()
        for x, y in _batches(n):
            m.partial_fit(x, y)
        m.solve()
        common.emit({"seconds": time.perf_counter() - t0, "peak_bytes": common.peak_bytes()})
        return
    xs, ys = zip(*_batches(n))
    x, y = torch.cat(xs), torch.cat(ys)
    del xs, ys
    with common.PeakMemory() as mem:
        t0 = time.perf_counter()
        LinearMap().fit(x, y)
        seconds = time.perf_counter() - t0
    common.emit({"seconds": seconds, "extra_bytes": mem.extra, "input_bytes": x.nbytes + y.nbytes,
                 "peak_bytes": common.peak_bytes()})


def cli_peak(n: int, folder: Path) -> dict:
    """Peak RSS of ``latentmap map fit --samples n`` in a child process (ru_maxrss of the children)."""
    out = folder / f"map-{n}"
    cmd = [str(Path(sys.executable).parent / "latentmap"), "--quiet", "map", "fit", "--source", "fmnist-vae-a",
           "--target", "fmnist-vae-b", "--samples", str(n), "--out", str(out), "--device", "cpu"]
    t0 = time.perf_counter()
    # a fresh wrapper process per run, so that RUSAGE_CHILDREN's maximum is this run's alone
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"map fit --samples {n} failed: {res.stderr[-2000:]}")
    return {"seconds": time.perf_counter() - t0, "peak_bytes": int(res.stdout.strip().splitlines()[-1])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cli", action="store_true", help="also measure `latentmap map fit --samples N`")
    parser.add_argument("--cli-samples", default="2000,20000")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.n)
    sizes = [int(v) for v in args.sizes.split(",")]
    info = common.machine()
    print(f"Peak memory of map fitting, {D_X} -> {D_Y}, float32 pairs")
    print(common.machine_line(info))
    rows = []
    for n in sizes:
        stream = common.run_worker(Path(__file__), ["stream", "--n", str(n)])
        whole = common.run_worker(Path(__file__), ["whole", "--n", str(n)])
        rows.append({"n": n, "stream_peak_mib": stream["peak_bytes"] / 2**20, "stream_seconds": stream["seconds"],
                     "fit_extra_mib": whole["extra_bytes"] / 2**20, "input_mib": whole["input_bytes"] / 2**20,
                     "fit_extra_vs_input": whole["extra_bytes"] / whole["input_bytes"],
                     "fit_seconds": whole["seconds"]})
    print(common.table(rows, [("n", "pairs", ","), ("stream_peak_mib", "partial_fit peak MiB", ".0f"),
                              ("stream_seconds", "partial_fit s", ".2f"), ("input_mib", "input MiB", ".0f"),
                              ("fit_extra_mib", "fit extra MiB", ".0f"), ("fit_extra_vs_input", "x input", ".3f"),
                              ("fit_seconds", "fit s", ".2f")]))
    peaks = [r["stream_peak_mib"] for r in rows]
    spread = max(peaks) / min(peaks) - 1
    targets = [(f"partial_fit peak memory flat in N (within {FLAT_TOLERANCE:.0%})", spread <= FLAT_TOLERANCE,
                f"largest/smallest peak - 1 = {spread:.1%}"),
               ("fit extra memory <= 2x input at every N", all(r["fit_extra_vs_input"] <= 2 for r in rows),
                ", ".join(f"{r['fit_extra_vs_input']:.3f}x" for r in rows))]
    cli_rows = []
    if args.cli:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            for n in [int(v) for v in args.cli_samples.split(",")]:
                r = cli_peak(n, Path(tmp))
                cli_rows.append({"samples": n, "peak_mib": r["peak_bytes"] / 2**20, "seconds": r["seconds"]})
        print("\n`latentmap map fit --samples N` (fmnist-vae-a -> fmnist-vae-b, CPU)")
        print(common.table(cli_rows, [("samples", "samples", ","), ("peak_mib", "peak MiB", ".0f"),
                                      ("seconds", "seconds", ".1f")]))
        cpeaks = [r["peak_mib"] for r in cli_rows]
        cspread = max(cpeaks) / min(cpeaks) - 1
        targets.append((f"map fit --samples peak memory flat in N (within {FLAT_TOLERANCE:.0%})",
                        cspread <= FLAT_TOLERANCE, f"largest/smallest peak - 1 = {cspread:.1%}"))
    return common.finish("bench_memory", {"benchmark": "memory", "machine": info, "rows": rows,
                                          "cli_rows": cli_rows, "env": {"OMP_NUM_THREADS": os.environ.get(
                                              "OMP_NUM_THREADS")}}, targets)


if __name__ == "__main__":
    sys.exit(main())
