"""What a map estimator accepts: latents (numpy, torch or array-like) and hyperparameters (declared constraints).

The constraints are scikit-learn's own objects (``Interval``, ``StrOptions``, ``"boolean"``, from
``sklearn.utils._param_validation``, as scikit-learn's estimators use them), so an error names the
values a parameter may take in scikit-learn's words.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias

import numpy as np
import torch
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils._param_validation import Interval, StrOptions, _Constraint, make_constraint

from latentmap.errors import ConfigError, NonFiniteError, NotFittedError, ShapeMismatchError, UnderdeterminedError
from latentmap.stats import Moments

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["Interval", "StrOptions", "PositiveIntSequence", "MapNotFittedError", "check_constraints", "as_latents",
           "merged_moments", "raise_non_finite", "pair_moments", "check_pair", "is_1d", "LatentsLike", "LatentPair"]

LatentsLike: TypeAlias = "torch.Tensor | ArrayLike"
"""What an estimator takes as latents: a torch tensor, a numpy array or anything ``np.asarray`` reads."""
LatentPair: TypeAlias = "tuple[torch.Tensor, torch.Tensor]"
"""Checked source and target latents (X, Y): 2-D tensors with one row per image."""


class MapNotFittedError(NotFittedError, _SklearnNotFittedError):
    """A map used before it is fitted: latentmap's error, and scikit-learn's ``NotFittedError`` too."""


# --------------------------------------------------------------------------- declared constraints

class PositiveIntSequence(_Constraint):
    """A non-empty tuple or list of integers >= 1 (an MLP's hidden widths)."""

    def is_satisfied_by(self, val: Any) -> bool:
        """Whether ``val`` is such a sequence."""
        return (isinstance(val, (tuple, list)) and len(val) >= 1
                and all(isinstance(h, Integral) and not isinstance(h, (bool, np.bool_)) and int(h) >= 1 for h in val))

    def __str__(self) -> str:
        return "a non-empty sequence of positive integers such as (512, 512)"


class Constrained(Protocol):
    """An estimator that declares the values each hyperparameter may take."""

    _parameter_constraints: dict[str, list[Any]]


def check_constraints(estimator: Constrained) -> None:
    """Every hyperparameter against the class's ``_parameter_constraints``: ConfigError naming it otherwise."""
    for name, constraints in estimator._parameter_constraints.items():
        value = getattr(estimator, name)
        made = [c if isinstance(c, _Constraint) else make_constraint(c) for c in constraints]
        if not any(c.is_satisfied_by(value) for c in made):
            expected = " or ".join(str(c) for c in made)
            raise ConfigError(f"{name} must be {expected}, got {value!r} instead")


# --------------------------------------------------------------------------- input latents

def raise_non_finite(t: torch.Tensor, what: str) -> NoReturn:
    """Raise the NonFiniteError that says what is wrong with latents ``t`` (called ``what``): NaN or infinite
    values, and in how many rows, or values whose squares overflow float64."""
    bad = int((~torch.isfinite(t)).any(dim=1).sum()) if t.dtype.is_floating_point else 0
    if bad:
        raise NonFiniteError(f"{what} contain NaN or infinite values (in {bad} of {len(t)} rows)")
    raise NonFiniteError(f"{what} hold values too large for float64 statistics (their squares overflow)")


def as_latents(a: LatentsLike, what: str, check_finite: bool = True,
               allow_1d: bool = False) -> tuple[torch.Tensor, str]:
    """numpy/torch (or array-like) 2-D input -> (tensor, kind "numpy" or "torch"), without copying when possible.

    ``allow_1d``: a 1-d array is one column (a target with one variable)."""
    if isinstance(a, torch.Tensor):
        t, kind = a.detach(), "torch"
    else:
        if a is None:
            raise ShapeMismatchError(f"{what} are required, got None")
        import scipy.sparse

        if scipy.sparse.issparse(a):
            raise ShapeMismatchError(f"{what} must be a dense array: sparse input is not supported")
        arr = np.asarray(a)
        if arr.dtype.kind == "c":
            raise ShapeMismatchError(f"{what} must hold real numbers: Complex data not supported")
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(np.float64)
            except ValueError as exc:  # a TypeError (a dict in the array) stays what it is
                raise ShapeMismatchError(f"{what} must hold real numbers: {exc}") from None
        if arr.dtype.kind not in "fiub":  # strings, datetimes: no latents
            raise ShapeMismatchError(f"{what} must hold real numbers, got numpy dtype {arr.dtype} instead")
        if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr, order="C")
        t, kind = torch.from_numpy(arr), "numpy"
    if allow_1d and t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ShapeMismatchError(f"{what} must be 2-dimensional [N, d], got shape {tuple(t.shape)} instead. "
                                 "Reshape your data with reshape(-1, 1) for one variable or reshape(1, -1) for one "
                                 "image")
    if t.shape[1] == 0:
        raise ShapeMismatchError(f"{what} have 0 feature(s) (shape={tuple(t.shape)}) while a minimum of 1 is "
                                 "required.")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                                                     torch.bool)):
        raise ShapeMismatchError(f"{what} must hold real numbers, got dtype {t.dtype} instead")
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if check_finite and t.dtype.is_floating_point and not torch.isfinite(t).all():
        raise_non_finite(t, what)
    return t, kind


