"""Streaming statistics in float64: one mergeable accumulator for moments and cross-products.

Every statistic latentmap reports over many images (the mapper's normal equations, latent
variances and covariances, R², metric means) is built from these sufficient statistics, in the
spirit of torchmetrics: ``update`` folds in a batch, ``merge`` combines two accumulators
(batches, devices or ranks) with Chan's pairwise update, and ``state``/``from_state`` turn one
into plain tensors for an all-reduce. The second moments are kept centred on the running mean,
so a column whose mean is large against its spread keeps its variance (E[v²] − E[v]² would
cancel it away).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from latentmap.errors import NonFiniteError, ShapeMismatchError

STATE_KEYS = ("n", "mean_x", "cxx", "mean_y", "cxy", "cyy")
# update() reads a batch in chunks of at most this many rows, and at most this many bytes of float64 buffer
CHUNK_ROWS = 16384
CHUNK_BYTES = 64 * 2**20
# (sx, gxx, gxy, sy, gyy): the sums and cross-products of one chunk about a shift; the y parts None without y
ShiftedSums = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def _set(moment: torch.Tensor | None) -> torch.Tensor:
    """A moment that is set once a row was accumulated (callers check ``n`` first)."""
    assert moment is not None, "moments are set once a row was accumulated"
    return moment


class Moments:
    """Count, means and centred second moments of the columns of X (and optionally of Y and X×Y).

    ``full=True`` keeps the whole d×d matrix Σ(x−x̄)(x−x̄)ᵀ, otherwise its diagonal. Updating with
    a second argument ``y`` also keeps ȳ, Σ(x−x̄)(y−ȳ)ᵀ (d_x×d_y) and the diagonal Σ(y−ȳ)²: the
    sufficient statistics of a least-squares fit of Y on X. Tensors live on the first batch's device.
    """

    def __init__(self, full: bool = False) -> None:
        self.full = full
        self.n = 0
        # float64 tensors on the first batch's device once a row was accumulated (the y parts only with y)
        self.mean_x: torch.Tensor | None = None
        self.cxx: torch.Tensor | None = None
        self.mean_y: torch.Tensor | None = None
        self.cxy: torch.Tensor | None = None
        self.cyy: torch.Tensor | None = None

    # ------------------------------------------------------------------ update / merge
    def update(self, x: torch.Tensor, y: torch.Tensor | None = None, *, check_finite: bool = False) -> Moments:
        """Fold in a batch [N, d] (images are flattened to [N, C·H·W]); returns self.

        The batch is read in row chunks of at most :data:`CHUNK_ROWS` rows (and :data:`CHUNK_BYTES` of
        float64 buffer): each chunk is copied once into float64 buffers ``[x − s, 1]`` and ``y − s`` about a
        shift s (the running mean, or the first row when nothing was accumulated yet), and the products
        ``[x − s, 1]ᵀ[x − s, 1]`` and ``[x − s, 1]ᵀ(y − s)`` give the cross-products and the sums, folded into
        the centred moments exactly (:meth:`_add`). So the only float64 copies are chunk-sized, whatever N.
        On a CPU the chunk loop runs in numpy and its BLAS (:func:`_shifted_sums_cpu`); elsewhere in torch, chunk
        by chunk. ``check_finite=True`` raises :class:`NonFiniteError` (``operand`` "x" or "y") for NaN or inf
        values, or squares that overflow, before the state is touched.
        """
        xs = x.detach().flatten(1)
        ys = None if y is None else y.detach().flatten(1)
        if ys is not None and ys.shape[0] != xs.shape[0]:
            raise ShapeMismatchError(f"x and y must have the same number of rows, got {xs.shape[0]} and "
                                     f"{ys.shape[0]}")
        if xs.shape[0] == 0:
            return self
        if self.n:
            if (ys is None) != (self.mean_y is None):
                raise ShapeMismatchError("cannot merge moments with and without a second variable y")
            if (xs.shape[1] != _set(self.mean_x).shape[0]
                    or (ys is not None and ys.shape[1] != _set(self.mean_y).shape[0])):
                raise ShapeMismatchError(f"cannot merge moments of {xs.shape[1]} columns into moments of "
                                         f"{_set(self.mean_x).shape[0]}")
        dev = _set(self.mean_x).device if self.n else xs.device
        d_x, d_y = xs.shape[1], (0 if ys is None else ys.shape[1])
        rows = max(1, min(CHUNK_ROWS, xs.shape[0], CHUNK_BYTES // (8 * (d_x + 1 + d_y))))
        if (self.full and dev.type == "cpu" and xs.device.type == "cpu" and _numpy_ok(xs)
                and (ys is None or (ys.device.type == "cpu" and _numpy_ok(ys)))):
            # one shift for the whole call, the chunks' products added up in numpy, one fold at the end
            shift_x = _set(self.mean_x) if self.n else xs[0].to(torch.float64)
            shift_y = None if ys is None else (_set(self.mean_y) if self.n else ys[0].to(torch.float64))
            sums = _shifted_sums_cpu(xs, ys, shift_x, shift_y, rows)
            self._add(xs.shape[0], shift_x, shift_y, *sums, check_finite=check_finite)
            return self
        bx = torch.empty(rows, d_x + 1, dtype=torch.float64, device=dev)  # [x - shift, 1]
        bx[:, d_x] = 1
        by = None if ys is None else torch.empty(rows, d_y, dtype=torch.float64, device=dev)
        for start in range(0, xs.shape[0], rows):
            x_c, y_c = xs[start:start + rows].to(dev), (None if ys is None else ys[start:start + rows].to(dev))
            shift_x = _set(self.mean_x) if self.n else x_c[0].to(torch.float64)
            shift_y = None if y_c is None else (_set(self.mean_y) if self.n else y_c[0].to(torch.float64))
            sums = self._shifted_sums(x_c, y_c, shift_x, shift_y, bx[:len(x_c)], None if by is None else by[:len(x_c)])
            self._add(len(x_c), shift_x, shift_y, *sums, check_finite=check_finite)
        return self

    def _shifted_sums(self, x: torch.Tensor, y: torch.Tensor | None, shift_x: torch.Tensor,
                      shift_y: torch.Tensor | None, bx: torch.Tensor, by: torch.Tensor | None) -> ShiftedSums:
        """S = Σ(v − s) and G = Σ(v − s)(v − s)ᵀ of one chunk (torch, on its device): (sx, gxx, gxy, sy, gyy)."""
        d_x = x.shape[1]
        torch.sub(x, shift_x, out=bx[:, :d_x])
        if self.full:
            g = bx.T @ bx  # [x - s, 1]ᵀ[x - s, 1]: XᵀX and, in its last row, the sums
            sx, gxx = g[d_x, :d_x], g[:d_x, :d_x]
        else:
            sx, gxx = bx[:, :d_x].sum(0), bx[:, :d_x].square().sum(0)
        if y is None:
            return sx, gxx, None, None, None
        assert shift_y is not None and by is not None  # given with y
        torch.sub(y, shift_y, out=by)
        g = bx.T @ by  # [x - s, 1]ᵀ(y - s): XᵀY and the sums of y
        return sx, gxx, g[:d_x], g[d_x], by.square().sum(0)

    def _add(self, m: int, shift_x: Any, shift_y: Any, sx: Any, gxx: Any, gxy: Any, sy: Any, gyy: Any, *,
             check_finite: bool) -> None:
        """Fold m rows given by their sums about a shift s: with S = Σ(v − s), G = Σ(v − s)(v − s)ᵀ and the
        running moments (n_a, μ_a, C_a) — s is μ_a when n_a > 0 — the n = n_a + m rows have mean s + S/n and
        centred products C_a + G − SSᵀ/n (before anything was accumulated, s is the first row of the data).

        The sums arrive as float64 tensors (the y parts None without y); on a CPU they are rebound to numpy views
        of themselves for the arithmetic (hence Any), and the results turned back into tensors."""
        if check_finite:
            bad = [not _all_finite(t) for t in (sx, gxx, gxy, sy, gyy) if t is not None]
            if any(bad):
                operand = "x" if bad[0] or bad[1] else "y"
                err = NonFiniteError(f"{operand} contains NaN or infinite values, or values whose squares "
                                     "overflow float64")
                err.operand = operand
                raise err
        n = self.n + m
        outer: Callable[..., Any]
        old: dict[str, Any]
        if sx.device.type == "cpu":  # numpy on a CPU, for the reason given in _all_finite
            import numpy as np

            def arr(t: Any) -> Any:
                return t.numpy() if isinstance(t, torch.Tensor) else t

            def back(a: Any) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(a))

            outer, sx, gxx, gxy, sy, gyy, shift_x, shift_y = (np.outer, arr(sx), arr(gxx), arr(gxy), arr(sy),
                                                               arr(gyy), arr(shift_x), arr(shift_y))
            old = {k: arr(getattr(self, k)) for k in ("cxx", "cxy", "cyy")} if self.n else {}
        else:
            outer, old = torch.outer, {k: getattr(self, k) for k in ("cxx", "cxy", "cyy")} if self.n else {}

            def back(a: Any) -> torch.Tensor:
                return a
        ax = sx / n
        self.cxx = back(gxx - (outer(sx, ax) if self.full else sx * ax) + old.get("cxx", 0))
        if gxy is not None:
            self.cxy = back(gxy - outer(ax, sy) + old.get("cxy", 0))
            self.cyy = back(gyy - sy * (sy / n) + old.get("cyy", 0))
            self.mean_y = back(shift_y + sy / n)
        self.mean_x = back(shift_x + ax)
        self.n = n

    @classmethod
    def of_batch(cls, x: torch.Tensor, y: torch.Tensor | None = None, full: bool = False) -> Moments:
        """The moments of one batch (a new accumulator)."""
        return cls(full).update(x, y)

    def merge(self, other: Moments) -> Moments:
        """Add ``other``'s data to this accumulator (Chan et al.'s pairwise update); returns self."""
        if other.n == 0:
            return self
        if self.n == 0:
            for key in STATE_KEYS:
                setattr(self, key, getattr(other, key))
            return self
        if (other.mean_y is None) != (self.mean_y is None):
            raise ShapeMismatchError("cannot merge moments with and without a second variable y")
        mean_x, other_mean_x = _set(self.mean_x), _set(other.mean_x)
        if other_mean_x.shape != mean_x.shape:
            raise ShapeMismatchError(f"cannot merge moments of {other_mean_x.shape[0]} columns into moments of "
                                     f"{mean_x.shape[0]}")
        dev = mean_x.device
        o: dict[str, Any] = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in other.state().items()}
        n_a, n_b = self.n, o["n"]
        n = n_a + n_b
        w = n_a * n_b / n
        dx = o["mean_x"] - mean_x
        self.cxx = _set(self.cxx) + o["cxx"] + (torch.outer(dx, dx) if self.full else dx * dx) * w
        self.mean_x = mean_x + dx * (n_b / n)
        if self.mean_y is not None:
            dy = o["mean_y"] - self.mean_y
            self.cxy = _set(self.cxy) + o["cxy"] + torch.outer(dx, dy) * w
            self.cyy = _set(self.cyy) + o["cyy"] + dy * dy * w
            self.mean_y = self.mean_y + dy * (n_b / n)
        self.n = n
        return self

    # ------------------------------------------------------------------ distributed form
    def state(self) -> dict[str, Any]:
        """The accumulator as plain values by :data:`STATE_KEYS` (n, then float64 tensors or None), for an
        all-reduce."""
        return {k: getattr(self, k) for k in STATE_KEYS}

    @classmethod
    def from_state(cls, state: dict[str, Any], full: bool) -> Moments:
        """An accumulator holding ``state`` (as :meth:`state` gives it; missing keys are None)."""
        out = cls(full)
        for key in STATE_KEYS:
            setattr(out, key, state.get(key))
        out.n = int(out.n)
        return out

    # ------------------------------------------------------------------ results
    def _check(self) -> None:
        if self.n == 0:
            raise ShapeMismatchError("no rows were accumulated: the statistics of an empty set are undefined")

    def mean(self) -> torch.Tensor:
        """Mean of every column of X, float64 [d] on the CPU."""
        self._check()
        return _set(self.mean_x).cpu()

    def variance(self) -> torch.Tensor:
        """Population variance (ddof 0) of every column of X."""
        self._check()
        cxx = _set(self.cxx)
        second = cxx.diagonal() if self.full else cxx
        return (second / self.n).clamp_min(0).cpu()

    def covariance(self) -> torch.Tensor:
        """Population covariance matrix of X (needs ``full=True``)."""
        self._check()
        if not self.full:
            raise ShapeMismatchError("the covariance matrix needs Moments(full=True)")
        return (_set(self.cxx) / self.n).cpu()


def r2_from_sums(sse: torch.Tensor, sst: torch.Tensor) -> torch.Tensor:
    """Per-column coefficient of determination 1 − SSE/SST, as sklearn with ``force_finite=True``.

    A constant column (SST = 0) scores 1 when predicted exactly and 0 otherwise.
    """
    return torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300),
                       torch.where(sse <= 0, torch.ones_like(sse), torch.zeros_like(sse)))


def r2_score(y: torch.Tensor, pred: torch.Tensor) -> float:
    """sklearn's ``r2_score(multioutput='uniform_average')``: R² per column, averaged over columns."""
    y, pred = y.to(torch.float64), pred.to(y.device, torch.float64)
    sse = (y - pred).pow(2).sum(0)
    sst = (y - y.mean(0)).pow(2).sum(0)
    return float(r2_from_sums(sse, sst).mean())


