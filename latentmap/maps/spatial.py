"""What the convolutional maps share: C x h x w latent grids kept flat, their shapes, resizing and position rows.

Latents stay flat, [N, C·h·w] in C order, everywhere in the pipeline; a convolutional map is told the grid
shape of each side by its ``source_shape``/``target_shape`` parameters, or reads it off 4-D input
[N, C, h, w]. The rule (:func:`resolve_grid`):

* 4-D latents give their own shape; a shape parameter, when set, must agree with it.
* Flat latents take the shape parameter, whose C·h·w must equal their size. A 1-tuple ``(d,)`` (a vector
  model's latent shape) is the grid ``(d, 1, 1)``; against a grid of more than one position it is refused
  (:func:`refuse_vector_against_grid`), before any encoding when the fit loop sets the models' shapes.
* Flat latents with no shape parameter are one position, ``(d, 1, 1)``: a vector, on which ``conv:1`` is the
  affine least-squares map (this keeps scikit-learn's 2-D checks meaningful). This default is refused when
  the other side is a grid of more than one position: the flat side's grid cannot be guessed, so the
  message asks for its shape parameter.

When the grids' h x w differ, the source grid is resized to the target's before the map
(:func:`resize_grid`: ``torch.nn.functional.interpolate``; ``bilinear`` with ``align_corners=False`` and
antialiasing when it shrinks, ``area`` or ``nearest``), in float64, the same way in fitting and
predicting. A map folder records the mode (a hyperparameter) and both grids (tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import _Constraint

from latentmap.errors import ShapeMismatchError
from latentmap.maps.checks import LatentPair, LatentsLike, StrOptions
from latentmap.stats import CHUNK_BYTES

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from latentmap.maps.base import MapEstimator as _MixinBase  # what SpatialMixin's methods rely on
else:
    _MixinBase = object

RESIZE_MODES = ("bilinear", "area", "nearest")
FLOAT64_BYTES = 8
GRID_RANK = 3  # (C, h, w)

__all__ = ["LatentGrid", "RESIZE_MODES", "SpatialMixin", "resolve_grid", "resize_grid", "position_rows",
           "images_per_chunk", "Grid", "GridPair"]

Grid: TypeAlias = "tuple[int, int, int]"
"""A latent grid's shape (C, h, w)."""
GridPair: TypeAlias = "tuple[Grid, Grid]"
"""The grids of a map's source and target latents."""


class LatentGrid(_Constraint):
    """A latent shape parameter: a tuple (C, h, w) of positive integers, or (d,) for a vector latent."""

    def is_satisfied_by(self, val: Any) -> bool:
        """Whether ``val`` is such a tuple."""
        return (isinstance(val, (tuple, list)) and len(val) in (1, GRID_RANK)
                and all(isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) and int(v) >= 1 for v in val))

    def __str__(self) -> str:
        return "a tuple (C, h, w) of positive integers (or (d,) for a vector latent)"


def grid_of(value: Sequence[int] | None) -> Grid | None:
    """A shape parameter as a (C, h, w) tuple of ints; None stays None."""
    if value is None:
        return None
    dims = tuple(int(v) for v in value)
    return (dims[0], 1, 1) if len(dims) == 1 else cast("Grid", dims)  # LatentGrid admits lengths 1 and 3 only


def resolve_grid(param: Sequence[int] | None, found: Grid | None, size: int, what: str, name: str) -> Grid | None:
    """The (C, h, w) grid of one side: ``found`` from 4-D latents, else the parameter; None when neither says
    (flat latents without a shape: :meth:`SpatialMixin._check_pair` decides)."""
    want = grid_of(param)
    if found is not None:
        if want is not None and want != found:
            raise ShapeMismatchError(f"{name}={want} but the {what} are grids of shape {found}")
        return found
    if want is not None and int(np.prod(want)) != size:
        raise ShapeMismatchError(f"{name}={want} holds {int(np.prod(want))} numbers per image, but the {what} have "
                                 f"{size}")
    return want


def refuse_vector_against_grid(source: Sequence[int] | None, target: Sequence[int] | None) -> None:
    """A vector shape ``(d,)`` on one side and a grid of several positions on the other have no position-by-position
    map (the vector would be spread over every position, or the grid averaged into one): refused in one line."""
    for mine, other, param, side in ((source, target, "source_shape", "target"),
                                     (target, source, "target_shape", "source")):
        if mine is not None and len(mine) == 1 and other is not None and len(other) == GRID_RANK \
                and int(other[1]) * int(other[2]) > 1:
            raise ShapeMismatchError(
                f"a convolutional map needs C x h x w latents on both sides, but {param}={tuple(mine)} is a vector "
                f"latent and the {side} latents are {other[1]}x{other[2]} grids; map flattened latents instead "
                "(linear, mlp, piecewise)")


def resize_grid(g: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Grids [n, C, h, w] resized to h x w = ``hw`` (unchanged when they already have it)."""
    if tuple(g.shape[2:]) == tuple(hw):
        return g
    if mode == "bilinear":
        return F.interpolate(g, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(g, size=hw, mode=mode)


def position_rows(g: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """One row per position of grids [n, C, h, w]: the K x K neighbourhood of every channel (zero padding),
    [n·h·w, C·K·K], columns in ``conv2d``'s weight order (channel, then kernel row, then kernel column)."""
    n, c, h, w = g.shape
    if kernel_size == 1:
        return g.reshape(n, c, h * w).transpose(1, 2).reshape(n * h * w, c)
    # F.unfold's neighbourhoods as a strided view of the padded grids, copied once into rows
    r = kernel_size // 2
    windows = F.pad(g, (r, r, r, r)).unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)  # [n, C, h, w, K, K]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * kernel_size * kernel_size)


