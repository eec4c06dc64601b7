"""Latent-space diagnostics: how a model fills its latent space, in one pass over a dataset.

For every model: per-variable mean and variance of the encodings, the radius ||z|| of the
encodings against the radius of prior samples (a d-dimensional standard normal lives on a thin
shell of radius about sqrt(d)), the PCA spectrum of the encodings, and the density along the
highest-variance axes against N(0, 1). For VAE-like models also the "variance law": for each
variable Var(mu) + E[sigma²] should be close to 1, and variables with Var(mu) below a
threshold are inactive (collapsed). With the decoder: reconstruction MSE and the variance loss
Δ_var = mean over pixels of Var(x) − Var(x̂), which for VAEs comes out close to the MSE.

Everything is float64 running sums on the model's device; of each image only its encoding's
radius is kept.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentmap.io.atomic import atomic_directory
from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, NonFiniteError
from latentmap.evaluation.metrics import INACTIVE_THRESHOLD, per_image_mse

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
class LatentDiagnostics:
    model: str
    kind: str
    latent_dim: int
    n_images: int
    seed: int
    mean: np.ndarray  # [d] mean of the encodings
    variance: np.ndarray  # [d] variance of the encodings (population, ddof 0)
    eigenvalues: np.ndarray  # [d] of the encodings' covariance, descending
    radii: np.ndarray  # [N] ||encode(x)||
    prior_radii: np.ndarray  # [N] ||z|| of as many prior samples
    axis_edges: np.ndarray  # [AXIS_BINS + 1] shared bin edges of the axis histograms
    axis_counts: np.ndarray  # [d, AXIS_BINS]
    axis_outside: np.ndarray  # [d] encodings outside the histogram range
    mse: float  # per pixel, decode(encode(x)) against x
    image_variance: float  # mean over pixels of Var(x)
    reconstruction_variance: float  # mean over pixels of Var(x̂)
    var_mu: np.ndarray | None = None  # VAE-like models only
    mean_sigma2: np.ndarray | None = None

    @property
    def vae_like(self) -> bool:
        return self.var_mu is not None

    @property
    def sqrt_d(self) -> float:
        return math.sqrt(self.latent_dim)

    @property
    def variance_loss(self) -> float:
        """Δ_var: how much per-pixel variance the reconstructions lose."""
        return self.image_variance - self.reconstruction_variance

    @property
    def variance_law(self) -> np.ndarray | None:
        return None if self.var_mu is None else self.var_mu + self.mean_sigma2

    @property
    def inactive(self) -> np.ndarray | None:
        return None if self.var_mu is None else np.flatnonzero(self.var_mu < INACTIVE_THRESHOLD)

    @property
    def explained_ratio(self) -> np.ndarray:
        total = self.eigenvalues.sum()
        return self.eigenvalues / total if total > 0 else np.full_like(self.eigenvalues, np.nan)

    def components_for(self, fraction: float) -> int:
        """Fewest principal components that explain ``fraction`` of the variance (0 if there is none)."""
        ratio = self.explained_ratio
        if not np.isfinite(ratio).all():
            return 0
        return int(min(np.searchsorted(np.cumsum(ratio), fraction - 1e-12) + 1, self.latent_dim))

    def top_axes(self, k: int = AXES_SHOWN) -> np.ndarray:
        return np.argsort(-self.variance, kind="stable")[:k]

    def summary(self) -> dict:
        law = self.variance_law
        return {
            "model": self.model, "kind": self.kind, "latent_dim": self.latent_dim, "n_images": self.n_images,
            "inactive_variables": None if law is None else int(len(self.inactive)),
            "inactive_threshold": INACTIVE_THRESHOLD,
            "variance_law_mean": None if law is None else float(law.mean()),
            "variance_law_min": None if law is None else float(law.min()),
            "variance_law_max": None if law is None else float(law.max()),
            "mean_variance": float(self.variance.mean()),
            "mean_radius": float(self.radii.mean()), "prior_mean_radius": float(self.prior_radii.mean()),
            "sqrt_d": self.sqrt_d,
            **{f"components_{round(q * 100)}": self.components_for(q) for q in QUANTILES},
            "mse": self.mse, "variance_loss": self.variance_loss,
            "image_variance": self.image_variance, "reconstruction_variance": self.reconstruction_variance,
            "seed": self.seed,
        }

    def radius_histogram(self, bins: int = RADIUS_BINS) -> dict:
        edges = np.histogram_bin_edges(np.concatenate([self.radii, self.prior_radii]), bins=bins)
        return {"edges": edges, "encodings": np.histogram(self.radii, edges)[0],
                "prior": np.histogram(self.prior_radii, edges)[0]}

    def to_dict(self) -> dict:
        """The summary and the per-variable arrays (histograms, not raw radii), JSON-ready."""
        axes = self.top_axes()
        return {
            "summary": self.summary(),
            "mean": _list(self.mean), "variance": _list(self.variance),
            "var_mu": _list(self.var_mu), "mean_sigma2": _list(self.mean_sigma2),
            "variance_law": _list(self.variance_law), "inactive": _list(self.inactive),
            "eigenvalues": _list(self.eigenvalues), "explained_ratio": _list(self.explained_ratio),
            "radius_histogram": {k: _list(v) for k, v in self.radius_histogram().items()},
            "axis_histograms": {"edges": _list(self.axis_edges), "variables": [
                {"variable": int(i), "counts": _list(self.axis_counts[i]), "outside": int(self.axis_outside[i])}
                for i in axes]},
        }


def _list(a):
    """Array -> list with None for non-finite values (JSON has no NaN); None stays None."""
    if a is None:
        return None
    return [v if not isinstance(v, float) or math.isfinite(v) else None for v in np.asarray(a).tolist()]


# --------------------------------------------------------------------------- streaming statistics

class _Moments:
    """float64 sums of a batch's columns and their squares (or outer products) on the batch's device.

    Sums are taken around the first batch's mean, so a latent or pixel whose mean is large against
    its spread keeps its variance (E[v²] − E[v]² would cancel it away).
    """

    def __init__(self, cross: bool = False):
        self.cross, self.n = cross, 0
        self.shift = self.s1 = self.s2 = None

    def add(self, v: torch.Tensor) -> None:
        v = v.detach().to(torch.float64).flatten(1)
        if self.shift is None:
            d = v.shape[1]
            self.shift = v.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = v.new_zeros((d, d) if self.cross else (d,))
        c = v - self.shift
        self.s1 += c.sum(0)
        self.s2 += c.T @ c if self.cross else c.pow(2).sum(0)
        self.n += len(v)

    def mean(self) -> torch.Tensor:
        return (self.shift + self.s1 / self.n).cpu()

    def covariance(self) -> torch.Tensor:
        m = self.s1 / self.n
        return (self.s2 / self.n - torch.outer(m, m)).cpu()

    def variance(self) -> torch.Tensor:
        m = self.s1 / self.n
        second = self.s2.diagonal() if self.cross else self.s2
        return (second / self.n - m.pow(2)).clamp_min(0).cpu()


class _AxisHistograms:
    """Counts of every latent variable on one shared grid, fixed by the first batch."""

    def __init__(self, bins: int = AXIS_BINS):
        self.bins, self.half = bins, None

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
        return np.linspace(-self.half, self.half, self.bins + 1)


class _DiagnosticsPass:
    """Folds batches of images into every statistic the diagnostics need."""

    def __init__(self, model):
        self.model = model
        self.z, self.x, self.x_hat = _Moments(cross=True), _Moments(), _Moments()
        self.sigma2 = _Moments() if getattr(model, "vae_like", False) else None
        self.axes, self.radii, self.sse = _AxisHistograms(), [], 0.0  # sse: sum of per-image MSEs

    def update(self, x) -> None:
        model = self.model
        x = model.check_images(x)
        if self.sigma2 is not None:  # encode(x) is the posterior mean: one encoder pass gives both
            z, logvar = model.encode_stats(x)
            self.sigma2.add(logvar.double().exp())
        else:
            z = model.encode(x)
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteError(f"model '{model.name}' gave NaN or infinite encodings for images "
                                 f"{self.z.n}..{self.z.n + len(x) - 1} of the data")
        x_hat = model.decode(z)
        self.z.add(z)
        self.axes.add(z)
        self.radii.append(z.double().norm(dim=1).cpu())
        self.x.add(x)
        self.x_hat.add(x_hat)
        self.sse += float(per_image_mse(x_hat, x.to(x_hat.device)).double().sum())

    def result(self, prior_radii: np.ndarray, seed: int) -> LatentDiagnostics:
        model, n = self.model, self.z.n
        stats = {}
        if self.sigma2 is not None:
            stats = {"var_mu": self.z.variance().numpy(), "mean_sigma2": self.sigma2.mean().numpy()}
        eigenvalues = torch.linalg.eigvalsh(self.z.covariance()).flip(0).clamp_min(0)
        return LatentDiagnostics(
            model=model.name, kind=model.kind, latent_dim=model.latent_dim, n_images=n, seed=seed,
            mean=self.z.mean().numpy(), variance=self.z.variance().numpy(), eigenvalues=eigenvalues.numpy(),
            radii=torch.cat(self.radii).numpy(), prior_radii=prior_radii, axis_edges=self.axes.edges(),
            axis_counts=self.axes.counts.reshape(-1, self.axes.bins).cpu().numpy(),
            axis_outside=self.axes.outside.cpu().numpy(), mse=self.sse / n,
            image_variance=float(self.x.variance().mean()),
            reconstruction_variance=float(self.x_hat.variance().mean()), **stats)


def _prior_radii(model, n: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    chunks = [model.sample_prior(min(PRIOR_CHUNK, n - s), gen).double().norm(dim=1).cpu()
              for s in range(0, n, PRIOR_CHUNK)]
    return torch.cat(chunks).numpy()


def latent_diagnostics(model, data, *, batch_size: int = 256, progress: bool = False,
                       seed: int = 0) -> LatentDiagnostics:
    """Diagnostics of ``model``'s latent space on ``data`` (ImageDataset, image tensor or iterable of batches).

    ``seed`` fixes the prior samples whose radii are compared with the encodings'.
    """
    acc = _DiagnosticsPass(model)
    batches, total = image_batches(data, batch_size)
    for x in with_progress(batches, f"diagnose {model.name}", progress, total):
        acc.update(x)
    if acc.z.n == 0:
        raise ConfigError(f"latent diagnostics of model '{model.name}' need at least one image, got none")
    return acc.result(_prior_radii(model, acc.z.n, seed), seed)


# --------------------------------------------------------------------------- files and figures

def save_diagnostics(diag: LatentDiagnostics, out) -> Path:
    """Write a standalone diagnostics report folder atomically (see :func:`write_diagnostics`)."""
    with atomic_directory(out) as tmp:
        write_diagnostics(diag, tmp)
    return Path(out)


def variables_frame(diag: LatentDiagnostics):
    """One row per latent variable."""
    import pandas as pd

    frame = pd.DataFrame({"variable": np.arange(diag.latent_dim), "mean": diag.mean, "variance": diag.variance})
    if diag.vae_like:
        frame["var_mu"] = diag.var_mu
        frame["mean_sigma2"] = diag.mean_sigma2
        frame["var_mu_plus_mean_sigma2"] = diag.variance_law
        frame["inactive"] = diag.var_mu < INACTIVE_THRESHOLD
    frame["axis_outside_fraction"] = diag.axis_outside / diag.n_images
    return frame


def write_diagnostics(diag: LatentDiagnostics, folder, rel: str = ""):
    """variables.csv, diagnostics.json and four PNG figures into ``folder``.

    Returns the HTML section (links prefixed by ``rel``); with ``rel == ""`` also writes
    ``index.html``, so ``folder`` is a standalone report.
    """
    from latentmap.report.html import Section, render_page

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    variables_frame(diag).to_csv(folder / "variables.csv", index=False)
    (folder / "diagnostics.json").write_text(json.dumps(diag.to_dict(), indent=2) + "\n")
    figures = {"variances.png": variances_png, "radius.png": radius_png, "pca.png": pca_png, "axes.png": axes_png}
    for name, draw in figures.items():
        (folder / name).write_bytes(draw(diag))
    section = Section(f"Latent diagnostics: {diag.model} ({diag.kind}, latent {diag.latent_dim})")
    section.text(f"{diag.n_images} images. " + " ".join(describe(diag)))
    section.table(summary_table(diag))
    for name, caption in _captions(diag).items():
        section.image(f"{rel}{name}", caption)
    section.parts.append(f'<p class="note">Files: <a href="{rel}variables.csv">variables.csv</a> (one row per '
                         f'variable), <a href="{rel}diagnostics.json">diagnostics.json</a>.</p>')
    if not rel:
        (folder / "index.html").write_text(render_page("latentmap latent diagnostics", [section]))
    return section


def describe(diag: LatentDiagnostics) -> list[str]:
    """The diagnostics in a few sentences (the CLI's printout and the report's text)."""
    s = diag.summary()
    parts = []
    if diag.vae_like:
        parts.append(f"Inactive variables (Var(mu) < {INACTIVE_THRESHOLD:g}): {s['inactive_variables']} of "
                     f"{diag.latent_dim}. Var(mu) + E[sigma²] per variable: mean {s['variance_law_mean']:.3f} "
                     f"(min {s['variance_law_min']:.3f}, max {s['variance_law_max']:.3f}; 1 for a well-trained VAE).")
    parts.append(f"Mean radius of the encodings {s['mean_radius']:.2f}, of prior samples "
                 f"{s['prior_mean_radius']:.2f}; sqrt(d) = {s['sqrt_d']:.2f}.")
    parts.append(f"PCA: {s['components_90']} components explain 90% of the encodings' variance, "
                 f"{s['components_99']} explain 99%.")
    parts.append(f"Reconstruction MSE {s['mse']:.5f}, variance loss Δ_var {s['variance_loss']:.5f}.")
    return parts


def summary_table(diag: LatentDiagnostics):
    import pandas as pd

    s = diag.summary()
    keys = ["n_images", "latent_dim", "inactive_variables", "variance_law_mean", "mean_variance", "mean_radius",
            "prior_mean_radius", "sqrt_d", "components_90", "components_99", "mse", "variance_loss"]
    rows = [{"metric": k, "value": _fmt(s[k])} for k in keys if s[k] is not None]
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def _captions(diag: LatentDiagnostics) -> dict:
    var = ("Var(mu) (blue) and E[sigma²] (orange) stacked per variable; the dashed line is 1, where a "
           "well-trained VAE's bars end" if diag.vae_like else
           "variance of the encodings per variable; the dashed line is the prior's variance 1")
    return {
        "variances.png": var,
        "radius.png": f"radius of the encodings and of as many prior samples; dashed: sqrt(d) = {diag.sqrt_d:.2f}",
        "pca.png": "PCA of the encodings: eigenvalues of their covariance, and the cumulative explained variance",
        "axes.png": f"density of the encodings along the {min(AXES_SHOWN, diag.latent_dim)} highest-variance "
                    "variables (steps) against the N(0, 1) density (line)",
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def variances_png(diag: LatentDiagnostics) -> bytes:
    plt = _pyplot()
    idx = np.arange(diag.latent_dim)
    fig, ax = plt.subplots(figsize=(min(14.0, 4 + 0.12 * diag.latent_dim), 3.4))
    if diag.vae_like:
        ax.bar(idx, diag.var_mu, color="tab:blue", label="Var(mu)")
        ax.bar(idx, diag.mean_sigma2, bottom=diag.var_mu, color="tab:orange", label="E[sigma²]")
        ax.set_title(f"{diag.model}: variance law, {len(diag.inactive)} inactive of {diag.latent_dim}")
    else:
        ax.bar(idx, diag.variance, color="tab:blue", label="Var(z)")
        ax.set_title(f"{diag.model}: variance of the encodings")
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.set_xlabel("latent variable")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def radius_png(diag: LatentDiagnostics) -> bytes:
    plt = _pyplot()
    hist = diag.radius_histogram()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.stairs(hist["encodings"], hist["edges"], fill=True, alpha=0.5, label="encodings")
    ax.stairs(hist["prior"], hist["edges"], fill=True, alpha=0.5, label="prior samples")
    ax.axvline(diag.sqrt_d, color="black", ls="--", lw=1, label="sqrt(d)")
    ax.set_xlabel("||z||")
    ax.set_ylabel("count")
    ax.set_title(f"{diag.model}: radius of {diag.n_images} encodings vs prior")
    ax.legend(fontsize=8)
    return _png(fig)


def pca_png(diag: LatentDiagnostics) -> bytes:
    plt = _pyplot()
    k = np.arange(1, diag.latent_dim + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    positive = diag.eigenvalues > 0
    left.plot(k[positive], diag.eigenvalues[positive], marker=".", lw=1)
    if positive.any():
        left.set_yscale("log")
    left.set_xlabel("component")
    left.set_ylabel("eigenvalue")
    left.set_title(f"{diag.model}: PCA spectrum")
    right.plot(k, np.cumsum(diag.explained_ratio), marker=".", lw=1)
    for q in QUANTILES:
        right.axhline(q, color="grey", ls=":", lw=1)
        right.axvline(diag.components_for(q), color="grey", ls=":", lw=1)
    right.set_xlabel("components")
    right.set_ylabel("cumulative explained variance")
    right.set_title(f"90%: {diag.components_for(0.9)}, 99%: {diag.components_for(0.99)} components")
    return _png(fig)


def axes_png(diag: LatentDiagnostics) -> bytes:
    plt = _pyplot()
    axes = diag.top_axes()
    cols = min(4, len(axes))
    rows = -(-len(axes) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.3 * rows), squeeze=False)
    edges = diag.axis_edges
    width = edges[1] - edges[0]
    centers = (edges[:-1] + edges[1:]) / 2
    for ax, i in zip(grid.flat, axes):
        ax.stairs(diag.axis_counts[i] / (diag.n_images * width), edges)
        ax.plot(centers, np.exp(-centers ** 2 / 2) / math.sqrt(2 * math.pi), lw=1, color="tab:orange")
        out = diag.axis_outside[i] / diag.n_images
        ax.set_title(f"z{i}: var {diag.variance[i]:.2f}" + (f", {out:.1%} outside" if out else ""), fontsize=9)
    for ax in list(grid.flat)[len(axes):]:
        ax.axis("off")
    return _png(fig)
