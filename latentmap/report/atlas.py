"""The relocation atlas as files: CSV, JSON, the ratio matrix as a heat map, grids, map folders, HTML."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.evaluation.atlas import AtlasResult
from latentmap.evaluation.relocation import GRID_IMAGES, RELOCATION_TYPES, grid_indices, relocation_rows
from latentmap.distributed import is_main
from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import json_default
from latentmap.report.figures import CONTENT_WIDTH_IN, figure_png, new_figure
from latentmap.report.grid import grid_png
from latentmap.io.model_record import NOT_PATHS
from latentmap.io.names import slug, unique_slugs
from latentmap.report.estimators import estimator_findings, estimator_ranking, write_comparison
from latentmap.report.findings import atlas_findings
from latentmap.report.html import Section, render_page, shown_path, shown_spec
from latentmap.report.relocation import relocation_row_labels
from latentmap.report.tables import models_frame, sig

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.relocation import RelocationResult
    from latentmap.models.base import LatentModel


def pair_name(a: str, b: str) -> str:
    """Folder and file stem of the ordered pair a -> b (of two names already made file-safe by ``unique_slugs``)."""
    return f"{a}__{b}"


def save_atlas(atlas: AtlasResult, out: str | os.PathLike[str], models: Sequence[LatentModel],
               test_data: ImageDataset | torch.Tensor, grid_count: int = GRID_IMAGES, *,
               overwrite: bool = True) -> Path:
    """Write the atlas as a standalone report folder, atomically."""
    if not is_main():  # torch.distributed: rank 0 alone draws the grids and writes
        return Path(out)
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_atlas(atlas, tmp, models, test_data, grid_count)
    return Path(out)


def write_atlas(atlas: AtlasResult, folder: str | os.PathLike[str], models: Sequence[LatentModel],
                test_data: ImageDataset | torch.Tensor, grid_count: int = GRID_IMAGES, rel: str = "",
                title: str = "Relocation atlas", back: tuple[str, str] | None = None) -> Section:
    """CSV, JSON, ratio matrix (CSV + PNG), one grid and one map folder per pair into ``folder``.

    Returns the HTML section (image links prefixed by ``rel``); with ``rel == ""`` also writes
    ``index.html``, so ``folder`` is a standalone report (``back``: (href, text) of a link to the
    report it belongs to).
    """
    base = Path(folder)
    (base / "grids").mkdir(parents=True, exist_ok=True)
    frame = atlas.frame()
    frame.to_csv(base / "atlas.csv", index=False)
    by_label = atlas.by_label_frame()
    if len(by_label):
        by_label.to_csv(base / "atlas_by_label.csv", index=False)
    matrix = atlas.ratio_matrix()
    matrix.to_csv(base / "ratio_matrix.csv")
    (base / "atlas.json").write_text(json.dumps(
        {"models": [_shown_info(info) for info in atlas.models], "skipped": atlas.skipped,
         "fit_source": _shown_info(atlas.fit_source, "name"), "map_params": atlas.map_params,
         "estimators": atlas.estimators, "similarity": atlas.similarity, "compute": atlas.compute,
         "results": [r.to_dict() for r in atlas.results]}, indent=2, default=json_default) + "\n")
    types = {(r.source, r.target): r.type for r in atlas.results}
    (base / "ratio_matrix.png").write_bytes(ratio_matrix_png(matrix, types))
    idx = grid_indices(len(test_data), grid_count)
    images = test_data.batch(idx) if hasattr(test_data, "batch") else test_data[torch.as_tensor(idx)]
    model_by_name = {m.name: m for m in models}
    info_by_name = {info["name"]: info for info in atlas.models}
    several = len(atlas.estimators) > 1
    files = unique_slugs(info["name"] for info in atlas.models)  # model names from configs: never a path
    grids = []
    for r in atlas.results:
        name = pair_name(files[r.source], files[r.target])
        pair_map = atlas.estimator_maps.get((r.estimator, r.source, r.target)) or atlas.maps[(r.source, r.target)]
        maps_dir = base / "maps" / slug(r.estimator, "estimator") if several else base / "maps"
        pair_map.save(maps_dir / name, source=info_by_name[r.source], target=info_by_name[r.target],
                      fit_source=atlas.fit_source, extra={"estimator_label": r.estimator} if several else None)
        if r.estimator != atlas.primary:
            continue
        rows = relocation_rows(model_by_name[r.source], model_by_name[r.target], pair_map, images)
        labels = relocation_row_labels(r.source, r.target)
        (base / "grids" / f"{name}.png").write_bytes(grid_png(rows, row_labels=labels))
        grids.append((r, f"{rel}grids/{name}.png"))
    comparison = lambda section: write_comparison(atlas, base, section, models, test_data, rel)  # noqa: E731
    return _atlas_page(atlas, base, frame, len(by_label) > 0, grids, comparison, rel, title, back)


def rewrite_atlas_page(folder: str | os.PathLike[str], title: str = "Relocation atlas",
                       back: tuple[str, str] | None = None) -> Path:
    """The page of a saved atlas folder (``index.html``, the heat maps and the comparison's CSV files) written
    again by this version's page code from the folder's ``atlas.json`` and CSV files: no model is loaded and
    nothing is fitted or evaluated, so every number, grid and worst-image picture is the run's own."""
    from latentmap.evaluation.lpips_metric import portable_text
    from latentmap.evaluation.relocation import RelocationResult

    base = Path(folder)
    saved = json.loads((base / "atlas.json").read_text())
    # a note of an older run may name this machine's torch hub folder: written as $TORCH_HOME/hub, as runs now do
    results = [RelocationResult(**{**r, "lpips_note": portable_text(r.get("lpips_note") or "")})
               for r in saved["results"]]
    atlas = AtlasResult(results=results, models=saved["models"],
                        fit_source=saved["fit_source"], map_params=saved["map_params"],
                        skipped=saved.get("skipped") or [], estimators=saved.get("estimators") or {},
                        similarity=saved.get("similarity") or {}, compute=saved.get("compute") or {})
    files = unique_slugs(info["name"] for info in atlas.models)
    grids = [(r, f"grids/{pair_name(files[r.source], files[r.target])}.png") for r in atlas.results_of()]
    types = {(r.source, r.target): r.type for r in atlas.results}
    (base / "ratio_matrix.png").write_bytes(ratio_matrix_png(atlas.ratio_matrix(), types))
    comparison = lambda section: write_comparison(atlas, base, section, None, None)  # noqa: E731
    _atlas_page(atlas, base, atlas.frame(), (base / "atlas_by_label.csv").is_file(),
                [g for g in grids if (base / g[1]).is_file()], comparison, "", title, back)
    return base


def _atlas_page(atlas: AtlasResult, folder: Path, frame: pd.DataFrame, by_label: bool,
                grids: list[tuple[RelocationResult, str]], comparison: Callable[[Section], None], rel: str,
                title: str, back: tuple[str, str] | None) -> Section:
    """The atlas's HTML section (and, with ``rel == ""``, its page) from its results, grids and comparison."""
    several = len(atlas.estimators) > 1
    section = Section(title)
    if several:
        what = f"one map per estimator ({', '.join(atlas.estimators)}; the matrix and grids show {atlas.primary})"
    elif atlas.estimators.get(atlas.primary, {}).get("estimator", "linear") == "linear":
        what = f"a linear map ({_describe_map(atlas.map_params)})"
    else:
        what = f"a '{atlas.primary}' map"
    section.text(f"Every ordered pair A -> B: {what} fitted on {_describe_fit(atlas.fit_source)}, "
                 f"evaluated on {atlas.results[0].n_images} images. ratio = MSE of Dec_B(M(Enc_A x)) against x, "
                 "divided by B's own reconstruction MSE (1 = nothing lost by relocating), with its 95% bootstrap "
                 "interval [ratio_low, ratio_high]; image_ratio_median and image_ratio_p90 describe the per-image "
                 "ratios.")
    section.image(f"{rel}ratio_matrix.png", "relocated-MSE ratio, rows source A, columns target B; "
                                           "T1/T2/T3 = relocation type (colour: log2 of the ratio)")
    cols = ["type", "source", "target"] + (["estimator"] if several else []) + [
        "source_mse", "target_mse", "relocated_mse", "ratio", "ratio_low", "ratio_high", "image_ratio_median",
        "image_ratio_p90", "latent_r2", "relocated_ssim", "target_ssim", "cycle_mse", "cycle_ratio"]
    lp = frame["relocated_lpips"].notna().any()
    if lp:
        cols += ["relocated_lpips", "target_lpips"]
    if several:  # the ranking of pairs under the primary estimator; the estimators' ranking is the verdict
        section.parts.append(f"<h3>Pairs ranked by relocation ratio ({atlas.primary})</h3>")
        section.table(ranked_pairs(frame, atlas.primary), headline="ratio")
    for kind in sorted(frame["type"].unique()):
        section.table(frame.loc[frame["type"] == kind, cols], fold=f"Type {kind}: {RELOCATION_TYPES[int(kind)]}, "
                                                                   "every measure", csv=f"{rel}atlas.csv")
    section.table(models_frame(atlas.models), fold="Models (fingerprint: of weights and config; each pair's map "
                                                   "folder records it and checks it whenever the map is used)")
    comparison(section)
    if not lp and not rel:  # inside a larger report, the report says it once
        section.text(atlas.results[0].lpips_note + "; the LPIPS columns are omitted.", cls="note")
    for skip in atlas.skipped:
        section.text(f"Model '{skip['name']}' was left out: it {skip['reason']}.", cls="note")
    section.parts.append(f'<p class="note">Files: <a href="{rel}atlas.csv">atlas.csv</a>, '
                         f'<a href="{rel}atlas.json">atlas.json</a>, <a href="{rel}ratio_matrix.csv">ratio_matrix.csv'
                         f'</a>' + (f', <a href="{rel}atlas_by_label.csv">atlas_by_label.csv</a> (ratio per label)'
                                    if by_label else '') + f', maps in {rel}maps/.</p>')
    _grids(section, grids)
    if not rel:
        findings = atlas_findings(json.loads((folder / "atlas.json").read_text())) + estimator_findings(atlas)
        (folder / "index.html").write_text(render_page("latentmap relocation atlas", [section], findings=findings,
                                                       back=back, verdict=atlas_verdict(atlas, frame)))
    return section


def ranked_pairs(frame: pd.DataFrame, estimator: str | None = None) -> pd.DataFrame:
    """The pairs (of ``estimator``, when the frame has several) ranked by relocation ratio, best first, with
    the ratio's interval, the per-image median and the latent R² (missing ratios last)."""
    if estimator is not None and "estimator" in frame.columns:
        frame = frame[frame["estimator"] == estimator]
    cols = [c for c in ("source", "target", "type", "ratio", "ratio_low", "ratio_high", "image_ratio_median",
                        "latent_r2") if c in frame.columns]
    return frame[cols].sort_values("ratio", kind="stable", na_position="last").reset_index(drop=True)


def atlas_verdict(atlas: AtlasResult, frame: pd.DataFrame) -> Section:
    """The atlas's verdict: with several estimators, the estimators ranked by their median ratio over the
    pairs; with one, the pairs ranked by their ratio."""
    if len(atlas.estimators) > 1:
        section = Section("Verdict: estimators ranked by median relocation ratio")
        section.text(f"Over the {frame['ratio'].notna().sum() // len(atlas.estimators)} ordered pairs of models "
                     "(per type: the median ratio of that type's pairs); lower is better, 1 = nothing lost.")
        section.table(estimator_ranking(frame), headline="median_ratio")
        return section
    section = Section("Verdict: pairs ranked by relocation ratio")
    section.table(ranked_pairs(frame), headline="ratio")
    return section


def _grids(section: Section, grids: list[tuple[RelocationResult, str]]) -> None:
    """The best and the worst pair's grid, the others folded."""
    if not grids:
        return
    ranked = sorted(grids, key=lambda g: (g[0].ratio is None or g[0].ratio != g[0].ratio, g[0].ratio or 0.0))
    shown = [ranked[0]] + ([ranked[-1]] if len(ranked) > 1 else [])
    section.parts.append("<h3>Relocation grids</h3>")
    section.text("Rows: the originals, A's reconstruction, B after mapping A's encoding, B's own reconstruction. "
                 "The pair with the lowest and the one with the highest ratio:")
    caption = ("{r.source} -> {r.target} (type {r.type}, ratio {ratio}): originals, {r.source}'s reconstruction, "
               "{r.target} after mapping, {r.target}'s own reconstruction")
    for r, src in shown:
        section.image(src, caption.format(r=r, ratio=sig(r.ratio)), grid=True)
    rest = Section("")
    for r, src in ranked:
        rest.image(src, caption.format(r=r, ratio=sig(r.ratio)), grid=True)
    section.fold(f"The grid of every pair ({len(ranked)}), by ratio", rest)


def _shown_info(info: dict[str, Any] | None, spec_key: str | None = None) -> dict[str, Any]:
    """A model or fit-source record as the atlas's JSON writes it: its path (and data spec) without this
    machine's folders (the map folders keep the paths they load models from)."""
    out = dict(info or {})
    key = "spec" if "origin" in out else "path"  # a model record (latentmap.io.model_record), or an older one
    if out.get(key) is not None and out.get("origin") not in NOT_PATHS:
        out[key] = shown_path(out[key])
    if spec_key and out.get(spec_key) is not None:
        out[spec_key] = shown_spec(out[spec_key])
    return out


def _describe_fit(fit: dict[str, Any]) -> str:
    if fit.get("kind") == "samples":
        return f"{fit.get('count')} prior samples of each source model"
    return f"{fit.get('count')} images of {fit.get('kind')} '{shown_spec(fit.get('name'))}'"


def _describe_map(params: dict[str, Any]) -> str:
    alpha = params.get("alpha")
    ridge = "ridge penalty chosen by GCV" if alpha == "auto" else f"ridge alpha {alpha:g}" if alpha else "no ridge"
    return f"{'affine' if params.get('bias') else 'bias-free'} {params.get('method', 'lstsq')}, {ridge}"


def ratio_matrix_png(matrix: pd.DataFrame, types: dict[tuple[str, str], int]) -> bytes:
    """Heatmap of the ratio matrix, cells labelled with the ratio and the relocation type."""
    n = len(matrix)
    fig = new_figure(min(CONTENT_WIDTH_IN, 1.6 + 1.3 * n), min(CONTENT_WIDTH_IN, 1.2 + 1.1 * n))
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(np.log2(np.where(np.isfinite(values), values, np.nan)), cmap="viridis_r", vmin=0, vmax=3)
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(n), matrix.index)
    ax.set_xlabel("target B")
    ax.set_ylabel("source A")
    for a in range(n):
        for b in range(n):
            if a == b or not np.isfinite(values[a, b]):
                continue
            t = types.get((matrix.index[a], matrix.columns[b]), "?")
            ax.text(b, a, f"{sig(values[a, b])}\nT{t}", ha="center", va="center", fontsize=8,
                    color="white" if values[a, b] > 2.5 else "black")
    fig.colorbar(im, ax=ax, label="log2(relocated MSE / B's own MSE)")
    return figure_png(fig)
