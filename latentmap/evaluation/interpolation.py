"""Interpolation between encoded images, in a model's latent space and carried into another's.

For pairs of images (x0, x1) with encodings z0, z1 the model decodes two paths, each at the
same fractions t in [0, 1]:

- **linear**: z(t) = (1 - t) z0 + t z1;
- **spherical** (slerp): around the prior's centre c, in the prior's own units (whitened by the
  covariance of prior samples for a prior other than N(0, I), such as StyleGAN's W):
  u_i = (z_i - c) W, u(t) = sin((1 - t) θ)/sin θ · u0 + sin(t θ)/sin θ · u1, z(t) = c + u(t) W⁻¹.

A linear path between two typical points cuts through the middle of a high-dimensional prior,
where its radius drops below anything the model was trained to decode; the spherical path keeps
the radius. The radius along each path (in the prior's units, over its typical radius) says how
far the path leaves the prior's shell.

With a fitted map M from the model A into another model B, the same paths are carried into B's
space, z_B(t) = M(z(t)), and decoded by B: the per-image MSE between A's and B's decoded paths
says how well the map carries not only encodings but the space between them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.metrics import per_image_mse
from latentmap.io.frames import FrameRepr, caption
from latentmap.evaluation.samplers import PriorSampler, TypicalRegion, typical_region

if TYPE_CHECKING:
    from latentmap.maps.base import MapEstimator
    from latentmap.models.base import LatentModel

PATHS = ("linear", "spherical")
STEPS = 8


@dataclass
class InterpolationResult(FrameRepr):
    """Linear and spherical latent paths between pairs of images, decoded (and carried into a partner model)."""

    model: str
    kind: str
    t: np.ndarray  # [T] path fractions
    endpoints: torch.Tensor  # [P, 2, C, H, W] the images interpolated between
    images: dict[str, torch.Tensor]  # path -> [P, T, C, H, W] decoded by the model
    radius: dict[str, np.ndarray]  # path -> [P, T] distance from the prior's centre, in the prior's units
    radius_typical: float  # median distance of prior draws
    prior: str  # how the distance is measured
    pair_ids: list[str] = field(default_factory=list)  # [P] what each pair is (dataset positions), for the tables
    partner: str | None = None  # the model the paths are carried into
    map_description: str = ""
    # path -> [P, T, C, H, W] decoded by the partner after the map
    carried: dict[str, torch.Tensor] = field(default_factory=dict)
    # path -> [P, T] MSE of the carried images vs the model's
    carried_mse: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        """How many pairs of images the paths join."""
        return len(self.endpoints)

    def frame(self) -> pd.DataFrame:
        """One row per pair, path and step."""
        rows: list[dict[str, Any]] = []
        for path in PATHS:
            for p in range(self.n_pairs):
                for k, t in enumerate(self.t):
                    rows.append({"model": self.model, "pair": self.pair_ids[p] if self.pair_ids else str(p),
                                 "path": path, "t": float(t), "radius": float(self.radius[path][p, k]),
                                 "radius_ratio": float(self.radius[path][p, k] / self.radius_typical),
                                 "partner": self.partner,
                                 "carried_path_mse": float(self.carried_mse[path][p, k]) if self.carried_mse
                                 else None})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Per path: the radius at the midpoint over the prior's typical radius (mean over pairs), the
        smallest along the path, and the mean MSE of the carried path against the model's own."""
        mid = int(np.argmin(np.abs(self.t - 0.5)))
        out: dict[str, Any] = {"model": self.model, "kind": self.kind, "pairs": self.n_pairs, "steps": len(self.t),
               "prior": self.prior, "radius_typical": self.radius_typical, "partner": self.partner,
               "map": self.map_description}
        for path in PATHS:
            ratio = self.radius[path] / self.radius_typical
            out[f"{path}_midpoint_radius"] = float(ratio[:, mid].mean())
            out[f"{path}_min_radius"] = float(ratio.min())
            out[f"{path}_carried_mse"] = float(self.carried_mse[path].mean()) if self.carried_mse else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """What a report's JSON records: the summary, the fractions t, the pairs, radii and carried MSE by path."""
        return {"summary": self.summary(), "t": self.t.tolist(), "pairs": self.pair_ids,
                "radius": {k: v.tolist() for k, v in self.radius.items()},
                "carried_mse": {k: v.tolist() for k, v in self.carried_mse.items()}}

    def to_frame(self) -> pd.DataFrame:
        """One row per pair, path and step (:meth:`frame`)."""
        return self.frame()

    def _frame_caption(self) -> str:
        return caption(f"Interpolation in {self.model}'s latent space: {self.n_pairs} pairs, {len(self.t)} steps"
                       + (f", carried into {self.partner}" if self.partner else ""),
                       [self.model, *([self.partner] if self.partner else [])])


def _unwhiten(region: TypicalRegion) -> torch.Tensor | None:
    return None if region.whitening is None else torch.linalg.pinv(region.whitening)


