"""Convolutional maps between C x h x w latent grids (the VAEs of latent diffusion): ``conv:K`` and ``conv-mlp``.

``ConvMap`` (``conv:1``, ``conv:K`` for odd K) maps the K x K neighbourhood of the source channels around a
position (zero padding) to the target channels at that position, with one shared affine map for every
position: a K x K convolution with a bias, ``conv2d(z_A, weight_, intercept_, padding=K // 2)``. Every
position of every image is one row of the normal equations — the row's C_a·K·K source numbers
(``torch.nn.functional.unfold``) against its C_b target channels — so the fit is exact least squares over
all positions, from the same float64 sufficient statistics as ``LinearMap`` (one
:class:`~latentmap.stats.Moments`, declared once: ``partial_fit``, ``merge`` and the torch.distributed
all-reduce come from the base) and solved by ``LinearMap``'s own solver: ridge with ``alpha``, or ``alpha="auto"``
chosen by generalized cross-validation over the position rows, the intercept never penalized. The normal
equations are (C_a·K·K + 1)² numbers whatever the number of images or the grid size.

``ConvMLPMap`` (``conv-mlp``) is a small MLP applied at every position, i.e. a stack of 1x1 convolutions:
``MLPMap``'s training (standardization, held-out split, Adam, early stopping, the affine skip) on the position
rows [N·h·w, C_a] -> [N·h·w, C_b]. The held-out rows are a seeded share of all positions, so one image's
positions may fall on both sides of the split.

Grids, flat or 4-D input and resizing: :mod:`latentmap.maps.spatial`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnderdeterminedError
from latentmap.maps.base import MapEstimator, StreamingMapEstimator
from latentmap.maps.checks import Interval, LatentPair, LatentsLike, StrOptions, merged_moments
from latentmap.maps.linear import AUTO_ALPHA, LinearMap, affine_fit_metrics
from latentmap.maps.mlp import MLPMap
from latentmap.maps.spatial import (GridPair, SpatialMixin, channel_rows, grid_of, images_per_chunk, position_rows,
                                    rows_to_flat)
from latentmap.stats import Moments

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the package also runs on 3.10


class ConvMap(SpatialMixin, StreamingMapEstimator):
    """One affine map from the K x K neighbourhood of the source channels to the target channels, shared by every
    position (a K x K convolution), fitted by exact least squares over all positions.

    Parameters
    ----------
    kernel_size
        K, odd: 1 maps each position's C_a channels alone (a 1x1 convolution), 3 its 3 x 3 neighbourhood.
    bias
        Fit an intercept per target channel (never penalized).
    alpha
        Ridge penalty (>= 0) on the weights, or ``"auto"``: chosen by generalized cross-validation, as ``alpha_``.
    source_shape, target_shape
        The latent grids (C, h, w) of flat latents [N, C·h·w]; None reads them off 4-D input (flat input
        without one is a vector, (d, 1, 1)). See :mod:`latentmap.maps.spatial`.
    resize
        How a source grid is resized to the target's h x w when they differ: ``bilinear``, ``area`` or
        ``nearest``.

    Attributes
    ----------
    coef_, intercept_
        [C_b, C_a·K·K] and [C_b]: the map of one position's row, in scikit-learn's layout.
    weight_
        ``coef_`` as a ``conv2d`` weight [C_b, C_a, K, K].
    alpha_
        The penalty used.
    source_shape_, target_shape_
        The grids (C, h, w) of the fitted latents.
    n_features_in_, n_targets_, n_samples_seen_, fit_metrics_
        Flat latent sizes, images seen, and R² (per target channel over all positions, averaged), latent MSE,
        condition number and the number of positions.
    """

    estimator_name = "conv"
    _parameter_constraints = {
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "bias": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({AUTO_ALPHA})],
        **SpatialMixin._grid_constraints,
    }
    _statistics = {"_moments": 1}
    _FITTED = StreamingMapEstimator._FITTED + ("coef_", "intercept_", "alpha_", "source_shape_", "target_shape_")
    _moments: Moments
    _grids_seen: GridPair  # the grids of the pairs accumulated

    def __init__(self, kernel_size: int = 1, bias: bool = True, alpha: float | str = 0.0,
                 source_shape: Sequence[int] | None = None, target_shape: Sequence[int] | None = None,
                 resize: str = "bilinear") -> None:
        self.kernel_size = kernel_size
        self.bias = bias
        self.alpha = alpha
        self.source_shape = source_shape
        self.target_shape = target_shape
        self.resize = resize

    def _validate_combination(self) -> None:
        super()._validate_combination()
        if int(self.kernel_size) % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (a neighbourhood centred on its position), got "
                              f"{self.kernel_size!r} instead")

    @property
    def weight_(self) -> np.ndarray:
        """``coef_`` as a ``conv2d`` weight [C_b, C_a, K, K]."""
        c_b, c_a = len(self.intercept_), self.source_shape_[0]
        return np.asarray(self.coef_).reshape(c_b, c_a, self.kernel_size, self.kernel_size)

    # ------------------------------------------------------------------ the statistics
    def _reset(self) -> None:
        super()._reset()
        self.__dict__.pop("_grids_seen", None)

    def _checked_batch(self, X: LatentsLike, Y: LatentsLike | None) -> LatentPair:
        x, y = super()._checked_batch(X, Y)
        seen = self.__dict__.get("_grids_seen")
        if seen is not None and seen != self._batch_grids:
            raise ShapeMismatchError(f"partial_fit started with latent grids {seen[0]} -> {seen[1]}, this batch has "
                                     f"{self._batch_grids[0]} -> {self._batch_grids[1]}")
        self._grids_seen = self._batch_grids
        return x, y

    def _row_width(self, grids: GridPair) -> int:
        return grids[0][0] * self.kernel_size * self.kernel_size

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        grids = self._grids_seen
        step = images_per_chunk(grids[1], self._row_width(grids) + grids[1][0])
        for start in range(0, len(x), step):
            xs, ys = x[start:start + step], y[start:start + step]
            rows_x = position_rows(self._source_grids(xs, grids), int(self.kernel_size))
            rows_y = channel_rows(ys.to(torch.float64), grids[1])
            self._moments = merged_moments(rows_x, rows_y, self._moments)

    def _merge_from(self, other: Self) -> None:
        mine, theirs = self.__dict__.get("_grids_seen"), other._grids_seen
        if mine is not None and mine != theirs:
            raise ShapeMismatchError(f"cannot merge latent grids {theirs[0]} -> {theirs[1]} into {mine[0]} -> "
                                     f"{mine[1]}")
        self._grids_seen = theirs
        super()._merge_from(other)

    def all_reduce(self, d_source: int, d_target: int) -> Self:
        """The base's all-reduce of the statistics, whose sizes are those of a position's row (C_a·K·K -> C_b);
        the ranks first agree on the grids (a rank that saw no pairs takes them from the others)."""
        from latentmap import distributed

        if not self._started():
            self._validate_params()
            self._reset()
        if not distributed.active():
            return self
        grids = self._agreed_grids(int(d_source), int(d_target))
        self._grids_seen = grids
        super().all_reduce(self._row_width(grids), grids[1][0])
        self._sizes_seen = (int(d_source), int(d_target))
        return self

    def _agreed_grids(self, d_source: int, d_target: int) -> GridPair:
        from latentmap import distributed

        mine: GridPair | None = self.__dict__.get("_grids_seen")
        if mine is None:
            src, tgt = grid_of(self.source_shape), grid_of(self.target_shape)
            mine = None if src is None or tgt is None else (src, tgt)
        flat = [0.0] * 7 if mine is None else [1.0, *mine[0], *mine[1]]
        total = distributed.all_reduce_sum(torch.tensor(flat, dtype=torch.float64))
        if float(total[0]) == 0:  # nobody knows: vectors, as one process would take flat latents
            return (d_source, 1, 1), (d_target, 1, 1)
        mean = [int(round(float(v))) for v in total[1:] / total[0]]
        agreed: GridPair = ((mean[0], mean[1], mean[2]), (mean[3], mean[4], mean[5]))
        # every rank learns of a disagreement, so that all of them stop
        differ = distributed.all_reduce_sum(torch.tensor([float(mine is not None and mine != agreed)],
                                                         dtype=torch.float64))
        if float(differ[0]) > 0:
            raise ShapeMismatchError(f"the ranks' latent grids differ (this rank has {mine}, their mean is {agreed})")
        return agreed

    # ------------------------------------------------------------------ solving
    def _solve(self) -> None:
        s, (src, tgt) = self._moments, self._grids_seen
        k, width = int(self.kernel_size), self._row_width(self._grids_seen)
        needed = width + (1 if self.bias else 0)
        if self.alpha == 0 and s.n < needed:
            raise UnderdeterminedError(
                f"a conv:{k} map fits {needed} numbers per target channel (C·K·K = {width}"
                f"{' and an intercept' if self.bias else ''}) and needs at least {needed} positions (images x h x w), "
                f"got {s.n}; use more images or set alpha > 0 (ridge)")
        solver = LinearMap(bias=self.bias, alpha=self.alpha)  # LinearMap's solve, on the position rows
        w, intercept = solver._solve_affine(s)  # w: [C_a·K·K, C_b]
        self.coef_ = w.T.cpu().numpy()
        self.intercept_ = intercept.cpu().numpy()
        self.alpha_ = solver.alpha_
        self.source_shape_, self.target_shape_ = src, tgt
        self.n_samples_seen_ = int(self._n_seen)
        metrics = affine_fit_metrics(s, w, intercept)
        metrics["n_pairs"] = int(self._n_seen)
        self.fit_metrics_ = {**metrics, "n_positions": int(s.n), **solver._extra_metrics()}

    # ------------------------------------------------------------------ using the map
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        grids, k = self._fitted_grids(), int(self.kernel_size)
        weight = torch.as_tensor(self.weight_, dtype=torch.float64, device=x.device)
        bias = torch.as_tensor(np.asarray(self.intercept_), dtype=torch.float64, device=x.device)
        step = images_per_chunk(grids[1], grids[0][0] + grids[1][0])
        out = [F.conv2d(self._source_grids(x[s:s + step], grids), weight, bias, padding=k // 2).reshape(
            len(x[s:s + step]), -1) for s in range(0, len(x), step)]
        return torch.cat(out) if out else torch.empty(0, int(np.prod(grids[1])), dtype=torch.float64,
                                                      device=x.device)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {"coef": torch.from_numpy(np.ascontiguousarray(self.coef_, dtype=np.float64)),
                "intercept": torch.from_numpy(np.ascontiguousarray(self.intercept_, dtype=np.float64)),
                **self._grid_state()}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self._load_grids(tensors)
        coef, intercept = tensors["coef"].numpy(), tensors["intercept"].numpy()
        k = int(self.kernel_size)
        if coef.shape != (self.target_shape_[0], self.source_shape_[0] * k * k) or intercept.shape != coef.shape[:1]:
            raise CheckpointError(f"the conv:{k} map holds coef {coef.shape} and intercept {intercept.shape}, which do "
                                  f"not fit grids {self.source_shape_} -> {self.target_shape_}")
        self.coef_, self.intercept_ = coef, intercept
        self.alpha_ = float(info.get("fit_metrics", {}).get("alpha", 0.0 if self.alpha == AUTO_ALPHA else self.alpha))


class ConvMLPMap(SpatialMixin, MapEstimator):
    """A small MLP applied at every position (1x1 convolutions): the target channels at a position from the source
    channels there, trained by ``MLPMap`` on the position rows.

    Parameters
    ----------
    hidden, activation, skip, lr, weight_decay, max_epochs, patience, validation_fraction, seed
        As ``MLPMap``'s (the held-out share is of positions).
    batch_size
        Minibatch rows, here positions.
    source_shape, target_shape, resize
        As ``ConvMap``'s.

    Attributes
    ----------
    mlp_
        The ``MLPMap`` fitted on the position rows.
    source_shape_, target_shape_
        The grids (C, h, w) of the fitted latents.
    n_features_in_, n_targets_, n_samples_seen_, fit_metrics_
        Flat latent sizes, images seen, and the MLP's held-out metrics on positions.
    """

    estimator_name = "conv-mlp"
    _parameter_constraints = {**MLPMap._parameter_constraints, **SpatialMixin._grid_constraints}
    _MLP_PARAMS = ("hidden", "activation", "skip", "lr", "weight_decay", "batch_size", "max_epochs", "patience",
                   "validation_fraction", "seed")

    def __init__(self, hidden: Sequence[int] = (128, 128), activation: str = "silu", skip: bool = True,
                 lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 4096, max_epochs: int = 200,
                 patience: int = 12, validation_fraction: float = 0.1, seed: int = 0,
                 source_shape: Sequence[int] | None = None, target_shape: Sequence[int] | None = None,
                 resize: str = "bilinear") -> None:
        self.hidden = hidden
        self.activation = activation
        self.skip = skip
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.source_shape = source_shape
        self.target_shape = target_shape
        self.resize = resize

    def _new_mlp(self) -> MLPMap:
        return MLPMap(**{k: getattr(self, k) for k in self._MLP_PARAMS})

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        grids = self._batch_grids
        rows_x = position_rows(self._source_grids(x, grids), 1)
        rows_y = channel_rows(y.to(torch.float64), grids[1])
        self.mlp_ = self._new_mlp().fit(rows_x, rows_y)
        self.source_shape_, self.target_shape_ = grids
        metrics = dict(self.mlp_.fit_metrics_)
        self.fit_metrics_ = {"n_pairs": len(x), "n_positions": metrics.pop("n_pairs"), **metrics}

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        grids = self._fitted_grids()
        rows = position_rows(self._source_grids(x, grids), 1)
        out = torch.as_tensor(self.mlp_.predict(rows))
        return rows_to_flat(out.reshape(len(rows), -1), len(x), grids[1])

    def _state(self) -> dict[str, torch.Tensor]:
        return {**{f"mlp.{k}": v for k, v in self.mlp_._state().items()}, **self._grid_state()}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self._load_grids(tensors)
        mlp = self._new_mlp()
        mlp._load_state({k[len("mlp."):]: v for k, v in tensors.items() if k.startswith("mlp.")}, info)
        if mlp._sizes() != (self.source_shape_[0], self.target_shape_[0]):
            raise CheckpointError(f"the per-position MLP maps {mlp._sizes()[0]} -> {mlp._sizes()[1]} channels, not "
                                  f"those of grids {self.source_shape_} -> {self.target_shape_}")
        mlp.n_features_in_, mlp.n_targets_ = mlp._sizes()
        mlp.n_samples_seen_, mlp.fit_metrics_ = 0, {}
        self.mlp_ = mlp


__all__ = ["ConvMap", "ConvMLPMap"]