def check_pair(X: LatentsLike, Y: LatentsLike | None, estimator: str, check_finite: bool = True) -> LatentPair:
    """Source and target latents as 2-D tensors with the same number of rows (a 1-d Y is one column), Y on X's
    device; ``estimator`` names the class in the error when Y is missing."""
    if Y is None:
        raise ShapeMismatchError(f"{estimator} requires y to be passed, but the target y is None")
    x, _ = as_latents(X, "source latents X", check_finite)
    y, _ = as_latents(Y, "target latents Y", check_finite, allow_1d=True)
    if x.shape[0] != y.shape[0]:
        raise ShapeMismatchError(
            f"X and Y must have the same number of rows (one pair per image), got {x.shape[0]} and {y.shape[0]}")
    return x, y.to(x.device)


def is_1d(Y: LatentsLike | None) -> bool:
    """Whether the target latents are one variable given as a 1-d array (the map then answers in 1-d)."""
    return (Y.ndim if isinstance(Y, torch.Tensor) else np.asarray(Y).ndim) == 1


def merged_moments(x: torch.Tensor, y: torch.Tensor, into: Moments | None) -> Moments:
    """``into`` with the batch (x, y) folded in (a new accumulator when None); non-finite latents are refused.

    The finiteness check is on the batch's cross-products (d² numbers, not N·d): a NaN or inf anywhere
    reaches them, and they are checked before they touch the statistics."""
    into = Moments(full=True) if into is None else into
    try:
        return into.update(x, y, check_finite=True)
    except NonFiniteError as exc:
        if getattr(exc, "operand", "x") == "x":
            raise_non_finite(x, "source latents X")
        raise_non_finite(y, "target latents Y")


def pair_moments(s: Moments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean_x, cxx, mean_y, cxy, cyy) of an accumulator of latent pairs; UnderdeterminedError before any pair."""
    if s.mean_x is None or s.cxx is None or s.mean_y is None or s.cxy is None or s.cyy is None:
        raise UnderdeterminedError("no latent pairs were accumulated: a map needs images to fit on")
    return s.mean_x, s.cxx, s.mean_y, s.cxy, s.cyy


def copy_moments(m: Moments) -> Moments:
    """An independent copy of the accumulator ``m`` (its tensors cloned)."""
    return Moments.from_state({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in m.state().items()},
                              full=m.full)


@contextmanager
def one_sample(n: int) -> Iterator[None]:
    """A map that cannot be fitted on a single pair says so in scikit-learn's words."""
    try:
        yield
    except UnderdeterminedError as exc:
        if n == 1:
            exc.args = (f"{exc.args[0]} (n_samples = 1)",) + exc.args[1:]
        raise
