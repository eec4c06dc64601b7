"""Demo sections: the expressiveness leaderboard and sector coverage of every shipped model.

Sized for the demo's budget on 2 CPU cores, and labelled as such in the report: 256 own samples
and 256 evenly spaced test images per model plus the 64 support-set images, gradient refinement
of 16 images per set for 40 steps (``latentmap bench expressiveness`` defaults to 512 / 512 /
128 images and 200 steps); coverage and fidelity with 2,000 samples per model against every
test image of the demo. A demo on fewer test images (``--images N``) shrinks these with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentmap.data.datasets import ImageDataset, load_dataset
from latentmap.demo.context import DEMO_DATASET, DemoContext, register_demo_section
from latentmap.evaluation.expressiveness import benchmark_expressiveness
from latentmap.evaluation.generator_bench import benchmark_coverage, calibration_set, generated_sets
from latentmap.report.coverage import coverage_findings, coverage_sections
from latentmap.report.expressiveness import expressiveness_sections, findings
from latentmap.report.html import Section
from latentmap.support.build import SupportSet

OWN_SAMPLES = 256
REAL_IMAGES = 256
REFINE_IMAGES = 16
STEPS = 40
COVERAGE_SAMPLES = 2000
SUPPORT_NAME = "fmnist-svae"


def _support(ctx: DemoContext) -> SupportSet | None:
    """The shipped support set, or the one the support-set section built into the report; None if neither."""
    for folder in (ctx.checkpoints.parent / "support_sets" / SUPPORT_NAME, ctx.out / "support_set"):
        if (folder / "manifest.json").is_file():
            return SupportSet.load(folder)
    return None


SHOWN_FINDINGS = 3  # the benchmark's findings shown open on the demo page; the rest fold


def _merge(title: str, intro: list[str], sections: list[Section],
           shown: Callable[[int, Section], bool] = lambda k, part: k == 0) -> Section:
    """One demo section holding the benchmark's sections as sub-headings: those ``shown(position, section)``
    accepts open, the others (the long and the repeated ones) folded under their title; the intro's first
    sentences open, the rest folded."""
    import html

    merged = Section(title)
    for sentence in intro[:SHOWN_FINDINGS]:
        merged.text(sentence)
    if intro[SHOWN_FINDINGS:]:
        merged.fold(f"More findings ({len(intro) - SHOWN_FINDINGS})",
                    "".join(f"<p>{html.escape(s)}</p>" for s in intro[SHOWN_FINDINGS:]))
    for k, part in enumerate(sections):
        if shown(k, part):
            merged.parts.append(f"<h3>{html.escape(part.title)}</h3>")
            merged.parts.extend(part.parts)
        else:
            merged.fold(part.title, "\n".join(part.parts))
    return merged


def _train_if_needed(ctx: DemoContext) -> ImageDataset | None:
    if all(m.has_prior for m in ctx.models):
        return None
    return load_dataset(DEMO_DATASET, "train", data_dir=ctx.data_dir)


@register_demo_section(35, "expressiveness")
def expressiveness_section(ctx: DemoContext) -> Section:
    """The expressiveness benchmark at the demo's sizes: how well every model with an encoder or inverter
    reproduces its own samples, real test images and the support-set images; its findings and sections."""
    models = [m for m in ctx.models if m.has_trained_encoder]
    if not models:
        return Section("Generator expressiveness").text("No model with an encoder or a trained inverter.")
    support = _support(ctx)
    real = ctx.test.evenly_spaced_subset(min(REAL_IMAGES, len(ctx.test)))
    # a demo on few test images (--images, the tests) shrinks every size with it
    own, refine = min(OWN_SAMPLES, max(len(real), 2)), min(REFINE_IMAGES, max(4, len(real) // 8))
    steps = STEPS if len(real) >= REAL_IMAGES else min(STEPS, 10)
    result = benchmark_expressiveness(
        models, real.all_images(), None if support is None else support.images,
        real_source=f"evenly spaced {DEMO_DATASET} test images",
        support_source="no support set" if support is None else f"the support set '{support.name}'",
        support_model=None if support is None else (support.manifest.get("model") or {}).get("name"),
        samples=own, fit_data=_train_if_needed(ctx), refine_images=refine, steps=steps, seed=0)
    sections = expressiveness_sections(result, ctx.out / "expressiveness", prefix="expressiveness/")
    sized = (f"Demo sizes (for 2 CPU cores): {own} own samples, {len(real)} test images, "
             f"{0 if support is None else len(support)} support-set images, refinement of {refine} images "
             f"per set for {steps} steps. `latentmap bench expressiveness` runs the full benchmark (512 / 512 / "
             "128 images, 200 steps by default).")
    ctx.summary["expressiveness"] = result.leaderboard().to_dict(orient="records")
    return _merge("Generator expressiveness", [sized] + findings(result), sections)


@register_demo_section(36, "coverage")
def coverage_section(ctx: DemoContext) -> Section:
    """Sector coverage, fidelity and diversity of every model's samples (and real training images as calibration)
    in the support set's reference space; a note instead when the support set or its model is missing."""
    support = _support(ctx)
    by_name = {m.name: m for m in ctx.models}
    recorded: dict[str, Any] = (support.manifest.get("model") or {}) if support is not None else {}
    reference = by_name.get(recorded["name"]) if recorded.get("name") is not None else None
    if support is None or reference is None:
        return Section("Sector coverage").text("Coverage needs the support set and its reference model among the "
                                               "demo's models; neither was found.")
    train = load_dataset(DEMO_DATASET, "train", data_dir=ctx.data_dir)
    samples = min(COVERAGE_SAMPLES, max(len(ctx.test), 200))
    sets = generated_sets(ctx.models, samples=samples, fit_data=train, seed=0)
    sets.append(calibration_set(train, samples, 0))
    result = benchmark_coverage(reference, support, ctx.test, sets, real_source=f"{DEMO_DATASET} test images")
    sections = coverage_sections(result, ctx.out / "coverage", prefix="coverage/")
    ctx.summary["coverage"] = result.summary_frame().to_dict(orient="records")
    assert result.fidelity is not None  # benchmark_coverage computes it by default
    ctx.summary["fidelity"] = result.fidelity.to_dict()
    sized = (f"Demo sizes: {samples} samples of every model (the VAEs through their prior samples) and "
             f"{samples} real training images as calibration, against {len(ctx.test)} test images.")
    return _merge("Sector coverage, fidelity and diversity", [sized] + coverage_findings(result), sections,
                  shown=lambda k, part: k == 0 or k == len(sections) - 1)  # the summary and fidelity open
