"""``latentmap demo``: the whole story on the shipped checkpoints and Fashion-MNIST.

The demo is a list of sections run in order; each reads the shared :class:`DemoContext`,
writes its files into the report folder and returns a :class:`~latentmap.report.html.Section`.
A feature adds a section module that registers itself with
:func:`latentmap.demo.context.register_demo_section`, and one import line here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from latentmap.io.atomic import atomic_directory
from latentmap.io.checkpoint import is_checkpoint
from latentmap.io.names import slug
from latentmap.io.frames import FrameRepr, records_frame
from latentmap.models.registry import load_model
from latentmap.data.datasets import load_dataset
from latentmap.batching import progress_bar
from latentmap.data.transforms import image_transform, transformed_dataset
from latentmap.errors import CheckpointError, LatentmapError
from latentmap.evaluation.relocation import lpips_function
from latentmap.evaluation.metrics import per_image_reconstruction_mse
from latentmap.report.figures import histograms_png
from latentmap.report.findings import demo_findings
from latentmap.report.grid import grid_png
from latentmap.report.html import Section, render_page, shown_path
from latentmap.report.tables import sig

# the sections: each registers itself in latentmap.demo.context when imported
from latentmap.demo import diagnostics, expressiveness, generators, relocation, support_set  # noqa: F401,E402
from latentmap.demo.context import (_SECTIONS, DEMO_DATASET, DEMO_IMAGE_TRANSFORM, QUICK_TEST_IMAGES,  # noqa: E402
                                    DemoContext, register_demo_section)

if TYPE_CHECKING:
    import torch


@dataclass
class DemoResult(FrameRepr):
    """What :func:`run_demo` wrote: the report folder, one row per model (reconstructions) and the whole summary
    (the report's summary.json)."""

    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """One row per model: its kind, latent size and reconstruction MSE on the demo's test images."""
        return records_frame(self.rows)

    def _frame_caption(self) -> str:
        return f"Demo written to {self.out}: the models' reconstructions (the report has every section)"


def default_checkpoints() -> Path:
    """The shipped checkpoints: the clone's checkpoints/ folder, or the installed package's copy."""
    from latentmap.models.shipped import shipped_root

    return shipped_root() / "checkpoints"


def find_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint folders (folders with config.json) directly in ``folder``, sorted by name; CheckpointError
    when ``folder`` is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder '{folder}' does not exist")
    found = [p for p in sorted(folder.iterdir()) if p.is_dir() and is_checkpoint(p)]
    if not found:
        raise CheckpointError(f"no checkpoints (folders with config.json) in '{folder}'")
    return found


def run_demo(checkpoints: str | os.PathLike[str] = "checkpoints", out: str | os.PathLike[str] = "reports/demo", *,
             data_dir: str | None = None, device: str | torch.device | None = None,
             test_images: int | None = None, overwrite: bool = True, progress: bool = False,
             quick: bool = False) -> DemoResult:
    """Run every demo section into ``out``; ``quick``: a smoke run on small sizes (300 test images unless
    ``test_images`` says otherwise, fewer fit images and samples)."""
    if quick and test_images is None:
        test_images = QUICK_TEST_IMAGES
    folders = find_checkpoints(checkpoints)
    models = [load_model(p, device=device) for p in folders]
    test = load_dataset(DEMO_DATASET, "test", data_dir=data_dir)
    if test_images is not None and test_images < len(test):
        test = test.subset(np.arange(test_images))
    others = [m for m in models if tuple(m.image_shape) != tuple(test.image_shape)]
    for model in others:  # a model of another shape must be reachable through the demo's image transform
        try:
            image_transform(DEMO_IMAGE_TRANSFORM, test.image_shape, model.image_shape)
        except LatentmapError as exc:
            raise CheckpointError(f"model '{model.name}' works on images {model.image_shape}, {DEMO_DATASET} has "
                                  f"{test.image_shape}: {exc}") from None
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        ctx = DemoContext(Path(checkpoints), tmp, [m for m in models if m not in others], test, data_dir, device,
                          model_paths={m.name: str(p) for m, p in zip(models, folders)}, other_models=others,
                          quick=quick)
        sections = []
        with progress_bar(len(_SECTIONS), "demo", progress, unit="section") as bar:
            for _order, name, fn in _SECTIONS:
                bar.set_description(f"demo: {name}")
                start = time.perf_counter()
                sections.append(fn(ctx))
                ctx.summary.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
                bar.update(1)
        _fn, lpips_note = lpips_function("cpu")
        intro = (f"{len(models)} shipped models on {len(test)} {DEMO_DATASET} test images. "
                 "Every figure below is computed by `latentmap demo` from the checkpoints in "
                 f"'{shown_path(checkpoints)}'. {lpips_note}." + _others_note(ctx))
        ctx.summary["lpips"] = lpips_note
        verdict, table = demo_verdict(ctx.summary)
        (tmp / "index.html").write_text(render_page("latentmap demo", sections, intro, findings=verdict,
                                                    more_findings=demo_findings(ctx.summary), verdict=table))
        (tmp / "summary.json").write_text(json.dumps(ctx.summary, indent=2) + "\n")
    return DemoResult(Path(out), ctx.rows, ctx.summary)


# the verdict table's columns: summary key -> header
VERDICT_COLUMNS = {"model": "generator", "test_mse": "test reconstruction MSE",
                   "support_over_own": "support set / own samples (encoder MSE)",
                   "real_over_own": "real / own samples (encoder MSE)",
                   "tv_distance": "sector coverage: total variation", "precision": "precision", "recall": "recall",
                   "density": "density", "coverage": "coverage"}


def verdict_frame(summary: dict[str, Any]) -> tuple[pd.DataFrame, list[int]]:
    """Every generator the demo benchmarked, ranked by the total variation of its sector coverage (lower:
    closer to the real images' sector shares), with its reconstruction MSE, support-set and real / own
    ratios, precision, recall, density and coverage; the calibration rows (real training images) last.
    Returns (frame with words for headers, positions of the calibration rows). Without coverage, the models
    ranked by reconstruction MSE."""
    coverage = summary.get("coverage") or []
    models = {r["model"]: r for r in summary.get("reconstruction") or []}
    if not coverage:
        frame = pd.DataFrame([{k: r.get(k) for k in ("model", "kind", "latent_dim", "test_mse")}
                              for r in models.values()], columns=["model", "kind", "latent_dim", "test_mse"])
        frame = frame.sort_values("test_mse", kind="stable").reset_index(drop=True)
        return frame.rename(columns={"test_mse": VERDICT_COLUMNS["test_mse"]}), []
    express = {r["model"]: r for r in summary.get("expressiveness") or []}
    fidelity = {r["name"]: r for r in (summary.get("fidelity") or {}).get("rows") or []}
    rows = []
    for c in coverage:
        name = c["generator"]
        rows.append({"model": name, "test_mse": models.get(name, {}).get("test_mse"),
                     "support_over_own": express.get(name, {}).get("support_over_own"),
                     "real_over_own": express.get(name, {}).get("real_over_own"), "tv_distance": c.get("tv_distance"),
                     **{k: fidelity.get(name, {}).get(k) for k in ("precision", "recall", "density", "coverage")},
                     "calibration": name not in models})
    frame = pd.DataFrame(rows).astype({k: float for k in VERDICT_COLUMNS if k != "model"})
    frame = frame.sort_values(["calibration", "tv_distance"], kind="stable", na_position="last")
    calibration = [i for i, flag in enumerate(frame["calibration"]) if flag]
    frame = frame.drop(columns="calibration").dropna(axis=1, how="all").reset_index(drop=True)
    return frame.rename(columns=VERDICT_COLUMNS), calibration


def demo_verdict(summary: dict[str, Any]) -> tuple[list[str], Section | None]:
    """The demo's opening: a few sentences, on sector coverage, fidelity and diversity, expressiveness and
    relocation, and the generators ranked (:func:`verdict_frame`), from its ``summary.json``."""
    out = []
    frame, calibration = verdict_frame(summary)
    tv = VERDICT_COLUMNS["tv_distance"]
    if tv in frame.columns:
        ranked = frame.drop(index=calibration)
        real = frame.loc[calibration[0]] if calibration else None
        out.append(f"Sector coverage, total variation from the test images' sector shares (0 = the same shares): "
                   f"closest {ranked.iloc[0]['generator']} {sig(ranked.iloc[0][tv])}, farthest "
                   f"{ranked.iloc[-1]['generator']} {sig(ranked.iloc[-1][tv])}"
                   + (f"; {real['generator']} as calibration {sig(real[tv])}." if real is not None else "."))
        if "recall" in frame.columns and ranked["recall"].notna().any():
            space = (summary.get("fidelity") or {}).get("space", "a feature space")
            best_p, best_r = ranked.loc[ranked["precision"].idxmax()], ranked.loc[ranked["recall"].idxmax()]
            out.append(f"Fidelity and diversity in the {space}: precision {sig(ranked['precision'].min())} to "
                       f"{sig(best_p['precision'])} ({best_p['generator']}), recall {sig(ranked['recall'].min())} "
                       f"to {sig(best_r['recall'])} ({best_r['generator']})"
                       + (f"; {real['generator']} reach {sig(real['precision'])} and {sig(real['recall'])}."
                          if real is not None else "."))
    express = [r for r in summary.get("expressiveness") or [] if r.get("support_over_own") is not None]
    if express:
        worst = max(express, key=lambda r: r["support_over_own"])
        best = min(express, key=lambda r: r["support_over_own"])
        out.append(f"Encoder MSE on support-set images over that on each model's own samples: "
                   f"{sig(best['support_over_own'])} ({best['model']}) to {sig(worst['support_over_own'])} "
                   f"({worst['model']}).")
    pairs = [p for p in (summary.get("relocation_atlas") or {}).get("pairs") or [] if p.get("ratio") is not None]
    if pairs:
        best = min(pairs, key=lambda p: p["ratio"])
        worst = max(pairs, key=lambda p: p["ratio"])
        out.append(f"Relocated MSE over the target's own reconstruction MSE, linear maps between every pair: "
                   f"{sig(best['ratio'])} ({best['source']} → {best['target']}) to {sig(worst['ratio'])} "
                   f"({worst['source']} → {worst['target']}).")
    if not len(frame):
        return out, None
    if tv in frame.columns:
        table = Section("Verdict: generators ranked by sector coverage")
        table.table(frame, headline=tv, calibration=calibration)
        table.text("Each column's section below has its intervals and every number; lower is better for the MSE, "
                   "the ratios and the total variation, higher for precision, recall, density and coverage; the "
                   "calibration row (in italics) is what images from the data itself score.", cls="note")
    else:
        table = Section("Verdict: models ranked by reconstruction MSE")
        table.table(frame, headline=VERDICT_COLUMNS["test_mse"])
    return out, table


def _others_note(ctx: DemoContext) -> str:
    if not ctx.other_models:
        return ""
    names = ", ".join(f"'{m.name}' ({'x'.join(map(str, m.image_shape[1:]))})" for m in ctx.other_models)
    return (f" Models of another image shape ({names}) get the test images through the image transform "
            f"'{ctx.image_transform}'; they appear in the reconstructions and the relocation atlas, and the other "
            "sections leave them out.")


@register_demo_section(10, "reconstructions")
def reconstruction_section(ctx: DemoContext) -> Section:
    """Per-model test MSE (CSV), per-image MSE (CSV and histogram) and a reconstruction grid per model.

    A model of another image shape (``ctx.other_models``) reconstructs the test images through the demo's
    image transform (zero padding for the 32x32 model), and is judged against the transformed images."""
    section, figures = Section("Reconstructions"), Section("")
    idx = ctx.grid_indices()
    errors = {}
    for model in ctx.models + ctx.other_models:
        test = transformed_dataset(ctx.test, image_transform(ctx.image_transform, ctx.test.image_shape,
                                                             model.image_shape))
        originals = test.batch(idx)
        errors[model.name] = per_image_reconstruction_mse(model, test, batch_size=512)
        ctx.rows.append({"model": model.name, "kind": model.kind, "latent_dim": model.latent_dim,
                         "test_mse": float(errors[model.name].mean()), "test_images": len(ctx.test)})
        name = f"reconstruction_{slug(model.name)}.png"
        (ctx.out / name).write_bytes(grid_png([originals, model.reconstruct(originals).cpu()],
                                              row_labels=["originals", "reconstructions"]))
        figures.image(name, f"{model.name} ({model.kind}, latent {model.latent_dim}): originals (top), "
                            "reconstructions (bottom)", grid=True)
    frame = pd.DataFrame(ctx.rows)
    frame.to_csv(ctx.out / "reconstruction_mse.csv", index=False)
    pd.DataFrame({"image": np.arange(len(ctx.test)), **errors}).to_csv(ctx.out / "reconstruction_errors.csv",
                                                                       index=False)
    (ctx.out / "reconstruction_errors.png").write_bytes(histograms_png(
        errors, "per-image reconstruction MSE (log scale)", f"{len(ctx.test)} test images"))
    ctx.summary["reconstruction"] = ctx.rows
    section.table(frame)
    section.parts.append('<p class="note">Every number: <a href="reconstruction_mse.csv">reconstruction_mse.csv</a>, '
                         'every image\'s error in <a href="reconstruction_errors.csv">reconstruction_errors.csv</a>.'
                         '</p>')
    section.image("reconstruction_errors.png", "distribution of the per-image reconstruction MSE of each model")
    section.fold(f"Reconstruction grids of every model ({len(figures.parts)})", figures)
    return section
