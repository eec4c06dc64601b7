"""One map's relocation evaluation as files: relocation.csv/json, the per-label CSV, a grid and HTML."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latentmap.evaluation.relocation import grid_indices, relocation_rows
from latentmap.distributed import is_main
from latentmap.io.atomic import atomic_directory
from latentmap.report.grid import grid_png
from latentmap.report.findings import relocation_findings
from latentmap.report.html import Section, render_page, shown_path, shown_spec
from latentmap.report.tables import MISSING, models_frame, sig

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.relocation import RelocationResult
    from latentmap.maps.linear import LinearMap
    from latentmap.models.base import LatentModel


def shown_fit_source(record: dict[str, Any] | None) -> dict[str, Any]:
    """A map's fit-source record as a report writes it: its data spec and path without this machine's folders."""
    out = dict(record or {})
    if out.get("name") is not None:
        out["name"] = shown_spec(out["name"])
    if out.get("path") is not None:
        out["path"] = shown_path(out["path"])
    return out


def relocation_row_labels(source: str, target: str) -> list[str]:
    """Labels of the rows of :func:`~latentmap.evaluation.relocation.relocation_rows`' grid."""
    return ["originals", f"{source} reconstruction", f"{target} after mapping", f"{target} own reconstruction"]


def relocation_table(r: RelocationResult) -> list[tuple[str, str]]:
    """(metric, formatted value) rows of one pair: the CLI's printout and the report's table."""
    lp = (sig(r.relocated_lpips), sig(r.target_lpips))  # "–" without LPIPS: the note says why, once
    return [
        ("pair", f"{r.source} -> {r.target}"),
        ("estimator", r.estimator),
        ("relocation type", f"{r.type} ({r.type_name})"),
        ("images", str(r.n_images)),
        (f"reconstruction MSE {r.source}", sig(r.source_mse)),
        (f"reconstruction MSE {r.target}", sig(r.target_mse)),
        ("relocated MSE", sig(r.relocated_mse)),
        ("relocated / target MSE", sig(r.ratio)),
        ("ratio, 95% bootstrap interval", MISSING if r.ratio_low is None else
         f"[{sig(r.ratio_low)}, {sig(r.ratio_high)}]"),
        ("per-image ratio median / p90", MISSING if r.image_ratio_median is None else
         f"{sig(r.image_ratio_median)} / {sig(r.image_ratio_p90)}"),
        ("latent MSE", sig(r.latent_mse)),
        ("MSE of the mean image (a constant guess)", sig(r.mean_image_mse)),
        ("latent R²", sig(r.latent_r2)),
        ("relocated SSIM", sig(r.relocated_ssim)),
        (f"SSIM {r.target}", sig(r.target_ssim)),
        ("relocated LPIPS", lp[0]),
        (f"LPIPS {r.target}", lp[1]),
        (f"cycle MSE ({r.cycle_via})", sig(r.cycle_mse)),
        (f"cycle / {r.source} MSE", sig(r.cycle_ratio)),
    ]


def save_relocation_report(result: RelocationResult, out: str | os.PathLike[str], source: LatentModel,
                           target: LatentModel, linear_map: LinearMap, data: ImageDataset, grid_images: int,
                           context: dict[str, Any], *, overwrite: bool = True) -> Path:
    """Write the report folder atomically; ``context`` (map path, model paths, dataset, split) goes into the JSON."""
    if not is_main():  # torch.distributed: rank 0 alone draws the grids and writes
        return Path(out)
    row = result.table_row()
    by_label = pd.DataFrame(result.by_label)
    images = data.batch(grid_indices(len(data), grid_images))
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        pd.DataFrame([row]).to_csv(tmp / "relocation.csv", index=False)
        if len(by_label):
            by_label.to_csv(tmp / "relocation_by_label.csv", index=False)
        (tmp / "relocation.json").write_text(json.dumps(
            {**row, "by_label": result.by_label, **context,
             "fit_source": shown_fit_source(linear_map.info_.get("fit_source", {}) if hasattr(linear_map, "info_")
                                           else {})},
            indent=2) + "\n")
        (tmp / "grid.png").write_bytes(grid_png(relocation_rows(source, target, linear_map, images),
                                                row_labels=relocation_row_labels(result.source, result.target)))
        section = Section(f"{result.source} -> {result.target} (type {result.type}: {result.type_name})")
        section.table(pd.DataFrame([{"metric": k, "value": v} for k, v in relocation_table(result)])
                      .astype({"value": object}))
        if result.relocated_lpips is None and result.lpips_note:
            section.text(result.lpips_note + ".", cls="note")
        if context.get("models"):
            section.text("Models (fingerprint: of weights and config, checked whenever the map is used):")
            section.table(models_frame(context["models"].values()))
        if len(by_label):
            section.text("By label: B's own and relocated MSE of the images of each label (relocation_by_label.csv).")
            section.table(by_label)
        section.image("grid.png", f"rows: originals, {result.source}'s reconstruction, {result.target} after "
                                  f"mapping, {result.target}'s own reconstruction")
        if result.worst_images:  # positions in ``data``, worst relocated first
            worst = data.batch(result.worst_images)
            (tmp / "worst.png").write_bytes(grid_png(relocation_rows(source, target, linear_map, worst),
                                                     row_labels=relocation_row_labels(result.source, result.target)))
            section.image("worst.png", f"the {len(result.worst_images)} images whose relocated MSE exceeds "
                                       f"{result.target}'s own the most (rows as above)")
        (tmp / "index.html").write_text(render_page("latentmap relocation", [section],
                                                    f"{result.n_images} images of {context.get('dataset')} "
                                                    f"({context.get('split')}).",
                                                    findings=relocation_findings(
                                                        json.loads((tmp / "relocation.json").read_text()))))
    return Path(out)