class Sums:
    """Named float64 running sums on one device (metric totals); merge adds; nothing per image is kept."""

    def __init__(self) -> None:
        self.values: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        """Add ``value`` (summed over its first axis when it has one) to the float64 total ``key``."""
        v = value.detach().to(torch.float64)
        v = v.sum(0) if v.ndim else v
        self.values[key] = self.values[key] + v.to(self.values[key].device) if key in self.values else v

    def merge(self, other: Sums) -> Sums:
        """Add every total of ``other`` to this one's; returns self."""
        for key, value in other.values.items():
            self.add(key, value.unsqueeze(0))
        return self

    def get(self, key: str) -> torch.Tensor:
        """The total ``key``, float64 on the CPU."""
        return self.values[key].cpu()

    def __contains__(self, key: str) -> bool:
        return key in self.values


# --------------------------------------------------------------------------- the chunk products on a CPU

def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``. On a CPU numpy checks it: a torch kernel right after BLAS work wakes torch's
    OpenMP threads, which cost milliseconds per call (most of partial_fit's time on small batches)."""
    if t.device.type == "cpu" and t.dtype == torch.float64:
        import numpy as np

        return bool(np.isfinite(t.numpy()).all())
    return bool(torch.isfinite(t).all())


def _numpy_ok(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float32, torch.float64, torch.float16, torch.int8, torch.int16, torch.int32, torch.int64,
                       torch.uint8)


def _shifted_sums_cpu(x: torch.Tensor, y: torch.Tensor | None, shift_x: torch.Tensor, shift_y: torch.Tensor | None,
                      rows: int) -> ShiftedSums:
    """The (sx, gxx, gxy, sy, gyy) of :meth:`Moments._shifted_sums` over all rows of CPU tensors, chunk by chunk.

    All in numpy and numpy's own BLAS: keeping the loop out of torch keeps torch's OpenMP threads from spinning
    against BLAS's threads between the calls (that halved the speed on 2 busy cores), and keeping it out of
    scipy does the same for scipy's second copy of OpenBLAS: scipy's ``dsyrk`` (half the work of a general
    product) followed by numpy's product made the two libraries' threads wait on each other, 3x slower for
    150 -> 512 than numpy alone (docs/benchmarks.md).
    """
    import numpy as np

    xn, sxn = x.numpy(), shift_x.numpy()
    d_x = xn.shape[1]
    d_y = 0 if y is None else y.shape[1]
    # With no more target than source columns, one product of [x - s, 1, y - s] with itself also gives XᵀY (and
    # YᵀY, a little extra work): one large BLAS call runs faster than two thinner ones.
    joint = y is not None and d_y <= d_x
    width = d_x + 1 + (d_y if joint else 0)
    bx = np.empty((rows, width))
    bx[:, d_x] = 1.0
    gram = np.zeros((width, width))  # bxᵀbx
    if y is not None:
        assert shift_y is not None  # given with y
        yn, syn = y.numpy(), shift_y.numpy()
        if not joint:
            by = np.empty((rows, d_y))
            cross, gyy = np.zeros((d_x + 1, d_y)), np.zeros(d_y)
    for start in range(0, len(xn), rows):
        m = min(rows, len(xn) - start)
        np.subtract(xn[start:start + m], sxn, out=bx[:m, :d_x])
        if joint:
            np.subtract(yn[start:start + m], syn, out=bx[:m, d_x + 1:])
        gram += bx[:m].T @ bx[:m]  # bxᵀ is Fortran-ordered: BLAS reads it without a copy
        if y is not None and not joint:
            np.subtract(yn[start:start + m], syn, out=by[:m])
            cross += bx[:m].T @ by[:m]
            gyy += np.einsum("ij,ij->j", by[:m], by[:m])
    if joint:  # the blocks: [x, 1] rows against the y columns, and YᵀY's diagonal
        cross, gyy = gram[:d_x + 1, d_x + 1:].copy(), np.diagonal(gram[d_x + 1:, d_x + 1:]).copy()
        gram = gram[:d_x + 1, :d_x + 1]
    g = torch.from_numpy(np.triu(gram) + np.triu(gram, 1).T)  # exactly symmetric (a product's halves may round apart)
    sx, gxx = g[d_x, :d_x], g[:d_x, :d_x]
    if y is None:
        return sx, gxx, None, None, None
    cross_t = torch.from_numpy(cross)
    return sx, gxx, cross_t[:d_x], cross_t[d_x], torch.from_numpy(gyy)
