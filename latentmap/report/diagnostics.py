"""Latent-space diagnostics as files: variables.csv, diagnostics.json, four figures and HTML.

Every figure compares the encodings with the model's own prior samples (StyleGAN's W with the
mapping network's output, not N(0, 1)); an interpolation result, when given, adds its grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from latentmap.evaluation.diagnostics import AXES_SHOWN, QUANTILES, LatentDiagnostics
from latentmap.evaluation.metrics import INACTIVE_THRESHOLD
from latentmap.io.atomic import atomic_directory
from latentmap.report.figures import figure_png, new_figure
from latentmap.report.html import Section, render_page
from latentmap.report.tables import column_label, sig
from latentmap.report.geometry import describe as describe_geometry
from latentmap.report.geometry import write_geometry
from latentmap.report.interpolation import describe as describe_interpolation
from latentmap.report.interpolation import write_interpolation


def save_diagnostics(diag: LatentDiagnostics, out, *, overwrite: bool = True, interpolation=None,
                     geometry=None) -> Path:
    """Write a standalone diagnostics report folder atomically (see :func:`write_diagnostics`)."""
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_diagnostics(diag, tmp, interpolation=interpolation, geometry=geometry)
    return Path(out)


def variables_frame(diag: LatentDiagnostics):
    """One row per latent variable."""
    import pandas as pd

    frame = pd.DataFrame({"variable": np.arange(diag.latent_dim), "mean": diag.mean, "variance": diag.variance})
    if diag.prior_mean is not None:
        frame["prior_mean"] = diag.prior_mean
        frame["prior_variance"] = diag.prior_variance
    if diag.vae_like:
        frame["var_mu"] = diag.var_mu
        frame["mean_sigma2"] = diag.mean_sigma2
        frame["var_mu_plus_mean_sigma2"] = diag.variance_law
        frame["inactive"] = diag.var_mu < INACTIVE_THRESHOLD
    frame["axis_outside_fraction"] = diag.axis_outside / diag.n_images
    return frame


def write_diagnostics(diag: LatentDiagnostics, folder, rel: str = "", *, interpolation=None, geometry=None,
                      back: tuple | None = None):
    """variables.csv, diagnostics.json and four PNG figures into ``folder`` (with ``interpolation``, an
    :class:`~latentmap.evaluation.interpolation.InterpolationResult`, also its grid, plot and CSV; with
    ``geometry``, a :class:`~latentmap.evaluation.geometry.LatentGeometry`, the void fraction, density views,
    t-SNE maps and decodes from voids).

    Returns the HTML section (links prefixed by ``rel``); with ``rel == ""`` also writes
    ``index.html``, so ``folder`` is a standalone report (``back``: (href, text) of a link to the
    report it belongs to).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    variables_frame(diag).to_csv(folder / "variables.csv", index=False)
    (folder / "diagnostics.json").write_text(json.dumps(diag.to_dict(), indent=2) + "\n")
    figures = {"variances.png": variances_png, "radius.png": radius_png, "pca.png": pca_png, "axes.png": axes_png}
    for name, draw in figures.items():
        (folder / name).write_bytes(draw(diag))
    section = Section(f"Latent diagnostics: {diag.model} ({diag.kind}, latent {diag.latent_dim})")
    section.text(f"{diag.n_images} images, compared with {diag.prior} ({diag.radius_measure}).")
    section.table(summary_table(diag))
    for name, caption in _captions(diag).items():
        section.image(f"{rel}{name}", caption)
    section.parts.append(f'<p class="note">Files: <a href="{rel}variables.csv">variables.csv</a> (one row per '
                         f'variable), <a href="{rel}diagnostics.json">diagnostics.json</a>.</p>')
    sections = [section]
    if geometry is not None:
        sections.append(write_geometry(geometry, folder, rel))
    if interpolation is not None:
        sections.append(write_interpolation(interpolation, folder, rel))
    if not rel:
        findings = describe(diag) + ([] if geometry is None else [describe_geometry(geometry)]) \
            + ([] if interpolation is None else [describe_interpolation(interpolation)])
        (folder / "index.html").write_text(render_page(f"Latent diagnostics: {diag.model}", sections,
                                                       findings=findings, back=back))
    for extra in sections[1:]:
        section.parts.append(extra.render())
    return section


def describe(diag: LatentDiagnostics) -> list[str]:
    """The diagnostics in a few sentences (the CLI's printout and the report's text)."""
    s = diag.summary()
    parts = []
    if diag.vae_like:
        parts.append(f"Inactive variables (Var(mu) < {INACTIVE_THRESHOLD:g}): {s['inactive_variables']} of "
                     f"{diag.latent_dim}. Var(mu) + E[sigma²] per variable: mean {s['variance_law_mean']:.3f} "
                     f"(min {s['variance_law_min']:.3f}, max {s['variance_law_max']:.3f}; 1 for a well-trained VAE).")
    where = "" if diag.standard_prior else " (Mahalanobis distance under its prior samples' mean and covariance)"
    parts.append(f"Compared with {diag.prior}: mean radius of the encodings {s['mean_radius']:.3g}, of prior samples "
                 f"{s['prior_mean_radius']:.3g}{where}; sqrt(d) = {s['sqrt_d']:.3g}.")
    if diag.outside_prior is not None:
        parts.append(f"{diag.outside_prior:.1%} of the encodings lie beyond the radius that holds 99% of prior "
                     f"samples ({diag.radius_limit:.3g}).")
    parts.append(f"PCA: {s['components_90']} components explain 90% of the encodings' variance, "
                 f"{s['components_99']} explain 99%.")
    parts.append(f"Reconstruction MSE {s['mse']:.3g}, variance loss Δ_var {s['variance_loss']:.3g}.")
    return parts


