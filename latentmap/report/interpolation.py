"""Interpolation paths as files: a labelled grid per model, the radius along the paths, CSV and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentmap.evaluation.interpolation import PATHS, InterpolationResult
from latentmap.report.figures import REFERENCE, colour, figure_png, new_figure
from latentmap.report.grid import grid_png
from latentmap.report.html import Section
from latentmap.report.tables import sig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GRID_NAME = "interpolation.png"
RADIUS_NAME = "interpolation_radius.png"


def interpolation_rows(result: InterpolationResult) -> tuple[list[torch.Tensor], list[str], list[str]]:
    """(rows, row labels, column labels): per pair the model's linear and spherical paths, then the same
    paths decoded by the partner after the map; each row starts and ends with the original images."""
    rows, labels = [], []
    for p in range(result.n_pairs):
        start, end = result.endpoints[p, :1], result.endpoints[p, 1:]
        for path in PATHS:
            rows.append(torch.cat([start, result.images[path][p], end]))
            labels.append(f"pair {p + 1}: {result.model}, {path}")
        for path in PATHS if result.carried else ():
            rows.append(torch.cat([start, result.carried[path][p], end]))
            labels.append(f"pair {p + 1}: {result.partner} via map, {path}")
    columns = ["original"] + [f"t={t:.2g}" for t in result.t] + ["original"]
    return rows, labels, columns


def interpolation_grid_png(result: InterpolationResult) -> bytes:
    """The grid of :func:`interpolation_rows` as PNG bytes, its rows and columns labelled."""
    rows, labels, columns = interpolation_rows(result)
    return grid_png(rows, row_labels=labels, column_labels=columns)


def radius_png(result: InterpolationResult) -> bytes:
    """:func:`radius_figure` as PNG bytes."""
    return figure_png(radius_figure(result))


def radius_figure(result: InterpolationResult) -> Figure:
    """Radius along each path over the prior's typical radius: one colour per pair, one line style per path
    (solid linear, dashed spherical), the legend beside the plot."""
    fig = new_figure(7.5, 3.4)
    ax = fig.subplots()
    styles = dict(zip(PATHS, ("-", "--", ":", "-.")))
    for p in range(result.n_pairs):
        for path in PATHS:
            ax.plot(result.t, result.radius[path][p] / result.radius_typical, color=colour(p), ls=styles[path],
                    marker="." if path == PATHS[0] else "x", lw=1.3, label=f"pair {p + 1}, {path}")
    ax.axhline(1.0, color=REFERENCE, ls=":", lw=1.2, label="prior's typical radius")
    ax.set_xlabel("t (fraction of the path)")
    ax.set_ylabel("radius / prior's typical")
    ax.set_title(f"{result.model}: distance from the prior's centre along the paths", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def describe(result: InterpolationResult, named: bool = True) -> str:
    """One sentence with the numbers: the linear path's dip and how well the map carries the paths
    (``named``: starting with the model's name)."""
    s = result.summary()
    text = (f"{result.model + ': a' if named else 'A'}t the midpoint the linear path lies at "
            f"{sig(s['linear_midpoint_radius'])} of the "
            f"prior's typical radius, the spherical path at {sig(s['spherical_midpoint_radius'])}")
    if result.partner:
        text += (f"; carried into {result.partner} through the map, the paths' images differ from "
                 f"{result.model}'s by MSE {sig(s['linear_carried_mse'])} (linear) and "
                 f"{sig(s['spherical_carried_mse'])} (spherical)")
    return text + "."


def write_interpolation(result: InterpolationResult, folder: str | os.PathLike[str], rel: str = "") -> Section:
    """interpolation.csv, interpolation.json and two figures into ``folder``; returns the HTML section."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    result.frame().to_csv(out / "interpolation.csv", index=False)
    (out / "interpolation.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out / GRID_NAME).write_bytes(interpolation_grid_png(result))
    (out / RADIUS_NAME).write_bytes(radius_png(result))
    section = Section(f"Interpolation: {result.model}")
    carried = (f" The last two rows of each pair carry the same latent paths into {result.partner} through "
               f"{result.map_description or 'a fitted linear map'} and decode them there." if result.partner else "")
    section.text(f"Between {result.n_pairs} pairs of encoded test images, {len(result.t)} steps each: linear and "
                 f"spherical paths (the spherical one around the prior's centre, in the prior's units: "
                 f"{result.prior}).{carried} " + describe(result))
    section.image(f"{rel}{GRID_NAME}", "rows: each pair's paths in this model, then carried into the other model; "
                                       "columns: the original images at both ends, the path's steps between",
                  grid=True)
    section.image(f"{rel}{RADIUS_NAME}", "distance of the path from the prior's centre over the prior's typical "
                                         "distance: a linear path between two typical points dips toward the centre")
    section.parts.append(f'<p class="note">Files: <a href="{rel}interpolation.csv">interpolation.csv</a> (radius and '
                         f'carried-path MSE per step), <a href="{rel}interpolation.json">interpolation.json</a>.</p>')
    return section
