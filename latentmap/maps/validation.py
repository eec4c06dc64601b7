"""Held-out quality of a map fitted on few pairs: exact leave-one-out residuals of ridge least squares.

With n pairs and p = d (+1 with an intercept) parameters per target, a fit with n ≤ p
interpolates its pairs (training R² = 1 whatever the map is worth), so reports show the
leave-one-out R² instead: for ridge with fixed α the held-out residual of pair i is
e_i / (1 − h_ii), with h the diagonal of the hat matrix (intercept unpenalized).
"""

from __future__ import annotations

import numpy as np
import torch

from latentmap.maps.checks import LatentsLike
from latentmap.stats import r2_from_sums


def leave_one_out_r2(x: LatentsLike, y: LatentsLike, *, bias: bool, alpha: float) -> float | None:
    """Mean over target dimensions of the leave-one-out R²; None when it is undefined (n < 3 or h_ii = 1)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    n = len(x)
    if n < 3:
        return None
    xc, yc = (x - x.mean(0), y - y.mean(0)) if bias else (x, y)
    gram = xc.T @ xc + float(alpha) * torch.eye(x.shape[1], dtype=torch.float64)
    solve = torch.linalg.lstsq(gram, xc.T).solution  # [d, n]; lstsq: gram may be singular when alpha = 0
    w = solve @ yc
    hat = (xc * solve.T).sum(1) + (1.0 / n if bias else 0.0)
    if bool((hat >= 1 - 1e-9).any()):
        return None  # some pair fixes its own prediction: it cannot be left out
    resid = (yc - xc @ w) / (1 - hat)[:, None]
    sst = (y - y.mean(0)).pow(2).sum(0)
    return float(r2_from_sums(resid.pow(2).sum(0), sst).mean())
