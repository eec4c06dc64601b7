"""Fidelity and diversity of generated images in a named reference feature space.

Precision, recall, density and coverage follow Naeem et al. (2020), "Reliable Fidelity and
Diversity Metrics for Generative Models": each set's k-nearest-neighbour balls (radius = the
distance to the k-th nearest other point of the same set) approximate its manifold.

- precision: share of generated points inside some real ball (fidelity);
- recall: share of real points inside some generated ball (diversity);
- density: how many real balls contain a generated point, on average, divided by k;
- coverage: share of real points whose ball contains at least one generated point.

The Fréchet distance compares the Gaussians fitted to both sets (float64 moments, each covariance
unbiased, divided by n - 1 as numpy's ``np.cov`` and so pytorch-fid and torch-fidelity). The space is
a reference model's latent space, and results name it ("FD in fmnist-svae space"): it is not
Inception's space, so it is never called FID. Nearest neighbours come from scikit-learn;
the real-by-generated distances are computed in chunks, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import ConfigError
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.stats import Moments

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

DEFAULT_K = 5
_CHUNK = 2048


def _features(x: torch.Tensor | ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(torch.as_tensor(x).detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else x,
                     dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{what} features must have shape [N, d], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} features contain NaN or infinite values")
    return arr


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point to its k-th nearest other point of the same set."""
    from sklearn.neighbors import NearestNeighbors

    if len(features) <= k:
        raise ConfigError(f"k-nearest-neighbour balls with k={k} need more than {k} points, got {len(features)}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return dist[:, k]  # column 0 is the point itself


def prdc(real: torch.Tensor | ArrayLike, generated: torch.Tensor | ArrayLike, k: int = DEFAULT_K, *,
         real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``generated`` against ``real`` features (Naeem et al. 2020).

    ``real_radii`` (from :func:`knn_radii` with the same k) saves recomputing them for each generator.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k} instead")
    real_a, gen_a = _features(real, "real"), _features(generated, "generated")
    if real_a.shape[1] != gen_a.shape[1]:
        raise ConfigError(f"real and generated features must have the same size, got {real_a.shape[1]} and "
                          f"{gen_a.shape[1]}")
    real_r = knn_radii(real_a, k) if real_radii is None else np.asarray(real_radii, dtype=np.float64)
    gen_r = knn_radii(gen_a, k)
    real_t, gen_t = torch.from_numpy(real_a), torch.from_numpy(gen_a)
    real_rt, gen_rt = torch.from_numpy(real_r), torch.from_numpy(gen_r)
    in_real_balls = torch.zeros(len(gen_a), dtype=torch.float64)  # per generated point: real balls it is in
    real_recalled = torch.zeros(len(real_a), dtype=torch.bool)
    real_covered = torch.zeros(len(real_a), dtype=torch.bool)
    for s in range(0, len(gen_a), _CHUNK):
        d = torch.cdist(real_t, gen_t[s:s + _CHUNK])  # [N_real, chunk]
        inside_real = d <= real_rt[:, None]
        in_real_balls[s:s + _CHUNK] = inside_real.sum(0).double()
        real_recalled |= (d <= gen_rt[None, s:s + _CHUNK]).any(1)
        real_covered |= inside_real.any(1)
    return {"precision": float((in_real_balls > 0).double().mean()),
            "recall": float(real_recalled.double().mean()),
            "density": float(in_real_balls.sum() / (k * len(gen_a))),
            "coverage": float(real_covered.double().mean())}


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _unbiased(m: Moments) -> np.ndarray:
    """The covariance matrix divided by n - 1 (``np.cov``'s default), from float64 moments."""
    return m.covariance().numpy() * (m.n / (m.n - 1))


def frechet_distance(real: torch.Tensor | ArrayLike, generated: torch.Tensor | ArrayLike) -> float:
    """|mu_r - mu_g|² + tr(C_r + C_g - 2 (C_r C_g)^½) between Gaussians fitted to two feature sets.

    The covariances are the unbiased ones (divided by n - 1, numpy's ``np.cov``), the convention of
    pytorch-fid and torch-fidelity, so the values compare with theirs. tr (C_r C_g)^½ is computed as the
    sum of the square roots of the eigenvalues of the symmetric C_r^½ C_g C_r^½ (same eigenvalues),
    which stays real and stable for singular covariances.
    """
    real_a, gen_a = _features(real, "real"), _features(generated, "generated")
    for what, features in (("real", real_a), ("generated", gen_a)):
        if len(features) < 2:
            raise ConfigError(f"the Fréchet distance needs at least 2 {what} feature vectors (an unbiased "
                              f"covariance), got {len(features)}")
    a = Moments(full=True).update(torch.from_numpy(real_a))
    b = Moments(full=True).update(torch.from_numpy(gen_a))
    mu_a, mu_b = a.mean().numpy(), b.mean().numpy()
    cov_a, cov_b = _unbiased(a), _unbiased(b)
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(value, 0.0)


@dataclass
class FidelityRow:
    """One generator (or a held-out real set) against the real images, in one reference space."""

    name: str
    source: str
    images: int
    precision: float
    recall: float
    density: float
    coverage: float
    frechet: float

    def to_dict(self) -> dict[str, Any]:
        """The row's fields by name."""
        return asdict(self)


@dataclass
class FidelityResult(FrameRepr):
    """Precision, recall, density, coverage and a Fréchet distance of each generator in one reference space.

    ``to_frame()`` gives one row per generator."""

    space: str  # e.g. "fmnist-svae latent space (64-d)"
    fd_name: str  # e.g. "FD in fmnist-svae space"
    k: int
    real_images: int
    real_source: str
    rows: list[FidelityRow]
    overlap: dict[str, float] | None = None  # generator name -> share of its images that are real (reference) images

    def frame(self) -> pd.DataFrame:
        """One row per generator, every field of :class:`FidelityRow` (no columns when there is no row)."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    def to_dict(self) -> dict[str, Any]:
        """What a report's JSON records: the space, k, the real images, every row and the overlap warnings."""
        return {"space": self.space, "fd_name": self.fd_name, "k": self.k, "real_images": self.real_images,
                "real_source": self.real_source, "rows": [r.to_dict() for r in self.rows],
                "overlap": self.overlap or {}}

    def to_frame(self) -> pd.DataFrame:
        """One row per generator: precision, recall, density, coverage and the Fréchet distance in this space."""
        return records_frame((r.to_dict() for r in self.rows),
                             None if self.rows else ["name", "source", "images", "precision", "recall", "density",
                                                     "coverage", "frechet"])

    def _frame_caption(self) -> str:
        return caption(f"Fidelity and diversity in the {self.space} (k={self.k}; frechet = {self.fd_name}), "
                       f"against {self.real_images} {self.real_source}", [r.name for r in self.rows])


def space_names(reference_name: str, latent_dim: int) -> tuple[str, str]:
    """(space, Fréchet-distance name) for a reference model's latent space."""
    return f"{reference_name} latent space ({latent_dim}-d)", f"FD in {reference_name} space"


def fidelity_diversity(real_features: torch.Tensor | ArrayLike,
                       generated: Mapping[str, tuple[torch.Tensor | np.ndarray, str]], *, space: str, fd_name: str,
                       real_source: str = "real images", k: int = DEFAULT_K) -> FidelityResult:
    """PRDC and the Fréchet distance for each ``generated[name] = (features, source)`` against ``real_features``."""
    rows = []
    real = _features(real_features, "real")
    real_radii = knn_radii(real, k)
    for name, (features, source) in generated.items():
        scores = prdc(real, features, k, real_radii=real_radii)
        rows.append(FidelityRow(name, source, len(features), frechet=frechet_distance(real, features),
                                **scores))
    return FidelityResult(space, fd_name, k, len(real), real_source, rows)
