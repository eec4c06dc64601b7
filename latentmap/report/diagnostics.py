"""Latent-space diagnostics as files: variables.csv, diagnostics.json, four figures and HTML.

Every figure compares the encodings with the model's own prior samples (StyleGAN's W with the
mapping network's output, not N(0, 1)); an interpolation result, when given, adds its grid.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentmap.evaluation.diagnostics import AXES_SHOWN, QUANTILES, LatentDiagnostics
from latentmap.evaluation.metrics import INACTIVE_THRESHOLD
from latentmap.io.atomic import atomic_directory
from latentmap.report.figures import CONTENT_WIDTH_IN, REFERENCE, colour, figure_png, new_figure
from latentmap.report.html import Section, render_page
from latentmap.report.tables import column_label, percent, sig
from latentmap.report.geometry import describe as describe_geometry
from latentmap.report.geometry import write_geometry
from latentmap.report.interpolation import describe as describe_interpolation
from latentmap.report.interpolation import write_interpolation

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.evaluation.geometry import LatentGeometry
    from latentmap.evaluation.interpolation import InterpolationResult


def save_diagnostics(diag: LatentDiagnostics, out: str | os.PathLike[str], *, overwrite: bool = True,
                     interpolation: InterpolationResult | None = None,
                     geometry: LatentGeometry | None = None) -> Path:
    """Write a standalone diagnostics report folder atomically (see :func:`write_diagnostics`)."""
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_diagnostics(diag, tmp, interpolation=interpolation, geometry=geometry)
    return Path(out)


def variables_frame(diag: LatentDiagnostics) -> pd.DataFrame:
    """One row per latent variable."""
    import pandas as pd

    frame = pd.DataFrame({"variable": np.arange(diag.latent_dim), "mean": diag.mean, "variance": diag.variance})
    if diag.prior_mean is not None:
        frame["prior_mean"] = diag.prior_mean
        frame["prior_variance"] = diag.prior_variance
    if diag.vae_like:
        assert diag.var_mu is not None  # vae_like: the variances are known
        frame["var_mu"] = diag.var_mu
        frame["mean_sigma2"] = diag.mean_sigma2
        frame["var_mu_plus_mean_sigma2"] = diag.variance_law
        frame["inactive"] = diag.var_mu < INACTIVE_THRESHOLD
    frame["axis_outside_fraction"] = diag.axis_outside / diag.n_images
    return frame


def write_diagnostics(diag: LatentDiagnostics, folder: str | os.PathLike[str], rel: str = "", *,
                      interpolation: InterpolationResult | None = None, geometry: LatentGeometry | None = None,
                      back: tuple[str, str] | None = None) -> Section:
    """variables.csv, diagnostics.json and four PNG figures into ``folder`` (with ``interpolation``, an
    :class:`~latentmap.evaluation.interpolation.InterpolationResult`, also its grid, plot and CSV; with
    ``geometry``, a :class:`~latentmap.evaluation.geometry.LatentGeometry`, the void fraction, density views,
    t-SNE maps and decodes from voids).

    Returns the HTML section (links prefixed by ``rel``); with ``rel == ""`` also writes
    ``index.html``, so ``folder`` is a standalone report (``back``: (href, text) of a link to the
    report it belongs to).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    variables_frame(diag).to_csv(out / "variables.csv", index=False)
    (out / "diagnostics.json").write_text(json.dumps(diag.to_dict(), indent=2) + "\n")
    figures = {"variances.png": variances_png, "radius.png": radius_png, "pca.png": pca_png, "axes.png": axes_png}
    for name, draw in figures.items():
        (out / name).write_bytes(draw(diag))
    section = Section(f"Latent diagnostics: {diag.model} ({diag.kind}, latent {diag.latent_dim})")
    section.text(f"{diag.n_images} images, compared with {diag.prior} ({diag.radius_measure}).")
    section.table(summary_table(diag))
    for name, caption in _captions(diag).items():
        section.image(f"{rel}{name}", caption)
    section.table(variables_frame(diag), fold="Every latent variable", csv=f"{rel}variables.csv")
    section.parts.append(f'<p class="note">Files: <a href="{rel}variables.csv">variables.csv</a> (one row per '
                         f'variable), <a href="{rel}diagnostics.json">diagnostics.json</a>.</p>')
    sections = [section]
    if geometry is not None:
        sections.append(write_geometry(geometry, out, rel))
    if interpolation is not None:
        sections.append(write_interpolation(interpolation, out, rel))
    if not rel:
        findings = describe(diag) + ([] if geometry is None else [describe_geometry(geometry)]) \
            + ([] if interpolation is None else [describe_interpolation(interpolation)])
        (out / "index.html").write_text(render_page(f"Latent diagnostics: {diag.model}", sections,
                                                       findings=findings, back=back, verdict=verdict(diag)))
    for extra in sections[1:]:
        section.parts.append(extra.render())
    return section


