"""``LinearMap``: a least-squares linear map between two latent spaces, z_B ≈ z_A @ coef_ᵀ + intercept_.

A scikit-learn estimator (``fit``/``partial_fit``/``transform``/``predict``/``score``, works
with ``sklearn.base.clone``) that takes numpy arrays or torch tensors and answers in the kind
it was given. It sits on :class:`AffineEstimator` (here), the streaming base
(:class:`~latentmap.maps.base.StreamingMapEstimator`) of every map that is one affine map solved
from one accumulator of moments (Procrustes and Adam too).

Fitting is exact and streaming: every batch only updates float64 sufficient statistics on the
batch's device (:class:`latentmap.stats.Moments`) — the count, the means of X and Y, and the
centred cross-products Σ(x-x̄)(x-x̄)ᵀ, Σ(x-x̄)(y-ȳ)ᵀ, Σ(y-ȳ)², merged between batches with Chan's
pairwise update (XᵀX, XᵀY and the sums, kept in a form that does not cancel when the means are
large). ``fit`` streams whole arrays through the same statistics in chunks, and ``partial_fit``
only accumulates: the system is solved once, when the coefficients are first used.
Memory is O(d²) whatever the number of images. The solve is a Cholesky factorization of the
(Jacobi-scaled) normal equations, falling back to a truncated eigendecomposition when the
system is singular or too ill-conditioned for Cholesky to be accurate.

Conventions:

* ``bias=True`` fits an intercept. Like scikit-learn's ``Ridge`` the intercept is not
  penalized: the data are centered, the ridge problem is solved on the centered data, and
  ``intercept_ = ȳ - x̄ @ coef_ᵀ``. ``coef_`` has scikit-learn's shape [n_targets, n_features].
* ``bias=False`` is the paper's bias-free map (a single matrix); ``alpha`` then penalizes the
  whole matrix, like ``Ridge(fit_intercept=False)``.
* ``alpha="auto"`` chooses the ridge penalty by generalized cross-validation (Golub, Heath &
  Wahba 1979) from the same statistics: GCV(α) = n·RSS(α) / (n − df(α))², with RSS and the
  effective degrees of freedom df read off one eigendecomposition of XᵀX. It matters for
  support-set fits, where the number of images is close to the latent size and the exact
  solution interpolates the anchors; with many images it picks a negligible penalty.
* ``method="procrustes"`` fits the orthogonal map (equal dimensions) by SVD of the
  (centered when ``bias=True``) cross-covariance; ``alpha`` does not apply to it.
"""

from __future__ import annotations

import warnings
import weakref
from numbers import Real
from typing import Any

import numpy as np
import torch

from latentmap.constants import AUTO_ALPHA
from latentmap.errors import CheckpointError, ConfigError, ShapeMismatchError, UnderdeterminedError
from latentmap.maps.base import FIT_CHUNK_ROWS, StreamingMapEstimator
from latentmap.maps.checks import Interval, StrOptions, merged_moments, pair_moments, raise_non_finite
from latentmap.maps.solvers import gcv_alpha, solve_spd
from latentmap.stats import Moments, r2_from_sums

METHODS = ("lstsq", "procrustes")
# an affine map's tensors, by device: ((device, id(coef_), id(intercept_)), coef_ᵀ, intercept_)
_ON_DEVICE: weakref.WeakKeyDictionary[AffineEstimator, tuple[tuple[str, int, int], torch.Tensor, torch.Tensor]] = (
    weakref.WeakKeyDictionary())


