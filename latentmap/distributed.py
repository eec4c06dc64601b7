"""torch.distributed for latentmap: ranks from torchrun's environment, data shards, sums added across ranks.

``torchrun --nproc_per_node N [--nnodes M ...] -m latentmap <command>`` starts N processes per machine;
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address. :func:`init` joins the
process group (NCCL when the ranks run on CUDA, gloo on CPUs; the CLI calls it before any command), each
rank works on its :func:`shard` of the data, and the sufficient statistics — all sums — are added with
:func:`all_reduce_sum` / :func:`all_reduce_moments`, so every rank ends with the same totals and the same
solve. Evaluations that keep something per image (per-image errors for bootstrap intervals, encodings a
selection reads) gather it with :func:`gather_rows` in shard order, so every rank holds the whole array in
the single process's order (:func:`map_shards` does both steps). Only rank 0 writes outputs
(:func:`is_main`; ``latentmap.io.atomic`` gives the other ranks a scratch folder that is thrown away) and
prints. A rank that dies makes the others' next collective fail (torchrun then stops them all), before rank 0
has written anything, so nothing half-done is left.

The same numbers for any number of ranks: every command shards the same way, in whole batches
(:func:`shard_indices`), so each rank runs the single process's batches and its float32 model passes give the
single process's values bit for bit; and every process runs them on the same number of threads
(:func:`process_threads`: 1 unless ``LATENTMAP_THREADS`` or ``OMP_NUM_THREADS`` says otherwise, as torchrun gives
its ranks), because a float32 kernel may split its work, and round, by thread count. Only float64 sums then
differ, in their order of addition: results equal one process to 1e-9 (docs/determinism.md).

Nothing here starts processes or schedules work: torchrun does that. Outside torchrun every function
answers as a single process does (rank 0 of 1) and the reductions return their input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
import torch.distributed as dist  # already loaded by ``import torch``: one import instead of one per function

from latentmap.errors import ConfigError, ShapeMismatchError

if TYPE_CHECKING:
    from latentmap.stats import Moments

BACKENDS = ("gloo", "nccl", "mpi", "ucc")
"""The values ``LATENTMAP_DIST_BACKEND`` may take (torch.distributed's backends)."""
LAUNCH_HINT = "start the ranks with torchrun (torchrun --nproc_per_node N -m latentmap ...), or unset WORLD_SIZE"


@overload
def env_int(name: str, default: int, low: int = 0, high: int | None = None) -> int: ...
@overload
def env_int(name: str, default: None, low: int = 0, high: int | None = None) -> int | None: ...


def env_int(name: str, default: int | None, low: int = 0, high: int | None = None) -> int | None:
    """The integer environment variable ``name`` (``default`` when unset or empty); anything else is one line."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}; {LAUNCH_HINT}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"environment variable {name} must be {bounds}, got {value}; {LAUNCH_HINT}")
    return value


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several ranks.

    A malformed ``WORLD_SIZE`` (``abc``, 0) is a ConfigError, never taken for a single process."""
    return env_int("WORLD_SIZE", 1, low=1) > 1


def check_environment() -> None:
    """Refuse, at once and in one line, a launch environment the process group could not start from: ranks that
    are not integers or lie outside the world, no rendezvous address (WORLD_SIZE set without torchrun), an
    unknown LATENTMAP_DIST_BACKEND, or NCCL on a machine without CUDA. Without it ``init_process_group``
    raises a traceback or waits for ranks that never come."""
    world = env_int("WORLD_SIZE", 1, low=1)
    if world <= 1:
        return
    rank_ = env_int("RANK", None, low=0, high=world - 1)
    env_int("LOCAL_RANK", 0, low=0, high=world - 1)
    missing = [name for name, value in (("RANK", rank_), ("MASTER_ADDR", os.environ.get("MASTER_ADDR", "").strip()),
                                        ("MASTER_PORT", os.environ.get("MASTER_PORT", "").strip())) if value in (None, "")]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                          f"no launcher started this process; {LAUNCH_HINT}")
    env_int("MASTER_PORT", None, low=1, high=65535)
    chosen = os.environ.get("LATENTMAP_DIST_BACKEND", "").strip()
    names = [part.split(":")[-1].strip() for part in chosen.split(",")]  # also torch's "cpu:gloo,cuda:nccl"
    if chosen and not all(name in BACKENDS for name in names):
        raise ConfigError(f"LATENTMAP_DIST_BACKEND must be one of {', '.join(BACKENDS)} (or device:backend pairs "
                          f"such as cpu:gloo,cuda:nccl), got {chosen!r}")
    if (chosen or backend()) == "nccl" and not torch.cuda.is_available():
        raise ConfigError("LATENTMAP_DIST_BACKEND=nccl needs CUDA devices and this machine has none; use gloo")


