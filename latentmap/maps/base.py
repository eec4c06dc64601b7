"""The one estimator contract every map implements (``LinearMap`` included); see docs/estimators.md.

scikit-learn's, for a multi-output regressor from source latents [N, d_x] to target latents [N, d_y] (a 1-d
target is one variable): hyperparameters checked once per fit against the declared ``_parameter_constraints``;
``fit`` returns self; learned values end in ``_``; ``predict`` (alias ``transform``) answers in the kind and float
dtype it was given; ``save``/``load`` a map folder that records ``estimator_name``. scikit-learn's own checks
pass, but for those a class declares in ``_expected_failed_checks``, with the reason.

* :class:`MapEstimator`: fits from whole arrays; subclasses implement ``_fit``, ``_forward``, ``_state``,
  ``_load_state`` and ``_sizes``.
* :class:`StreamingMapEstimator`: declares its float64 sufficient statistics once (``_statistics``) and gets
  ``partial_fit``/``fit_batches``, ``merge`` and the torch.distributed ``all_reduce``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import Tags, TransformerTags

from latentmap.io.frames import MapRepr
from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnderdeterminedError
from latentmap.maps.checks import (Interval, LatentPair, LatentsLike, MapNotFittedError, PositiveIntSequence,
                                   StrOptions, as_latents, check_constraints, check_pair, copy_moments, is_1d,
                                   one_sample)
from latentmap.stats import CHUNK_ROWS, Moments, r2_score

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Self  # Python 3.11; the package also runs on 3.10

__all__ = ["MapEstimator", "StreamingMapEstimator", "MapNotFittedError", "Interval", "StrOptions",
           "PositiveIntSequence", "as_latents", "FIT_CHUNK_ROWS"]

# fit() streams whole arrays through the statistics in chunks of this many rows (Moments.update's chunk)
FIT_CHUNK_ROWS = CHUNK_ROWS


# --------------------------------------------------------------------------- the estimators

class MapEstimator(MapRepr, RegressorMixin, BaseEstimator):
    """A map from source latents [N, d_x] to target latents [N, d_y], fitted on pairs of encodings."""

    estimator_name = ""  # the name map.json records and the registry knows; set by each subclass
    # parameter -> the values it may take: scikit-learn constraints (Interval, StrOptions, "boolean", ...)
    _parameter_constraints: dict[str, list[Any]] = {}
    # scikit-learn check -> why it cannot apply to this estimator (read by the tests' parametrize_with_checks)
    _expected_failed_checks: dict[str, str] = {}
    _FITTED: tuple[str, ...] = ("n_features_in_", "n_targets_", "n_samples_seen_", "fit_metrics_")
    fit_metrics_: dict[str, Any]  # set by each subclass's fit, and by load (with info_, the folder's map.json)
    info_: dict[str, Any]
    image_transform_: dict[str, Any]  # set by maps.fitting.record_transform when A's images were transformed

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64", "float32"])  # transform = predict
        return tags

    @classmethod
    def expected_failed_checks(cls) -> dict[str, str]:
        """The scikit-learn checks this class declares inapplicable, with why (its own and its bases')."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("_expected_failed_checks", {}))
        return out

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        """Check every hyperparameter against ``_parameter_constraints`` (once per fit)."""
        check_constraints(self)
        self._validate_combination()

    def _validate_combination(self) -> None:
        """Constraints between parameters; none by default."""

    def _check_pair(self, X: LatentsLike, Y: LatentsLike | None, check_finite: bool = True) -> LatentPair:
        return check_pair(X, Y, type(self).__name__, check_finite)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: LatentsLike, Y: LatentsLike | None) -> Self:
        """Fit from all pairs at once (rows of X and Y are encodings of the same images)."""
        self._validate_params()
        x, y = self._check_pair(X, Y)
        if len(x) == 0:
            raise UnderdeterminedError(f"{type(self).__name__} got no latent pairs; it needs images to fit on")
        with one_sample(len(x)):
            self._fit(x, y)
        self.n_features_in_, self.n_targets_, self.n_samples_seen_ = x.shape[1], y.shape[1], len(x)
        self._y_1d = is_1d(Y)
        return self

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ using the map
    def __sklearn_is_fitted__(self) -> bool:
        return "n_features_in_" in self.__dict__

    def _check_fitted(self) -> None:
        if "n_features_in_" not in self.__dict__:
            raise MapNotFittedError(f"this {type(self).__name__} is not fitted yet; call fit with latent pairs first")

    def predict(self, X: LatentsLike) -> torch.Tensor | np.ndarray:
        """Map source latents [N, d_source] to target latents [N, d_target], same kind and float dtype as X
        (a 1-d answer for a map fitted on a 1-d target)."""
        self._check_fitted()
        x, kind = as_latents(X, "source latents X")
        if x.shape[1] != self.n_features_in_:
            raise ShapeMismatchError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features "
                f"as input (the map expects source latents of size {self.n_features_in_}, got shape "
                f"{tuple(x.shape)})")
        out = self._forward(x)
        out = out.to(x.dtype if x.dtype.is_floating_point else torch.float64)
        if self.__dict__.get("_y_1d") and out.shape[1] == 1:
            out = out[:, 0]
        return out.numpy() if kind == "numpy" else out

    def fit_transform(self, X: LatentsLike, y: LatentsLike | None = None) -> torch.Tensor | np.ndarray:
        """Fit on the pairs (X, y), then map X: ``fit(X, y).predict(X)``."""
        return self.fit(X, y).predict(X)

    def transform(self, X: LatentsLike) -> torch.Tensor | np.ndarray:
        """The same as :meth:`predict`: source latents mapped into the target space."""
        return self.predict(X)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, X: LatentsLike, y: LatentsLike, sample_weight: LatentsLike | None = None) -> float:
        """R² of the predicted target latents, averaged uniformly over target dimensions (as sklearn)."""
        self._check_fitted()
        if sample_weight is not None:
            from sklearn.metrics import r2_score as weighted_r2

            return float(weighted_r2(np.asarray(y), np.asarray(self.predict(X)), sample_weight=sample_weight))
        x, y = self._check_pair(X, y)
        if y.shape[1] != self.n_targets_:
            raise ShapeMismatchError(f"map gives target latents of size {self.n_targets_}, Y has {y.shape[1]}")
        pred = torch.as_tensor(self.predict(x)).reshape(len(x), -1)
        return r2_score(y, pred)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        """The learned tensors map.safetensors holds."""
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The learned tensors, detached, contiguous and on the CPU: what ``save`` writes to map.safetensors."""
        self._check_fitted()
        return {k: v.detach().cpu().contiguous() for k, v in self._state().items()}

    def save(self, path: str | Path, *, source: Any = None, target: Any = None, fit_source: dict | None = None,
             extra: dict | None = None, overwrite: bool = True) -> Path:
        """Write ``map.safetensors`` + ``map.json`` (estimator name and parameters) into the folder ``path``."""
        from latentmap.io.map_folder import save_map

        self._check_fitted()
        return save_map(self, path, source=source, target=target, fit_source=fit_source, extra=extra,
                        overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a map folder written by :meth:`save` (any earlier format); ``info_`` holds its JSON."""
        from latentmap.io.map_folder import LINEAR_ESTIMATOR, read_map_state

        info, tensors = read_map_state(path)
        name = info.get("estimator", LINEAR_ESTIMATOR)
        if name != cls.estimator_name:
            raise CheckpointError(f"map folder '{path}' holds a '{name}' map, not a '{cls.estimator_name}' one; load "
                                  "it with latentmap.load_map")
        names = cls._get_param_names()
        params = {k: (tuple(v) if isinstance(v, list) else v)
                  for k, v in info.get("hyperparameters", {}).items() if k in names}
        out = cls(**params)
        out._validate_params()
        try:
            out._load_state(tensors, info)
        except KeyError as exc:
            raise CheckpointError(f"map folder '{path}' lacks the tensor {exc} of a {cls.estimator_name} map") from None
        sizes = out._sizes()
        out.n_features_in_ = int(info.get("source", {}).get("latent_dim") or sizes[0])
        out.n_targets_ = int(info.get("target", {}).get("latent_dim") or sizes[1])
        if (out.n_features_in_, out.n_targets_) != sizes:
            raise CheckpointError(f"map folder '{path}' records latent sizes {out.n_features_in_} -> {out.n_targets_}"
                                  f" but its tensors are {sizes[0]} -> {sizes[1]}")
        out.n_samples_seen_ = int(info.get("n_samples_seen", 0))
        out.fit_metrics_ = dict(info.get("fit_metrics", {}))
        out.info_ = info
        return out

    def _sizes(self) -> tuple[int, int]:
        """(d_source, d_target) read off the learned tensors."""
        raise NotImplementedError