def affine_fit_metrics(s: Moments, w: torch.Tensor, intercept: torch.Tensor) -> dict[str, float]:
    """R² and latent MSE on the fitting pairs of the affine map y = x W + b, from the statistics alone.

    ``s`` holds the moments of the pairs, ``w`` [d_x, d_y] right-multiplies row latents and ``intercept`` is b;
    the answer has ``n_pairs``, ``latent_mse`` and ``r2`` (averaged over target dimensions)."""
    n, (mean_x, cxx, mean_y, cxy, cyy) = s.n, pair_moments(s)
    # residual r = (y-ȳ) - (x-x̄)W + (ȳ - x̄W - b): centred part plus a constant offset
    sse = cyy - 2 * (w * cxy).sum(0) + (w * (cxx @ w)).sum(0)
    offset = mean_y - mean_x @ w - intercept
    sse = sse.clamp_min(0) + n * offset * offset
    return {"n_pairs": int(n), "latent_mse": float(sse.sum() / (n * len(sse))),
            "r2": float(r2_from_sums(sse, cyy).mean())}


# partial_fit's small float32 CPU batches are gathered into a row buffer of at most this many bytes (and
# FIT_CHUNK_ROWS rows) before they reach the float64 statistics: one BLAS call per buffer instead of one per batch,
# and the per-call work (symmetrizing, folding into the centred moments) paid once per buffer
BUFFER_BYTES = 32 * 2**20


