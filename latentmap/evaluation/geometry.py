"""Fragments, filaments and voids: how a model's codes fill its latent space, against what it samples.

("Autoencoders, latent space and the curse of high dimensionality – II".) For ``n`` real images
and ``n`` latents drawn from the model's sampler (its prior, or a Gaussian / mixture fitted on
encodings for models without one):

- the void fraction (:func:`void_fraction`): the share of sampled latents whose distance to the
  nearest code of a real image exceeds the 99th percentile of the real codes' own nearest-neighbour
  distances (each code's nearest *other* code). A sampler that draws from where the codes are gives
  about 1%; a sampler that fills the voids between filaments gives much more. The threshold
  depends on the number of codes, so compare void fractions only at the same ``n``;
- the density of codes and samples along the highest-variance axes and against the radius
  (distance from the sampler's centre in its own units, as :class:`TypicalRegion` measures it);
- t-SNE maps (scikit-learn, fixed seed) of the codes and of their leading principal components;
- decodes of the samples deepest in the voids beside decodes of the samples nearest the data, and
  the fidelity (precision, recall, density, coverage) of both groups, and of all samples, in a
  reference model's latent space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import ConfigError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.samplers import LatentSampler
    from latentmap.models.base import LatentModel

VOID_QUANTILE = 0.99
DEFAULT_POINTS = 2000
TSNE_POINTS = 2000
TSNE_PCA = 50  # t-SNE of larger latents runs on their first 50 principal components
LEADING_COMPONENTS = 4  # "t-SNE after PCA for the first ... main components - up to 4"
SHOWN_DECODES = 8
DENSITY_AXES = 4
DENSITY_BINS = 50


def _points(x: torch.Tensor | ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{what} must have shape [N, d], got {arr.shape} instead")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} contain NaN or infinite values")
    return arr


def nearest_distances(points: torch.Tensor | ArrayLike, codes: torch.Tensor | ArrayLike, *,
                      exclude_self: bool = False) -> np.ndarray:
    """Distance of each point to its nearest code; ``exclude_self`` (``points`` are ``codes``): to the nearest
    *other* code (a duplicate of a code counts as another code, at distance 0)."""
    from sklearn.neighbors import NearestNeighbors

    p, c = _points(points, "points"), _points(codes, "codes")
    k = 2 if exclude_self else 1
    if len(c) < k:
        raise ConfigError(f"nearest-neighbour distances need at least {k} codes, got {len(c)}")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(c).kneighbors(p)
    return dist[:, k - 1]


@dataclass
class VoidFraction:
    """How much of a sampler's mass lies in the voids between a model's codes (:func:`void_fraction`)."""

    fraction: float  # share of samples farther from every code than ``threshold``
    threshold: float  # the ``quantile`` of the codes' own nearest-neighbour distances
    quantile: float
    sample_distances: np.ndarray  # [n_samples] to the nearest code
    code_distances: np.ndarray  # [n_codes] to the nearest other code

    def __float__(self) -> float:
        return self.fraction

    @property
    def in_void(self) -> np.ndarray:
        """Which samples lie in a void (farther from every code than the threshold): bool [n_samples]."""
        return self.sample_distances > self.threshold


def void_fraction(samples: torch.Tensor | ArrayLike, codes: torch.Tensor | ArrayLike,
                  quantile: float = VOID_QUANTILE) -> VoidFraction:
    """Share of ``samples`` whose nearest code lies farther than the ``quantile`` of the codes' own
    nearest-other-code distances. Samples drawn from the codes' own distribution give about 1 - quantile."""
    if not 0 < quantile < 1:
        raise ConfigError(f"quantile must be in (0, 1), got {quantile} instead")
    s, c = _points(samples, "samples"), _points(codes, "codes")
    if s.shape[1] != c.shape[1]:
        raise ConfigError(f"samples and codes must have the same size, got {s.shape[1]} and {c.shape[1]}")
    own = nearest_distances(c, c, exclude_self=True)
    threshold = float(np.quantile(own, quantile))
    dist = nearest_distances(s, c)
    return VoidFraction(float(np.mean(dist > threshold)), threshold, quantile, dist, own)


