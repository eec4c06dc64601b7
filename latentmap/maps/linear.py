"""``LinearMap``: a least-squares linear map between two latent spaces, z_B ≈ z_A @ coef_ + intercept_.

A scikit-learn estimator (``fit``/``partial_fit``/``transform``/``predict``/``score``, works
with ``sklearn.base.clone``) that takes numpy arrays or torch tensors and answers in the kind
it was given.

Fitting is exact and streaming: every batch only updates float64 sufficient statistics on the
batch's device — the count, the means of X and Y, and the centered cross-products
Σ(x-x̄)(x-x̄)ᵀ, Σ(x-x̄)(y-ȳ)ᵀ, Σ(y-ȳ)² (merged between batches with Chan's pairwise update, which
is XᵀX, XᵀY and the sums, kept in a form that does not cancel when the means are large).
Memory is O(d²) whatever the number of images. The solve is a Cholesky factorization of the
(Jacobi-scaled) normal equations, falling back to a truncated eigendecomposition when the
system is singular or too ill-conditioned for Cholesky to be accurate.

Conventions:

* ``bias=True`` fits an intercept. Like scikit-learn's ``Ridge`` the intercept is not
  penalized: the data are centered, the ridge problem is solved on the centered data, and
  ``intercept_ = ȳ - x̄ @ coef_``.
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

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator

from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import json_default, read_json_object, read_weights, sha256_file
from latentmap.errors import (CheckpointError, ConfigError, NonFiniteError, NotFittedError, ShapeMismatchError,
                     UnderdeterminedError)

MAP_CONFIG_NAME = "map.json"
MAP_WEIGHTS_NAME = "map.safetensors"
MAP_FORMAT = "latentmap-map"
MAP_FORMAT_VERSION = 1
METHODS = ("lstsq", "procrustes")
AUTO_ALPHA = "auto"
# GCV candidates: the mean eigenvalue of XᵀX times 10^k for k on this grid
GCV_LOG10_GRID = np.linspace(-8.0, 3.0, 111)
# Cholesky on the normal equations squares the condition number; above this (scaled) condition
# estimate its answer loses more than ~4 of float64's 16 digits, so the eigen-solve takes over.
CHOLESKY_MAX_CONDITION = 1e12


class IllConditionedWarning(UserWarning):
    """The normal equations were singular: the minimum-norm solution was returned."""


def _as_tensor(a, what: str, check_finite: bool = True) -> tuple[torch.Tensor, str]:
    """numpy/torch 2-D input -> (tensor, kind) without copying when possible."""
    if isinstance(a, torch.Tensor):
        t, kind = a.detach(), "torch"
    elif isinstance(a, np.ndarray):
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
    """Affine (or linear) least-squares map Y ≈ X @ coef_ + intercept_ between latent spaces.

    Parameters
    ----------
    bias : fit an intercept (default True); False is the paper's bias-free map.
    alpha : ridge penalty (>= 0) on ``coef_``, or ``"auto"`` (chosen by generalized
        cross-validation, stored in ``alpha_``); the intercept is never penalized.
    method : ``"lstsq"`` (least squares / ridge) or ``"procrustes"`` (orthogonal map, equal sizes).
    """

    def __init__(self, bias: bool = True, alpha: float = 0.0, method: str = "lstsq"):
        self.bias = bias
        self.alpha = alpha
        self.method = method

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ConfigError(f"bias must be True or False, got {self.bias!r} instead")
        if self.alpha == AUTO_ALPHA:
            if self.method != "lstsq":
                raise ConfigError(f"alpha='auto' applies to method 'lstsq' only, got method {self.method!r}")
            return
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            raise ConfigError(f"alpha must be a non-negative number, got {self.alpha!r} instead") from None
        if not np.isfinite(alpha) or alpha < 0:
            raise ConfigError(f"alpha must be a finite number >= 0, got {self.alpha!r} instead")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r} instead")
        if self.method == "procrustes" and alpha > 0:
            raise ConfigError(f"alpha applies to method 'lstsq' only; procrustes got alpha={alpha}")

    def _check_pair(self, X, Y):
        # finiteness is checked on the batch statistics (d² numbers instead of N·d), see _accumulate
        x, kind = _as_tensor(X, "source latents X", check_finite=False)
        y, _ = _as_tensor(Y, "target latents Y", check_finite=False)
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(
                f"X and Y must have the same number of rows (one pair per image), got {x.shape[0]} and {y.shape[0]}"
            )
        if hasattr(self, "_stats") and self._stats is not None:
            d_x, d_y = self._stats["mean_x"].shape[0], self._stats["mean_y"].shape[0]
            if x.shape[1] != d_x or y.shape[1] != d_y:
                raise ShapeMismatchError(
                    f"partial_fit started with latents of size {d_x} -> {d_y}, this batch has "
                    f"{x.shape[1]} -> {y.shape[1]}"
                )
        return x, y.to(x.device), kind

    # ------------------------------------------------------------------ accumulation
    def _reset(self) -> None:
        self._stats = None
        for attr in ("coef_", "intercept_", "alpha_", "n_features_in_", "n_targets_", "n_samples_seen_",
                     "fit_metrics_"):
            self.__dict__.pop(attr, None)
        self._cache = {}

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold one batch into the float64 centered statistics (on the batch's device)."""
        if len(x) == 0:
            return
        xd, yd = x.to(torch.float64), y.to(torch.float64)
        n_b = xd.shape[0]
        mx, my = xd.mean(0), yd.mean(0)
        xc, yc = xd - mx, yd - my
        batch = {"n": n_b, "mean_x": mx, "mean_y": my, "cxx": xc.T @ xc, "cxy": xc.T @ yc,
                 "cyy": (yc * yc).sum(0)}
        # a NaN or inf anywhere in the batch reaches cxx/cxy/cyy (inf - inf = NaN in the centering)
        if not bool(torch.isfinite(batch["cxy"]).all() and torch.isfinite(batch["cxx"]).all()
                    and torch.isfinite(batch["cyy"]).all()):
            if not (torch.isfinite(xd).all() and torch.isfinite(batch["cxx"]).all()):
                _raise_non_finite(x, "source latents X")
            _raise_non_finite(y, "target latents Y")
        s = getattr(self, "_stats", None)
        if s is None:
            self._stats = batch
            return
        if s["mean_x"].device != xd.device:
            batch = {k: (v.to(s["mean_x"].device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        n_a = s["n"]
        n = n_a + n_b
        dx, dy = batch["mean_x"] - s["mean_x"], batch["mean_y"] - s["mean_y"]
        w = n_a * n_b / n
        s["cxx"] = s["cxx"] + batch["cxx"] + torch.outer(dx, dx) * w
        s["cxy"] = s["cxy"] + batch["cxy"] + torch.outer(dx, dy) * w
        s["cyy"] = s["cyy"] + batch["cyy"] + dy * dy * w
        s["mean_x"] = s["mean_x"] + dx * (n_b / n)
        s["mean_y"] = s["mean_y"] + dy * (n_b / n)
        s["n"] = n

    # ------------------------------------------------------------------ public fitting API
    def fit(self, X, Y):
        """Fit from all pairs at once (rows of X and Y are encodings of the same images)."""
        self._check_params()
        self._reset()
        x, y, _ = self._check_pair(X, Y)
        self._accumulate(x, y)
        self._solve()
        return self

    def fit_batches(self, batches):
        """Fit from an iterable of (X_batch, Y_batch) pairs, solving once at the end."""
        self._check_params()
        self._reset()
        for xb, yb in batches:
            x, y, _ = self._check_pair(xb, yb)
            self._accumulate(x, y)
        if self._stats is None:
            raise UnderdeterminedError("fit_batches got no pairs: the map needs at least one batch of latents")
        self._solve()
        return self

    def partial_fit(self, X_batch, Y_batch, *, solve: bool = True):
        """Add a batch of pairs and refit; the map is usable once enough pairs have been seen.

        While fewer pairs than unknowns have arrived (and ``alpha == 0``), the map stays
        unfitted and ``transform`` raises the underdetermined error. ``solve=False`` only
        accumulates (many batches, one :meth:`solve` at the end).
        """
        self._check_params()
        if getattr(self, "_stats", None) is None:
            self._reset()
        x, y, _ = self._check_pair(X_batch, Y_batch)
        self._accumulate(x, y)
        if not solve:
            return self
        try:
            self._solve()
        except UnderdeterminedError as exc:
            for attr in ("coef_", "intercept_"):
                self.__dict__.pop(attr, None)
            self._pending_error = exc
        return self

    # ------------------------------------------------------------------ solving
    def min_samples(self, d_source: int) -> int:
        """Pairs needed for a unique unpenalized least-squares fit: d (bias-free) or d+1 (affine)."""
        return d_source + (1 if self.bias else 0)

    def solve(self) -> "LinearMap":
        """Solve from the statistics accumulated so far; raises if they do not determine the map."""
        self._check_params()
        if getattr(self, "_stats", None) is None:
            raise NotFittedError("this LinearMap has seen no latent pairs; call partial_fit first")
        self._solve()
        return self

    def _solve(self) -> None:
        s = self._stats
        if s is None:
            raise UnderdeterminedError("the map has seen no latent pairs (empty input); it needs at least one image")
        n, d_x, d_y = s["n"], s["mean_x"].shape[0], s["mean_y"].shape[0]
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
            a, b, syy = s["cxx"], s["cxy"], float(s["cyy"].sum())
        else:  # uncentered second moments: XᵀX = C + n x̄x̄ᵀ (a sum of PSD terms, no cancellation)
            a = s["cxx"] + torch.outer(s["mean_x"], s["mean_x"]) * n
            b = s["cxy"] + torch.outer(s["mean_x"], s["mean_y"]) * n
            syy = float((s["cyy"] + s["mean_y"] * s["mean_y"] * n).sum())
        gcv = None
        if auto:
            alpha, gcv = gcv_alpha(a, b, syy, n, intercept=bool(self.bias))
        if self.method == "procrustes":
            u, _sv, vh = torch.linalg.svd(b)
            coef = u @ vh
            condition = float("nan")
        else:
            coef, condition = _solve_spd(a, b, alpha)
        intercept = s["mean_y"] - s["mean_x"] @ coef if self.bias else torch.zeros_like(s["mean_y"])
        self.coef_ = coef.cpu().numpy()
        self.intercept_ = intercept.cpu().numpy()
        self.alpha_ = alpha
        self.n_features_in_ = d_x
        self.n_targets_ = d_y
        self.n_samples_seen_ = int(n)
        self._cache = {}
        self.__dict__.pop("_pending_error", None)
        self.fit_metrics_ = self._training_metrics(coef, intercept, condition)
        self.fit_metrics_["alpha"] = alpha
        if gcv is not None:
            self.fit_metrics_["gcv"] = gcv

    def _training_metrics(self, coef: torch.Tensor, intercept: torch.Tensor, condition: float) -> dict:
        """R² and MSE on the fitting pairs, from the statistics alone (no stored samples)."""
        s = self._stats
        n = s["n"]
        # residual r = (y-ȳ) - (x-x̄)W + (ȳ - x̄W - b): centered part plus a constant offset
        sse = s["cyy"] - 2 * (coef * s["cxy"]).sum(0) + (coef * (s["cxx"] @ coef)).sum(0)
        offset = s["mean_y"] - s["mean_x"] @ coef - intercept
        sse = sse.clamp_min(0) + n * offset * offset
        sst = s["cyy"]
        r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300),
                         torch.where(sse <= 0, torch.ones_like(sse), torch.zeros_like(sse)))
        return {"n_pairs": int(n), "latent_mse": float(sse.sum() / (n * len(sse))), "r2": float(r2.mean()),
                "condition_number": condition}

    # ------------------------------------------------------------------ using the map
    def _check_fitted(self) -> None:
        if "coef_" in self.__dict__:
            return
        pending = self.__dict__.get("_pending_error")
        if pending is not None:
            raise UnderdeterminedError(f"map is not fitted yet: {pending}")
        raise NotFittedError("this LinearMap is not fitted yet; call fit or partial_fit with latent pairs first")

    def _params_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            self._cache[key] = (torch.as_tensor(self.coef_, dtype=torch.float64).to(device),
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
        coef, intercept = self._params_on(x.device)
        out = x.to(torch.float64) @ coef + intercept
        out_dtype = x.dtype if x.dtype.is_floating_point else torch.float64
        out = out.to(out_dtype)
        return out.numpy() if kind == "numpy" else out

    predict = transform

    def inverse(self) -> "LinearMap":
        """The least-squares inverse map (pseudo-inverse of coef_): target latents -> source latents."""
        self._check_fitted()
        pinv = np.linalg.pinv(self.coef_)
        inv = LinearMap(bias=self.bias, alpha=0.0, method=self.method)
        inv.coef_ = pinv
        inv.intercept_ = -self.intercept_ @ pinv
        inv.n_features_in_, inv.n_targets_ = self.n_targets_, self.n_features_in_
        inv.n_samples_seen_ = self.n_samples_seen_
        inv._cache = {}
        inv._stats = None
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
        pred = torch.as_tensor(self.transform(x), dtype=torch.float64)
        yd = y.to(pred.device, torch.float64)
        return r2_score_uniform(yd, pred)

    # ------------------------------------------------------------------ persistence
    def save(self, path, *, source=None, target=None, fit_source: dict | None = None,
             extra: dict | None = None, overwrite: bool = True) -> Path:
        """Write ``map.safetensors`` + ``map.json`` into the folder ``path`` atomically.

        ``source``/``target`` are LatentModels (or dicts with at least ``name`` and
        ``latent_dim``); their latent sizes must match the map.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        src, tgt = _describe_model(source, "source"), _describe_model(target, "target")
        for side, info, size in (("source", src, self.n_features_in_), ("target", tgt, self.n_targets_)):
            if info.get("latent_dim") is not None and int(info["latent_dim"]) != size:
                raise ShapeMismatchError(f"map has {side} latents of size {size}, {side} model "
                                         f"'{info.get('name')}' has {info['latent_dim']}")
        from latentmap import __version__

        config = {"format": MAP_FORMAT, "format_version": MAP_FORMAT_VERSION, "latentmap_version": __version__,
                  "hyperparameters": self.get_params(), "source": src, "target": tgt,
                  "fit_source": dict(fit_source or {}), "fit_metrics": dict(getattr(self, "fit_metrics_", {})),
                  "n_samples_seen": self.n_samples_seen_, **(extra or {})}
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            tensors = {"coef": torch.from_numpy(np.ascontiguousarray(self.coef_, dtype=np.float64)),
                       "intercept": torch.from_numpy(np.ascontiguousarray(self.intercept_, dtype=np.float64))}
            save_file(tensors, str(tmp / MAP_WEIGHTS_NAME))
            config["weights"] = {MAP_WEIGHTS_NAME: sha256_file(tmp / MAP_WEIGHTS_NAME)}
            (tmp / MAP_CONFIG_NAME).write_text(json.dumps(config, indent=2, default=json_default) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "LinearMap":
        """Read a map folder written by :meth:`save`; ``info_`` holds its JSON."""
        folder = Path(path)
        if not folder.is_dir():
            raise CheckpointError(f"map folder '{folder}' does not exist" if not folder.exists()
                                  else f"map '{folder}' must be a folder with {MAP_CONFIG_NAME}")
        cfg_file = folder / MAP_CONFIG_NAME
        if not cfg_file.is_file():
            raise CheckpointError(f"map folder '{folder}' has no {MAP_CONFIG_NAME}")
        info = read_json_object(cfg_file)
        if info.get("format") != MAP_FORMAT:
            raise CheckpointError(f"{cfg_file} is not a latentmap map (format {info.get('format')!r})")
        tensors = read_weights(folder, info)  # checks the sha256 recorded in map.json
        params = {k: v for k, v in info.get("hyperparameters", {}).items() if k in ("bias", "alpha", "method")}
        out = cls(**params)
        out.coef_ = tensors["coef"].numpy()
        out.intercept_ = tensors["intercept"].numpy()
        out.alpha_ = float(info.get("fit_metrics", {}).get("alpha", 0.0 if out.alpha == AUTO_ALPHA else out.alpha))
        out.n_features_in_, out.n_targets_ = out.coef_.shape
        out.n_samples_seen_ = int(info.get("n_samples_seen", 0))
        out.fit_metrics_ = dict(info.get("fit_metrics", {}))
        out.info_ = info
        out._cache, out._stats = {}, None
        return out


def gcv_alpha(a: torch.Tensor, b: torch.Tensor, syy: float, n: int, intercept: bool) -> tuple[float, float]:
    """The ridge penalty minimizing generalized cross-validation, from XᵀX (a), XᵀY (b) and ΣY² (syy).

    In the eigenbasis a = V diag(λ) Vᵀ with c = Vᵀb, the ridge solution leaves
    RSS(α) = ΣY² − Σ_i |c_i|² (2/(λ_i+α) − λ_i/(λ_i+α)²) and has df(α) = Σ_i λ_i/(λ_i+α)
    (+1 for an unpenalized intercept). Returns (alpha, GCV score per target value).
    """
    too_few = UnderdeterminedError(f"{n} image pairs are too few to choose a ridge penalty by cross-validation; "
                                   "use more images or a fixed alpha")
    if n <= (1 if intercept else 0):
        raise too_few
    evals, evecs = torch.linalg.eigh(a)
    evals = evals.clamp_min(0)
    c2 = (evecs.T @ b).pow(2).sum(1)
    d_y = b.shape[1]
    scale = float(evals.mean())
    if scale <= 0:
        raise UnderdeterminedError("the source latents do not vary: no map can be chosen by cross-validation")
    alphas = torch.as_tensor(scale * 10.0 ** GCV_LOG10_GRID, dtype=a.dtype, device=a.device)
    inv = 1.0 / (evals[None, :] + alphas[:, None])
    rss = (syy - (c2[None, :] * (2 * inv - evals[None, :] * inv * inv)).sum(1)).clamp_min(0)
    df = (evals[None, :] * inv).sum(1) + (1 if intercept else 0)
    score = torch.where(df < n, n * rss / (n - df).clamp_min(1e-300).pow(2), torch.full_like(rss, float("inf")))
    best = int(torch.argmin(score))
    if not bool(torch.isfinite(score[best])):
        raise too_few
    return float(alphas[best]), float(score[best]) / d_y


def _solve_spd(a: torch.Tensor, b: torch.Tensor, alpha: float) -> tuple[torch.Tensor, float]:
    """Solve (A + alpha I) W = B for symmetric PSD A; returns (W, condition estimate)."""
    d = a.shape[0]
    a = a + alpha * torch.eye(d, dtype=a.dtype, device=a.device) if alpha > 0 else a
    diag = torch.diagonal(a)
    if bool((diag > 0).all()):
        # Jacobi scaling: latents with very different spreads (inactive VAE variables) stop
        # inflating the condition number of the factorization.
        scale = diag.rsqrt()
        a_s = a * scale[:, None] * scale[None, :]
        chol, info = torch.linalg.cholesky_ex(a_s)
        if int(info) == 0:
            ldiag = torch.diagonal(chol)
            condition = float((ldiag.max() / ldiag.min()) ** 2)
            if condition < CHOLESKY_MAX_CONDITION:
                w = torch.cholesky_solve(b * scale[:, None], chol) * scale[:, None]
                return w, condition
    return _solve_eigh(a, b)


def _solve_eigh(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Minimum-norm solution through the eigendecomposition, dropping negligible eigenvalues."""
    evals, evecs = torch.linalg.eigh(a)
    top = float(evals.max().clamp_min(0))
    cutoff = top * a.shape[0] * torch.finfo(a.dtype).eps
    keep = evals > cutoff
    if not bool(keep.all()):
        warnings.warn(f"the normal equations are singular: {int((~keep).sum())} of {a.shape[0]} source directions "
                      "carry no information (constant or duplicated latents); returning the minimum-norm map. "
                      "Use more varied images or alpha > 0.", IllConditionedWarning, stacklevel=4)
    inv = torch.where(keep, 1.0 / evals.clamp_min(cutoff if cutoff > 0 else 1e-300), torch.zeros_like(evals))
    w = evecs @ (inv[:, None] * (evecs.T @ b))
    kept = evals[keep]
    condition = float(kept.max() / kept.min()) if len(kept) else float("inf")
    return w, condition


def r2_score_uniform(y: torch.Tensor, pred: torch.Tensor) -> float:
    """sklearn's r2_score(multioutput='uniform_average', force_finite=True) in float64 torch."""
    sse = (y - pred).pow(2).sum(0)
    sst = (y - y.mean(0)).pow(2).sum(0)
    r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300),
                     torch.where(sse == 0, torch.ones_like(sse), torch.zeros_like(sse)))
    return float(r2.mean())


def _describe_model(model, side: str) -> dict:
    if model is None:
        return {}
    if isinstance(model, dict):
        return dict(model)
    return {"name": model.name, "kind": model.kind, "latent_dim": model.latent_dim,
            "image_shape": list(model.image_shape)}