def summary_table(diag: LatentDiagnostics):
    import pandas as pd

    s = diag.summary()
    keys = ["fingerprint", "n_images", "latent_dim", "prior", "inactive_variables", "variance_law_mean", "mean_variance",
            "mean_radius", "prior_mean_radius", "sqrt_d", "outside_prior_99", "components_90", "components_99", "mse",
            "variance_loss"]
    rows = [{"metric": column_label(k), "value": sig(s[k]) if isinstance(s[k], float) else str(s[k])}
            for k in keys if s[k] is not None]
    return pd.DataFrame(rows)


def _captions(diag: LatentDiagnostics) -> dict:
    var = ("Var(mu) (blue) and E[sigma²] (orange) stacked per variable; the dashed line is 1, where a "
           "well-trained VAE's bars end" if diag.vae_like else
           "variance of the encodings per variable; black ticks: the variance of the prior samples")
    return {
        "variances.png": var,
        "radius.png": f"distance from the prior's centre of the encodings and of as many prior samples "
                      f"({'norm ||z||' if diag.standard_prior else 'Mahalanobis, in the prior samples’ units'}); "
                      f"dashed: sqrt(d) = {diag.sqrt_d:.3g}, dotted: the radius holding 99% of prior samples",
        "pca.png": "PCA of the encodings: eigenvalues of their covariance, and the cumulative explained variance",
        "axes.png": f"density of the encodings along the {min(AXES_SHOWN, diag.latent_dim)} highest-variance "
                    "variables (blue) against the density of as many prior samples (orange)"
                    + (" and N(0, 1) (grey)" if diag.standard_prior else ""),
    }


def variances_png(diag: LatentDiagnostics) -> bytes:
    idx = np.arange(diag.latent_dim)
    fig = new_figure(min(14.0, 4 + 0.12 * diag.latent_dim), 3.4)
    ax = fig.subplots()
    if diag.vae_like:
        ax.bar(idx, diag.var_mu, color="tab:blue", label="Var(mu)")
        ax.bar(idx, diag.mean_sigma2, bottom=diag.var_mu, color="tab:orange", label="E[sigma²]")
        ax.set_title(f"{diag.model}: variance law, {len(diag.inactive)} inactive of {diag.latent_dim}")
        ax.axhline(1.0, color="black", ls="--", lw=1)
    else:
        ax.bar(idx, diag.variance, color="tab:blue", label="Var(z), encodings")
        prior_var = diag.prior_variance if diag.prior_variance is not None else np.ones(diag.latent_dim)
        ax.scatter(idx, prior_var, marker="_", s=60, color="black", label="prior samples' variance", zorder=3)
        ax.set_title(f"{diag.model}: variance of the encodings against its prior")
    ax.set_xlabel("latent variable")
    ax.legend(loc="upper right", fontsize=8)
    return figure_png(fig)


def radius_png(diag: LatentDiagnostics) -> bytes:
    hist = diag.radius_histogram()
    fig = new_figure(6, 3.4)
    ax = fig.subplots()
    ax.stairs(hist["encodings"], hist["edges"], fill=True, alpha=0.5, label="encodings")
    ax.stairs(hist["prior"], hist["edges"], fill=True, alpha=0.5, label="prior samples")
    ax.axvline(diag.sqrt_d, color="black", ls="--", lw=1, label="sqrt(d)")
    if diag.radius_limit is not None:
        ax.axvline(diag.radius_limit, color="black", ls=":", lw=1, label="99% of prior samples")
    ax.set_xlabel("||z||" if diag.standard_prior else "Mahalanobis distance from the prior mean")
    ax.set_ylabel("count")
    ax.set_title(f"{diag.model}: radius of {diag.n_images} encodings vs prior")
    ax.legend(fontsize=8)
    return figure_png(fig)


def pca_png(diag: LatentDiagnostics) -> bytes:
    k = np.arange(1, diag.latent_dim + 1)
    fig = new_figure(9, 3.4)
    left, right = fig.subplots(1, 2)
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
    return figure_png(fig)


def axes_png(diag: LatentDiagnostics) -> bytes:
    axes = diag.top_axes()
    cols = min(4, len(axes))
    rows = -(-len(axes) // cols)
    fig = new_figure(2.6 * cols, 2.3 * rows)
    grid = fig.subplots(rows, cols, squeeze=False)
    edges = diag.axis_edges
    width = edges[1] - edges[0]
    centers = (edges[:-1] + edges[1:]) / 2
    for ax, i in zip(grid.flat, axes):
        ax.stairs(diag.axis_counts[i] / (diag.n_images * width), edges, color="tab:blue")
        if diag.prior_axis_counts is not None:
            ax.stairs(diag.prior_axis_counts[i] / (len(diag.prior_radii) * width), edges, color="tab:orange")
        if diag.standard_prior:
            ax.plot(centers, np.exp(-centers ** 2 / 2) / math.sqrt(2 * math.pi), lw=0.8, color="grey")
        out = diag.axis_outside[i] / diag.n_images
        ax.set_title(f"z{i}: var {diag.variance[i]:.2f}" + (f", {out:.1%} outside" if out else ""), fontsize=9)
    for ax in list(grid.flat)[len(axes):]:
        ax.axis("off")
    return figure_png(fig)