class StreamingMapEstimator(MapEstimator):
    """An estimator fitted from float64 sufficient statistics, declared once in ``_statistics``.

    ``_statistics`` maps an attribute to the number of :class:`~latentmap.stats.Moments` accumulators it holds:
    ``1`` (one accumulator) or the name of the hyperparameter giving the count (a list, one per cell). The base
    creates them (``_reset``), merges them with another estimator's (``merge``) and adds them up over the ranks
    of a torch.distributed run (``all_reduce``); a subclass folds batches into them (``_accumulate``) and
    solves from them (``_solve``), once, when the map is first used.
    """

    _statistics: dict[str, int | str] = {}
    _solved_n: int | None  # how many of the pairs accumulated (_n_seen) the last solve saw

    # ------------------------------------------------------------------ the declared statistics
    def _new_statistics(self) -> None:
        for name, count in self._statistics.items():
            k = int(getattr(self, count) if isinstance(count, str) else count)
            setattr(self, name, Moments(full=True) if count == 1 else [Moments(full=True) for _ in range(k)])

    def _accumulators(self) -> list[Moments]:
        out: list[Moments] = []
        for name, count in self._statistics.items():
            value: Any = self.__dict__.get(name)
            out += [value] if count == 1 else list(value or [])
        return out

    def _reset(self) -> None:
        self._new_statistics()
        self._n_seen, self._solved_n = 0, None
        self.__dict__.pop("_sizes_seen", None)
        self._forget_solution()

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold a checked batch into the statistics."""
        raise NotImplementedError

    def _pending(self) -> bool:
        """Pairs have been accumulated since the last solve."""
        return self.__dict__.get("_n_seen", 0) > 0 and self.__dict__.get("_solved_n") != self._n_seen

    def _solve(self) -> None:
        raise NotImplementedError

    def _forget_solution(self) -> None:
        for attr in self._FITTED:
            self.__dict__.pop(attr, None)

    def _started(self) -> bool:
        return "_n_seen" in self.__dict__

    def _checked_batch(self, X: LatentsLike, Y: LatentsLike | None) -> LatentPair:
        # finiteness is checked on the batch statistics (merged_moments), not element by element
        x, y = self._check_pair(X, Y, check_finite=False)
        seen = self.__dict__.get("_sizes_seen")
        if seen is not None and (x.shape[1], y.shape[1]) != seen:
            raise ShapeMismatchError(f"X has {x.shape[1]} features, but {type(self).__name__} is expecting {seen[0]} "
                                     f"features as input: partial_fit started with latents of size {seen[0]} -> "
                                     f"{seen[1]}, this batch has {x.shape[1]} -> {y.shape[1]}")
        self._sizes_seen = (x.shape[1], y.shape[1])
        self._y_1d = is_1d(Y)
        return x, y

    def _add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x):
            self._accumulate(x, y)
            self._n_seen += len(x)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: LatentsLike, Y: LatentsLike | None) -> Self:
        """Fit from all pairs at once, streamed through the statistics in row chunks, solved once."""
        self._validate_params()
        self._reset()
        x, y = self._checked_batch(X, Y)
        with one_sample(len(x)):
            self._prepare(x, y)
        for start in range(0, len(x), FIT_CHUNK_ROWS):
            self._add(x[start:start + FIT_CHUNK_ROWS], y[start:start + FIT_CHUNK_ROWS])
        return self.solve()

    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """A look at all pairs before they are accumulated (``fit`` only); nothing by default."""

    def fit_batches(self, batches: Iterable[tuple[LatentsLike, LatentsLike]]) -> Self:
        """Fit from an iterable of (X_batch, Y_batch) pairs, solving once at the end."""
        self._validate_params()
        self._reset()
        for xb, yb in batches:
            self._add(*self._checked_batch(xb, yb))
        return self.solve()

    def partial_fit(self, X: LatentsLike, Y: LatentsLike) -> Self:
        """Add a batch of pairs to the statistics; the map is solved once, when first used."""
        if not self._started():
            self._validate_params()
            self._reset()
        self._add(*self._checked_batch(X, Y))
        self._forget_solution()
        return self

    def solve(self) -> Self:
        """Solve from the statistics accumulated so far."""
        self._validate_params()
        if not self._pending():
            if "n_features_in_" in self.__dict__:
                return self
            raise UnderdeterminedError(f"this {type(self).__name__} has seen no latent pairs; it needs images to "
                                       "fit on")
        with one_sample(self._n_seen):
            self._solve()
        self.n_features_in_, self.n_targets_ = self._sizes_seen
        self._solved_n = self._n_seen
        return self

    # ------------------------------------------------------------------ merging
    def merge(self, other: Self) -> Self:
        """Add ``other``'s statistics to this estimator's (both fed disjoint pairs, this one's first): the map then
        solves as if one estimator had seen all the pairs. ``other`` is left as it was."""
        if type(other) is not type(self) or other.get_params() != self.get_params():
            raise ConfigError(f"cannot merge a {type(other).__name__}({other.get_params()}) into a "
                              f"{type(self).__name__}({self.get_params()}): only the same estimator merges")
        if not other._started() or not other._n_seen:
            return self
        if not self._started():
            self._validate_params()
            self._reset()
        seen, theirs = self.__dict__.get("_sizes_seen"), other._sizes_seen
        if seen is not None and seen != theirs:
            raise ShapeMismatchError(f"cannot merge latents of size {theirs[0]} -> {theirs[1]} into {seen[0]} -> "
                                     f"{seen[1]}")
        self._sizes_seen = theirs
        self._y_1d = other.__dict__.get("_y_1d", False)
        self._merge_from(other)
        self._n_seen += other._n_seen
        self._forget_solution()
        return self

    def _merge_from(self, other: Self) -> None:
        """Fold ``other``'s statistics into this one's; an estimator with more state than them extends this."""
        for mine, theirs in zip(self._accumulators(), other._accumulators()):
            mine.merge(copy_moments(theirs))

    def all_reduce(self, d_source: int, d_target: int) -> Self:
        """Add up the statistics of every rank of a torch.distributed run (each rank fed its shard of the pairs,
        rank 0 the first); every rank then solves the same system, as one process would. In one process nothing
        changes. The sizes serve a rank that saw no pairs."""
        from latentmap import distributed

        if not self._started():
            self._validate_params()
            self._reset()
        if not distributed.active():
            return self
        self._sizes_seen = (int(d_source), int(d_target))
        self._before_all_reduce()
        for name, count in self._statistics.items():
            if count == 1:
                setattr(self, name, distributed.all_reduce_moments(getattr(self, name), d_source, d_target))
            else:
                setattr(self, name, [distributed.all_reduce_moments(m, d_source, d_target)
                                     for m in getattr(self, name)])
        self._n_seen = distributed.all_reduce_count(self._n_seen)
        self._forget_solution()
        return self

    def _before_all_reduce(self) -> None:
        """Make the ranks agree on whatever the statistics depend on (piecewise: the cells); nothing by default."""

    # ------------------------------------------------------------------ using the map
    def __sklearn_is_fitted__(self) -> bool:
        return "n_features_in_" in self.__dict__ or self._pending()

    def _check_fitted(self) -> None:
        if "n_features_in_" in self.__dict__:
            return
        if "_sizes_seen" in self.__dict__ and self._pending():
            try:
                self.solve()
            except UnderdeterminedError as exc:
                raise UnderdeterminedError(f"map is not fitted yet: {exc}") from None
            return
        raise MapNotFittedError(f"this {type(self).__name__} is not fitted yet; call fit or partial_fit with latent "
                                "pairs first")

    def __getattr__(self, name: str) -> Any:
        # learned attributes after partial_fit: solve once, on first use
        if name.endswith("_") and not name.startswith("_") and "_sizes_seen" in self.__dict__ and self._pending():
            self.solve()
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