def channel_rows(flat: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Flat target latents [n, C·h·w] as one row of C channels per position: [n·h·w, C]."""
    c, h, w = grid
    return flat.reshape(len(flat), c, h * w).transpose(1, 2).reshape(-1, c)


def rows_to_flat(rows: torch.Tensor, n: int, grid: Grid) -> torch.Tensor:
    """The inverse of :func:`channel_rows`: [n·h·w, C] -> flat [n, C·h·w]."""
    c, h, w = grid
    return rows.reshape(n, h * w, c).transpose(1, 2).reshape(n, c * h * w)


def images_per_chunk(grid: Grid, row_width: int) -> int:
    """Images whose float64 position rows of ``row_width`` numbers fit in ``CHUNK_BYTES`` (at least one)."""
    return max(1, CHUNK_BYTES // (FLOAT64_BYTES * grid[1] * grid[2] * max(row_width, 1)))


def _flat(a: torch.Tensor | ArrayLike) -> tuple[Any, Grid | None]:
    """(flat 2-D view or array, its grid shape when it was 4-D)."""
    ndim = getattr(a, "ndim", None)
    if ndim is None:  # a list, or an object that only converts to an array
        ndim = np.asarray(a).ndim
    if ndim != 4:
        return a, None
    if not isinstance(a, torch.Tensor):
        a = np.asarray(a)
    c, h, w = (int(s) for s in a.shape[1:])
    return a.reshape(a.shape[0], -1), (c, h, w)


class SpatialMixin(_MixinBase):
    """For a map between C x h x w latent grids (ahead of the estimator base among the bases): flat or 4-D input,
    the grids of both sides, resizing, and ``predict`` answering in the layout it was given."""

    source_shape: Sequence[int] | None  # the hyperparameters every spatial map has
    target_shape: Sequence[int] | None
    resize: str
    source_shape_: Grid  # learned (or loaded)
    target_shape_: Grid
    _batch_grids: GridPair  # the grids of the pairs _check_pair checked last

    _grid_constraints: dict[str, list[Any]] = {"source_shape": [None, LatentGrid()],
                                               "target_shape": [None, LatentGrid()],
                                               "resize": [StrOptions(set(RESIZE_MODES))]}

    def _check_pair(self, X: LatentsLike, Y: LatentsLike | None, check_finite: bool = True) -> LatentPair:
        flat_x, found_x = _flat(X) if X is not None else (X, None)
        flat_y, found_y = _flat(Y) if Y is not None else (Y, None)
        x, y = super()._check_pair(flat_x, flat_y, check_finite)
        src = resolve_grid(self.source_shape, found_x, x.shape[1], "source latents X", "source_shape")
        tgt = resolve_grid(self.target_shape, found_y, y.shape[1], "target latents Y", "target_shape")
        refuse_vector_against_grid(self.source_shape if self.source_shape is not None and found_x is None else src,
                                   self.target_shape if self.target_shape is not None and found_y is None else tgt)
        for mine, other, side, param in ((src, tgt, "X", "source_shape"), (tgt, src, "Y", "target_shape")):
            if mine is None and other is not None and other[1] * other[2] > 1:
                raise ShapeMismatchError(f"{side} is flat and {param} is not set, while the other side's latents "
                                         f"are {other[1]}x{other[2]} grids; set {param}=(C, h, w) or pass 4-D "
                                         "latents [N, C, h, w]")
        d_x, d_y = x.shape[1], y.shape[1]
        self._batch_grids = (src or (d_x, 1, 1), tgt or (d_y, 1, 1))
        return x, y

    def _validate_combination(self) -> None:
        super()._validate_combination()
        refuse_vector_against_grid(self.source_shape, self.target_shape)

    def _source_grids(self, flat: torch.Tensor, grids: GridPair) -> torch.Tensor:
        """Flat source latents as float64 grids [n, C_a, h_b, w_b], resized to the target's h x w."""
        src, tgt = grids
        g = flat.to(torch.float64).reshape(len(flat), *src)
        return resize_grid(g, tgt[1:], self.resize)

    def _fitted_grids(self) -> GridPair:
        return self.source_shape_, self.target_shape_

    def predict(self, X: LatentsLike) -> torch.Tensor | np.ndarray:
        """Map source latents to target latents: flat [N, C_a·h_a·w_a] in, flat [N, C_b·h_b·w_b] out; 4-D
        [N, C_a, h_a, w_a] in, 4-D [N, C_b, h_b, w_b] out; same kind and float dtype as X."""
        flat, found = _flat(X)
        if found is None:
            return super().predict(X)
        self._check_fitted()
        if found != tuple(self.source_shape_):
            raise ShapeMismatchError(f"{type(self).__name__} maps source grids of shape {tuple(self.source_shape_)}, "
                                     f"X has grids of shape {found}")
        out = super().predict(flat)
        return out.reshape(len(out), *self.target_shape_)

    def _grid_state(self) -> dict[str, torch.Tensor]:
        return {"source_shape": torch.tensor(self.source_shape_, dtype=torch.int64),
                "target_shape": torch.tensor(self.target_shape_, dtype=torch.int64)}

    def _load_grids(self, tensors: dict[str, torch.Tensor]) -> None:
        self.source_shape_ = cast("Grid", tuple(int(v) for v in tensors["source_shape"]))  # as _grid_state wrote them
        self.target_shape_ = cast("Grid", tuple(int(v) for v in tensors["target_shape"]))

    def _sizes(self) -> tuple[int, int]:
        return int(np.prod(self.source_shape_)), int(np.prod(self.target_shape_))
