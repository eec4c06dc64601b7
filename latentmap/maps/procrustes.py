"""Orthogonal alignments of two latent spaces, as in the latent-translation literature.

``ProcrustesMap(variant="ortho")`` is orthogonal Procrustes after standard scaling of both
spaces (Maiorca et al., *Latent Space Translation via Semantic Alignment*, NeurIPS 2023): each
latent variable is centred and divided by its standard deviation, the rotation R maximizing
tr(Rᵀ X̃ᵀỸ) is U Vᵀ from the SVD X̃ᵀỸ = U S Vᵀ, and the answer is scaled back into the target's
units: y = ((x − x̄)/σ_x) R σ_y + ȳ. ``variant="l-ortho"`` first solves least squares between
the standardized spaces and then takes the nearest orthogonal matrix to that solution (the
orthogonal factor U Vᵀ of its SVD).

Latent spaces of different sizes: R is then the semi-orthogonal d_x × d_y matrix U Vᵀ of the
thin SVD, which is exactly the Procrustes solution on zero-padded latents (the smaller space
padded with constant-zero variables, the padding dropped from the answer): a map from the
larger space keeps its d_y best-aligned directions, a map into the larger space fills a
d_x-dimensional subspace of it.

Both variants are one affine map computed from float64 streaming statistics (means, variances
and the cross-covariance), so they support ``partial_fit`` and an exact ``inverse()``.
A latent variable with no variance at all is left unscaled (σ taken as 1), with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from latentmap.maps.checks import StrOptions, pair_moments
from latentmap.maps.linear import AffineEstimator
from latentmap.maps.solvers import solve_spd
from latentmap.stats import Moments

VARIANTS = ("ortho", "l-ortho")


class ProcrustesMap(AffineEstimator):
    """Orthogonal map between (standardized) latent spaces: ``ortho`` (Procrustes) or ``l-ortho``.

    Parameters
    ----------
    variant
        ``"ortho"`` (orthogonal Procrustes) or ``"l-ortho"`` (least squares, then the nearest
        orthogonal matrix).
    standardize
        Centre and scale every latent variable to unit variance in both spaces before
        aligning (Maiorca et al.); False only centres them (Procrustes with a translation).

    Attributes
    ----------
    coef_, intercept_
        [n_targets, n_features] and [n_targets]: the whole map, y = x @ coef_.T + intercept_.
    rotation_
        [n_features, n_targets]: the (semi-)orthogonal matrix between the standardized spaces.
    source_scale_, target_scale_
        The standard deviations used (ones when ``standardize=False``).
    """

    estimator_name = "procrustes"
    _parameter_constraints = {
        "variant": [StrOptions(set(VARIANTS))],
        "standardize": ["boolean"],
    }
    _FITTED = AffineEstimator._FITTED + ("rotation_", "source_scale_", "target_scale_")

    def __init__(self, variant: str = "ortho", standardize: bool = True) -> None:
        self.variant = variant
        self.standardize = standardize

    def _solve_affine(self, s: Moments) -> tuple[torch.Tensor, torch.Tensor]:
        n, (mean_x, cxx, mean_y, cxy, cyy) = s.n, pair_moments(s)
        if self.standardize:
            sx, sy = _scale(cxx.diagonal() / n, "source"), _scale(cyy / n, "target")
        else:
            sx, sy = torch.ones_like(mean_x), torch.ones_like(mean_y)
        cross = cxy / sx[:, None] / sy[None, :]  # X̃ᵀỸ
        if self.variant == "ortho":
            target = cross
        else:  # least squares between the standardized spaces, then its orthogonal factor
            target, _ = solve_spd(cxx / sx[:, None] / sx[None, :], cross, 0.0)
        u, _sv, vh = torch.linalg.svd(target, full_matrices=False)
        rotation = u @ vh
        w = rotation / sx[:, None] * sy[None, :]
        self.rotation_ = rotation.cpu().numpy()
        self.source_scale_, self.target_scale_ = sx.cpu().numpy(), sy.cpu().numpy()
        return w, mean_y - mean_x @ w

    def _state(self) -> dict[str, torch.Tensor]:
        return {**super()._state(), "rotation": torch.from_numpy(self.rotation_),
                "source_scale": torch.from_numpy(self.source_scale_),
                "target_scale": torch.from_numpy(self.target_scale_)}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        super()._load_state(tensors, info)
        self.rotation_ = tensors["rotation"].numpy()
        self.source_scale_, self.target_scale_ = tensors["source_scale"].numpy(), tensors["target_scale"].numpy()


def _scale(variance: torch.Tensor, side: str) -> torch.Tensor:
    std = variance.clamp_min(0).sqrt()
    dead = std <= 0
    if bool(dead.any()):
        warnings.warn(f"{int(dead.sum())} {side} latent variable(s) never vary: left unscaled by the standard "
                      "scaling", UserWarning, stacklevel=6)
    return torch.where(dead, torch.ones_like(std), std)