def active() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: torch.distributed's once the group runs, else torchrun's ``RANK``; 0 alone."""
    return dist.get_rank() if active() else (env_int("RANK", 0) or 0) if launched() else 0


def world_size() -> int:
    """How many ranks the running process group has (1 outside torch.distributed)."""
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This rank's number on its machine (torchrun's ``LOCAL_RANK``; 0 alone): its CUDA device with NCCL."""
    return env_int("LOCAL_RANK", 0) or 0


def is_main() -> bool:
    """Rank 0 (the only rank that writes outputs and prints), or a single process."""
    return rank() == 0


def backend() -> str:
    """NCCL when this machine has CUDA devices (each rank on ``cuda:LOCAL_RANK``), gloo otherwise;
    ``LATENTMAP_DIST_BACKEND`` overrides."""
    chosen = os.environ.get("LATENTMAP_DIST_BACKEND", "").strip()
    if chosen:
        return chosen
    return "nccl" if torch.cuda.is_available() else "gloo"


def init() -> bool:
    """Join the process group torchrun describes (once); True when running as several ranks."""
    if not launched():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    if not dist.is_initialized():
        check_environment()
        chosen = backend()
        if chosen == "nccl":
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        dist.init_process_group(chosen)
    return active()


SHUTDOWN_WAIT_S = 60  # how long a rank waits at the end for the others before leaving anyway


def shutdown() -> None:
    """Leave the process group together: every rank waits for the others (at most SHUTDOWN_WAIT_S), then
    destroys it. A gloo rank that tears its group down while another still talks to it can abort the
    process ("terminate called without an active exception")."""
    import datetime

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=SHUTDOWN_WAIT_S))
        else:
            dist.barrier()
    except Exception:  # noqa: BLE001  (a rank already gone: leave without waiting for it)
        pass
    dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing outside torch.distributed)."""
    if active():
        dist.barrier()


# --------------------------------------------------------------------------- threads

THREADS_ENV = "LATENTMAP_THREADS"


def process_threads() -> int:
    """The intra-op threads a latentmap process runs on: ``LATENTMAP_THREADS``, else ``OMP_NUM_THREADS``,
    else 1.

    The rule is torchrun's for its ranks (it passes ``OMP_NUM_THREADS`` on, or sets 1), so by default a plain
    run and each rank of a torchrun launch use the same count. It must be the same: a float32 conv or matmul
    kernel may split its sums by thread count (measured: a ConvTranspose2d of 4 images differs by 1e-6 between
    1 and 16 threads), and the float64 statistics would inherit the difference."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(name, "").strip()
        if text:
            try:
                threads = int(text)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number of threads, got '{text}' instead") from None
            if threads < 1:
                raise ConfigError(f"{name} must be at least 1, got {threads} instead")
            return threads
    return 1


