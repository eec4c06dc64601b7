"""Fragments, filaments and voids as files: geometry.json, geometry_fidelity.csv, figures and an HTML section."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentmap.report.figures import CONTENT_WIDTH_IN, REFERENCE, categorical_colours, colour, figure_png, new_figure
from latentmap.report.html import Section
from latentmap.report.tables import percent, sig

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection

    from latentmap.evaluation.geometry import LatentGeometry

DENSITY_NAME = "geometry_density.png"
TSNE_NAME = "geometry_tsne.png"
VOIDS_NAME = "geometry_voids.png"
DECODES_NAME = "geometry_decodes.png"


def describe(geo: LatentGeometry) -> str:
    """The verdict in one sentence, with numbers."""
    s = geo.summary()
    fid = []
    for group, what in (("void", "from voids"), ("near", "near the data")):
        d = geo.fidelity.get(group)
        if d is not None:
            fid.append(f"precision {sig(d['precision'])} and density {sig(d['density'])} for {d['samples']} samples {what}")
    tail = f"; in {s['reference']} space: " + ", ".join(fid) if fid else ""
    return (f"Void fraction {percent(s['void_fraction'])} of {s['points']} samples of the {s['sampler']} lie farther from "
            f"every code than {percent(s['void_quantile'])} of the codes lie from their nearest neighbour "
            f"({sig(s['void_threshold'])}; about 1% if samples fill the space as the codes do){tail}.")


def density_png(geo: LatentGeometry) -> bytes:
    """Histograms of the codes and the samples along each of the highest-variance variables, and of their radii."""
    k = len(geo.axes)
    fig = new_figure(min(CONTENT_WIDTH_IN, 2.7 * (k + 1)), 2.8)
    grid = fig.subplots(1, k + 1, squeeze=False)[0]
    for ax, j in zip(grid, range(k)):
        a, b = geo.codes_on_axes[:, j], geo.samples_on_axes[:, j]
        lo, hi = np.quantile(np.concatenate([a, b]), [0.001, 0.999])
        edges = np.linspace(lo, hi, 51)
        ax.hist(a, edges, density=True, histtype="step", color=colour(0), label="codes")
        ax.hist(b, edges, density=True, histtype="step", color=colour(1), label="samples")
        ax.set_xlabel(f"z{geo.axes[j]}", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=9)
    grid[0].legend(fontsize=9)
    ax = grid[k]
    edges = np.histogram_bin_edges(np.concatenate([geo.radii, geo.sample_radii]), 50)
    ax.hist(geo.radii, edges, density=True, histtype="step", color=colour(0), label="codes")
    ax.hist(geo.sample_radii, edges, density=True, histtype="step", color=colour(1), label="samples")
    ax.set_xlabel("radius (sampler's units)", fontsize=9)
    ax.set_ylabel("density", fontsize=9)
    ax.tick_params(labelsize=9)
    fig.suptitle(f"{geo.model}: {geo.n} codes against {geo.n} samples of the {geo.sampler}", fontsize=10)
    return figure_png(fig)


def _scatter(ax: Axes, xy: np.ndarray, labels: np.ndarray | None, title: str) -> PathCollection | None:
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, color=colour(0))
        handle = None
    else:
        handle = ax.scatter(xy[:, 0], xy[:, 1], s=3, c=labels, cmap=categorical_colours(), vmin=-0.5, vmax=9.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("t-SNE 1", fontsize=9)
    ax.set_ylabel("t-SNE 2", fontsize=9)
    ax.tick_params(labelsize=9)
    return handle


def tsne_png(geo: LatentGeometry) -> bytes:
    """t-SNE maps of the codes and of their leading principal components, side by side, coloured by label where
    the images have labels; only for a geometry with its t-SNE maps."""
    assert geo.tsne_codes is not None and geo.tsne_leading is not None, "a geometry without its t-SNE maps"
    fig = new_figure(CONTENT_WIDTH_IN, 4.2)
    left, right = fig.subplots(1, 2)
    m = len(geo.tsne_codes)
    pca = " (of 50 principal components)" if geo.latent_dim > 50 else ""
    _scatter(left, geo.tsne_codes, geo.tsne_labels, f"t-SNE of {m} codes{pca}")
    handle = _scatter(right, geo.tsne_leading, geo.tsne_labels,
                      f"t-SNE of their {geo.leading_k} leading PCA components")
    if handle is not None:
        bar = fig.colorbar(handle, ax=[left, right], ticks=range(10), shrink=0.9)
        bar.set_label("label", fontsize=9)
        bar.ax.tick_params(labelsize=9)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def voids_png(geo: LatentGeometry) -> bytes:
    """Each sample's distance to its nearest code against each code's distance to its nearest other code, with
    the void threshold."""
    v = geo.voids
    fig = new_figure(6.2, 3.4)
    ax = fig.subplots()
    edges = np.histogram_bin_edges(np.concatenate([v.code_distances, v.sample_distances]), 60)
    # (the ignores: matplotlib's stub leaves out arrays of bin edges, which hist takes)
    ax.hist(v.code_distances, edges, histtype="step", color=colour(0),  # type: ignore[arg-type]
            label="code to nearest other code")
    ax.hist(v.sample_distances, edges, histtype="step", color=colour(1),  # type: ignore[arg-type]
            label="sample to nearest code")
    ax.axvline(v.threshold, color=REFERENCE, ls="--", lw=1, label=f"{percent(v.quantile)} of codes ({sig(v.threshold)})")
    ax.set_xlabel("nearest-neighbour distance in the latent space", fontsize=9)
    ax.set_ylabel("count", fontsize=9)
    ax.set_title(f"{geo.model}: void fraction {percent(v.fraction)}", fontsize=10)
    ax.legend(fontsize=9)
    return figure_png(fig)


def decodes_png(geo: LatentGeometry) -> bytes:
    """Decodes of the samples deepest in voids (top row) and of those nearest the codes (bottom row)."""
    from latentmap.report.grid import grid_png

    assert geo.void_decodes is not None and geo.near_decodes is not None, "a geometry without its decodes"

    return grid_png([geo.void_decodes, geo.near_decodes],
                    row_labels=["deepest in voids", "nearest the data"])


def fidelity_frame(geo: LatentGeometry) -> pd.DataFrame:
    """One row per group of samples (from voids, near the data): precision, recall, density and coverage in the
    reference space."""
    import pandas as pd

    rows = []
    for group, d in geo.fidelity.items():
        row = {"group": group, "reference": geo.reference}
        row.update(d or {"samples": None})
        rows.append(row)
    return pd.DataFrame(rows)


def write_geometry(geo: LatentGeometry, folder: str | os.PathLike[str], rel: str = "") -> Section:
    """geometry.json, geometry_fidelity.csv and the figures into ``folder``; returns the HTML section (links
    prefixed by ``rel``)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "geometry.json").write_text(json.dumps(geo.summary(), indent=2) + "\n")
    fidelity_frame(geo).to_csv(out / "geometry_fidelity.csv", index=False)
    (out / DENSITY_NAME).write_bytes(density_png(geo))
    (out / VOIDS_NAME).write_bytes(voids_png(geo))
    (out / DECODES_NAME).write_bytes(decodes_png(geo))
    assert geo.void_decodes is not None  # decodes_png drew them
    section = Section(f"Fragments, filaments and voids: {geo.model}")
    section.text(describe(geo))
    section.image(f"{rel}{DENSITY_NAME}", f"density of the codes (blue) and of the {geo.sampler}'s samples (orange) "
                                          f"along the {len(geo.axes)} highest-variance variables and against the "
                                          f"radius ({geo.radius_measure})")
    section.image(f"{rel}{VOIDS_NAME}", "distance of each sample to its nearest code against each code's distance "
                                        "to its nearest other code; samples right of the dashed line are in voids")
    section.image(f"{rel}{DECODES_NAME}", f"decodes of the {len(geo.void_decodes)} samples farthest from every code "
                                          "(top) and of the nearest ones (bottom)", grid=True)
    if geo.tsne_codes is not None:
        (out / TSNE_NAME).write_bytes(tsne_png(geo))
        section.image(f"{rel}{TSNE_NAME}", "t-SNE (scikit-learn, fixed seed) of the codes and of their leading "
                                           "principal components, coloured by label; distances in a t-SNE map are "
                                           "not distances in the latent space, but empty regions and filaments show")
    section.table(fidelity_frame(geo))
    section.parts.append(f'<p class="note">Files: <a href="{rel}geometry.json">geometry.json</a>, '
                         f'<a href="{rel}geometry_fidelity.csv">geometry_fidelity.csv</a>.</p>')
    return section
