"""Where a model's own samples come from, and the typical region of that distribution.

A model with a meaningful prior (``LatentModel.has_prior``: VAEs, GANs, StyleGAN's mapped W) is
sampled from it. Deterministic autoencoders (pythae's AE, RAE, WAE, VQ-VAE) decode N(0, I)
only as a placeholder, so, as pythae's own samplers do, they get a Gaussian or a Gaussian
mixture fitted on encodings of training images. Every sampler has a ``name`` that reports
print ("prior", "gaussian fit on 10000 encodings of fashion-mnist train", "GMM(10) fit on ...").

:class:`TypicalRegion` says how far a latent lies from where the sampler puts its mass: the
norm against the chi distribution for a standard normal prior, else the Mahalanobis distance
under the mean and covariance of the sampler's own draws, with the 99% range taken from fresh
draws. A refined latent far outside that range reconstructs an image the model cannot sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.constants import SAMPLERS
from latentmap.distributed import map_shards
from latentmap.errors import ConfigError
from latentmap.models.base import LatentModel
from latentmap.stats import Moments

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from latentmap.data.images import ImageDataset

DEFAULT_COMPONENTS = 10  # pythae's GaussianMixtureSampler default
DEFAULT_FIT_IMAGES = 10_000
REGION_SAMPLES = 8192
RANGE_QUANTILE = 0.99


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of a covariance, with a little jitter where it is singular."""
    cov = (cov + cov.T) / 2
    jitter = 1e-9 * float(cov.diagonal().mean().clamp_min(1e-12))
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * torch.eye(len(cov), dtype=cov.dtype))
        if int(info) == 0:
            return factor
        jitter *= 100
    raise ConfigError("the fitted covariance is not positive definite even with jitter: too few or identical encodings")


class LatentSampler:
    """Draws latents (float32, CPU) for a model; ``name`` says from what."""

    name = "sampler"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        """``n`` latents [n, d], float32 on the CPU, drawn with ``generator``."""
        raise NotImplementedError


class PriorSampler(LatentSampler):
    """The model's own ``sample_prior`` (W samples of the mapping network for StyleGAN)."""

    def __init__(self, model: LatentModel) -> None:
        self.model = model
        self.name = "prior"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of the model's prior, float32 on the CPU."""
        return self.model.sample_prior(int(n), generator).float().cpu()