def _buffer_rows(d_x: int, d_y: int) -> int:
    return max(1, min(FIT_CHUNK_ROWS, BUFFER_BYTES // (4 * (d_x + d_y))))


def _bufferable(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


class AffineEstimator(StreamingMapEstimator):
    """A streaming estimator whose answer is one affine map y = x @ coef_.T + intercept_ (float64), solved from
    one accumulator of moments."""

    _statistics = {"_moments": 1}
    _FITTED = StreamingMapEstimator._FITTED + ("coef_", "intercept_")
    _moments: Moments
    _rows: list[Any]  # partial_fit's row buffer: [x rows (np.ndarray), y rows (np.ndarray), rows filled (int)]
    coef_: np.ndarray  # [d_target, d_source]
    intercept_: np.ndarray  # [d_target]

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        rows = _buffer_rows(x.shape[1], y.shape[1])
        if not (_bufferable(x) and _bufferable(y) and 2 * len(x) <= rows):
            self._flush()
            self._moments = merged_moments(x, y, self._moments)
            return
        # small float32 batches on a CPU (partial_fit): copied into one row buffer, folded in when it is full
        xn, yn = x.numpy(), y.numpy()
        for t, a, what in ((x, xn, "source latents X"), (y, yn, "target latents Y")):
            if not np.isfinite(a).all():  # refused before it touches the statistics, as merged_moments does
                raise_non_finite(t, what)
        buf: list[Any] | None = self.__dict__.get("_rows")
        if buf is None or buf[0].shape != (rows, xn.shape[1]) or buf[1].shape[1] != yn.shape[1]:
            self._flush()
            buf = self._rows = [np.empty((rows, xn.shape[1]), np.float32), np.empty((rows, yn.shape[1]), np.float32), 0]
        if buf[2] + len(xn) > rows:
            self._flush()
        k = buf[2]
        buf[0][k:k + len(xn)], buf[1][k:k + len(xn)] = xn, yn
        buf[2] = k + len(xn)

    def _flush(self) -> None:
        """Fold the buffered rows into the moments (one chunked update instead of one per small batch)."""
        buf: list[Any] | None = self.__dict__.get("_rows")
        if buf is not None and buf[2]:
            k, buf[2] = buf[2], 0
            self._moments = merged_moments(torch.from_numpy(buf[0][:k]), torch.from_numpy(buf[1][:k]), self._moments)

    def _reset(self) -> None:
        super()._reset()
        self.__dict__.pop("_rows", None)

    def _merge_from(self, other: AffineEstimator) -> None:
        self._flush()
        other._flush()  # its statistics, not what they are: other still solves as it would have
        super()._merge_from(other)

    def _before_all_reduce(self) -> None:
        self._flush()

    def _solve(self) -> None:
        self._flush()
        s = self._moments
        w, intercept = self._solve_affine(s)  # w: [d_x, d_y] right-multiplies row latents
        self.coef_ = w.T.cpu().numpy()
        self.intercept_ = intercept.cpu().numpy()
        self.n_samples_seen_ = int(s.n)
        self.fit_metrics_ = {**affine_fit_metrics(s, w, intercept), **self._extra_metrics()}

    def _solve_affine(self, s: Moments) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _extra_metrics(self) -> dict[str, float]:
        return {}

    def _params_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """coef_ᵀ [d_source, d_target] and intercept_ as float64 tensors on ``device``, kept (outside the
        estimator's __dict__) while coef_ and intercept_ stay the same arrays."""
        key = (str(device), id(self.coef_), id(self.intercept_))
        cache = _ON_DEVICE.get(self)
        if cache is None or cache[0] != key:
            cache = (key, torch.as_tensor(np.asarray(self.coef_).T, dtype=torch.float64).to(device),
                     torch.as_tensor(np.asarray(self.intercept_), dtype=torch.float64).to(device))
            _ON_DEVICE[self] = cache
        return cache[1], cache[2]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        w, intercept = self._params_on(x.device)
        return x.to(torch.float64) @ w + intercept

    def _inverse_params(self) -> dict[str, Any]:
        """The hyperparameters (keyword arguments of LinearMap) of the inverse map."""
        return {"bias": bool(np.any(self.intercept_ != 0))}

    def inverse(self) -> LinearMap:
        """The least-squares inverse (pseudo-inverse of coef_) as a LinearMap: target latents -> source latents."""
        self._check_fitted()
        pinv = np.linalg.pinv(self.coef_)  # [d_source, d_target]: x ≈ (y − b) pinv(coef_)ᵀ
        inv = LinearMap(alpha=0.0, **self._inverse_params())
        inv.coef_, inv.intercept_ = pinv, -self.intercept_ @ pinv.T
        inv.n_features_in_, inv.n_targets_ = self.n_targets_, self.n_features_in_
        inv.n_samples_seen_ = self.n_samples_seen_
        return inv

    def _state(self) -> dict[str, torch.Tensor]:
        return {"coef": torch.from_numpy(np.ascontiguousarray(self.coef_, dtype=np.float64)),
                "intercept": torch.from_numpy(np.ascontiguousarray(self.intercept_, dtype=np.float64))}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self.coef_, self.intercept_ = tensors["coef"].numpy(), tensors["intercept"].numpy()

    def _sizes(self) -> tuple[int, int]:
        return self.coef_.shape[1], self.coef_.shape[0]


class FewPairsWarning(UserWarning):
    """A map fitted on no more pairs than it has parameters per target: its training R² means nothing."""


class LinearMap(AffineEstimator):
    """Affine (or linear) least-squares map Y ≈ X @ coef_.T + intercept_ between latent spaces.

    Parameters
    ----------
    bias
        Fit an intercept (default True); False is the paper's bias-free map.
    alpha
        Ridge penalty (>= 0) on ``coef_`` (never on the intercept), or ``"auto"``: chosen by GCV, as ``alpha_``.
    method
        ``"lstsq"`` (least squares / ridge) or ``"procrustes"`` (orthogonal map, equal sizes).

    Attributes
    ----------
    coef_, intercept_, alpha_, n_features_in_, n_targets_, n_samples_seen_, fit_metrics_
        As in scikit-learn's linear models (coef_: [n_targets, n_features]); fit_metrics_: R², MSE, condition number.
    """

    estimator_name = "linear"
    _parameter_constraints = {
        "bias": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({AUTO_ALPHA})],
        "method": [StrOptions(set(METHODS))],
    }
    _FITTED = AffineEstimator._FITTED + ("alpha_",)
    alpha_: float
    _extra: dict[str, float]  # the solve's own metrics: condition number, alpha, and GCV's score with "auto"

    def __init__(self, bias: bool = True, alpha: float | str = 0.0, method: str = "lstsq") -> None:
        self.bias = bias
        self.alpha = alpha
        self.method = method

    def _validate_combination(self) -> None:
        if self.method == "procrustes" and self.alpha != 0:
            raise ConfigError(f"alpha={self.alpha!r} applies to method 'lstsq' only, not {self.method!r}")

    # ------------------------------------------------------------------ solving
    def min_samples(self, d_source: int) -> int:
        """Pairs needed for a unique unpenalized least-squares fit: d (bias-free) or d+1 (affine)."""
        return d_source + (1 if self.bias else 0)

    def _solve_affine(self, s: Moments) -> tuple[torch.Tensor, torch.Tensor]:
        n, (mean_x, cxx, mean_y, cxy, cyy) = s.n, pair_moments(s)
        d_x, d_y = mean_x.shape[0], mean_y.shape[0]
        auto = self.alpha == AUTO_ALPHA
        alpha = 0.0 if auto else float(self.alpha)
        needed = self.min_samples(d_x)
        if self.method == "lstsq" and alpha == 0 and not auto and n < needed:
            kind = "an affine map (bias=True)" if self.bias else "a bias-free map"
            raise UnderdeterminedError(
                f"fitting {kind} from {d_x}-dimensional latents needs at least {needed} image pairs, got {n}; "
                f"use more images, set alpha > 0 (ridge)"
                + (", or drop the bias (--no-bias)" if self.bias and n >= d_x else "")
            )
        if self.method == "procrustes" and d_x != d_y:
            raise ShapeMismatchError(
                f"procrustes needs equal latent sizes, got source {d_x} and target {d_y}; use method 'lstsq'"
            )
        if self.bias:
            a, b, syy = cxx, cxy, float(cyy.sum())
        else:  # uncentred second moments: XᵀX = C + n x̄x̄ᵀ (a sum of PSD terms, no cancellation)
            a = cxx + torch.outer(mean_x, mean_x) * n
            b = cxy + torch.outer(mean_x, mean_y) * n
            syy = float((cyy + mean_y * mean_y * n).sum())
        n_params = d_x + (1 if self.bias else 0)
        if n <= n_params and self.method == "lstsq":
            warnings.warn(f"the map is fitted on {n} pairs for {n_params} parameters per target dimension: it can "
                          "reproduce its fitting pairs whatever it is worth, so judge it on held-out images "
                          "(leave-one-out R², or map eval)", FewPairsWarning, stacklevel=5)
        gcv = None
        if auto:
            alpha, gcv = gcv_alpha(a, b, syy, n, intercept=bool(self.bias))
        if self.method == "procrustes":
            u, _sv, vh = torch.linalg.svd(b)
            w = u @ vh
            condition = float("nan")
        else:
            w, condition = solve_spd(a, b, alpha)
        intercept = mean_y - mean_x @ w if self.bias else torch.zeros_like(mean_y)
        self.alpha_ = alpha
        self._extra = {"condition_number": condition, "alpha": alpha, **({} if gcv is None else {"gcv": gcv})}
        return w, intercept

    def _extra_metrics(self) -> dict[str, float]:
        return dict(self._extra)

    # ------------------------------------------------------------------ inverse and persistence
    def _inverse_params(self) -> dict[str, Any]:
        return {"bias": self.bias, "method": self.method}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        coef, intercept = tensors["coef"].numpy(), tensors["intercept"].numpy()
        coef = coef.T.copy() if info.get("format_version") == 1 else coef  # format 1 stored its transpose
        if coef.ndim != 2 or intercept.shape != (coef.shape[0],):
            raise CheckpointError(f"the map holds coef {coef.shape} and intercept {intercept.shape}, which do not "
                                  "fit together")
        self.coef_, self.intercept_ = coef, intercept
        self.alpha_ = float(info.get("fit_metrics", {}).get("alpha", 0.0 if self.alpha == AUTO_ALPHA else self.alpha))


__all__ = ["AffineEstimator", "LinearMap", "FewPairsWarning", "AUTO_ALPHA", "METHODS"]
