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

import torch

from latentmap.errors import ShapeMismatchError

STATE_KEYS = ("n", "mean_x", "cxx", "mean_y", "cxy", "cyy")


class Moments:
    """Count, means and centred second moments of the columns of X (and optionally of Y and X×Y).

    ``full=True`` keeps the whole d×d matrix Σ(x−x̄)(x−x̄)ᵀ, otherwise its diagonal. Updating with
    a second argument ``y`` also keeps ȳ, Σ(x−x̄)(y−ȳ)ᵀ (d_x×d_y) and the diagonal Σ(y−ȳ)²: the
    sufficient statistics of a least-squares fit of Y on X. Tensors live on the first batch's device.
    """

    def __init__(self, full: bool = False):
        self.full = full
        self.n = 0
        self.mean_x = self.cxx = self.mean_y = self.cxy = self.cyy = None

    # ------------------------------------------------------------------ update / merge
    def update(self, x: torch.Tensor, y: torch.Tensor | None = None) -> "Moments":
        """Fold in a batch [N, d] (images are flattened to [N, C·H·W])."""
        batch = Moments.of_batch(x, y, self.full)
        return self.merge(batch)

    @classmethod
    def of_batch(cls, x: torch.Tensor, y: torch.Tensor | None = None, full: bool = False) -> "Moments":
        out = cls(full)
        xd = x.detach().to(torch.float64).flatten(1)
        if len(xd) == 0:
            return out
        out.n = xd.shape[0]
        out.mean_x = xd.mean(0)
        xc = xd - out.mean_x
        out.cxx = xc.T @ xc if full else (xc * xc).sum(0)
        if y is not None:
            yd = y.detach().to(xd.device, torch.float64).flatten(1)
            if yd.shape[0] != xd.shape[0]:
                raise ShapeMismatchError(f"x and y must have the same number of rows, got {xd.shape[0]} and "
                                         f"{yd.shape[0]}")
            out.mean_y = yd.mean(0)
            yc = yd - out.mean_y
            out.cxy = xc.T @ yc
            out.cyy = (yc * yc).sum(0)
        return out

    def merge(self, other: "Moments") -> "Moments":
        """Add ``other``'s data to this accumulator (Chan et al.'s pairwise update); returns self."""
        if other.n == 0:
            return self
        if self.n == 0:
            for key in STATE_KEYS:
                setattr(self, key, getattr(other, key))
            return self
        if (other.mean_y is None) != (self.mean_y is None):
            raise ShapeMismatchError("cannot merge moments with and without a second variable y")
        if other.mean_x.shape != self.mean_x.shape:
            raise ShapeMismatchError(f"cannot merge moments of {other.mean_x.shape[0]} columns into moments of "
                                     f"{self.mean_x.shape[0]}")
        dev = self.mean_x.device
        o = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in other.state().items()}
        n_a, n_b = self.n, o["n"]
        n = n_a + n_b
        w = n_a * n_b / n
        dx = o["mean_x"] - self.mean_x
        self.cxx = self.cxx + o["cxx"] + (torch.outer(dx, dx) if self.full else dx * dx) * w
        self.mean_x = self.mean_x + dx * (n_b / n)
        if self.mean_y is not None:
            dy = o["mean_y"] - self.mean_y
            self.cxy = self.cxy + o["cxy"] + torch.outer(dx, dy) * w
            self.cyy = self.cyy + o["cyy"] + dy * dy * w
            self.mean_y = self.mean_y + dy * (n_b / n)
        self.n = n
        return self

    # ------------------------------------------------------------------ distributed form
    def state(self) -> dict:
        return {k: getattr(self, k) for k in STATE_KEYS}

    @classmethod
    def from_state(cls, state: dict, full: bool) -> "Moments":
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
        self._check()
        return self.mean_x.cpu()

    def variance(self) -> torch.Tensor:
        """Population variance (ddof 0) of every column of X."""
        self._check()
        second = self.cxx.diagonal() if self.full else self.cxx
        return (second / self.n).clamp_min(0).cpu()

    def covariance(self) -> torch.Tensor:
        """Population covariance matrix of X (needs ``full=True``)."""
        self._check()
        if not self.full:
            raise ShapeMismatchError("the covariance matrix needs Moments(full=True)")
        return (self.cxx / self.n).cpu()


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

    def __init__(self):
        self.values: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().to(torch.float64)
        v = v.sum(0) if v.ndim else v
        self.values[key] = self.values[key] + v.to(self.values[key].device) if key in self.values else v

    def merge(self, other: "Sums") -> "Sums":
        for key, value in other.values.items():
            self.add(key, value.unsqueeze(0))
        return self

    def get(self, key: str) -> torch.Tensor:
        return self.values[key].cpu()

    def __contains__(self, key: str) -> bool:
        return key in self.values
