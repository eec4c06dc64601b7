"""Solvers of the normal equations (A + αI) W = B, and the choice of α by generalized cross-validation.

Module-level functions on float64 statistics, as scikit-learn keeps its ridge solvers: a
Cholesky factorization of the Jacobi-scaled system, falling back to a truncated
eigendecomposition when the system is singular or too ill-conditioned for Cholesky to be
accurate.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from latentmap.errors import UnderdeterminedError

# GCV candidates: the mean eigenvalue of XᵀX times 10^k for k on this grid
GCV_LOG10_GRID = np.linspace(-8.0, 3.0, 111)
# Cholesky on the normal equations squares the condition number; above this (scaled) condition
# estimate its answer loses more than ~4 of float64's 16 digits, so the eigen-solve takes over.
CHOLESKY_MAX_CONDITION = 1e12


class IllConditionedWarning(UserWarning):
    """The normal equations were singular: the minimum-norm solution was returned."""


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


def solve_spd(a: torch.Tensor, b: torch.Tensor, alpha: float) -> tuple[torch.Tensor, float]:
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
    return solve_eigh(a, b)


def solve_eigh(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float]:
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
