"""The atlas's comparison parts as files: estimators side by side, similarity of the spaces, worst relocations.

Written into an atlas folder by :func:`write_comparison` (called by ``report.atlas.write_atlas``):

* ``ratio_matrix_<estimator>.csv`` for every estimator when there are several;
* ``linearity_gap.csv`` (per pair, with paired bootstrap intervals) and ``linearity_gap_by_type.csv``
  when the atlas has a linear and an MLP estimator;
* ``cka_matrix.csv``, ``svcca_matrix.csv``, ``similarity.csv`` (per ordered pair, beside each estimator's
  ratio), ``similarity_prediction.csv`` (Spearman over pairs) and ``similarity.png`` (ratio, CKA and SVCCA
  matrices side by side);
* ``worst/<pair>.png``: the test images the first estimator relocates worst (largest excess of the
  relocated MSE over B's own), with B's own reconstruction and every estimator's relocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentmap.evaluation.relocation import pair_images
from latentmap.io.names import slug, unique_slugs
from latentmap.report.figures import CONTENT_WIDTH_IN, SEQUENTIAL, figure_png, new_figure
from latentmap.report.grid import grid_png
from latentmap.report.html import Section
from latentmap.report.tables import sig

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.atlas import AtlasResult
    from latentmap.models.base import LatentModel


LABEL_PT, CELL_PT = 7.5, 6.5  # points: 11.5 and 9.9 px at the figures' resolution

# what the linearity gap is, in words true for every value (it is no share: it can exceed 1 or be negative)
LINEARITY_GAP_MEANING = ("the relocated MSE the linear map leaves beyond the nonlinear one, in units of B's own "
                         "reconstruction MSE (0.4: 40% of B's own error; above 1 the linear map's excess alone "
                         "exceeds B's own error; below 0 the linear map does better).")


def write_comparison(atlas: AtlasResult, folder: Path, section: Section, models: Sequence[LatentModel] | None,
                     test_data: ImageDataset | torch.Tensor | None, rel: str = "") -> None:
    """Write the comparison files into ``folder`` and append their tables and figures to ``section``.

    Without ``models`` (a saved atlas written again, :func:`latentmap.report.atlas.rewrite_atlas_page`): the
    linearity gap comes from its CSV files (their intervals need the per-image errors of the run) and the
    worst-image pictures are those already in ``folder``."""
    folder = Path(folder)
    several = len(atlas.estimators) > 1
    if several:
        for label in atlas.estimators:
            atlas.ratio_matrix(label).to_csv(folder / f"ratio_matrix_{slug(label, 'estimator')}.csv")
        _estimator_table(atlas, section)
    _linearity_gap(atlas, folder, section, rel, saved=models is None)
    if atlas.similarity:
        _similarity(atlas, folder, section, rel)
    _worst_images(atlas, folder, section, models, test_data, rel)


def estimator_ranking(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per estimator, ranked by its median ratio over every pair (best first): pairs, median, mean,
    best and worst ratio, and the median of each relocation type's pairs."""
    import pandas as pd

    rows = []
    for label, part in frame.groupby("estimator", sort=False):
        ratios = part["ratio"].dropna()
        row = {"estimator": label, "pairs": len(part), "median_ratio": ratios.median(), "mean_ratio": ratios.mean(),
               "best_ratio": ratios.min(), "worst_ratio": ratios.max()}
        for kind in sorted(frame["type"].unique()):
            row[f"type_{int(kind)}_median"] = part.loc[part["type"] == kind, "ratio"].median()
        rows.append(row)
    return (pd.DataFrame(rows).sort_values("median_ratio", kind="stable", na_position="last")
            .reset_index(drop=True))


def estimator_findings(atlas: AtlasResult) -> list[str]:
    """With several estimators: one sentence ranking them by median ratio, and one on the linearity gap by
    relocation type (none with a single estimator)."""
    if len(atlas.estimators) < 2:
        return []
    ranking = estimator_ranking(atlas.frame())
    out = ["Estimators by median relocation ratio over every pair (1 = nothing lost): "
           + ", ".join(f"{r.estimator} {sig(r.median_ratio)}" for r in ranking.itertuples()) + "."]
    gap = atlas.linearity_gap()
    if gap is not None:
        _, types = gap
        out.append(f"Linearity gap, ratio({types.attrs['linear']}) − ratio({types.attrs['nonlinear']}), mean by "
                   "relocation type: " + "; ".join(f"Type {int(t.type)} {sig(t.mean_gap)} (range {sig(t.min_gap)} "
                                                   f"to {sig(t.max_gap)})" for t in types.itertuples())
                   + f": {LINEARITY_GAP_MEANING}")
    return out