VERDICT_VARIABLES = 8  # the variables the verdict's table ranks (every one is in variables.csv)
VERDICT_HEADERS = {"variable": "variable", "variance": "variance of the encodings",
                   "prior_variance": "variance of the prior samples", "var_mu": "Var(mu)", "mean_sigma2": "E[sigma²]",
                   "axis_outside_fraction": "share outside the axis histograms' range"}


def verdict(diag: LatentDiagnostics) -> Section:
    """The diagnostics' verdict: the variables that carry the most of the encodings' variance, ranked, beside
    the prior samples' variance (and, for a VAE, the variance law's two terms) and the share of encodings
    outside the axis histograms' range along each."""
    frame = variables_frame(diag)
    keep = [c for c in ("variable", "variance", "prior_variance", "var_mu", "mean_sigma2", "axis_outside_fraction")
            if c in frame.columns]
    top = frame[keep].sort_values("variance", ascending=False, kind="stable").head(VERDICT_VARIABLES)
    top = top.rename(columns=VERDICT_HEADERS)
    section = Section(f"Verdict: the {len(top)} variables with the largest variance, of {diag.latent_dim}")
    inactive = "" if diag.inactive is None else f"; {len(diag.inactive)} inactive"
    section.text(f"Encodings of {diag.n_images} images against {diag.prior}{inactive}. Every variable: "
                 "variables.csv and the folded table below.")
    section.table(top.reset_index(drop=True), headline=VERDICT_HEADERS["variance"], order="desc")
    return section


def describe(diag: LatentDiagnostics) -> list[str]:
    """The diagnostics in a few sentences (the CLI's printout and the report's text)."""
    s = diag.summary()
    parts = []
    if diag.vae_like:
        parts.append(f"Inactive variables (Var(mu) < {INACTIVE_THRESHOLD:g}): {s['inactive_variables']} of "
                     f"{diag.latent_dim}. Var(mu) + E[sigma²] per variable: mean {sig(s['variance_law_mean'])} "
                     f"(min {sig(s['variance_law_min'])}, max {sig(s['variance_law_max'])}; 1 for a well-trained "
                     "VAE).")
    where = "" if diag.standard_prior else " (Mahalanobis distance under its prior samples' mean and covariance)"
    parts.append(f"Compared with {diag.prior}: mean radius of the encodings {sig(s['mean_radius'])}, of prior "
                 f"samples {sig(s['prior_mean_radius'])}{where}; sqrt(d) = {sig(s['sqrt_d'])}.")
    if diag.outside_prior is not None:
        parts.append(f"{percent(diag.outside_prior)} of the encodings lie beyond the radius that holds 99% of prior "
                     f"samples ({sig(diag.radius_limit)}).")
    parts.append(f"PCA: {s['components_90']} components explain 90% of the encodings' variance, "
                 f"{s['components_99']} explain 99%.")
    parts.append(f"Reconstruction MSE {sig(s['mse'])}, variance loss Δ_var {sig(s['variance_loss'])}.")
    return parts


def summary_table(diag: LatentDiagnostics) -> pd.DataFrame:
    """The headline numbers as (metric, value) rows: sizes, inactive variables, the variance law, radii, PCA
    components and reconstruction."""
    import pandas as pd

    s = diag.summary()
    keys = ["fingerprint", "n_images", "latent_dim", "prior", "inactive_variables", "variance_law_mean", "mean_variance",
            "mean_radius", "prior_mean_radius", "sqrt_d", "outside_prior_99", "components_90", "components_99", "mse",
            "variance_loss"]
    rows = [{"metric": column_label(k), "value": sig(s[k]) if isinstance(s[k], float) else str(s[k])}
            for k in keys if s[k] is not None]
    return pd.DataFrame(rows)


def _captions(diag: LatentDiagnostics) -> dict[str, str]:
    var = ("Var(mu) (blue) and E[sigma²] (orange) stacked per variable; the dashed line is 1, where a "
           "well-trained VAE's bars end" if diag.vae_like else
           "variance of the encodings per variable; black ticks: the variance of the prior samples")
    return {
        "variances.png": var,
        "radius.png": f"distance from the prior's centre of the encodings and of as many prior samples "
                      f"({'norm ||z||' if diag.standard_prior else 'Mahalanobis, in the prior samples’ units'}); "
                      f"dashed: sqrt(d) = {sig(diag.sqrt_d)}, dotted: the radius holding 99% of prior samples",
        "pca.png": "PCA of the encodings: eigenvalues of their covariance, and the cumulative explained variance",
        "axes.png": f"density of the encodings along the {min(AXES_SHOWN, diag.latent_dim)} highest-variance "
                    "variables (blue) against the density of as many prior samples (orange)"
                    + (" and N(0, 1) (dashed)" if diag.standard_prior else ""),
    }


