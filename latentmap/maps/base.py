"""What every map estimator besides :class:`~latentmap.maps.linear.LinearMap` shares.

The contract is LinearMap's (scikit-learn's): hyperparameters set in ``__init__`` without logic
and checked once per fit against ``_parameter_constraints``; ``fit`` returns self; learned
values end in ``_``; ``transform``/``predict`` answer in the kind (numpy or torch) and float
dtype they were given; ``score`` is the R² of the mapped latents; ``save``/``load`` write and
read a map folder (``latentmap.io.map_folder``) that records the estimator's name and
parameters. Works with ``sklearn.base.clone``.

* :class:`MapEstimator`: fits from whole arrays (``fit``); subclasses implement ``_fit``,
  ``_forward``, ``_state`` and ``_load_state``.
* :class:`StreamingMapEstimator`: accumulates float64 statistics batch by batch
  (``partial_fit``/``fit_batches``) and solves once, when first used, as LinearMap does.
* :class:`AffineEstimator`: a streaming estimator whose answer is one affine map
  (``coef_`` [n_targets, n_features], ``intercept_``), with ``inverse()`` like LinearMap's.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator

from latentmap.errors import (CheckpointError, ConfigError, NonFiniteError, NotFittedError, ShapeMismatchError,
                              UnderdeterminedError)
from latentmap.maps.linear import FIT_CHUNK_ROWS, LinearMap, _as_tensor, _raise_non_finite
from latentmap.stats import Moments, r2_from_sums, r2_score


# --------------------------------------------------------------------------- declared constraints

def is_int(low: int | None = None) -> Callable[[object], bool]:
    return lambda v: (isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                      and (low is None or v >= low))


def is_number(low: float | None = None, low_open: bool = False, high: float | None = None,
              high_open: bool = False) -> Callable[[object], bool]:
    def check(v) -> bool:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not np.isfinite(v):
            return False
        if low is not None and (v < low or (low_open and v == low)):
            return False
        return high is None or (v < high if high_open else v <= high)
    return check


def is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def one_of(*choices) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and v in choices


def either(*checks) -> Callable[[object], bool]:
    return lambda v: any(c(v) for c in checks)


# --------------------------------------------------------------------------- the estimators

class MapEstimator(BaseEstimator):
    """A map from source latents [N, d_x] to target latents [N, d_y], fitted on pairs of encodings."""

    estimator_name = ""  # the name map.json records; set by each subclass
    # parameter -> (what it must be, in words; check)
    _parameter_constraints: dict[str, tuple[str, Callable[[object], bool]]] = {}
    _FITTED = ("n_features_in_", "n_targets_", "n_samples_seen_", "fit_metrics_")

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        """Check every hyperparameter against ``_parameter_constraints`` (once per fit)."""
        for name, (expected, ok) in self._parameter_constraints.items():
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"{name} must be {expected}, got {value!r} instead")

    @staticmethod
    def _check_pair(X, Y) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = _as_tensor(X, "source latents X")
        y, _ = _as_tensor(Y, "target latents Y")
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(
                f"X and Y must have the same number of rows (one pair per image), got {x.shape[0]} and {y.shape[0]}")
        return x, y.to(x.device)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, Y):
        """Fit from all pairs at once (rows of X and Y are encodings of the same images)."""
        self._validate_params()
        x, y = self._check_pair(X, Y)
        if len(x) == 0:
            raise UnderdeterminedError(f"{type(self).__name__} got no latent pairs; it needs images to fit on")
        self._fit(x, y)
        self.n_features_in_, self.n_targets_, self.n_samples_seen_ = x.shape[1], y.shape[1], len(x)
        return self

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ using the map
    def _check_fitted(self) -> None:
        if "n_features_in_" not in self.__dict__:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit with latent pairs first")

    def transform(self, X):
        """Map source latents [N, d_source] to target latents [N, d_target], same kind and float dtype as X."""
        self._check_fitted()
        x, kind = _as_tensor(X, "source latents X")
        if x.shape[1] != self.n_features_in_:
            raise ShapeMismatchError(f"map expects source latents of size {self.n_features_in_}, got shape "
                                     f"{tuple(x.shape)}")
        out = self._forward(x)
        out = out.to(x.dtype if x.dtype.is_floating_point else torch.float64)
        return out.numpy() if kind == "numpy" else out

    predict = transform

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, X, Y) -> float:
        """R² of the predicted target latents, averaged uniformly over target dimensions (as sklearn)."""
        self._check_fitted()
        x, y = self._check_pair(X, Y)
        if y.shape[1] != self.n_targets_:
            raise ShapeMismatchError(f"map gives target latents of size {self.n_targets_}, Y has {y.shape[1]}")
        return r2_score(y, torch.as_tensor(self.transform(x)))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        """The learned tensors map.safetensors holds."""
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        raise NotImplementedError

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        return {k: v.detach().cpu().contiguous() for k, v in self._state().items()}

    def save(self, path, *, source=None, target=None, fit_source: dict | None = None,
             extra: dict | None = None, overwrite: bool = True) -> Path:
        """Write ``map.safetensors`` + ``map.json`` (estimator name and parameters) into the folder ``path``."""
        from latentmap.io.map_folder import save_map

        self._check_fitted()
        return save_map(self, path, source=source, target=target, fit_source=fit_source, extra=extra,
                        overwrite=overwrite)

    @classmethod
    def load(cls, path):
        """Read a map folder written by :meth:`save`; ``info_`` holds its JSON."""
        from latentmap.io.map_folder import read_map_state

        info, tensors = read_map_state(path)
        if info.get("estimator", "linear") != cls.estimator_name:
            raise CheckpointError(f"map folder '{path}' holds a '{info.get('estimator', 'linear')}' map, not a "
                                  f"'{cls.estimator_name}' one; load it with latentmap.load_map")
        names = cls._get_param_names()
        params = {k: (tuple(v) if isinstance(v, list) else v)
                  for k, v in info.get("hyperparameters", {}).items() if k in names}
        out = cls(**params)
        out._validate_params()
        try:
            out._load_state(tensors, info)
        except KeyError as exc:
            raise CheckpointError(f"map folder '{path}' lacks the tensor {exc} of a {cls.estimator_name} map") from None
        out.n_features_in_ = int(info.get("source", {}).get("latent_dim") or out._sizes()[0])
        out.n_targets_ = int(info.get("target", {}).get("latent_dim") or out._sizes()[1])
        if (out.n_features_in_, out.n_targets_) != out._sizes():
            raise CheckpointError(f"map folder '{path}' records latent sizes {out.n_features_in_} -> {out.n_targets_}"
                                  f" but its tensors are {out._sizes()[0]} -> {out._sizes()[1]}")
        out.n_samples_seen_ = int(info.get("n_samples_seen", 0))
        out.fit_metrics_ = dict(info.get("fit_metrics", {}))
        out.info_ = info
        return out

    def _sizes(self) -> tuple[int, int]:
        """(d_source, d_target) read off the learned tensors."""
        raise NotImplementedError


class StreamingMapEstimator(MapEstimator):
    """An estimator fitted from float64 statistics: ``partial_fit`` accumulates, the solve happens when needed."""

    def _reset(self) -> None:
        raise NotImplementedError

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def _pending(self) -> bool:
        """Pairs have been accumulated since the last solve."""
        raise NotImplementedError

    def _solve(self) -> None:
        raise NotImplementedError

    def _forget_solution(self) -> None:
        for attr in self._FITTED:
            self.__dict__.pop(attr, None)

    def _checked_batch(self, X, Y):
        x, y = self._check_pair(X, Y)
        seen = self.__dict__.get("_sizes_seen")
        if seen is not None and (x.shape[1], y.shape[1]) != seen:
            raise ShapeMismatchError(f"partial_fit started with latents of size {seen[0]} -> {seen[1]}, this batch "
                                     f"has {x.shape[1]} -> {y.shape[1]}")
        self._sizes_seen = (x.shape[1], y.shape[1])
        return x, y

    def fit(self, X, Y):
        self._validate_params()
        self.__dict__.pop("_sizes_seen", None)
        x, y = self._checked_batch(X, Y)
        self._reset()
        self._prepare(x, y)
        for start in range(0, len(x), FIT_CHUNK_ROWS):
            self._accumulate(x[start:start + FIT_CHUNK_ROWS], y[start:start + FIT_CHUNK_ROWS])
        return self.solve()

    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """A look at all pairs before they are accumulated (``fit`` only); nothing by default."""

    def fit_batches(self, batches):
        """Fit from an iterable of (X_batch, Y_batch) pairs, solving once at the end."""
        self._validate_params()
        self.__dict__.pop("_sizes_seen", None)
        self._reset()
        for xb, yb in batches:
            self._accumulate(*self._checked_batch(xb, yb))
        return self.solve()

    def partial_fit(self, X_batch, Y_batch):
        """Add a batch of pairs to the statistics; the map is solved once, when first used."""
        if "_sizes_seen" not in self.__dict__:
            self._validate_params()
            self._reset()
        self._accumulate(*self._checked_batch(X_batch, Y_batch))
        self._forget_solution()
        return self

    def solve(self):
        """Solve from the statistics accumulated so far."""
        self._validate_params()
        if not self._pending():
            if "n_features_in_" in self.__dict__:
                return self
            raise UnderdeterminedError(f"this {type(self).__name__} has seen no latent pairs; it needs images to "
                                       "fit on")
        self._solve()
        self.n_features_in_, self.n_targets_ = self._sizes_seen
        return self

    def _check_fitted(self) -> None:
        if "n_features_in_" in self.__dict__:
            return
        if "_sizes_seen" in self.__dict__ and self._pending():
            self.solve()
            return
        super()._check_fitted()

    def __getattr__(self, name: str):
        # learned attributes after partial_fit: solve once, on first use
        if name.endswith("_") and not name.startswith("_") and "_sizes_seen" in self.__dict__ and self._pending():
            self.solve()
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


def merged_moments(x: torch.Tensor, y: torch.Tensor, into: Moments | None) -> Moments:
    """``into`` with the batch (x, y) folded in (a new accumulator when None); non-finite latents are refused."""
    into = Moments(full=True) if into is None else into
    try:
        return into.update(x, y, check_finite=True)
    except NonFiniteError as exc:
        if getattr(exc, "operand", "x") == "x":
            _raise_non_finite(x, "source latents X")
        _raise_non_finite(y, "target latents Y")


def affine_fit_metrics(s: Moments, w: torch.Tensor, intercept: torch.Tensor) -> dict:
    """R² and latent MSE on the fitting pairs of the affine map y = x W + b, from the statistics alone."""
    n = s.n
    sse = s.cyy - 2 * (w * s.cxy).sum(0) + (w * (s.cxx @ w)).sum(0)
    offset = s.mean_y - s.mean_x @ w - intercept
    sse = sse.clamp_min(0) + n * offset * offset
    return {"n_pairs": int(n), "latent_mse": float(sse.sum() / (n * len(sse))),
            "r2": float(r2_from_sums(sse, s.cyy).mean())}


class AffineEstimator(StreamingMapEstimator):
    """A streaming estimator whose answer is one affine map y = x @ coef_.T + intercept_ (float64)."""

    _FITTED = MapEstimator._FITTED + ("coef_", "intercept_")

    def _reset(self) -> None:
        self._moments = None
        self._forget_solution()

    def _accumulate(self, x, y) -> None:
        self._moments = merged_moments(x, y, self.__dict__.get("_moments"))
        self._solved_n = None

    def _pending(self) -> bool:
        m = self.__dict__.get("_moments")
        return m is not None and m.n > 0 and self.__dict__.get("_solved_n") != m.n

    def _solve(self) -> None:
        s = self._moments
        w, intercept = self._solve_affine(s)  # w: [d_x, d_y] right-multiplies row latents
        self.coef_ = w.T.cpu().numpy()
        self.intercept_ = intercept.cpu().numpy()
        self.n_samples_seen_ = int(s.n)
        self.fit_metrics_ = {**affine_fit_metrics(s, w, intercept), **self._extra_metrics()}
        self._solved_n = s.n

    def _solve_affine(self, s: Moments) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _extra_metrics(self) -> dict:
        return {}

    def _forward(self, x):
        w = torch.as_tensor(self.coef_.T, dtype=torch.float64, device=x.device)
        return x.to(torch.float64) @ w + torch.as_tensor(self.intercept_, dtype=torch.float64, device=x.device)

    def inverse(self) -> LinearMap:
        """The least-squares inverse (pseudo-inverse of coef_) as a LinearMap: target latents -> source latents."""
        self._check_fitted()
        pinv = np.linalg.pinv(self.coef_)
        inv = LinearMap(bias=bool(np.any(self.intercept_ != 0)), alpha=0.0)
        inv.coef_, inv.intercept_ = pinv, -self.intercept_ @ pinv.T
        inv.n_features_in_, inv.n_targets_ = self.n_targets_, self.n_features_in_
        inv.n_samples_seen_ = self.n_samples_seen_
        inv._cache, inv._moments = {}, None
        return inv

    def _state(self):
        return {"coef": torch.from_numpy(np.ascontiguousarray(self.coef_, dtype=np.float64)),
                "intercept": torch.from_numpy(np.ascontiguousarray(self.intercept_, dtype=np.float64))}

    def _load_state(self, tensors, info):
        self.coef_, self.intercept_ = tensors["coef"].numpy(), tensors["intercept"].numpy()
        self._moments = None

    def _sizes(self):
        return self.coef_.shape[1], self.coef_.shape[0]
