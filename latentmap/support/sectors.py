"""Sectors of a latent space: sign patterns over the most informative variables.

With chosen variables v_0..v_{k-1} and a threshold th >= 0, a point z lies in the sector with
sign pattern (dir_0..dir_{k-1}) when dir_j * z[v_j] > th for every j. There are 2^k sectors;
points with |z[v_j]| <= th on some chosen variable lie in none. A sector is numbered by its
bits: bit j is 1 when dir_j is +, so sector 0 is all minus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from latentmap.errors import ConfigError

NO_SECTOR = -1
# 2^k sectors are listed in the manifest; beyond this the listing (and the idea) stops making sense.
MAX_TOP_K = 16
# Default threshold: the largest candidate that keeps this share of the sectors populated at th = 0.
DEFAULT_MIN_SHARE = 0.9
THRESHOLD_QUANTILES = tuple(round(q, 2) for q in np.arange(0.0, 0.96, 0.05))


def default_top_k(size: int, latent_dim: int) -> int:
    """floor(log2(size)), so that one image per sector fits the size; at least 1, at most the latent size."""
    return max(1, min(int(math.floor(math.log2(max(size, 1)))), latent_dim, MAX_TOP_K))


def check_top_k(k: int, latent_dim: int, model_name: str = "model") -> None:
    """Refuse (ConfigError) a top-k below 1, above the latent size of ``model_name`` or above :data:`MAX_TOP_K`."""
    if k < 1:
        raise ConfigError(f"top-k must be at least 1, got {k} instead")
    if k > latent_dim:
        raise ConfigError(f"top-k must be at most the latent dimension of '{model_name}' ({latent_dim}), got {k}")
    if k > MAX_TOP_K:
        raise ConfigError(f"top-k must be at most {MAX_TOP_K} (2^k sectors are listed), got {k} instead")


def sector_codes(latents: torch.Tensor, variables: Sequence[int], threshold: float) -> torch.Tensor:
    """Sector number of every point ([N] int64), or NO_SECTOR where |z[v]| <= threshold for a chosen v."""
    if threshold < 0:
        raise ConfigError(f"threshold must be non-negative, got {threshold} instead")
    chosen = torch.as_tensor(latents)[:, list(variables)]
    inside = (chosen.abs() > threshold).all(dim=1)
    weights = 2 ** torch.arange(chosen.shape[1], dtype=torch.int64)
    codes = ((chosen > 0).long() * weights).sum(dim=1)
    return torch.where(inside, codes, torch.full_like(codes, NO_SECTOR))


def sector_signs(code: int, k: int) -> str:
    """Sector number -> its sign pattern, one character per chosen variable in ranking order."""
    if code == NO_SECTOR:
        return ""
    return "".join("+" if (code >> j) & 1 else "-" for j in range(k))


def populations(codes: torch.Tensor, k: int) -> np.ndarray:
    """How many points lie in each of the 2^k sectors."""
    inside = codes[codes != NO_SECTOR]
    return torch.bincount(inside, minlength=2 ** k).numpy()


def nonempty_count(latents: torch.Tensor, variables: Sequence[int], threshold: float) -> int:
    """How many of the 2^k sectors over ``variables`` hold at least one point at ``threshold``."""
    codes = sector_codes(latents, variables, threshold)
    return int((populations(codes, len(variables)) > 0).sum())


def default_threshold(latents: torch.Tensor, variables: Sequence[int],
                      min_share: float = DEFAULT_MIN_SHARE) -> tuple[float, dict[str, Any]]:
    """The largest threshold that keeps most sectors populated, and how it was found.

    Candidates are quantiles of |z| pooled over the chosen variables. The number of non-empty
    sectors can only fall as the threshold grows, so we keep the largest candidate with at
    least ``min_share`` of the sectors populated at threshold 0 (the most any threshold
    reaches): points far out along every chosen direction, yet most sectors represented.
    """
    if not 0 < min_share <= 1:
        raise ConfigError(f"min_share must be in (0, 1], got {min_share} instead")
    pooled = torch.as_tensor(latents)[:, list(variables)].abs().double().numpy().ravel()
    best = nonempty_count(latents, variables, 0.0)
    needed = max(1, math.ceil(min_share * best))
    chosen_q, chosen_th = 0.0, 0.0
    tried: list[dict[str, Any]] = []
    for q in THRESHOLD_QUANTILES:
        th = float(np.quantile(pooled, q)) if q > 0 else 0.0
        count = nonempty_count(latents, variables, th)
        tried.append({"quantile": q, "threshold": round(th, 6), "nonempty": count})
        if count < needed:
            break
        chosen_q, chosen_th = q, th
    rule = {"rule": f"largest quantile of |z| over the chosen variables keeping >= {min_share:.0%} of the "
                    f"sectors populated at threshold 0",
            "min_share": min_share, "nonempty_at_zero": best, "quantile": chosen_q, "candidates": tried}
    return chosen_th, rule
