"""Demo section: the relocation atlas over every shipped model (every ordered pair, grouped by type).

Maps are fitted on a seeded sample of Fashion-MNIST training images (affine least squares),
and, when the demo has a support set (the shipped one, or the one the support-set section
built into the report), also on the support set with the paper's bias-free map. The support set holds about as many
images as the largest latent space, where the exact fit interpolates the anchors and
generalizes poorly, so its ridge penalty is chosen by generalized cross-validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentmap.data.datasets import load_dataset
from latentmap.demo.context import DEMO_DATASET, QUICK_TEST_IMAGES, DemoContext, register_demo_section
from latentmap.errors import LatentmapError
from latentmap.evaluation.atlas import build_atlas
from latentmap.maps.fitting import FitSource
from latentmap.report.atlas import write_atlas
from latentmap.report.findings import describe_fit, relocation_ratio_findings
from latentmap.report.html import Section, shown_path

if TYPE_CHECKING:
    from latentmap.evaluation.atlas import AtlasResult
    from latentmap.support.build import SupportSet

DEMO_FIT_IMAGES = 10000
# Each ordered pair decodes, re-encodes and cycles every evaluated image: 2,000 evenly spaced
# test images keep the means stable while the demo stays a few minutes on a CPU.
DEMO_ATLAS_TEST_IMAGES = 2000
SUPPORT_SET_NAME = "fmnist-svae"


def _support_set(ctx: DemoContext) -> tuple[SupportSet, Path] | None:
    """(support set, its folder): the shipped one, else the one an earlier section saved into the report; else
    None."""
    from latentmap.support.build import MANIFEST_NAME, SupportSet

    for folder in (ctx.checkpoints.parent / "support_sets" / SUPPORT_SET_NAME, ctx.out / "support_set"):
        if (folder / MANIFEST_NAME).is_file():
            return SupportSet.load(folder), folder
    return None


def _summary_rows(atlas: AtlasResult) -> list[dict[str, Any]]:
    return [{"source": r.source, "target": r.target, "type": r.type, "target_mse": r.target_mse,
             "relocated_mse": r.relocated_mse, "ratio": r.ratio, "latent_r2": r.latent_r2} for r in atlas.results]


def _by_label_table(section: Section, atlas: AtlasResult) -> None:
    """Type 1 pairs' ratio per label: where one linear map serves some classes worse than others."""
    frame = atlas.by_label_frame()
    if not len(frame) or not (frame["type"] == 1).any():
        return
    type1 = frame[frame["type"] == 1]
    table = type1.pivot_table(index="name", columns=type1["source"] + " -> " + type1["target"], values="ratio",
                              sort=False).reset_index().rename(columns={"name": "label"})
    section.text("Type 1 pairs, ratio by label (atlas_by_label.csv has every pair): a single linear map serves some "
                 "classes much worse than others; within a class the two latent spaces are closer to linearly "
                 "related.")
    section.table(table)


def _overview(atlas: AtlasResult, folder: str, title: str, fold_matrix: bool = False) -> Section:
    """The atlas on the demo page: its findings, the ratio heat map (``fold_matrix``: folded) and a link to its
    own page (every table, grid and map)."""
    section = Section(title)
    section.text(relocation_ratio_findings(_summary_rows(atlas), describe_fit(atlas.fit_source)))
    matrix = Section("").image(f"{folder}/ratio_matrix.png", "relocated-MSE ratio, rows source A, columns "
                                                             "target B; T1/T2/T3 = relocation type")
    if fold_matrix:
        section.fold("The ratio matrix", matrix)
    else:
        section.parts.extend(matrix.parts)
    section.link(f"{folder}/index.html", "Every pair in detail",
                 "(tables by relocation type with bootstrap intervals, a labelled grid per pair, CSV, JSON and the "
                 "map folders).")
    return section


@register_demo_section(40, "relocation atlas")
def relocation_atlas_section(ctx: DemoContext) -> Section:
    """The relocation atlas over every model, fitted on training images (its own page under ``atlas/``), and,
    when there is a support set, a second atlas fitted on it (under ``atlas_support_set/``)."""
    # models of another image shape get the test and fit images through the demo's image transform
    models = ctx.models + ctx.other_models
    transform = ctx.image_transform if ctx.other_models else None
    if len(models) < 2:
        return Section("Relocation atlas").text(f"The atlas needs at least two models; "
                                                f"'{shown_path(ctx.checkpoints)}' has {len(models)}.", cls="note")
    train = load_dataset(DEMO_DATASET, "train", data_dir=ctx.data_dir)
    fit = train.random_subset(QUICK_TEST_IMAGES * 4 if ctx.quick else DEMO_FIT_IMAGES, seed=0)
    n_fit = len(fit)
    test = ctx.test.evenly_spaced_subset(DEMO_ATLAS_TEST_IMAGES)
    atlas = build_atlas(models, test, FitSource("dataset", n_fit, name=DEMO_DATASET, split="train", seed=0,
                                               data=fit), model_paths=ctx.model_paths, image_transform=transform)
    title = f"Relocation atlas (maps fitted on {n_fit} training images, evaluated on {len(test)} test images)"
    write_atlas(atlas, ctx.out / "atlas", models, test, title=title, back=("../index.html", "demo report"))
    section = _overview(atlas, "atlas", title)
    ctx.maps.update({(r.source, r.target): (atlas.maps[(r.source, r.target)], r.relocated_mse)
                     for r in atlas.results if (r.source, r.target) in atlas.maps})
    ctx.summary["relocation_atlas"] = {"fit": atlas.fit_source, "map": atlas.map_params, "pairs": _summary_rows(atlas)}
    _by_label_table(section, atlas)

    found = _support_set(ctx)
    if found is None:
        section.text("No support set was available, so no support-set fit is shown.", cls="note")
        return section
    support, folder = found
    try:
        # a support set built into this report is recorded by its place in the report, not the temporary folder
        where = os.path.relpath(folder, ctx.out) if ctx.out in Path(folder).parents else shown_path(folder)
        sup_atlas = build_atlas(models, test, FitSource("support-set", len(support), name=support.name,
                                                        path=where, data=support.images),
                                model_paths=ctx.model_paths, image_transform=transform)
    except LatentmapError as exc:  # e.g. a support set smaller than some latent space
        section.text(f"Support-set fit skipped: {exc}", cls="note")
        return section
    sup_title = (f"Relocation atlas (bias-free maps fitted on the {len(support)}-image support set, "
                 "ridge penalty chosen by generalized cross-validation)")
    write_atlas(sup_atlas, ctx.out / "atlas_support_set", models, test, title=sup_title,
                back=("../index.html", "demo report"))
    sup_section = _overview(sup_atlas, "atlas_support_set", sup_title, fold_matrix=True)
    ctx.summary["relocation_atlas_support_set"] = {"fit": sup_atlas.fit_source, "map": sup_atlas.map_params, "pairs": _summary_rows(sup_atlas)}
    section.parts.append(sup_section.render())
    return section
