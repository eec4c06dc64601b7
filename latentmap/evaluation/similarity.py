"""How similar two latent spaces are, on encodings of the same images: linear CKA and SVCCA.

* Linear CKA (Kornblith et al. 2019): ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) with X̃, Ỹ the centred
  encodings; 1 for identical spaces, invariant to rotations and isotropic scaling of either space
  (not to arbitrary invertible linear maps).
* SVCCA (Raghu et al. 2017): each space is reduced to the principal directions that keep
  ``keep`` (99%) of its variance, and the answer is the mean of the canonical correlations
  between the reduced spaces; invariant to any invertible linear map of the kept directions.

Both are symmetric and need only covariance blocks, so they stream: :class:`SimilarityAccumulator`
folds batches of every model's encodings into one float64 :class:`~latentmap.stats.Moments` over
the concatenated latents, and reads each pair's blocks off it. The array functions
(:func:`linear_cka`, :func:`svcca`) take numpy arrays or torch tensors [N, d] and compute in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from latentmap.errors import ShapeMismatchError
from latentmap.stats import Moments

SVCCA_KEEP = 0.99


def _as64(a: torch.Tensor | ArrayLike, what: str) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if t.ndim != 2:
        raise ShapeMismatchError(f"{what} must be 2-dimensional [N, d], got shape {tuple(t.shape)} instead")
    return t.to("cpu", torch.float64)


def _blocks(X: torch.Tensor | ArrayLike,
            Y: torch.Tensor | ArrayLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = _as64(X, "X"), _as64(Y, "Y")
    if len(x) != len(y):
        raise ShapeMismatchError(f"X and Y must encode the same images (same rows), got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ShapeMismatchError(f"similarity needs at least 2 images, got {len(x)}")
    xc, yc = x - x.mean(0), y - y.mean(0)
    return xc.T @ xc, xc.T @ yc, yc.T @ yc


def cka_from_covariances(cxx: torch.Tensor, cxy: torch.Tensor, cyy: torch.Tensor) -> float:
    """Linear CKA from the centred blocks XᵀX, XᵀY, YᵀY (any common scale)."""
    den = float(torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy))
    return float(torch.linalg.matrix_norm(cxy) ** 2) / den if den > 0 else float("nan")


def svcca_from_covariances(cxx: torch.Tensor, cxy: torch.Tensor, cyy: torch.Tensor,
                           keep: float = SVCCA_KEEP) -> float:
    """Mean canonical correlation between the top principal directions (``keep`` of the variance) of each side."""
    def reduce(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        evals, evecs = torch.linalg.eigh(c)
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        total = float(evals.sum())
        if total <= 0:
            return None, None
        k = int(torch.searchsorted(torch.cumsum(evals, 0) / total, torch.tensor(keep, dtype=evals.dtype))) + 1
        k = min(k, int((evals > evals[0] * 1e-12).sum()))
        return evecs[:, :k], evals[:k]

    vx, lx = reduce(cxx)
    vy, ly = reduce(cyy)
    if vx is None or vy is None or lx is None or ly is None:  # both None or neither, for each side
        return float("nan")
    whitened = (vx.T @ cxy @ vy) / lx.sqrt()[:, None] / ly.sqrt()[None, :]
    rho = torch.linalg.svdvals(whitened).clamp(0, 1)
    return float(rho.mean())


def linear_cka(X: torch.Tensor | ArrayLike, Y: torch.Tensor | ArrayLike) -> float:
    """Linear CKA between two encodings of the same images (rows: [N, d_x] and [N, d_y]), float64."""
    return cka_from_covariances(*_blocks(X, Y))


def svcca(X: torch.Tensor | ArrayLike, Y: torch.Tensor | ArrayLike, keep: float = SVCCA_KEEP) -> float:
    """SVCCA similarity (mean canonical correlation after keeping ``keep`` of each side's variance), float64."""
    return svcca_from_covariances(*_blocks(X, Y), keep=keep)


class SimilarityAccumulator:
    """CKA and SVCCA between every pair of several models, streamed over batches of their encodings."""

    def __init__(self, dims: list[int]) -> None:
        self.dims = list(dims)
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)]).tolist()
        self.moments = Moments(full=True)

    def update(self, latents: list[torch.Tensor]) -> None:
        """One batch: the encodings of the same images by every model, in the order of ``dims``."""
        if [int(z.shape[1]) for z in latents] != self.dims:
            raise ShapeMismatchError(f"expected latents of sizes {self.dims}, got {[int(z.shape[1]) for z in latents]}")
        self.moments.update(torch.cat([z.detach().to("cpu", torch.float64) for z in latents], dim=1))

    def all_reduce(self) -> SimilarityAccumulator:
        """torch.distributed: the moments of every rank's shard of the images added up (nothing in one process)."""
        from latentmap.distributed import all_reduce_moments

        reduced = all_reduce_moments(self.moments, self.offsets[-1], full=True)
        assert reduced is not None  # moments in, moments out
        self.moments = reduced
        return self

    def _block(self, i: int, j: int) -> torch.Tensor:
        o, cxx = self.offsets, self.moments.cxx
        assert cxx is not None  # matrices() reads blocks only once rows were added
        return cxx[o[i]:o[i + 1], o[j]:o[j + 1]]

    def matrices(self, keep: float = SVCCA_KEEP) -> dict[str, np.ndarray]:
        """{"cka": [m, m], "svcca": [m, m]} (symmetric, 1 on the diagonal)."""
        m = len(self.dims)
        out = {"cka": np.eye(m), "svcca": np.eye(m)}
        if self.moments.n < 2:
            return {k: np.full((m, m), np.nan) for k in out}
        for i in range(m):
            for j in range(i + 1, m):
                blocks = self._block(i, i), self._block(i, j), self._block(j, j)
                out["cka"][i, j] = out["cka"][j, i] = cka_from_covariances(*blocks)
                out["svcca"][i, j] = out["svcca"][j, i] = svcca_from_covariances(*blocks, keep=keep)
        return out


def spearman(x: ArrayLike, y: ArrayLike) -> tuple[float, float, int]:
    """(Spearman's rank correlation, its two-sided p-value, n) over the finite pairs of values."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan"), float("nan"), int(ok.sum())
    res = spearmanr(a[ok], b[ok])
    return float(res.statistic), float(res.pvalue), int(ok.sum())