def pin_threads(threads: int | None = None) -> int:
    """Set torch's threads and numpy's and scipy's BLAS pools to ``threads`` (default :func:`process_threads`),
    through threadpoolctl for pools already loaded and ``OPENBLAS_NUM_THREADS`` for later ones (scipy's own
    OpenBLAS), and return it; the CLI calls it first, and outputs record it (:func:`compute_record`)."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    threads = process_threads() if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads} instead")
    torch.set_num_threads(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def compute_record(batch_size: int | None = None) -> dict[str, int]:
    """What an output records about how its passes ran: the threads per process and the batch size. Two runs'
    numbers (same device and libraries) agree to 1e-9 when these match; the world size does not count."""
    return {"threads": torch.get_num_threads(), **({} if batch_size is None else {"batch_size": int(batch_size)})}


# --------------------------------------------------------------------------- shards

def shard_indices(n: int, batch_size: int, rank_: int | None = None, world: int | None = None) -> np.ndarray:
    """This rank's rows of ``range(n)``: a contiguous block of whole batches of ``batch_size`` rows, cut where a
    single process cuts ``range(n)`` into batches (blocks differ by at most one batch; the last batch of ``n``
    may be short and belongs to the last rank that has any).

    The one way every sharded command splits its work: each rank feeds its models exactly the batches one
    process would, so the float32 passes give the same values bit for bit, whatever the world size (a batch of
    other rows can round differently in a conv or matmul kernel). ``rank_``/``world`` default to this process's.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size} instead")
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not 0 <= rank_ < world:
        raise ConfigError(f"rank must be in [0, {world}), got {rank_} instead")
    batches = -(-n // batch_size)
    bounds = np.linspace(0, batches, world + 1).round().astype(np.int64)  # batch numbers, balanced
    return np.arange(min(bounds[rank_] * batch_size, n), min(bounds[rank_ + 1] * batch_size, n), dtype=np.int64)


def shard(data: Any, batch_size: int) -> Any:
    """This rank's part of a dataset (``subset``) or of a tensor/array (rows): :func:`shard_indices`' whole
    batches of ``batch_size``, as the same kind of object; the whole of it in one process."""
    if world_size() == 1:
        return data
    idx = shard_indices(len(data), batch_size)
    if hasattr(data, "subset"):
        return data.subset(idx)
    return data[int(idx[0]):int(idx[-1]) + 1] if len(idx) else data[:0]


# --------------------------------------------------------------------------- reductions

def _comm_device(t: torch.Tensor | None = None) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``t`` over all ranks (float64 stays float64), on ``t``'s device."""
    if not active():
        return t
    buf = t.detach().to(_comm_device(t)).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def all_reduce_count(n: int) -> int:
    """The sum of the count ``n`` over all ranks (``n`` itself outside torch.distributed)."""
    return int(all_reduce_sum(torch.tensor([float(n)], dtype=torch.float64)).item()) if active() else int(n)


def all_reduce_moments(m: Moments | None, d_x: int, d_y: int | None = None, full: bool = True) -> Moments | None:
    """A :class:`latentmap.stats.Moments` of the union of every rank's rows.

    Two sums: first the counts and Σv = n·mean (hence the global mean μ), then each rank's centred
    products moved to μ — C_r + n_r (m_r − μ)(m_r − μ)ᵀ — added up. Every term is centred on the common
    mean, so nothing cancels; ``d_x``/``d_y`` give the shapes for a rank that saw no rows.
    """
    from latentmap.stats import Moments

    if not active():
        return m
    s: dict[str, Any] = m.state() if m is not None and m.n else {}  # this rank's moments, none when it saw no rows
    dev = s["mean_x"].device if s else torch.device("cpu")
    f64: dict[str, Any] = dict(dtype=torch.float64, device=dev)
    n_r = float(s["n"]) if s else 0.0
    empty = not s
    mx = torch.zeros(d_x, **f64) if empty else s["mean_x"]
    first = torch.cat([torch.tensor([n_r], **f64), mx * n_r]
                      + ([] if d_y is None else [torch.zeros(d_y, **f64) if empty else s["mean_y"] * n_r]))
    first = all_reduce_sum(first)
    n = float(first[0])
    out = Moments(full)
    if n == 0:
        return out
    mu_x = first[1:1 + d_x] / n
    dx = mx - mu_x
    cxx = (torch.zeros(*((d_x, d_x) if full else (d_x,)), **f64) if empty else s["cxx"])
    parts = [(cxx + (torch.outer(dx, dx) if full else dx * dx) * n_r).flatten()]
    if d_y is not None:
        mu_y = first[1 + d_x:] / n
        my = torch.zeros(d_y, **f64) if empty else s["mean_y"]
        dy = my - mu_y
        cxy = torch.zeros(d_x, d_y, **f64) if empty else s["cxy"]
        cyy = torch.zeros(d_y, **f64) if empty else s["cyy"]
        parts += [(cxy + torch.outer(dx, dy) * n_r).flatten(), cyy + dy * dy * n_r]
    total = all_reduce_sum(torch.cat(parts))
    k = d_x * d_x if full else d_x
    out.n, out.mean_x, out.cxx = int(round(n)), mu_x, total[:k].view((d_x, d_x) if full else (d_x,))
    if d_y is not None:
        out.mean_y, out.cxy, out.cyy = mu_y, total[k:k + d_x * d_y].view(d_x, d_y), total[k + d_x * d_y:]
    return out


def all_reduce_named(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Named float64 sums added over all ranks: every key any rank has, zeros where a rank has none (one that
    saw no rows); tensors whose first dimension differs between ranks (counts per label seen so far) are
    padded with zeros to the longest. Keys come back sorted, as float64 on the first tensor's device."""
    if not active():
        return values
    shapes: list[Any] = [None] * world_size()
    dist.all_gather_object(shapes, {k: tuple(v.shape) for k, v in values.items()})
    merged: dict[str, tuple[int, ...]] = {}
    for part in shapes:
        for key, shape in part.items():
            old = merged.get(key)
            if old is not None and (len(old) != len(shape) or old[1:] != shape[1:]):
                raise ShapeMismatchError(f"ranks hold '{key}' in shapes {old} and {shape}: cannot add them")
            merged[key] = shape if old is None or (shape and shape[0] > old[0]) else old
    dev = next(iter(values.values())).device if values else torch.device("cpu")
    flat = []
    for key in sorted(merged):
        full = torch.zeros(merged[key], dtype=torch.float64, device=dev)
        if key in values:
            v = values[key].detach().to(dev, torch.float64)
            full[tuple(slice(0, n) for n in v.shape)] = v
        flat.append(full.reshape(-1))
    total = all_reduce_sum(torch.cat(flat)) if flat else torch.zeros(0, dtype=torch.float64)
    out: dict[str, torch.Tensor] = {}
    at = 0
    for key in sorted(merged):
        size = int(np.prod(merged[key], dtype=np.int64))
        out[key] = total[at:at + size].view(merged[key])
        at += size
    return out


# --------------------------------------------------------------------------- gathers

def gather_rows(rows: torch.Tensor | np.ndarray | None) -> torch.Tensor | np.ndarray | None:
    """The rows of every rank's array (numpy) or tensor, concatenated in rank order, on every rank.

    With :func:`shard`'s contiguous blocks, ``gather_rows(f(shard(data, b)))`` is ``f(data)`` row for row: the
    order of a single process. Ranks must agree on the dtype and on the shape past the first dimension; a
    rank with no rows may give any empty array, or None (the result is then a tensor unless another rank
    gave numpy). One padded ``all_gather`` after one of the row counts; the input itself outside
    torch.distributed."""
    if not active():
        return rows
    t = None if rows is None else torch.from_numpy(np.ascontiguousarray(rows)) if not isinstance(
        rows, torch.Tensor) else rows.detach()
    meta: list[Any] = [None] * world_size()
    mine = (0, None, None, False) if t is None else (len(t), tuple(t.shape[1:]), str(t.dtype).split(".")[-1],
                                                    not isinstance(rows, torch.Tensor))
    dist.all_gather_object(meta, mine)
    known = [m for m in meta if m[0]] or [m for m in meta if m[1] is not None]
    if not known:
        return rows
    if len({(m[1], m[2]) for m in known}) > 1:
        raise ShapeMismatchError("ranks gather rows of different shapes or types: "
                                 + ", ".join(f"{m[0]} x {m[1]} {m[2]}" for m in meta))
    _, tail, dtype_name, is_numpy = known[0]
    dtype = getattr(torch, dtype_name)
    wire = torch.uint8 if dtype == torch.bool else dtype  # NCCL moves bytes, not bools
    home = t.device if t is not None else torch.device("cpu")
    longest = max(m[0] for m in meta)
    if longest == 0:
        out = torch.zeros((0, *tail), dtype=dtype, device=home)
        return out.numpy() if is_numpy else out
    dev = _comm_device(t)
    buf = torch.zeros((longest, *tail), dtype=wire, device=dev)
    if t is not None and len(t):
        buf[:len(t)] = t.to(dev, wire)
    parts = [torch.empty_like(buf) for _ in meta]
    dist.all_gather(parts, buf)
    out = torch.cat([p[:m[0]] for p, m in zip(parts, meta)]).to(home, dtype)
    return out.numpy() if is_numpy else out


def map_shards(fn: Callable[[Any], Any], data: Any, batch_size: int) -> Any:
    """``fn(data)`` computed as each rank's ``fn(shard(data, batch_size))``, rows gathered in order (``fn`` itself
    outside torch.distributed); ``fn`` must work row by row in batches of ``batch_size`` (an encoder over images,
    a per-image score), so that a rank's rows see the batches one process's do. A rank whose shard is empty does
    not call ``fn``."""
    if not active():
        return fn(data)
    mine = shard(data, batch_size)
    return gather_rows(fn(mine) if len(mine) else None)
