"""Shared by the benchmarks: the machine record, peak-memory probes, fresh-process workers, tables, JSON.

Every benchmark measures its methods side by side in one run and prints ratios, so that a busy
machine slows all of them alike; each records the machine it ran on (CPU model, cores, load
average, torch version, GPU) in ``benchmarks/results/<name>.json`` and exits 1 when a target is missed.

Peak memory: tracemalloc does not see torch's allocations, so a method runs in a fresh Python
process, its resident-set high-water mark (VmHWM) is reset just before the method starts (Linux
``/proc/self/clear_refs``; elsewhere the process's ``ru_maxrss`` is used) and read after it: extra
memory = peak − resident memory before the method, with its inputs already loaded.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT = HERE.parent


# --------------------------------------------------------------------------- the machine

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import numpy
    import torch

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "load_average": _load()}
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_line(info: dict) -> str:
    gpu = f", GPU {info['gpu']} x{info['gpus']}" if "gpu" in info else ""
    return (f"machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads){gpu}; "
            f"torch {info['torch']}, numpy {info['numpy']}, sklearn {info.get('sklearn', '-')}; "
            f"load average {info['load_average']}")


# --------------------------------------------------------------------------- memory

def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    now = _status("VmRSS")
    return now if now is not None else peak_bytes()


def peak_bytes() -> int:
    hwm = _status("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak() -> bool:
    """Reset this process's resident high-water mark (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory() as mem: ...`` then ``mem.extra``: peak resident bytes above the start."""

    def __enter__(self):
        import gc

        gc.collect()
        reset_peak()
        self.start = rss_bytes()
        return self

    def __exit__(self, *exc):
        self.extra = max(0, peak_bytes() - self.start)
        return False


# --------------------------------------------------------------------------- fresh-process workers

def thread_env(threads: int | None) -> dict:
    """Environment pinning torch's, OpenMP's and the BLAS libraries' thread pools to ``threads`` (None: as is)."""
    if not threads:
        return {}
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def run_worker(script: Path, args: list[str], timeout: float = 1800, env: dict | None = None) -> dict:
    """Run ``script --worker ...`` in a fresh interpreter (``env``: extra variables); it prints one JSON line last."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    """A worker's answer: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def best_of(fn, repeats: int) -> tuple[float, object]:
    """(fastest wall time of ``repeats`` calls, last result)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# --------------------------------------------------------------------------- output

def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: columns are (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            v = row.get(key)
            line.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    text = []
    for k, r in enumerate(cells):
        text.append("  ".join(c.ljust(w) if i in (0, len(columns) - 1) else c.rjust(w)
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def check_targets(targets: list[tuple[str, bool, str]]) -> bool:
    """Print every target as ok/MISSED; True when all are met."""
    print("\ntargets:")
    for name, ok, detail in targets:
        print(f"  [{'ok' if ok else 'MISSED'}] {name}: {detail}")
    return all(ok for _, ok, _ in targets)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    from latentmap.io.atomic import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(payload, indent=1, default=float).encode())  # its own temporary file
    print(f"results written to {path.relative_to(ROOT)}")
    return path


def finish(name: str, payload: dict, targets: list[tuple[str, bool, str]]) -> int:
    ok = check_targets(targets)
    payload["targets"] = [{"name": n, "met": bool(o), "detail": d} for n, o, d in targets]
    payload["all_targets_met"] = ok
    payload["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    payload.setdefault("machine", {})["load_average_end"] = _load()
    save(name, payload)
    return 0 if ok else 1
