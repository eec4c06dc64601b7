"""Fragments, filaments and voids as files: geometry.json, geometry_fidelity.csv, figures and an HTML section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from latentmap.report.figures import CONTENT_WIDTH_IN, REFERENCE, categorical_colours, colour, figure_png, new_figure
from latentmap.report.html import Section
from latentmap.report.tables import percent, sig

DENSITY_NAME = "geometry_density.png"
TSNE_NAME = "geometry_tsne.png"
VOIDS_NAME = "geometry_voids.png"
DECODES_NAME = "geometry_decodes.png"


def describe(geo) -> str:
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


def density_png(geo) -> bytes:
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


def _scatter(ax, xy, labels, title):
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


def tsne_png(geo) -> bytes:
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


def voids_png(geo) -> bytes:
    v = geo.voids
    fig = new_figure(6.2, 3.4)
    ax = fig.subplots()
    edges = np.histogram_bin_edges(np.concatenate([v.code_distances, v.sample_distances]), 60)
    ax.hist(v.code_distances, edges, histtype="step", color=colour(0), label="code to nearest other code")
    ax.hist(v.sample_distances, edges, histtype="step", color=colour(1), label="sample to nearest code")
    ax.axvline(v.threshold, color=REFERENCE, ls="--", lw=1, label=f"{percent(v.quantile)} of codes ({sig(v.threshold)})")
    ax.set_xlabel("nearest-neighbour distance in the latent space", fontsize=9)
    ax.set_ylabel("count", fontsize=9)
    ax.set_title(f"{geo.model}: void fraction {percent(v.fraction)}", fontsize=10)
    ax.legend(fontsize=9)
    return figure_png(fig)


def decodes_png(geo) -> bytes:
    from latentmap.report.grid import grid_png

    return grid_png([geo.void_decodes, geo.near_decodes],
                    row_labels=["deepest in voids", "nearest the data"])


def fidelity_frame(geo):
    import pandas as pd

    rows = []
    for group, d in geo.fidelity.items():
        row = {"group": group, "reference": geo.reference}
        row.update(d or {"samples": None})
        rows.append(row)
    return pd.DataFrame(rows)


def write_geometry(geo, folder, rel: str = "") -> Section:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "geometry.json").write_text(json.dumps(geo.summary(), indent=2) + "\n")
    fidelity_frame(geo).to_csv(folder / "geometry_fidelity.csv", index=False)
    (folder / DENSITY_NAME).write_bytes(density_png(geo))
    (folder / VOIDS_NAME).write_bytes(voids_png(geo))
    (folder / DECODES_NAME).write_bytes(decodes_png(geo))
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
        (folder / TSNE_NAME).write_bytes(tsne_png(geo))
        section.image(f"{rel}{TSNE_NAME}", "t-SNE (scikit-learn, fixed seed) of the codes and of their leading "
                                           "principal components, coloured by label; distances in a t-SNE map are "
                                           "not distances in the latent space, but empty regions and filaments show")
    section.table(fidelity_frame(geo))
    section.parts.append(f'<p class="note">Files: <a href="{rel}geometry.json">geometry.json</a>, '
                         f'<a href="{rel}geometry_fidelity.csv">geometry_fidelity.csv</a>.</p>')
    return section
