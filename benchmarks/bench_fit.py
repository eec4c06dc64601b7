"""Map fitting, side by side: latentmap ``fit`` and streaming ``partial_fit`` against scikit-learn, numpy and torch.

One seeded data set of N latent pairs (default 200,000; float32 as encoders give them, columns
with different means and spreads), fitted both ways, 150 -> 512 and 512 -> 150, by:

* latentmap ``LinearMap().fit(X, Y)`` on whole arrays, and ``partial_fit`` over 2,000-row batches;
* scikit-learn ``LinearRegression`` and ``Ridge`` (alpha 1e-6, its default solver), given float64 copies made
  before the clock starts (the accuracy class latentmap works in: float64 statistics) and, for information, the
  float32 arrays themselves (scikit-learn then computes in float32 and misses the 1e-7 accuracy);
* numpy ``lstsq`` on the float64 design matrix [X 1] (the reference for the coefficient error);
* bare float64 normal equations in torch on whole arrays ([X 1]ᵀ[X 1] W = [X 1]ᵀ Y, one solve): the floor;
* the paper's method: a bias-free dense layer trained by Adam (lr 1e-3) for 2,000 full-batch steps.
  Only ``--adam-steps`` of them are run and the time is extrapolated to 2,000 (the table says so);
  its coefficients are neither converged nor affine, so no error is given.

Each method runs in a fresh process, once per round (``--rounds``, default 5), the rounds alternating the
methods so that a busy spell hits them all; a method's time is the median of its rounds, and each ratio the
median of the per-round ratios (the two times of a ratio come from the same round). LinearRegression on float32
input, numpy lstsq and Adam run in the first round only (information, the reference, an extrapolation). Extra
memory: the largest peak resident memory over its runs, inputs already loaded. Relative error:
‖coef − coef_lstsq‖_F / ‖coef_lstsq‖_F. Targets (for ``fit`` and ``partial_fit``): >= 10x faster than
LinearRegression, at least as fast as Ridge (both given float64 input), within 1.5x of the bare normal
equations, relative error <= 1e-7, extra memory <= 2x the input. The ratios against scikit-learn on float32
input are printed beside them.

Usage: .venv/bin/python benchmarks/bench_fit.py [--n 200000] [--rounds 5] [--adam-steps 10] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

PARTIAL_BATCH = 2000
ADAM_TOTAL_STEPS = 2000
RIDGE_ALPHA = 1e-6
METHODS = ("latentmap fit", "latentmap partial_fit", "bare normal equations (torch f64)", "sklearn Ridge (f64 input)",
           "sklearn Ridge (f32 input)", "sklearn LinearRegression (f64 input)", "sklearn LinearRegression (f32 input)",
           "numpy lstsq (f64)", "paper's Adam dense layer")
# run in the first round only: information (float32 LinearRegression), the reference (lstsq), an extrapolation
ONCE = {"sklearn LinearRegression (f32 input)", "numpy lstsq (f64)", "paper's Adam dense layer"}


def make_data(n: int, d_small: int, d_large: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """a [n, d_small] and b = a W + c + noise [n, d_large], float32, written as .npy (chunk by chunk)."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.05, 2.0, d_small)
    mean = rng.normal(0, 2, d_small)
    w = rng.normal(size=(d_small, d_large)) / np.sqrt(d_small)
    c = rng.normal(size=d_large)
    pa, pb = folder / "a.npy", folder / "b.npy"
    a = np.lib.format.open_memmap(pa, mode="w+", dtype=np.float32, shape=(n, d_small))
    b = np.lib.format.open_memmap(pb, mode="w+", dtype=np.float32, shape=(n, d_large))
    for s in range(0, n, 20000):
        m = min(20000, n - s)
        chunk = rng.normal(size=(m, d_small)) * scale + mean
        a[s:s + m] = chunk
        b[s:s + m] = chunk @ w + c + 0.1 * rng.normal(size=(m, d_large))
    a.flush()
    b.flush()
    del a, b
    return pa, pb


# --------------------------------------------------------------------------- the methods (in a worker process)

def _fit_latentmap(x, y):
    import torch

    from latentmap import LinearMap

    m = LinearMap().fit(torch.from_numpy(x), torch.from_numpy(y))
    return m.coef_, m.intercept_


def _partial_latentmap(x, y):
    import torch

    from latentmap import LinearMap

    m = LinearMap()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for s in range(0, len(xt), PARTIAL_BATCH):
        m.partial_fit(xt[s:s + PARTIAL_BATCH], yt[s:s + PARTIAL_BATCH])
    return m.coef_, m.intercept_


