"""Demo section: the shipped support set (contact sheet, statistics, information gain, sectors).

Loads ``support_sets/fmnist-svae`` beside the checkpoints folder; when it is absent, builds
one from the demo's models (the Split-VAE if present, sized for the largest latent) into the
report folder, so the demo works from checkpoints alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from latentmap.data.datasets import load_dataset
from latentmap.demo.context import DEMO_DATASET, DemoContext, register_demo_section
from latentmap.report.html import Section, shown_path
from latentmap.report.tables import sig
from latentmap.report.support_set import (CONTACT_SHEET_NAME, INFO_GAIN_PNG, POPULATIONS_PNG, support_set_figures,
                                          write_support_set)
from latentmap.support.build import SupportSet, build_support_set

SHIPPED_NAME = "fmnist-svae"
# A smaller information-gain subsample than the shipped build keeps the fallback quick on CPU.
FALLBACK_GAIN_IMAGES = 1000
# The source's figures on CelebA, to read ours against.
SOURCE_PAIRWISE = {"support set": 0.183, "random pairs": 0.116}


def _shipped_folder(ctx: DemoContext) -> Path:
    return ctx.checkpoints.parent / "support_sets" / SHIPPED_NAME


def _load_or_build(ctx: DemoContext) -> tuple[SupportSet, str]:
    """(support set, where it came from)."""
    folder = _shipped_folder(ctx)
    if (folder / "manifest.json").is_file():
        return SupportSet.load(folder), f"loaded from {shown_path(folder)}"
    by_name = {m.name: m for m in ctx.models}
    model = by_name.get(SHIPPED_NAME) or max(ctx.models, key=lambda m: m.latent_dim)
    size = max(m.latent_dim for m in ctx.models)
    train = load_dataset(DEMO_DATASET, "train", data_dir=ctx.data_dir)
    support = build_support_set(model, train, size=size, seed=0, gain_images=FALLBACK_GAIN_IMAGES,
                                dataset_spec=DEMO_DATASET, split="train", name=SHIPPED_NAME,
                                for_models={m.name: m.latent_dim for m in ctx.models})
    write_support_set(support, ctx.out / "support_set")
    return support, f"built now from '{model.name}' ({shown_path(folder)} is absent) and saved in the report"


@register_demo_section(30, "support set")
def support_set_section(ctx: DemoContext) -> Section:
    """The shipped support set (or one built now from the demo's models): its statistics against the source's
    figures, its contact sheet, the information gain of every variable and the sector populations."""
    support, origin = _load_or_build(ctx)
    m, stats = support.manifest, support.manifest.get("statistics", {})
    section = Section("Support set")
    section.text(f"Support set '{support.name}' ({origin}): {len(support)} {m['dataset']['spec']} "
                 f"{m['dataset']['split']} images chosen in the latent space of '{m['model']['name']}', one per "
                 f"non-empty sector of its {m.get('top_k')} most informative variables (threshold "
                 f"{sig(m.get('threshold'))}), completed from the most crowded sectors.")
    rows = [("sectors populated", f"{stats.get('nonempty_sectors')} of {stats.get('sectors')}"),
            ("empty sectors", stats.get("empty_sectors")),
            ("sector population min / median / max",
             f"{stats.get('population_min')} / {stats.get('population_median')} / {stats.get('population_max')}"),
            ("mean pairwise MSE inside the support set", sig(stats["support_pairwise_mse"])),
            (f"mean MSE of {stats['random_pairs']} random dataset pairs", sig(stats["dataset_random_pairs_mse"])),
            ("same two figures in the source (CelebA)",
             f"{SOURCE_PAIRWISE['support set']} vs {SOURCE_PAIRWISE['random pairs']}")]
    section.table(pd.DataFrame(rows, columns=["statistic", "value"]))
    figures = support_set_figures(support)
    for file_name, caption in [(CONTACT_SHEET_NAME, "the support-set images"),
                               (INFO_GAIN_PNG, "information gain of every latent variable, ranked"),
                               (POPULATIONS_PNG, "how many training images each sector holds")]:
        if file_name in figures:
            target = f"support_set_{file_name}"
            (ctx.out / target).write_bytes(figures[file_name])
            section.image(target, caption, grid=file_name == CONTACT_SHEET_NAME)
    ctx.summary["support_set"] = {"name": support.name, "size": len(support), "origin": origin, **stats}
    pd.DataFrame([ctx.summary["support_set"]]).to_csv(ctx.out / "support_set.csv", index=False)
    section.parts.append('<p class="note">Every number: <a href="support_set.csv">support_set.csv</a>.</p>')
    return section
