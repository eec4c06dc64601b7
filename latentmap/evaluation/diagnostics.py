"""Latent-space diagnostics: how a model fills its latent space, in one pass over a dataset.

Every model is compared with its own prior, as ``sample_prior`` draws it: N(0, I) for VAEs and
GANs, the mapping network's output for StyleGAN's W space. For every model: per-variable mean
and variance of the encodings against the prior samples', the radius of the encodings against
the radius of prior samples, both measured from the prior's centre in the prior's own units
(the norm ||z|| for N(0, I), which lives on a thin shell of radius about sqrt(d); for any other
prior the Mahalanobis distance under the mean and covariance of its samples, see
:func:`latentmap.evaluation.samplers.typical_region`), the share of encodings beyond the radius
that holds 99% of prior samples, the PCA spectrum of the encodings, and the density along the
highest-variance axes against the prior samples' density. For VAE-like models also the "variance law": for each
variable Var(mu) + E[sigma²] should be close to 1, and variables with Var(mu) below a
threshold are inactive (collapsed). With the decoder: reconstruction MSE and the variance loss
Δ_var = mean over pixels of Var(x) − Var(x̂), which for VAEs comes out close to the MSE.

Everything is float64 running sums on the model's device; of each image only its encoding's
radius is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, NonFiniteError
from latentmap.evaluation.metrics import INACTIVE_THRESHOLD, per_image_mse
from latentmap.evaluation.samplers import PriorSampler, TypicalRegion, typical_region
from latentmap.io.model_record import short_fingerprint
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.models.base import LatentModel
from latentmap.models.registry import record_model
from latentmap.stats import Moments

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.models.base import VAELikeModel

AXIS_BINS = 80
# Axis histograms need their range before the pass ends: at least ±4 (the prior's practical
# support), widened to 1.25 x the largest |z| of the first batch for spread-out latent spaces.
AXIS_MIN_HALF_WIDTH = 4.0
AXES_SHOWN = 8
RADIUS_BINS = 60
PRIOR_CHUNK = 1000  # prior samples are drawn in fixed chunks, so the seed alone fixes them
QUANTILES = (0.9, 0.99)


# --------------------------------------------------------------------------- result

@dataclass
class LatentDiagnostics(FrameRepr):
    """Where a model's encodings of a dataset lie against its prior: moments, eigenvalues, radii, axis histograms,
    reconstruction error and variance loss (and Var(mu), mean sigma^2 for VAE-like models)."""

    model: str
    kind: str
    latent_dim: int
    n_images: int
    seed: int
    mean: np.ndarray  # [d] mean of the encodings
    variance: np.ndarray  # [d] variance of the encodings (population, ddof 0)
    eigenvalues: np.ndarray  # [d] of the encodings' covariance, descending
    radii: np.ndarray  # [N] distance of encode(x) from the prior's centre, in the prior's units (||z|| for N(0, I))
    prior_radii: np.ndarray  # [N] the same distance of as many prior samples
    axis_edges: np.ndarray  # [AXIS_BINS + 1] shared bin edges of the axis histograms
    axis_counts: np.ndarray  # [d, AXIS_BINS]
    axis_outside: np.ndarray  # [d] encodings outside the histogram range
    mse: float  # per pixel, decode(encode(x)) against x
    image_variance: float  # mean over pixels of Var(x)
    reconstruction_variance: float  # mean over pixels of Var(x̂)
    var_mu: np.ndarray | None = None  # VAE-like models only
    mean_sigma2: np.ndarray | None = None
    # the prior the encodings are compared with
    standard_prior: bool = True  # the prior is exactly N(0, I); else its mean and covariance come from samples
    radius_measure: str = ""  # how the radius is measured (samplers.TypicalRegion.description)
    prior_mean: np.ndarray | None = None  # [d] of the prior samples
    prior_variance: np.ndarray | None = None  # [d] of the prior samples
    prior_axis_counts: np.ndarray | None = None  # [d, AXIS_BINS] prior samples on the axis grid
    radius_typical: float | None = None  # median radius of prior draws
    radius_limit: float | None = None  # radius within which 99% of prior draws lie
    record: dict[str, Any] | None = None  # the model's record (latentmap.io.model_record)

    @property
    def vae_like(self) -> bool:
        """Whether the model gave posterior variances (Var(mu) and mean sigma^2 are known)."""
        return self.var_mu is not None

    @property
    def sqrt_d(self) -> float:
        """√d: the typical norm of a draw of N(0, I) in d dimensions."""
        return math.sqrt(self.latent_dim)

    @property
    def variance_loss(self) -> float:
        """Δ_var: how much per-pixel variance the reconstructions lose."""
        return self.image_variance - self.reconstruction_variance

    @property
    def variance_law(self) -> np.ndarray | None:
        """Var(mu_i) + E[sigma_i^2] per variable [d] (close to 1 for a well-trained VAE); None without variances."""
        return None if self.var_mu is None or self.mean_sigma2 is None else self.var_mu + self.mean_sigma2

    @property
    def inactive(self) -> np.ndarray | None:
        """The variables whose Var(mu) is below the inactive threshold (collapsed); None without variances."""
        return None if self.var_mu is None else np.flatnonzero(self.var_mu < INACTIVE_THRESHOLD)

    @property
    def explained_ratio(self) -> np.ndarray:
        """Share of the encodings' variance along each principal component [d], descending (NaN when none)."""
        total = self.eigenvalues.sum()
        return self.eigenvalues / total if total > 0 else np.full_like(self.eigenvalues, np.nan)

    def components_for(self, fraction: float) -> int:
        """Fewest principal components that explain ``fraction`` of the variance (0 if there is none)."""
        ratio = self.explained_ratio
        if not np.isfinite(ratio).all():
            return 0
        return int(min(int(np.searchsorted(np.cumsum(ratio), fraction - 1e-12)) + 1, self.latent_dim))

    @property
    def prior(self) -> str:
        """What the encodings are compared with, in a few words."""
        return "N(0, I)" if self.standard_prior else "the mean and covariance of its prior samples"

    @property
    def outside_prior(self) -> float | None:
        """Share of encodings farther from the prior's centre than 99% of prior draws."""
        return None if self.radius_limit is None else float(np.mean(self.radii > self.radius_limit))

    def top_axes(self, k: int = AXES_SHOWN) -> np.ndarray:
        """The ``k`` variables of largest encoding variance, largest first."""
        return np.argsort(-self.variance, kind="stable")[:k]

    def summary(self) -> dict[str, Any]:
        """The numbers a report's table shows, one per name (None where the model has no such quantity)."""
        law, inactive = self.variance_law, self.inactive
        return {
            "model": self.model, "kind": self.kind, "latent_dim": self.latent_dim, "n_images": self.n_images,
            "fingerprint": short_fingerprint(self.record or {}),
            "inactive_variables": None if law is None or inactive is None else int(len(inactive)),
            "inactive_threshold": INACTIVE_THRESHOLD,
            "variance_law_mean": None if law is None else float(law.mean()),
            "variance_law_min": None if law is None else float(law.min()),
            "variance_law_max": None if law is None else float(law.max()),
            "mean_variance": float(self.variance.mean()),
            "mean_radius": float(self.radii.mean()), "prior_mean_radius": float(self.prior_radii.mean()),
            "sqrt_d": self.sqrt_d, "prior": self.prior, "radius_measure": self.radius_measure,
            "radius_typical": self.radius_typical,
            "radius_limit": self.radius_limit, "outside_prior_99": self.outside_prior,
            **{f"components_{round(q * 100)}": self.components_for(q) for q in QUANTILES},
            "mse": self.mse, "variance_loss": self.variance_loss,
            "image_variance": self.image_variance, "reconstruction_variance": self.reconstruction_variance,
            "seed": self.seed,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per latent variable: mean and variance of the encodings, the covariance eigenvalue of that rank,
        and for VAE-like models Var(mu), mean sigma^2 and whether the variable is inactive."""
        rows: list[dict[str, Any]] = []
        for i in range(self.latent_dim):
            row = {"variable": i, "mean": float(self.mean[i]), "variance": float(self.variance[i]),
                   "eigenvalue": float(self.eigenvalues[i])}
            if self.var_mu is not None and self.mean_sigma2 is not None:
                row.update(var_mu=float(self.var_mu[i]), mean_sigma2=float(self.mean_sigma2[i]),
                           inactive=bool(self.var_mu[i] < INACTIVE_THRESHOLD))
            rows.append(row)
        return records_frame(rows)

    def _frame_caption(self) -> str:
        return caption(f"Latent diagnostics of {self.model} ({self.kind}, {self.latent_dim} variables) on "
                       f"{self.n_images} images; eigenvalue: the covariance's, by rank", [self.model])

    def radius_histogram(self, bins: int = RADIUS_BINS) -> dict[str, np.ndarray]:
        """Histograms of the encodings' and the prior draws' radii on shared edges: {edges, encodings, prior}."""
        edges = np.histogram_bin_edges(np.concatenate([self.radii, self.prior_radii]), bins=bins)
        return {"edges": edges, "encodings": np.histogram(self.radii, edges)[0],
                "prior": np.histogram(self.prior_radii, edges)[0]}

    def to_dict(self) -> dict[str, Any]:
        """The summary and the per-variable arrays (histograms, not raw radii), JSON-ready."""
        axes = self.top_axes()
        return {
            "summary": self.summary(), "record": self.record,
            "mean": _list(self.mean), "variance": _list(self.variance),
            "prior_mean": _list(self.prior_mean), "prior_variance": _list(self.prior_variance),
            "var_mu": _list(self.var_mu), "mean_sigma2": _list(self.mean_sigma2),
            "variance_law": _list(self.variance_law), "inactive": _list(self.inactive),
            "eigenvalues": _list(self.eigenvalues), "explained_ratio": _list(self.explained_ratio),
            "radius_histogram": {k: _list(v) for k, v in self.radius_histogram().items()},
            "axis_histograms": {"edges": _list(self.axis_edges), "variables": [
                {"variable": int(i), "counts": _list(self.axis_counts[i]), "outside": int(self.axis_outside[i]),
                 "prior_counts": None if self.prior_axis_counts is None else _list(self.prior_axis_counts[i])}
                for i in axes]},
        }


def _list(a: Any) -> list[Any] | None:
    """Array -> list with None for non-finite values (JSON has no NaN); None stays None."""
    if a is None:
        return None
    return [v if not isinstance(v, float) or math.isfinite(v) else None for v in np.asarray(a).tolist()]


# --------------------------------------------------------------------------- streaming statistics


class _AxisHistograms:
    """Counts of every latent variable on one shared grid, fixed by the first batch."""

    def __init__(self, bins: int = AXIS_BINS) -> None:
        self.bins = bins
        self.half: float | None = None  # set, with the counts, by the first batch
        self.counts: torch.Tensor
        self.outside: torch.Tensor

    def add(self, z: torch.Tensor) -> None:
        z = z.detach().to(torch.float64)
        if self.half is None:
            self.half = max(AXIS_MIN_HALF_WIDTH, math.ceil(1.25 * float(z.abs().max())))
            self.counts = torch.zeros(z.shape[1] * self.bins, dtype=torch.int64, device=z.device)
            self.outside = torch.zeros(z.shape[1], dtype=torch.int64, device=z.device)
        pos = torch.floor((z + self.half) / (2 * self.half) * self.bins)
        inside = (pos >= 0) & (pos < self.bins)
        flat = (torch.arange(z.shape[1], device=z.device) * self.bins + pos.long())[inside]
        self.counts += torch.bincount(flat, minlength=len(self.counts))
        self.outside += (~inside).sum(0)

    def edges(self) -> np.ndarray:
        assert self.half is not None, "the grid is fixed by the first batch"
        return np.linspace(-self.half, self.half, self.bins + 1)


class _DiagnosticsPass:
    """Folds batches of images into every statistic the diagnostics need."""

    def __init__(self, model: LatentModel, region: TypicalRegion) -> None:
        self.model, self.region = model, region
        self.z, self.x, self.x_hat = Moments(full=True), Moments(), Moments()
        self.sigma2 = Moments() if getattr(model, "vae_like", False) else None
        self.axes, self.sse = _AxisHistograms(), 0.0  # sse: sum of per-image MSEs
        self.radii: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        model = self.model
        x = model.check_images(x)
        if self.sigma2 is not None:  # encode(x) is the posterior mean: one encoder pass gives both
            z, logvar = cast("VAELikeModel", model).encode_stats(x)  # vae_like: it gives encode_stats
            self.sigma2.update(logvar.double().exp())
        else:
            z = model.encode(x)
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteError(f"model '{model.name}' gave NaN or infinite encodings for images "
                                 f"{self.z.n}..{self.z.n + len(x) - 1} of the data")
        x_hat = model.decode(z)
        self.z.update(z)
        self.axes.add(z)
        self.radii.append(self.region.distance(z))
        self.x.update(x)
        self.x_hat.update(x_hat)
        self.sse += float(per_image_mse(x_hat, x.to(x_hat.device)).double().sum())

    def result(self, prior: dict[str, Any], seed: int) -> LatentDiagnostics:
        model, n = self.model, self.z.n
        stats: dict[str, Any] = {}
        if self.sigma2 is not None:
            stats = {"var_mu": self.z.variance().numpy(), "mean_sigma2": self.sigma2.mean().numpy()}
        eigenvalues = torch.linalg.eigvalsh(self.z.covariance()).flip(0).clamp_min(0)
        return LatentDiagnostics(
            model=model.name, kind=model.kind, latent_dim=model.latent_dim, n_images=n, seed=seed,
            mean=self.z.mean().numpy(), variance=self.z.variance().numpy(), eigenvalues=eigenvalues.numpy(),
            radii=torch.cat(self.radii).numpy(), axis_edges=self.axes.edges(),
            axis_counts=self.axes.counts.reshape(-1, self.axes.bins).cpu().numpy(),
            axis_outside=self.axes.outside.cpu().numpy(), mse=self.sse / n,
            image_variance=float(self.x.variance().mean()),
            reconstruction_variance=float(self.x_hat.variance().mean()), radius_measure=self.region.description,
            radius_typical=self.region.typical, radius_limit=self.region.limit, record=record_model(model), **prior,
            **stats)


def _prior_samples(model: LatentModel, n: int, seed: int, region: TypicalRegion,
                   edges: np.ndarray) -> dict[str, np.ndarray]:
    """Radii, per-variable moments and axis histograms of ``n`` seeded prior samples, drawn in fixed chunks."""
    gen = torch.Generator().manual_seed(seed)
    moments = Moments()
    radii: list[torch.Tensor] = []
    counts = np.zeros((model.latent_dim, len(edges) - 1), dtype=np.int64)
    for s in range(0, n, PRIOR_CHUNK):
        z = model.sample_prior(min(PRIOR_CHUNK, n - s), gen).double().cpu()
        radii.append(region.distance(z))
        moments.update(z)
        for i, column in enumerate(z.T.numpy()):
            counts[i] += np.histogram(column, edges)[0]
    return {"prior_radii": torch.cat(radii).numpy(), "prior_mean": moments.mean().numpy(),
            "prior_variance": moments.variance().numpy(), "prior_axis_counts": counts}


def latent_diagnostics(model: LatentModel, data: object, *, batch_size: int = 256, progress: bool = False,
                       seed: int = 0) -> LatentDiagnostics:
    """Diagnostics of ``model``'s latent space on ``data`` (ImageDataset, image tensor or iterable of batches).

    ``seed`` fixes the prior samples the encodings are compared with (as many as images) and, for a
    prior other than N(0, I), the samples its mean and covariance are estimated from.
    """
    region = typical_region(model, PriorSampler(model), seed)
    standard = type(model).sample_prior is LatentModel.sample_prior
    acc = _DiagnosticsPass(model, region)
    batches, total = image_batches(data, batch_size)
    for x in with_progress(batches, f"diagnose {model.name}", progress, total):
        acc.update(x)
    if acc.z.n == 0:
        raise ConfigError(f"latent diagnostics of model '{model.name}' need at least one image, got none")
    prior = _prior_samples(model, acc.z.n, seed, region, acc.axes.edges())
    return acc.result({**prior, "standard_prior": standard}, seed)


# --------------------------------------------------------------------------- files and figures