def _estimator_table(atlas: AtlasResult, section: Section) -> None:
    import pandas as pd

    frame = atlas.frame()
    table = (frame.groupby(["type", "estimator"], sort=False)
             .agg(pairs=("ratio", "size"), mean_ratio=("ratio", "mean"), median_ratio=("ratio", "median"),
                  best_ratio=("ratio", "min"), worst_ratio=("ratio", "max"))
             .reset_index())
    order = {label: k for k, label in enumerate(atlas.estimators)}
    table = table.sort_values(["type", "estimator"], key=lambda c: c.map(order) if c.name == "estimator" else c)
    section.parts.append("<h3>Estimators by relocation type</h3>")
    section.text("Mean, median, best and worst relocated/own ratio over the pairs of each type, per estimator.")
    section.table(pd.DataFrame(table), fold="Estimators by relocation type")


def _saved_linearity_gap(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """(per pair, per type) linearity-gap frames as a run saved them, with the estimators' labels as attrs."""
    import pandas as pd

    pairs = pd.read_csv(folder / "linearity_gap.csv")
    lin, non = [c[len("ratio["):-1] for c in pairs.columns if c.startswith("ratio[")]
    return pairs, pd.read_csv(folder / "linearity_gap_by_type.csv"), lin, non


def _linearity_gap(atlas: AtlasResult, folder: Path, section: Section, rel: str, saved: bool = False) -> None:
    if saved:
        if not (folder / "linearity_gap.csv").is_file():
            return
        pairs, types, lin, non = _saved_linearity_gap(folder)
    else:
        gap = atlas.linearity_gap()
        if gap is None:
            return
        pairs, types = gap
        pairs.to_csv(folder / "linearity_gap.csv", index=False)
        types.to_csv(folder / "linearity_gap_by_type.csv", index=False)
        lin, non = pairs.attrs["linear"], pairs.attrs["nonlinear"]
    section.parts.append("<h3>Linearity gap</h3>")
    section.text(f"ratio({lin}) − ratio({non}) on the same test images: {LINEARITY_GAP_MEANING} "
                 f"[gap_low, gap_high] is a paired 95% bootstrap interval.")
    section.table(types)
    section.table(pairs, fold="Linearity gap of every pair", csv=f"{rel}linearity_gap.csv")
    section.parts.append(f'<p class="note">Files: <a href="{rel}linearity_gap.csv">linearity_gap.csv</a>, '
                         f'<a href="{rel}linearity_gap_by_type.csv">linearity_gap_by_type.csv</a>.</p>')


def _similarity(atlas: AtlasResult, folder: Path, section: Section, rel: str) -> None:
    cka, svcca = atlas.similarity_matrix("cka"), atlas.similarity_matrix("svcca")
    cka.to_csv(folder / "cka_matrix.csv")
    svcca.to_csv(folder / "svcca_matrix.csv")
    frame = atlas.similarity_frame()
    frame.to_csv(folder / "similarity.csv", index=False)
    prediction = atlas.similarity_prediction()
    prediction.to_csv(folder / "similarity_prediction.csv", index=False)
    (folder / "similarity.png").write_bytes(similarity_png(atlas.ratio_matrix(), cka, svcca, atlas.primary))
    section.parts.append("<h3>Similarity of the latent spaces</h3>")
    section.text("Linear CKA and SVCCA (99% of each space's variance kept) of every pair of models, on the test "
                 "images' encodings, beside the ratio matrix. Spearman's rho over ordered pairs says how well each "
                 "predicts an estimator's ratio (negative: more similar spaces relocate better).")
    section.image(f"{rel}similarity.png", f"ratio ({atlas.primary}), linear CKA and SVCCA; rows source A, "
                                          "columns target B")
    section.table(prediction)
    section.parts.append(f'<p class="note">Files: <a href="{rel}cka_matrix.csv">cka_matrix.csv</a>, '
                         f'<a href="{rel}svcca_matrix.csv">svcca_matrix.csv</a>, '
                         f'<a href="{rel}similarity.csv">similarity.csv</a>, '
                         f'<a href="{rel}similarity_prediction.csv">similarity_prediction.csv</a>.</p>')


def similarity_png(ratio: pd.DataFrame, cka: pd.DataFrame, svcca: pd.DataFrame, label: str) -> bytes:
    """The ratio, linear CKA and SVCCA matrices side by side, each with its colour bar, cells labelled."""
    n = len(ratio)
    fig = new_figure(CONTENT_WIDTH_IN, 1.7 + 0.38 * n)
    panels = [(ratio, f"ratio ({label})", f"{SEQUENTIAL}_r", 1.0, None), (cka, "linear CKA", SEQUENTIAL, 0.0, 1.0),
              (svcca, "SVCCA", SEQUENTIAL, 0.0, 1.0)]
    axes = fig.subplots(1, 3)
    for k, (ax, (mat, title, cmap, vmin, vmax)) in enumerate(zip(axes, panels)):
        values = mat.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        top = vmax if vmax is not None else (max(float(finite.max()), vmin + 1e-6) if len(finite) else vmin + 1)
        image = ax.imshow(np.where(np.isfinite(values), values, np.nan), cmap=cmap, vmin=vmin, vmax=top)
        ax.set_title(title, fontsize=LABEL_PT)
        ax.set_xticks(range(n), mat.columns, rotation=45, ha="right", fontsize=LABEL_PT)
        ax.set_yticks(range(n), mat.index if k == 0 else [""] * n, fontsize=LABEL_PT)
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.ax.tick_params(labelsize=LABEL_PT)
        for a in range(n):
            for b in range(n):
                if np.isfinite(values[a, b]) and (a != b or k > 0):
                    level = (values[a, b] - vmin) / max(top - vmin, 1e-12)
                    bright = level > 0.55 if cmap == SEQUENTIAL else level < 0.45
                    ax.text(b, a, sig(values[a, b]), ha="center", va="center", fontsize=CELL_PT,
                            color="black" if bright else "white")
    axes[0].set_ylabel("source A", fontsize=LABEL_PT)
    axes[1].set_xlabel("target B", fontsize=LABEL_PT)
    return figure_png(fig)


def _images_at(test_data: ImageDataset | torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    idx = np.asarray(positions, dtype=np.int64)
    return test_data.batch(idx) if hasattr(test_data, "batch") else test_data[torch.as_tensor(idx)]


def _worst_images(atlas: AtlasResult, folder: Path, section: Section, models: Sequence[LatentModel] | None,
                  test_data: ImageDataset | torch.Tensor | None, rel: str) -> None:
    files = unique_slugs(info["name"] for info in atlas.models)  # as the atlas's grids and maps
    written = []
    if models is None:  # a saved atlas: the pictures its run drew
        written = [(r, f"{rel}worst/{files[r.source]}__{files[r.target]}.png") for r in atlas.results_of()
                   if r.worst_images and (folder / "worst" / f"{files[r.source]}__{files[r.target]}.png").is_file()]
    by_name = {m.name: m for m in models or []}
    for r in atlas.results_of(atlas.primary) if models is not None else []:
        if not r.worst_images or r.source not in by_name or r.target not in by_name:
            continue
        source, target = by_name[r.source], by_name[r.target]
        assert test_data is not None  # given with the models
        images = _images_at(test_data, r.worst_images)
        with torch.no_grad():  # each model gets the images in its own shape (the map's image transform, if any)
            x_a, images = pair_images(source, target, atlas.maps.get((r.source, r.target)), images)
            z_a = source.encode(x_a)
            rows = [images.cpu(), target.reconstruct(images).cpu()]
            for label in atlas.estimators:
                m = atlas.estimator_maps.get((label, r.source, r.target))
                if m is not None:
                    rows.append(target.decode(m.transform(z_a.to(target.device))).cpu())
        name = f"{files[r.source]}__{files[r.target]}"
        (folder / "worst").mkdir(exist_ok=True)
        labels = ["originals", f"{r.target} own"] + [f"{label}" for label in atlas.estimators
                                                      if (label, r.source, r.target) in atlas.estimator_maps]
        (folder / "worst" / f"{name}.png").write_bytes(grid_png(rows, row_labels=labels))
        written.append((r, f"{rel}worst/{name}.png"))
    if not written:
        return
    section.parts.append("<h3>Worst relocated images</h3>")
    section.text(f"Per pair, the {len(written[0][0].worst_images)} test images whose relocated MSE exceeds B's own "
                 f"reconstruction MSE the most under {atlas.primary}. Rows: originals, B's own reconstruction, then "
                 f"the relocation by each estimator ({', '.join(atlas.estimators)}).")
    pictures = Section("")
    for r, src in sorted(written, key=lambda w: -(w[0].image_ratio_p90 or 0.0)):
        pictures.image(src, f"{r.source} -> {r.target} (type {r.type}): median per-image ratio "
                          f"{sig(r.image_ratio_median)}, 90th percentile {sig(r.image_ratio_p90)}", grid=True)
    section.fold(f"The worst relocated images of every pair ({len(written)}), by 90th-percentile per-image ratio",
                 pictures)
