"""``LinearMap``: a least-squares linear map between two latent spaces, z_B ≈ z_A @ coef_ᵀ + intercept_.

A scikit-learn estimator (``fit``/``partial_fit``/``transform``/``predict``/``score``, works
with ``sklearn.base.clone``) that takes numpy arrays or torch tensors and answers in the kind
it was given.

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
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator

from latentmap.errors import (ConfigError, NonFiniteError, NotFittedError, ShapeMismatchError,
                              UnderdeterminedError)
from latentmap.maps.solvers import gcv_alpha, solve_spd
from latentmap.stats import CHUNK_ROWS, Moments, r2_from_sums, r2_score

METHODS = ("lstsq", "procrustes")
AUTO_ALPHA = "auto"
# fit() streams whole arrays through the statistics in chunks of this many rows (Moments.update's chunk)
FIT_CHUNK_ROWS = CHUNK_ROWS


class FewPairsWarning(UserWarning):
    """A map fitted on no more pairs than it has parameters per target: its training R² means nothing."""


def _as_tensor(a, what: str, check_finite: bool = True) -> tuple[torch.Tensor, str]:
    """numpy/torch 2-D input -> (tensor, kind) without copying when possible."""
    if isinstance(a, torch.Tensor):
        t, kind = a.detach(), "torch"
    elif isinstance(a, np.ndarray):
        if a.dtype.kind not in "fiub":  # strings, objects, complex numbers: no latents
            raise ShapeMismatchError(f"{what} must hold real numbers, got numpy dtype {a.dtype} instead")
        t, kind = torch.from_numpy(np.ascontiguousarray(a)), "numpy"
    else:
        raise ShapeMismatchError(f"{what} must be a numpy array or torch tensor, got {type(a).__name__} instead")
    if t.ndim != 2:
        raise ShapeMismatchError(f"{what} must be 2-dimensional [N, d], got shape {tuple(t.shape)} instead")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ShapeMismatchError(f"{what} must hold real numbers, got dtype {t.dtype} instead")
    if check_finite and t.dtype.is_floating_point and not torch.isfinite(t).all():
        _raise_non_finite(t, what)
    return t, kind


def _raise_non_finite(t: torch.Tensor, what: str):
    bad = int((~torch.isfinite(t)).any(dim=1).sum()) if t.dtype.is_floating_point else 0
    if bad:
        raise NonFiniteError(f"{what} contain NaN or infinite values (in {bad} of {len(t)} rows)")
    raise NonFiniteError(f"{what} hold values too large for float64 statistics (their squares overflow)")


class LinearMap(BaseEstimator):
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

    _parameter_constraints = {
        "bias": "True or False",
        "alpha": "a finite number >= 0 or 'auto'",
        "method": f"one of {', '.join(METHODS)}",
    }
    _FITTED = ("coef_", "intercept_", "alpha_", "n_features_in_", "n_targets_", "n_samples_seen_", "fit_metrics_")

    def __init__(self, bias: bool = True, alpha: float | str = 0.0, method: str = "lstsq"):
        self.bias = bias
        self.alpha = alpha
        self.method = method

    # ------------------------------------------------------------------ validation
    def _valid(self, name: str) -> bool:
        value = getattr(self, name)
        if name == "bias":
            return isinstance(value, (bool, np.bool_))
        if name == "method":
            return value in METHODS
        if value == AUTO_ALPHA:
            return True
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        return bool(np.isfinite(value) and value >= 0)

    def _validate_params(self) -> None:
        """Check every hyperparameter against ``_parameter_constraints`` (once per fit)."""
        for name, expected in self._parameter_constraints.items():
            if not self._valid(name):
                raise ConfigError(f"{name} must be {expected}, got {getattr(self, name)!r} instead")
        if self.method == "procrustes" and self.alpha != 0:
            raise ConfigError(f"alpha={self.alpha!r} applies to method 'lstsq' only, not {self.method!r}")

    def _check_pair(self, X, Y):
        # finiteness is checked on the batch statistics (d² numbers instead of N·d), see _accumulate
        x, kind = _as_tensor(X, "source latents X", check_finite=False)
        y, _ = _as_tensor(Y, "target latents Y", check_finite=False)
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(
                f"X and Y must have the same number of rows (one pair per image), got {x.shape[0]} and {y.shape[0]}"
            )
        moments = self.__dict__.get("_moments")
        if moments is not None and moments.n:
            d_x, d_y = moments.mean_x.shape[0], moments.mean_y.shape[0]
            if x.shape[1] != d_x or y.shape[1] != d_y:
                raise ShapeMismatchError(
                    f"partial_fit started with latents of size {d_x} -> {d_y}, this batch has "
                    f"{x.shape[1]} -> {y.shape[1]}"
                )
        return x, y.to(x.device), kind

    # ------------------------------------------------------------------ accumulation
    def _reset(self) -> None:
        self._moments = Moments(full=True)
        self._forget_solution()

    def _forget_solution(self) -> None:
        for attr in self._FITTED:
            self.__dict__.pop(attr, None)
        self._cache = {}

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold pairs into the float64 centred statistics (on the batch's device), chunk by chunk.

        A NaN or inf anywhere reaches the chunk's cross-products, which are checked (d² numbers, not N·d)
        before they touch the statistics."""
        try:
            self._moments.update(x, y, check_finite=True)
        except NonFiniteError as exc:
            if getattr(exc, "operand", "x") == "x":
                _raise_non_finite(x, "source latents X")
            _raise_non_finite(y, "target latents Y")

    # ------------------------------------------------------------------ public fitting API
    def fit(self, X, Y):
        """Fit from all pairs at once (rows of X and Y are encodings of the same images).

        The statistics are streamed over row chunks, so the only copies are chunk-sized.
        """
        self._validate_params()
        self._reset()
        x, y, _ = self._check_pair(X, Y)
        self._accumulate(x, y)  # Moments.update reads the arrays in chunks of FIT_CHUNK_ROWS rows
        self._solve()
        return self

    def fit_batches(self, batches):
        """Fit from an iterable of (X_batch, Y_batch) pairs, solving once at the end."""
        self._validate_params()
        self._reset()
        for xb, yb in batches:
            x, y, _ = self._check_pair(xb, yb)
            self._accumulate(x, y)
        if self._moments.n == 0:
            raise UnderdeterminedError("fit_batches got no pairs: the map needs at least one batch of latents")
        self._solve()
        return self

    def partial_fit(self, X_batch, Y_batch):
        """Add a batch of pairs to the statistics; the map is solved once, when first used.

        While fewer pairs than unknowns have arrived (and ``alpha == 0``), using the map raises
        the underdetermined error.
        """
        if self.__dict__.get("_moments") is None:
            self._validate_params()
            self._reset()
        x, y, _ = self._check_pair(X_batch, Y_batch)
        self._accumulate(x, y)
        self._forget_solution()
        return self

    def all_reduce(self, d_source: int, d_target: int) -> "LinearMap":
        """Add up the statistics of every rank of a torch.distributed run (each rank fed its shard of the pairs);
        every rank then solves the same system. In one process nothing changes. The sizes serve a rank that saw
        no pairs."""
        from latentmap.distributed import all_reduce_moments

        if self.__dict__.get("_moments") is None:
            self._validate_params()
            self._reset()
        self._moments = all_reduce_moments(self._moments, d_source, d_target, full=True)
        self._forget_solution()
        return self

    def __getattr__(self, name: str):
        # fitted attributes after partial_fit: solve once, on first use
        if name in LinearMap._FITTED and self.__dict__.get("_moments") is not None and self._moments.n:
            self._solve()
            return self.__dict__[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    # ------------------------------------------------------------------ solving
    def min_samples(self, d_source: int) -> int:
        """Pairs needed for a unique unpenalized least-squares fit: d (bias-free) or d+1 (affine)."""
        return d_source + (1 if self.bias else 0)

    def solve(self) -> "LinearMap":
        """Solve from the statistics accumulated so far; raises if they do not determine the map."""
        self._validate_params()
        if self.__dict__.get("_moments") is None or not self._moments.n:
            raise NotFittedError("this LinearMap has seen no latent pairs; call partial_fit first")
        self._solve()
        return self

    def _solve(self) -> None:
        s = self._moments
        if s is None or not s.n:
            raise UnderdeterminedError("the map has seen no latent pairs (empty input); it needs at least one image")
        n, d_x, d_y = s.n, s.mean_x.shape[0], s.mean_y.shape[0]
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
            a, b, syy = s.cxx, s.cxy, float(s.cyy.sum())
        else:  # uncentred second moments: XᵀX = C + n x̄x̄ᵀ (a sum of PSD terms, no cancellation)
            a = s.cxx + torch.outer(s.mean_x, s.mean_x) * n
            b = s.cxy + torch.outer(s.mean_x, s.mean_y) * n
            syy = float((s.cyy + s.mean_y * s.mean_y * n).sum())
        n_params = d_x + (1 if self.bias else 0)
        if n <= n_params and self.method == "lstsq":
            warnings.warn(f"the map is fitted on {n} pairs for {n_params} parameters per target dimension: it can "
                          "reproduce its fitting pairs whatever it is worth, so judge it on held-out images "
                          "(leave-one-out R², or map eval)", FewPairsWarning, stacklevel=3)
        gcv = None
        if auto:
            alpha, gcv = gcv_alpha(a, b, syy, n, intercept=bool(self.bias))
        if self.method == "procrustes":
            u, _sv, vh = torch.linalg.svd(b)
            w = u @ vh
            condition = float("nan")
        else:
            w, condition = solve_spd(a, b, alpha)
        intercept = s.mean_y - s.mean_x @ w if self.bias else torch.zeros_like(s.mean_y)
        self.coef_ = w.T.cpu().numpy()
        self.intercept_ = intercept.cpu().numpy()
        self.alpha_ = alpha
        self.n_features_in_ = d_x
        self.n_targets_ = d_y
        self.n_samples_seen_ = int(n)
        self._cache = {}
        self.fit_metrics_ = self._training_metrics(w, intercept, condition)
        self.fit_metrics_["alpha"] = alpha
        if gcv is not None:
            self.fit_metrics_["gcv"] = gcv

    def _training_metrics(self, w: torch.Tensor, intercept: torch.Tensor, condition: float) -> dict:
        """R² and MSE on the fitting pairs, from the statistics alone (no stored samples)."""
        s = self._moments
        n = s.n
        # residual r = (y-ȳ) - (x-x̄)W + (ȳ - x̄W - b): centred part plus a constant offset
        sse = s.cyy - 2 * (w * s.cxy).sum(0) + (w * (s.cxx @ w)).sum(0)
        offset = s.mean_y - s.mean_x @ w - intercept
        sse = sse.clamp_min(0) + n * offset * offset
        r2 = r2_from_sums(sse, s.cyy)
        return {"n_pairs": int(n), "latent_mse": float(sse.sum() / (n * len(sse))), "r2": float(r2.mean()),
                "condition_number": condition}

    # ------------------------------------------------------------------ using the map
    def _check_fitted(self) -> None:
        if "coef_" in self.__dict__:
            return
        if self.__dict__.get("_moments") is not None and self._moments.n:
            try:
                self._solve()
            except UnderdeterminedError as exc:
                raise UnderdeterminedError(f"map is not fitted yet: {exc}") from None
            return
        raise NotFittedError("this LinearMap is not fitted yet; call fit or partial_fit with latent pairs first")

    def _params_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:  # the [d_source, d_target] matrix that right-multiplies row latents
            self._cache[key] = (torch.as_tensor(self.coef_.T, dtype=torch.float64).to(device),
                                torch.as_tensor(self.intercept_, dtype=torch.float64).to(device))
        return self._cache[key]

    def transform(self, X):
        """Map source latents [N, d_source] to target latents [N, d_target], same kind and float dtype as X."""
        self._check_fitted()
        x, kind = _as_tensor(X, "source latents X")
        if x.shape[1] != self.n_features_in_:
            raise ShapeMismatchError(
                f"map expects source latents of size {self.n_features_in_}, got shape {tuple(x.shape)}"
            )
        w, intercept = self._params_on(x.device)
        out = x.to(torch.float64) @ w + intercept
        out_dtype = x.dtype if x.dtype.is_floating_point else torch.float64
        out = out.to(out_dtype)
        return out.numpy() if kind == "numpy" else out

    predict = transform

    def inverse(self) -> "LinearMap":
        """The least-squares inverse map (pseudo-inverse of coef_): target latents -> source latents."""
        self._check_fitted()
        pinv = np.linalg.pinv(self.coef_)  # [d_source, d_target]: x ≈ (y − b) pinv(coef_)ᵀ
        inv = LinearMap(bias=self.bias, alpha=0.0, method=self.method)
        inv.coef_ = pinv
        inv.intercept_ = -self.intercept_ @ pinv.T
        inv.n_features_in_, inv.n_targets_ = self.n_targets_, self.n_features_in_
        inv.n_samples_seen_ = self.n_samples_seen_
        inv._cache = {}
        inv._moments = None
        return inv

    def score(self, X, Y) -> float:
        """R² of the predicted target latents, averaged uniformly over target dimensions (as sklearn)."""
        self._check_fitted()
        x, _ = _as_tensor(X, "source latents X")
        y, _ = _as_tensor(Y, "target latents Y")
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(f"X and Y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
        if y.shape[1] != self.n_targets_:
            raise ShapeMismatchError(f"map gives target latents of size {self.n_targets_}, Y has {y.shape[1]}")
        return r2_score(y, torch.as_tensor(self.transform(x)))

    # ------------------------------------------------------------------ persistence
    def save(self, path, *, source=None, target=None, fit_source: dict | None = None,
             extra: dict | None = None, overwrite: bool = True) -> Path:
        """Write ``map.safetensors`` + ``map.json`` into the folder ``path`` atomically (see latentmap.io.map_folder)."""
        from latentmap.io.map_folder import save_map

        self._check_fitted()
        return save_map(self, path, source=source, target=target, fit_source=fit_source, extra=extra,
                        overwrite=overwrite)

    @classmethod
    def load(cls, path) -> "LinearMap":
        """Read a map folder written by :meth:`save`; ``info_`` holds its JSON."""
        from latentmap.io.map_folder import read_map

        info, coef, intercept = read_map(path)
        params = {k: v for k, v in info.get("hyperparameters", {}).items() if k in ("bias", "alpha", "method")}
        out = cls(**params)
        out.coef_, out.intercept_ = coef, intercept
        out.alpha_ = float(info.get("fit_metrics", {}).get("alpha", 0.0 if out.alpha == AUTO_ALPHA else out.alpha))
        out.n_targets_, out.n_features_in_ = out.coef_.shape
        out.n_samples_seen_ = int(info.get("n_samples_seen", 0))
        out.fit_metrics_ = dict(info.get("fit_metrics", {}))
        out.info_ = info
        out._cache, out._moments = {}, None
        return out