def variances_png(diag: LatentDiagnostics) -> bytes:
    """Per variable: Var(mu) and E[sigma²] stacked against the prior's 1 for a VAE-like model, else the
    encodings' variance against the prior samples'."""
    idx = np.arange(diag.latent_dim)
    fig = new_figure(min(CONTENT_WIDTH_IN, 4 + 0.12 * diag.latent_dim), 3.8)
    ax = fig.subplots()
    if diag.vae_like:
        assert diag.var_mu is not None and diag.mean_sigma2 is not None and diag.inactive is not None
        ax.bar(idx, diag.var_mu, color=colour(0), label="Var(mu)")
        ax.bar(idx, diag.mean_sigma2, bottom=diag.var_mu, color=colour(1), label="E[sigma²]")
        ax.axhline(1.0, color=REFERENCE, ls="--", lw=1, label="1 (the N(0, 1) prior)")
        title = f"{diag.model}: variance law, {len(diag.inactive)} inactive of {diag.latent_dim}"
    else:
        ax.bar(idx, diag.variance, color=colour(0), label="Var(z), encodings")
        prior_var = diag.prior_variance if diag.prior_variance is not None else np.ones(diag.latent_dim)
        ax.scatter(idx, prior_var, marker="_", s=60, color=REFERENCE, label="prior samples' variance", zorder=3)
        title = f"{diag.model}: variance of the encodings against its prior"
    ax.set_title(title, pad=26)
    ax.set_xlabel("latent variable")
    ax.set_ylabel("variance")
    ax.set_xlim(-1, diag.latent_dim)
    # the legend above the bars, never over them
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    return figure_png(fig)


def radius_png(diag: LatentDiagnostics) -> bytes:
    """Histograms of the encodings' and the prior samples' distance from the prior's centre, with sqrt(d) and the
    radius holding 99% of the prior samples."""
    hist = diag.radius_histogram()
    fig = new_figure(6, 3.4)
    ax = fig.subplots()
    ax.stairs(hist["encodings"], hist["edges"], fill=True, alpha=0.5, color=colour(0), label="encodings")
    ax.stairs(hist["prior"], hist["edges"], fill=True, alpha=0.5, color=colour(1), label="prior samples")
    ax.axvline(diag.sqrt_d, color=REFERENCE, ls="--", lw=1, label="sqrt(d)")
    if diag.radius_limit is not None:
        ax.axvline(diag.radius_limit, color=REFERENCE, ls=":", lw=1, label="99% of prior samples")
    ax.set_xlabel("||z||" if diag.standard_prior else "Mahalanobis distance from the prior mean")
    ax.set_ylabel("count")
    ax.set_title(f"{diag.model}: radius of {diag.n_images} encodings vs prior")
    ax.legend(fontsize=8)
    return figure_png(fig)


def pca_png(diag: LatentDiagnostics) -> bytes:
    """The PCA spectrum of the encodings (log scale) and their cumulative explained variance."""
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
    """Density of the encodings along the highest-variance variables, one panel each, against the prior samples'
    (and N(0, 1) for the standard prior)."""
    axes = diag.top_axes()
    cols = min(4, len(axes))
    rows = -(-len(axes) // cols)
    fig = new_figure(min(CONTENT_WIDTH_IN, 2.4 * cols), 0.6 + 2.5 * rows)
    grid = fig.subplots(rows, cols, squeeze=False)
    edges = diag.axis_edges
    width = edges[1] - edges[0]
    centers = (edges[:-1] + edges[1:]) / 2
    counts = [diag.axis_counts[i] for i in axes] + ([diag.prior_axis_counts[i] for i in axes]
                                                    if diag.prior_axis_counts is not None else [])
    filled = np.flatnonzero(np.sum(counts, axis=0) > 0)  # the bins anything falls in, shared by the panels
    low, high = (edges[filled[0]], edges[filled[-1] + 1]) if len(filled) else (edges[0], edges[-1])
    for k, (ax, i) in enumerate(zip(grid.flat, axes)):
        ax.stairs(diag.axis_counts[i] / (diag.n_images * width), edges, color=colour(0), lw=1.4, label="encodings")
        if diag.prior_axis_counts is not None:
            ax.stairs(diag.prior_axis_counts[i] / (len(diag.prior_radii) * width), edges, color=colour(1), lw=1.4,
                      label="prior samples")
        if diag.standard_prior:
            ax.plot(centers, np.exp(-centers ** 2 / 2) / math.sqrt(2 * math.pi), lw=1.4, ls="--", color=REFERENCE,
                    label="N(0, 1)", zorder=3)
        out = diag.axis_outside[i] / diag.n_images
        ax.set_title(f"z{i}: var {sig(float(diag.variance[i]))}" + (f", {percent(out)} outside" if out else ""),
                     fontsize=9)
        ax.set_xlim(low, high)
        ax.tick_params(labelsize=8)
        if k % cols == 0:
            ax.set_ylabel("density", fontsize=9)
        if k >= len(axes) - cols:
            ax.set_xlabel(f"value of z{i}", fontsize=9)
    for ax in list(grid.flat)[len(axes):]:
        ax.axis("off")
    handles, labels = grid.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return figure_png(fig, layout=False)