def slerp(u0: torch.Tensor, u1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows u0, u1 [P, d] (float64) at fractions t [T]: [P, T, d].

    Where the two directions (nearly) coincide or are opposite the great circle is undefined or
    degenerate; there the path falls back to linear interpolation.
    """
    n0, n1 = u0.norm(dim=1, keepdim=True), u1.norm(dim=1, keepdim=True)
    cos = ((u0 * u1).sum(1, keepdim=True) / (n0 * n1).clamp_min(1e-300)).clamp(-1, 1)
    theta = torch.arccos(cos)  # [P, 1]
    s = torch.sin(theta)
    t = t.reshape(1, -1, 1)
    w0 = torch.sin((1 - t) * theta[:, :, None]) / s[:, :, None]
    w1 = torch.sin(t * theta[:, :, None]) / s[:, :, None]
    linear_w0, linear_w1 = 1 - t, t
    degenerate = (s < 1e-6)[:, :, None]
    w0 = torch.where(degenerate, linear_w0.expand_as(w0), w0)
    w1 = torch.where(degenerate, linear_w1.expand_as(w1), w1)
    return w0 * u0[:, None, :] + w1 * u1[:, None, :]


def latent_paths(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor,
                 region: TypicalRegion) -> dict[str, torch.Tensor]:
    """{'linear': [P, T, d], 'spherical': [P, T, d]} (float64) between rows of z0 and z1."""
    z0, z1, t = z0.double().cpu(), z1.double().cpu(), t.double()
    linear = z0[:, None, :] + t.reshape(1, -1, 1) * (z1 - z0)[:, None, :]
    centre = region.mean.double()
    u0, u1 = z0 - centre, z1 - centre
    back = _unwhiten(region)
    if back is not None:
        assert region.whitening is not None  # back is its pseudo-inverse
        u0, u1 = u0 @ region.whitening, u1 @ region.whitening
    u = slerp(u0, u1, t)
    spherical = centre + (u @ back if back is not None else u)
    return {"linear": linear, "spherical": spherical}


def _decode(model: LatentModel, z: torch.Tensor) -> torch.Tensor:
    """[P, T, d] -> [P, T, C, H, W] on CPU."""
    p, t = z.shape[:2]
    with torch.no_grad():
        images = model.decode(z.reshape(p * t, -1).float()).cpu()
    return images.reshape(p, t, *images.shape[1:])


def interpolate(model: LatentModel, x0: torch.Tensor, x1: torch.Tensor, *, steps: int = STEPS,
                partner: LatentModel | None = None, linear_map: MapEstimator | None = None,
                map_description: str = "", pair_ids: Iterable[object] | None = None,
                seed: int = 0) -> InterpolationResult:
    """Decode linear and spherical paths between encodings of the rows of ``x0`` and ``x1`` ([P, C, H, W]).

    With ``partner`` and ``linear_map`` (fitted from ``model``'s latents to ``partner``'s) the paths are
    also carried into ``partner``'s space and decoded there. ``seed`` fixes the prior samples that
    estimate the prior's centre and covariance (a prior other than N(0, I)).
    """
    if len(x0) != len(x1) or len(x0) == 0:
        raise ConfigError(f"interpolation needs as many start as end images, at least one; got {len(x0)} and "
                          f"{len(x1)}")
    if steps < 2:
        raise ConfigError(f"interpolation steps must be at least 2, got {steps} instead")
    if (partner is None) != (linear_map is None):
        raise ConfigError("carrying a path into another model needs both the partner model and the fitted map")
    region = typical_region(model, PriorSampler(model), seed)
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    with torch.no_grad():
        z0, z1 = model.encode(x0).cpu(), model.encode(x1).cpu()
    paths = latent_paths(z0, z1, t, region)
    images = {k: _decode(model, z) for k, z in paths.items()}
    radius = {k: region.distance(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2]).numpy() for k, z in paths.items()}
    result = InterpolationResult(model.name, model.kind, t.numpy(), torch.stack([x0.cpu(), x1.cpu()], dim=1), images,
                                 radius, float(region.typical), region.description,
                                 [str(p) for p in pair_ids] if pair_ids is not None else [])
    if partner is None:
        return result
    assert linear_map is not None  # checked above: both or neither
    result.partner, result.map_description = partner.name, map_description
    for k, z in paths.items():
        p, n = z.shape[:2]
        carried = torch.as_tensor(linear_map.transform(z.reshape(p * n, -1).float()))
        result.carried[k] = _decode(partner, carried.reshape(p, n, -1))
        own = images[k].reshape(p * n, *images[k].shape[2:])
        result.carried_mse[k] = per_image_mse(result.carried[k].reshape(p * n, *own.shape[1:]), own) \
            .double().reshape(p, n).numpy()
    return result


def pair_positions(n_total: int, pairs: int) -> list[tuple[int, int]]:
    """``pairs`` (start, end) positions spread over ``n_total`` images: the i-th of 2·pairs evenly spaced
    images with the (pairs + i)-th, so each pair spans half the data (different classes in a sorted set)."""
    if n_total < 2:
        raise ConfigError(f"interpolation needs at least two images, got {n_total}")
    pairs = max(1, min(pairs, n_total // 2))
    idx = np.linspace(0, n_total - 1, 2 * pairs).round().astype(int)
    return [(int(idx[i]), int(idx[pairs + i])) for i in range(pairs)]