class GaussianSampler(LatentSampler):
    """N(mean, covariance) of encodings (float64 moments), sampled through its Cholesky factor."""

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor, name: str) -> None:
        self.mean, self.covariance, self.name = mean.double(), covariance.double(), name
        self.factor = _cholesky(self.covariance)

    @classmethod
    def fit(cls, latents: torch.Tensor, origin: str = "encodings") -> GaussianSampler:
        """The Gaussian of the mean and population covariance of ``latents`` [N, d] (float64 moments)."""
        _check_fit_latents(latents)
        moments = Moments(full=True).update(latents)
        return cls(moments.mean(), moments.covariance(), f"gaussian fit on {len(latents)} {origin}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws mean + L·ε (L the Cholesky factor), float32."""
        eps = torch.randn(int(n), len(self.mean), generator=generator, dtype=torch.float64)
        return (self.mean + eps @ self.factor.T).float()


class MixtureSampler(LatentSampler):
    """A Gaussian mixture (scikit-learn's GaussianMixture, full covariances) fitted on encodings.

    Sampling draws the component, then the point, from the torch generator: one seed gives one set.
    """

    def __init__(self, weights: ArrayLike, means: ArrayLike, covariances: Iterable[ArrayLike], name: str) -> None:
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        self.means = torch.as_tensor(np.asarray(means), dtype=torch.float64)
        self.factors = torch.stack([_cholesky(torch.as_tensor(np.asarray(c), dtype=torch.float64))
                                    for c in covariances])
        self.name = name

    @classmethod
    def fit(cls, latents: torch.Tensor, components: int = DEFAULT_COMPONENTS, seed: int = 0,
            origin: str = "encodings") -> MixtureSampler:
        """scikit-learn's GaussianMixture (full covariances, seeded) fitted on ``latents`` [N, d]."""
        from sklearn.mixture import GaussianMixture

        _check_fit_latents(latents)
        if components < 1:
            raise ConfigError(f"the mixture needs at least 1 component, got {components} instead")
        if components > len(latents):
            raise ConfigError(f"a mixture of {components} components needs at least as many encodings, "
                              f"got {len(latents)}")
        gmm = GaussianMixture(n_components=components, covariance_type="full", random_state=int(seed) % 2**32,
                              reg_covar=1e-5)
        gmm.fit(torch.as_tensor(latents).double().numpy())
        return cls(gmm.weights_, gmm.means_, gmm.covariances_, f"GMM({components}) fit on {len(latents)} {origin}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws: a component by its weight, then a point of it, both from ``generator``; float32."""
        n = int(n)
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n else \
            torch.empty(0, dtype=torch.long)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return (self.means[which] + torch.einsum("nij,nj->ni", self.factors[which], eps)).float()


def _check_fit_latents(latents: torch.Tensor) -> None:
    latents = torch.as_tensor(latents)
    if latents.ndim != 2 or len(latents) < 2:
        raise ConfigError(f"a fitted sampler needs at least 2 encodings of shape [N, d], got {tuple(latents.shape)}")
    if not torch.isfinite(latents).all():
        raise ConfigError("the encodings a sampler is fitted on contain NaN or infinite values")


def needs_fit_data(models: LatentModel | Iterable[LatentModel], kind: str = "auto") -> bool:
    """Whether :func:`fit_sampler` of ``kind`` needs training images for any of ``models`` (one model or several):
    the one rule every command follows before loading a training split."""
    chosen = [models] if isinstance(models, LatentModel) else list(models)
    return kind in ("gaussian", "gmm") or (kind == "auto" and any(not m.has_prior for m in chosen))


def fit_sampler(model: LatentModel, kind: str = "auto", *, data: ImageDataset | None = None,
                fit_images: int = DEFAULT_FIT_IMAGES, components: int = DEFAULT_COMPONENTS, seed: int = 0,
                batch_size: int = 256, data_name: str | None = None, progress: bool = False) -> LatentSampler:
    """The sampler for ``model``'s own samples.

    ``kind``: ``prior``; ``gaussian`` or ``gmm`` fitted on the encodings of a seeded random
    ``fit_images`` images of ``data`` (a training split); ``auto``: the prior when the model
    declares one (``has_prior``), else ``gmm``.
    """
    if kind not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got '{kind}' instead")
    if kind == "auto":
        kind = "prior" if model.has_prior else "gmm"
    if kind == "prior":
        return PriorSampler(model)
    if data is None:
        raise ConfigError(f"a {kind} sampler for model '{model.name}' is fitted on encodings of training images; "
                          "none were given")
    subset = data.random_subset(min(int(fit_images), len(data)), seed) if hasattr(data, "random_subset") else data
    latents = map_shards(lambda part: model.encode_all(part, batch_size, progress=progress), subset, batch_size)
    origin = f"encodings of {data_name or getattr(data, 'name', None) or 'images'}"  # a tensor's .name is None
    if kind == "gaussian":
        return GaussianSampler.fit(latents, origin)
    return MixtureSampler.fit(latents, components, seed, origin)


# --------------------------------------------------------------------------- typical region

@dataclass
class TypicalRegion:
    """Distance of latents from a sampler's mass: Mahalanobis under (``mean``, ``whitening``)."""

    description: str
    mean: torch.Tensor  # [d] float64
    whitening: torch.Tensor | None  # [d, d] float64: distance = |(z - mean) @ whitening|; None: the plain norm
    typical: float  # median distance of the sampler's draws
    limit: float  # RANGE_QUANTILE of the distance of the sampler's draws

    def distance(self, z: torch.Tensor | ArrayLike) -> torch.Tensor:
        """Distance of every latent of ``z`` [N, d] from the mean (Mahalanobis, or the plain norm): float64 [N]."""
        u = torch.as_tensor(z).detach().cpu().double() - self.mean
        if self.whitening is not None:
            u = u @ self.whitening
        return u.norm(dim=1)

    def outside(self, z: torch.Tensor | ArrayLike) -> torch.Tensor:
        """Which latents lie beyond :attr:`limit` (the sampler's 99% range): bool [N]."""
        return self.distance(z) > self.limit

    def to_dict(self) -> dict[str, Any]:
        """The description, typical distance, limit and its quantile, as a report records them."""
        return {"description": self.description, "typical": self.typical, "limit": self.limit,
                "quantile": RANGE_QUANTILE}

    @classmethod
    def standard_normal(cls, d: int) -> TypicalRegion:
        """The exact region of N(0, I) in ``d`` dimensions: the norm, its median and quantile from the chi law."""
        from scipy.stats import chi

        return cls(f"norm of z against N(0, I) (typical {chi.median(d):.3g} ≈ √{d}; {RANGE_QUANTILE:.0%} of prior "
                   f"draws within {chi.ppf(RANGE_QUANTILE, d):.3g})", torch.zeros(d, dtype=torch.float64), None,
                   float(chi.median(d)), float(chi.ppf(RANGE_QUANTILE, d)))

    @classmethod
    def from_sampler(cls, sampler: LatentSampler, what: str, samples: int = REGION_SAMPLES,
                     seed: int = 0) -> TypicalRegion:
        """Mean and covariance from one set of draws; the median and 99% range of the distance from a second."""
        generator = torch.Generator().manual_seed(seed + 7919)
        moments = Moments(full=True).update(sampler.sample(samples, generator))
        values, vectors = torch.linalg.eigh(moments.covariance())
        values = values.clamp_min(1e-10 * float(values.max().clamp_min(1e-30)))
        whitening = vectors / values.sqrt()
        region = cls("", moments.mean(), whitening, 0.0, 0.0)
        fresh = region.distance(sampler.sample(samples, generator)).numpy()
        region.typical, region.limit = float(np.median(fresh)), float(np.quantile(fresh, RANGE_QUANTILE))
        region.description = (f"Mahalanobis distance under the mean and covariance of {samples} {what} "
                              f"(typical {region.typical:.3g}; {RANGE_QUANTILE:.0%} of fresh draws within "
                              f"{region.limit:.3g})")
        return region


def typical_region(model: LatentModel, sampler: LatentSampler, seed: int = 0) -> TypicalRegion:
    """The exact N(0, I) region where the model's prior is the standard normal, else one estimated from draws."""
    standard = type(model).sample_prior is LatentModel.sample_prior
    if isinstance(sampler, PriorSampler) and standard:
        return TypicalRegion.standard_normal(model.latent_dim)
    what = ("prior draws (W of the mapping network)" if isinstance(sampler, PriorSampler)
            else f"draws of the {sampler.name}")
    return TypicalRegion.from_sampler(sampler, what, seed=seed)