def _bare_normal_equations(x, y):
    import torch

    xd = torch.cat([torch.from_numpy(x).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    w = torch.linalg.solve(xd.T @ xd, xd.T @ torch.from_numpy(y).double())
    return w[:-1].T.numpy(), w[-1].numpy()


def _ridge(x, y):
    from sklearn.linear_model import Ridge

    m = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
    return m.coef_, m.intercept_


def _linear_regression(x, y):
    from sklearn.linear_model import LinearRegression

    m = LinearRegression().fit(x, y)
    return m.coef_, m.intercept_


def _lstsq(x, y):
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    sol = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    return sol[:-1].T, sol[-1]


def _adam(x, y, steps):
    import torch

    torch.manual_seed(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    layer = torch.nn.Linear(x.shape[1], y.shape[1], bias=False)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(xt), yt)
        loss.backward()
        opt.step()
    return layer.weight.detach().numpy(), None


def worker(method: str, x_path: str, y_path: str, out: str, repeats: int, adam_steps: int) -> None:
    import torch

    x, y = np.load(x_path), np.load(y_path)
    if "(f64 input)" in method:
        x, y = x.astype(np.float64), y.astype(np.float64)
    fn = {"latentmap fit": _fit_latentmap, "latentmap partial_fit": _partial_latentmap,
          "bare normal equations (torch f64)": _bare_normal_equations, "sklearn Ridge (f64 input)": _ridge,
          "sklearn Ridge (f32 input)": _ridge, "sklearn LinearRegression (f64 input)": _linear_regression,
          "sklearn LinearRegression (f32 input)": _linear_regression, "numpy lstsq (f64)": _lstsq,
          "paper's Adam dense layer": lambda a, b: _adam(a, b, adam_steps)}[method]
    fn(x[:3000], y[:3000])  # warm up kernels and imports
    with common.PeakMemory() as mem:
        t0 = time.perf_counter()
        coef, intercept = fn(x, y)
        first = time.perf_counter() - t0
    more, _ = common.best_of(lambda: fn(x, y), repeats - 1) if repeats > 1 else (first, None)
    np.save(out, np.asarray(coef, dtype=np.float64))
    common.emit({"seconds": min(first, more), "extra_bytes": mem.extra, "threads": torch.get_num_threads()})


# --------------------------------------------------------------------------- the comparison

def compare(pa: Path, pb: Path, forward: bool, args, tmp: Path) -> dict:
    x_path, y_path = (pa, pb) if forward else (pb, pa)
    x = np.load(x_path, mmap_mode="r")
    y = np.load(y_path, mmap_mode="r")
    n, d_x, d_y = x.shape[0], x.shape[1], y.shape[1]
    input_bytes = x.nbytes + y.nbytes
    label = f"{d_x} -> {d_y}"
    print(f"\n{n} pairs, {label} (float32 input, {input_bytes / 2**20:.0f} MiB), affine map")
    runs: dict[str, dict[int, dict]] = {method: {} for method in METHODS}  # method -> round -> its run
    for rnd in range(args.rounds):  # rounds alternate the methods, so a busy spell hits them all
        for method in METHODS:
            if method in ONCE and rnd > 0:
                continue
            out = tmp / f"coef-{label.replace(' ', '')}-{METHODS.index(method)}.npy"
            runs[method][rnd] = common.run_worker(
                Path(__file__), ["--method", method, "--x", str(x_path), "--y", str(y_path), "--out", str(out),
                                 "--repeats", str(args.repeats), "--adam-steps", str(args.adam_steps)],
                env=common.thread_env(args.threads))
            runs[method][rnd]["coef"] = str(out)
    ref = np.load(runs["numpy lstsq (f64)"][0]["coef"])
    bare = float(np.median([r["seconds"] for r in runs["bare normal equations (torch f64)"].values()]))
    table_rows = []
    for method in METHODS:
        by_round = runs[method]
        r = {"coef": by_round[0]["coef"], "extra_bytes": max(v["extra_bytes"] for v in by_round.values())}
        seconds = float(np.median([v["seconds"] for v in by_round.values()]))
        note = ""
        if method.startswith("paper's"):
            seconds = seconds * ADAM_TOTAL_STEPS / args.adam_steps
            note = f"{args.adam_steps} of {ADAM_TOTAL_STEPS} steps run, time extrapolated"
            error = None
        else:
            coef = np.load(r["coef"])
            error = float(np.linalg.norm(coef - ref) / np.linalg.norm(ref))
        table_rows.append({"method": method, "seconds": seconds, "vs_bare": seconds / bare,
                           "extra_mib": r["extra_bytes"] / 2**20, "extra_vs_input": r["extra_bytes"] / input_bytes,
                           "rel_error": error, "note": note,
                           "round_seconds": {str(k): v["seconds"] for k, v in by_round.items()}})
    print(common.table(table_rows, [("method", "method", ""), ("seconds", "seconds", ".3f"),
                                    ("vs_bare", "x bare NE", ".2f"), ("extra_mib", "extra MiB", ".0f"),
                                    ("extra_vs_input", "x input", ".2f"), ("rel_error", "rel. error", ".1e"),
                                    ("note", "note", "")]))
    return {"direction": label, "n": n, "input_bytes": input_bytes, "rows": table_rows}


def speedup(by: dict, other: str, method: str) -> float:
    """The median over rounds of other's time / method's time, both measured in the same round."""
    mine, theirs = by[method]["round_seconds"], by[other]["round_seconds"]
    return float(np.median([theirs[k] / mine[k] for k in mine if k in theirs]))


def targets_for(result: dict) -> list[tuple[str, bool, str]]:
    by = {r["method"]: r for r in result["rows"]}
    lr, ridge = "sklearn LinearRegression (f64 input)", "sklearn Ridge (f64 input)"
    lr32, ridge32 = "sklearn LinearRegression (f32 input)", "sklearn Ridge (f32 input)"
    bare = "bare normal equations (torch f64)"
    out = []
    for method in ("latentmap fit", "latentmap partial_fit"):
        r = by[method]
        tag = f"{result['direction']} {method}"
        vs_lr, vs_ridge, vs_bare = (speedup(by, lr, method), speedup(by, ridge, method),
                                    1 / speedup(by, bare, method))
        out += [(f"{tag}: >= 10x faster than LinearRegression", vs_lr >= 10,
                 f"{vs_lr:.1f}x (on float32 input, computing in float32: {speedup(by, lr32, method):.1f}x)"),
                (f"{tag}: at least as fast as Ridge", vs_ridge >= 1.0,
                 f"{vs_ridge:.2f}x Ridge's speed (on float32 input, computing in float32: "
                 f"{speedup(by, ridge32, method):.2f}x)"),
                (f"{tag}: within 1.5x of bare normal equations", vs_bare <= 1.5, f"{vs_bare:.2f}x bare's time"),
                (f"{tag}: relative error <= 1e-7", r["rel_error"] <= 1e-7, f"{r['rel_error']:.1e}"),
                (f"{tag}: extra memory <= 2x input", r["extra_vs_input"] <= 2.0,
                 f"{r['extra_vs_input']:.2f}x ({r['extra_mib']:.0f} MiB)")]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--x", help=argparse.SUPPRESS)
    parser.add_argument("--y", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=200000)
    parser.add_argument("--small", type=int, default=150)
    parser.add_argument("--large", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method and round (best kept)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds over the methods (median kept)")
    parser.add_argument("--adam-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every method (torch, OpenMP, BLAS); default: the libraries' own")
    parser.add_argument("--quick", action="store_true", help="20,000 pairs, 1 round: a smoke run")
    args = parser.parse_args()
    if args.worker:
        return worker(args.method, args.x, args.y, args.out, args.repeats, args.adam_steps)
    if args.quick:
        args.n, args.rounds, args.repeats, args.adam_steps = 20000, 2, 1, 3
    info = common.machine()
    print("Map fitting: latentmap against scikit-learn, numpy, bare torch and the paper's Adam")
    print(common.machine_line(info) + (f"; every method on {args.threads} thread(s)" if args.threads else ""))
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        tmp = Path(tmp)
        pa, pb = make_data(args.n, args.small, args.large, tmp)
        results = [compare(pa, pb, True, args, tmp), compare(pa, pb, False, args, tmp)]
    targets = [t for r in results for t in targets_for(r)]
    name = "bench_fit" + (f"_{args.threads}thread" if args.threads else "") + ("_quick" if args.quick else "")
    return common.finish(name,
                         {"benchmark": "map fitting", "machine": info, "args": vars(args), "results": results},
                         targets)


if __name__ == "__main__":
    sys.exit(main())
