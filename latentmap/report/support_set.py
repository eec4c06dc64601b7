"""A support set as files: its contact sheet, the information gain of the latent variables and
the sector populations, drawn from the manifest, beside the images and manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentmap.report.figures import figure_png, new_figure
from latentmap.report.grid import square_grid_png
from latentmap.report.tables import sig

if TYPE_CHECKING:
    from latentmap.io.support_folder import SupportSet

CONTACT_SHEET_NAME = "contact_sheet.png"
INFO_GAIN_PNG = "info_gain.png"
POPULATIONS_PNG = "sector_populations.png"


def support_set_figures(support: SupportSet) -> dict[str, bytes]:
    """PNG files by name: the contact sheet always, the two sector figures for the sector method."""
    m = support.manifest
    files = {CONTACT_SHEET_NAME: square_grid_png(support.images)}
    if "information_gain" in m and "sector_populations" in m:
        gain = m["information_gain"]
        files[INFO_GAIN_PNG] = info_gain_png(np.asarray(gain["gains"], dtype=float), m["top_k"], m["model"]["name"],
                                             gain["images"])
        pops = np.asarray([s["population"] for s in m["sector_populations"]])
        files[POPULATIONS_PNG] = populations_png(pops, m["top_k"], float(m["threshold"]))
    return files


def write_support_set(support: SupportSet, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Save the support-set folder (atomically) with its figures."""
    return support.save(path, overwrite=overwrite, files=support_set_figures(support))


def info_gain_png(ranked_gains: np.ndarray, k: int, model_name: str, n_images: int) -> bytes:
    """Gains in ranking order; the k variables that define the sectors are highlighted."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#c0392b" if r < k else "#7f8c8d" for r in range(len(ranked_gains))]
    ax.bar(np.arange(len(ranked_gains)), ranked_gains, color=colors, width=0.85)
    ax.set_xlabel("latent variables, ranked (red: the top-k defining the sectors)")
    ax.set_ylabel("information gain (MSE increase)")
    ax.set_title(f"Information gain of the latent variables of {model_name} ({n_images} images)", fontsize=10)
    ax.axhline(0, color="black", linewidth=0.6)
    return figure_png(fig)


def populations_png(pops: np.ndarray, k: int, threshold: float) -> bytes:
    """Sector populations sorted from most to least crowded (log scale): how far from uniform they are."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ordered = np.sort(pops[pops > 0])[::-1]  # a log scale cannot show the empty ones; the title counts them
    ax.bar(np.arange(len(ordered)), ordered, color="#2c7fb8", width=0.9)
    ax.set_yscale("log")
    ax.set_xlabel(f"the {len(ordered)} non-empty sectors of {len(pops)}, most crowded first")
    ax.set_ylabel("images in sector")
    ax.set_title(f"Sector populations (k={k}, threshold {sig(threshold)}; {int((pops == 0).sum())} empty)", fontsize=10)
    return figure_png(fig)