def tsne_map(codes: torch.Tensor | ArrayLike, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-d t-SNE of ``codes`` (first reduced to 50 principal components when larger), fixed seed."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _points(codes, "codes")
    if x.shape[1] > TSNE_PCA:
        x = PCA(TSNE_PCA, random_state=seed).fit_transform(x)
    perplexity = min(perplexity, max(2.0, (len(x) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def leading_components(codes: torch.Tensor | ArrayLike, k: int = LEADING_COMPONENTS) -> np.ndarray:
    """The codes [N, d] projected on their first ``k`` principal components (fewer when d or N is smaller)."""
    from sklearn.decomposition import PCA

    x = _points(codes, "codes")
    return PCA(min(k, x.shape[1], len(x))).fit_transform(x)


@dataclass
class LatentGeometry:
    """Where a model's codes lie against its sampler's latents (:func:`latent_geometry`): voids, radii, density
    views, t-SNE maps, decodes and fidelity by group."""

    model: str
    latent_dim: int
    sampler: str  # what the samples come from
    n: int
    seed: int
    voids: VoidFraction
    radii: np.ndarray  # [n] of the codes, in the sampler's units
    sample_radii: np.ndarray  # [n]
    radius_measure: str
    axes: np.ndarray  # the highest-variance variables of the codes
    codes_on_axes: np.ndarray  # [n, len(axes)]
    samples_on_axes: np.ndarray  # [n, len(axes)]
    labels: np.ndarray | None  # [n] of the real images
    tsne_codes: np.ndarray | None = None  # [m, 2]
    tsne_leading: np.ndarray | None = None  # [m, 2]
    leading_k: int = 0
    tsne_labels: np.ndarray | None = None
    void_decodes: torch.Tensor | None = None  # images of the samples deepest in voids
    near_decodes: torch.Tensor | None = None  # images of the samples nearest the codes
    reference: str | None = None
    fidelity: dict[str, Any] = field(default_factory=dict)  # group -> prdc dict (None when the group is too small)

    def summary(self) -> dict[str, Any]:
        """The numbers a report table shows: sizes, the void fraction and its threshold, median distances, mean
        radii and the fidelity of each group (``{group}_{metric}``)."""
        return {"model": self.model, "latent_dim": self.latent_dim, "sampler": self.sampler, "points": self.n,
                "void_fraction": self.voids.fraction, "void_quantile": self.voids.quantile,
                "void_threshold": self.voids.threshold,
                "median_sample_distance": float(np.median(self.voids.sample_distances)),
                "median_code_distance": float(np.median(self.voids.code_distances)),
                "mean_radius": float(self.radii.mean()), "sample_mean_radius": float(self.sample_radii.mean()),
                "radius_measure": self.radius_measure, "reference": self.reference,
                **{f"{group}_{k}": v for group, d in self.fidelity.items() for k, v in (d or {}).items()}}


def latent_geometry(model: LatentModel, data: ImageDataset, *, sampler: LatentSampler | None = None,
                    n: int = DEFAULT_POINTS, seed: int = 0, reference: LatentModel | None = None,
                    tsne: bool = True, tsne_points: int = TSNE_POINTS, batch_size: int = 256, k: int = 5,
                    progress: bool = False) -> LatentGeometry:
    """Codes of ``n`` images of ``data`` against ``n`` latents of ``sampler`` (default: the prior when the model
    has one, else a mixture fitted on the encodings of these images), with the void fraction, density views,
    t-SNE maps, decodes from voids and near the data, and (with a ``reference`` model; default the model itself)
    the fidelity of each group of samples in the reference's latent space."""
    from latentmap.evaluation.fidelity import knn_radii, prdc
    from latentmap.evaluation.samplers import fit_sampler, typical_region

    if n < 2:
        raise ConfigError(f"the void fraction needs at least 2 images, got {n}")
    subset = data.random_subset(min(n, len(data)), seed) if hasattr(data, "random_subset") else data
    codes_t = model.encode_all(subset, batch_size, progress=progress).double().cpu().reshape(len(subset), -1)
    if not bool(torch.isfinite(codes_t).all()):
        raise ConfigError(f"model '{model.name}' gave NaN or infinite encodings")
    if sampler is None:
        sampler = fit_sampler(model, "auto", data=subset, fit_images=len(subset), seed=seed, batch_size=batch_size)
    gen = torch.Generator().manual_seed(seed + 1)
    samples_t = sampler.sample(len(subset), gen).double().cpu()
    codes, samples = codes_t.numpy(), samples_t.numpy()
    voids = void_fraction(samples, codes)
    region = typical_region(model, sampler, seed)
    axes = np.argsort(-codes.var(0), kind="stable")[:min(DENSITY_AXES, codes.shape[1])]
    labels = None if getattr(subset, "labels", None) is None else np.asarray(subset.labels)
    geo = LatentGeometry(model=model.name, latent_dim=codes.shape[1], sampler=sampler.name, n=len(codes), seed=seed,
                         voids=voids, radii=region.distance(codes_t).numpy(),
                         sample_radii=region.distance(samples_t).numpy(), radius_measure=region.description,
                         axes=axes, codes_on_axes=codes[:, axes], samples_on_axes=samples[:, axes], labels=labels)
    if tsne:
        m = min(tsne_points, len(codes))
        pick = np.random.default_rng(seed).choice(len(codes), m, replace=False) if m < len(codes) else np.arange(m)
        geo.tsne_codes = tsne_map(codes[pick], seed)
        lead = leading_components(codes)
        geo.leading_k = lead.shape[1]
        geo.tsne_leading = tsne_map(lead[pick], seed)
        geo.tsne_labels = None if labels is None else labels[pick]
    order = np.argsort(voids.sample_distances, kind="stable")
    shown = min(SHOWN_DECODES, len(order))
    geo.void_decodes = model.decode(samples_t[order[::-1][:shown].copy()].float()).cpu()
    geo.near_decodes = model.decode(samples_t[order[:shown]].float()).cpu()
    # fidelity of each group, in the reference space
    ref = reference or model
    geo.reference = ref.name
    real_f = ref.encode_all(subset, batch_size).double().cpu().reshape(len(subset), -1).numpy()
    real_r = knn_radii(real_f, k)
    groups = {"all": np.arange(len(samples)), "void": np.flatnonzero(voids.in_void),
              "near": np.flatnonzero(~voids.in_void)}
    images = model.decode_all(samples_t.float(), batch_size).cpu()
    gen_f = ref.encode_all(images, batch_size).double().cpu().reshape(len(images), -1).numpy()
    for name, idx in groups.items():
        geo.fidelity[name] = prdc(real_f, gen_f[idx], k, real_radii=real_r) if len(idx) > k else None
        if geo.fidelity[name] is not None:
            geo.fidelity[name]["samples"] = int(len(idx))
    return geo
