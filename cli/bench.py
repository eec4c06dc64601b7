"""``latentmap bench expressiveness | coverage | fidelity``: what generators can and cannot produce."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from latentmap.constants import IMAGE_SPEC_PREFIXES, SAMPLERS
from latentmap.cli.options import (FiniteFloat, batch_size_option, choose_dataset, data_dir_option,
                                   dataset_option, device_option, input_transform_option, lpips_option,
                                   note_expected_time, output_options, prepare_output, progress_option,
                                   reported_warnings, seed_option, trust_pickle_option, warn_later)

if TYPE_CHECKING:
    import torch

    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.image_sets import GeneratedSet
    from latentmap.models.base import LatentModel

F = TypeVar("F", bound=Callable[..., Any])  # a command function, before click makes it a command


@click.group("bench")
def command() -> None:
    """Benchmark generators: expressiveness, sector coverage, fidelity and diversity."""


# --------------------------------------------------------------------------- shared options and helpers

def _sampler_options(command_fn: F) -> F:
    """``--sampler``, ``--components`` and ``--fit-images``: where a model's own samples come from."""
    command_fn = click.option("--fit-images", type=click.IntRange(min=2), default=10_000, show_default=True,
                              help="Training images whose encodings a fitted sampler is fitted on.")(command_fn)
    command_fn = click.option("--components", type=click.IntRange(min=1), default=10, show_default=True,
                              help="Components of the gmm sampler.")(command_fn)
    return click.option("--sampler", type=click.Choice(SAMPLERS), default="auto",
                        show_default=True,
                        help="Where a model's own samples come from: its prior, or a gaussian / gmm fitted on its "
                             "encodings of training images; auto: the prior, or gmm for models without one "
                             "(deterministic autoencoders).")(command_fn)


def _support_option(what: str) -> Callable[[F], F]:
    return click.option("--support-set", "support_set", default=None,
                        help=f"Support-set folder{what} (default: the shipped support set for the dataset).")


def _real_images_option(default: int | None) -> Callable[[F], F]:
    return click.option("--images", type=click.IntRange(min=2), default=default, show_default=default is not None,
                        help="Real test images: a seeded random subset of the test split"
                             + ("." if default is not None else " (default all)."))


def _load_models(specs: Sequence[str], device: str, trust_pickle: bool, *,
                 encoder_needed: bool) -> tuple[list[LatentModel], list[str]]:
    """Models named by ``specs`` (shipped names, folders, globs), or every shipped model."""
    from latentmap.models.registry import expand_model_specs, load_model
    from latentmap.models.shipped import shipped_checkpoints

    if specs:
        names, notes = expand_model_specs(specs)
        for note in notes:
            warn_later(note)
        return [load_model(s, device=device, allow_pickle=trust_pickle) for s in names], names
    names = [str(p) for p in shipped_checkpoints().values()]
    if not names:
        raise click.UsageError("no models given and no shipped models installed: name the models to benchmark")
    models = [load_model(s, device=device) for s in names]
    keep = [(m, s) for m, s in zip(models, names) if m.has_trained_encoder or not encoder_needed]
    # one benchmark compares models on the same images: the shipped models of the most common image shape
    shapes = [tuple(m.image_shape) for m, _ in keep]
    common = max(set(shapes), key=shapes.count) if shapes else None
    for m, _ in keep:
        if tuple(m.image_shape) != common:
            assert common is not None  # keep holds m, so shapes is not empty
            warn_later(f"left out the shipped model '{m.name}': its images are {'x'.join(map(str, m.image_shape))}, "
                       f"the other models' {'x'.join(map(str, common))}; name it (with a --dataset of its shape) "
                       "to benchmark it")
    keep = [(m, s) for m, s in keep if tuple(m.image_shape) == common]
    return [m for m, _ in keep], [s for _, s in keep]


def _shipped_support_for(dataset: str) -> str | None:
    """The shipped support set built on ``dataset``, or None."""
    from latentmap.io.checkpoint import read_json_object
    from latentmap.models.shipped import shipped_support_sets

    for folder in shipped_support_sets().values():
        if read_json_object(folder / "manifest.json").get("dataset", {}).get("spec") == dataset:
            return str(folder)
    return None


def _support_spec(support_set: str | None, dataset: str, required: bool) -> str | None:
    spec = support_set or _shipped_support_for(dataset)
    if spec is None and required:
        raise click.UsageError(f"no shipped support set for dataset '{dataset}': pass --support-set DIR")
    if spec is None:
        warn_later(f"no shipped support set for dataset '{dataset}': benchmarked without support-set images")
    return spec


def _real(dataset: str, images: int | None, seed: int, data_dir: str | None) -> ImageDataset:
    from latentmap.data.datasets import load_dataset

    test = load_dataset(dataset, "test", data_dir=data_dir)
    return test.random_subset(images, seed) if images is not None else test


def _real_source(dataset: str) -> str:
    from latentmap.io.paths import shown_spec

    return f"{shown_spec(dataset)} test images"


def _fit_data(models: Sequence[LatentModel], sampler: str, dataset: str,
              data_dir: str | None) -> ImageDataset | None:
    """The training split, loaded only when some model's sampler is fitted on encodings."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.samplers import needs_fit_data

    if needs_fit_data(models, sampler):
        return load_dataset(dataset, "train", data_dir=data_dir)
    return None


def _split_generators(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(image set specs, model specs) in the order given; image sets keep their commas (crop=...)."""
    image_sets = [s for s in specs if s.startswith(IMAGE_SPEC_PREFIXES)]
    return image_sets, [s for s in specs if not s.startswith(IMAGE_SPEC_PREFIXES)]


# --------------------------------------------------------------------------- expressiveness

@command.command("expressiveness")
@click.argument("models", nargs=-1)
@_support_option(", or an image set npy:PATH / folder:PATH")
@dataset_option()
@data_dir_option
@input_transform_option
@_real_images_option(512)
@click.option("--samples", type=click.IntRange(min=2), default=512, show_default=True,
              help="Own samples of each model.")
@_sampler_options
@click.option("--refine-images", type=click.IntRange(min=0), default=128, show_default=True,
              help="Images per target set whose latent is refined by gradient descent (0: none).")
@click.option("--steps", type=click.IntRange(min=0), default=200, show_default=True, help="Refinement steps.")
@click.option("--lr", type=FiniteFloat(0, low_open=True), default=0.05, show_default=True, help="Refinement rate.")
@click.option("--bootstrap", type=click.IntRange(100, 1_000_000), default=2000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
@lpips_option
@seed_option
@batch_size_option
@device_option
@progress_option
@trust_pickle_option
@output_options("report", "bench-expressiveness")
def expressiveness(models: tuple[str, ...], support_set: str | None, dataset: str | None, data_dir: str | None,
                   image_transform: str | None, images: int, samples: int, sampler: str, fit_images: int,
                   components: int, refine_images: int, steps: int, lr: float, bootstrap: int, lpips: str, seed: int,
                   batch_size: int, device: str, progress: bool, trust_pickle: bool, out: str | None,
                   overwrite: bool) -> None:
    """How well each MODEL (default: every shipped model with an encoder or inverter) reproduces its own samples,
    real test images and the support-set images, through its encoder and after refining the latent."""
    from latentmap.evaluation.expressiveness import RATIOS, benchmark_expressiveness, bootstrap_seconds
    from latentmap.io.atomic import atomic_directory
    from latentmap.report.expressiveness import findings, write_expressiveness_report

    out = prepare_output(out, "report", "bench-expressiveness", overwrite, inputs=[*models, support_set])
    loaded, _specs = _load_models(models, device, trust_pickle, encoder_needed=True)
    dataset = choose_dataset(loaded, dataset)
    support_images, support_source, support_model = _expressiveness_support(_support_spec(support_set, dataset, False),
                                                                            data_dir)
    real = _real(dataset, images, seed, data_dir)
    note_expected_time(bootstrap_seconds(bootstrap, len(loaded), samples + len(real), len(RATIOS)),
                       f"{bootstrap:,} bootstrap resamples (--bootstrap)")
    with reported_warnings():
        result = benchmark_expressiveness(
            loaded, real.all_images(), support_images, real_source=_real_source(dataset),
            support_source=support_source, support_model=support_model, samples=samples, sampler=sampler,
            fit_data=_fit_data(loaded, sampler, dataset, data_dir), fit_images=fit_images, components=components,
            refine_images=refine_images, steps=steps, lr=lr, lpips_setting=lpips, seed=seed, bootstrap=bootstrap,
            batch_size=batch_size, progress=progress, image_transform=image_transform)
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_expressiveness_report(result, tmp)
    for line in findings(result):
        click.echo(line)
    click.echo(f"report written to {out}/index.html")


def _expressiveness_support(spec: str | None,
                            data_dir: str | None) -> tuple[torch.Tensor | None, str, str | None]:
    """(images or None, description, name of the model that chose the images or None) of a support-set folder or an
    image set."""
    if spec is None:
        return None, "no support set", None
    if spec.startswith(IMAGE_SPEC_PREFIXES):
        from latentmap.evaluation.image_sets import load_image_set

        images = load_image_set(spec, data_dir)
        return images.images, f"the image set {images.source}", None
    from latentmap.support.build import SupportSet

    support = SupportSet.load(spec)
    model = support.manifest.get("model")
    return (support.images, f"the support set '{support.name}' ({len(support)} images)",
            model.get("name") if isinstance(model, dict) else None)


def _to_reference(ref: LatentModel, models: Iterable[LatentModel], image_transform: str | None) -> None:
    """Every generator model's images must reach the reference's shape (directly or through --image-transform):
    refused before any sampling."""
    from latentmap.data.transforms import resolve_input

    for m in models:
        resolve_input(image_transform, m.image_shape, ref, f"the images of generator '{m.name}'")


def _as_reference_takes(ref: LatentModel, real: ImageDataset, sets: list[GeneratedSet],
                        image_transform: str | None) -> tuple[ImageDataset, list[GeneratedSet]]:
    """(real images, generated sets) turned into the reference's shape (latentmap.data.transforms)."""
    from dataclasses import replace

    from latentmap.data.transforms import resolve_dataset, resolve_images

    real = resolve_dataset(image_transform, real, ref, f"the real images of {real.name}")
    sets = [s if tuple(s.images.shape[1:]) == tuple(ref.image_shape) else
            replace(s, images=resolve_images(image_transform, s.images, ref, f"the images of '{s.name}'"))
            for s in sets]
    return real, sets


# --------------------------------------------------------------------------- coverage and fidelity

def _generators(specs: list[str], device: str,
                trust_pickle: bool) -> tuple[list[LatentModel | str], list[LatentModel]]:
    """(generators: the models, then the image-set specs; the loaded models). No spec: every shipped model."""
    image_sets, model_specs = _split_generators(specs)
    models: list[LatentModel] = []
    if model_specs or not image_sets:
        models, _names = _load_models(model_specs, device, trust_pickle, encoder_needed=False)
    return [*models, *image_sets], models


def _common_generator_options(fn: F) -> F:
    """The options coverage and fidelity share: the real images, the samples and their sampler, k, calibration."""
    for option in reversed([
            dataset_option(), data_dir_option, input_transform_option, _real_images_option(None),
            click.option("--samples", type=click.IntRange(min=10), default=10_000, show_default=True,
                         help="Images drawn from each generator model (image sets are used whole)."),
            _sampler_options,
            click.option("--k", "k", type=click.IntRange(min=1), default=5, show_default=True,
                         help="Nearest neighbours of the precision/recall/density/coverage manifolds."),
            click.option("--calibration/--no-calibration", default=True, show_default=True,
                         help="Also score real training images, as a generator that matches the data would score."),
            seed_option, batch_size_option, device_option, progress_option, trust_pickle_option]):
        fn = option(fn)
    return fn


def _generated(generators: Sequence[LatentModel | str], models: Sequence[LatentModel], *, samples: int, sampler: str,
               fit_images: int, components: int, seed: int, batch_size: int, dataset: str, data_dir: str | None,
               calibration: bool, real_count: int, progress: bool,
               image_transform: str | None = None) -> list[GeneratedSet]:
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.generator_bench import calibration_set, generated_sets

    sets = generated_sets(generators, samples=samples, sampler=sampler, fit_data=_fit_data(models, sampler, dataset,
                                                                                           data_dir),
                          fit_images=fit_images, components=components, seed=seed, batch_size=batch_size,
                          data_dir=data_dir, progress=progress, image_transform=image_transform)
    if calibration:
        sets.append(calibration_set(load_dataset(dataset, "train", data_dir=data_dir), min(samples, real_count), seed))
    return sets


@command.command("coverage")
@click.argument("generators", nargs=-1)
@_support_option(" whose sector variables define the sectors")
@click.option("--reference", default=None, help="Reference model (default: the model the support set records).")
@click.option("--min-count", type=click.IntRange(min=1), default=20, show_default=True,
              help="Real images a sector needs before it can be flagged under-represented.")
@_common_generator_options
@output_options("report", "bench-coverage")
def coverage(generators: tuple[str, ...], support_set: str | None, reference: str | None, min_count: int,
             dataset: str | None, data_dir: str | None, image_transform: str | None, images: int | None, samples: int,
             sampler: str, fit_images: int, components: int, k: int, calibration: bool, seed: int, batch_size: int,
             device: str, progress: bool, trust_pickle: bool, out: str | None, overwrite: bool) -> None:
    """Share of real and generated images in each sector of the support set's reference space, per GENERATOR
    (models, or image sets npy:PATH / folder:PATH; default every shipped model), with fidelity and diversity."""
    from latentmap.evaluation.coverage import reference_model_spec
    from latentmap.evaluation.generator_bench import benchmark_coverage
    from latentmap.io.atomic import atomic_directory
    from latentmap.models.registry import load_model
    from latentmap.report.coverage import coverage_findings, write_coverage_report
    from latentmap.support.build import SupportSet

    if support_set is not None and support_set.startswith(IMAGE_SPEC_PREFIXES):
        raise click.BadParameter("coverage needs a support-set folder (its sector variables), not an image set",
                                 param_hint="--support-set")
    out = prepare_output(out, "report", "bench-coverage", overwrite, inputs=[*generators, support_set, reference])
    gens, models = _generators(list(generators), device, trust_pickle)
    dataset = choose_dataset(models, dataset)
    support_spec = _support_spec(support_set, dataset, True)
    assert support_spec is not None  # required: a missing support set is a usage error
    support = SupportSet.load(support_spec)
    ref = load_model(reference or reference_model_spec(support_spec, support.manifest), device=device,
                     allow_pickle=trust_pickle)
    _to_reference(ref, models, image_transform)
    real = _real(dataset, images, seed, data_dir)
    with reported_warnings():
        sets = _generated(gens, models, samples=samples, sampler=sampler, fit_images=fit_images, components=components,
                          seed=seed, batch_size=batch_size, dataset=dataset, data_dir=data_dir,
                          calibration=calibration, real_count=len(real), progress=progress,
                          image_transform=image_transform)
        real, sets = _as_reference_takes(ref, real, sets, image_transform)
        result = benchmark_coverage(ref, support, real, sets, real_source=_real_source(dataset),
                                    min_count=min_count, k=k, batch_size=batch_size, progress=progress)
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_coverage_report(result, tmp)
    for line in coverage_findings(result):
        click.echo(line)
    click.echo(f"report written to {out}/index.html")


@command.command("fidelity")
@click.argument("generators", nargs=-1)
@click.option("--reference", default=None,
              help="Reference model whose latent space holds the features (default: the model of the shipped "
                   "support set for the dataset).")
@_common_generator_options
@output_options("report", "bench-fidelity")
def fidelity(generators: tuple[str, ...], reference: str | None, dataset: str | None, data_dir: str | None,
             image_transform: str | None, images: int | None, samples: int, sampler: str, fit_images: int,
             components: int, k: int, calibration: bool, seed: int, batch_size: int, device: str, progress: bool,
             trust_pickle: bool, out: str | None, overwrite: bool) -> None:
    """Precision, recall, density, coverage and a Fréchet distance of each GENERATOR against real test images, in a
    reference model's latent space (named as such: never FID)."""
    from latentmap.evaluation.coverage import reference_model_spec
    from latentmap.evaluation.generator_bench import benchmark_fidelity
    from latentmap.io.atomic import atomic_directory
    from latentmap.io.checkpoint import read_json_object
    from latentmap.models.registry import load_model
    from latentmap.report.coverage import fidelity_findings, write_fidelity_report

    out = prepare_output(out, "report", "bench-fidelity", overwrite, inputs=[*generators, reference])
    gens, models = _generators(list(generators), device, trust_pickle)
    dataset = choose_dataset(models, dataset)
    if reference is None:
        folder = _shipped_support_for(dataset)
        if folder is None:
            raise click.UsageError(f"no shipped support set (and so no default reference) for dataset '{dataset}': "
                                   "pass --reference MODEL")
        reference = reference_model_spec(folder, read_json_object(f"{folder}/manifest.json"))
    ref = load_model(reference, device=device, allow_pickle=trust_pickle)
    _to_reference(ref, models, image_transform)
    real = _real(dataset, images, seed, data_dir)
    with reported_warnings():
        sets = _generated(gens, models, samples=samples, sampler=sampler, fit_images=fit_images, components=components,
                          seed=seed, batch_size=batch_size, dataset=dataset, data_dir=data_dir,
                          calibration=calibration, real_count=len(real), progress=progress,
                          image_transform=image_transform)
        real, sets = _as_reference_takes(ref, real, sets, image_transform)
        result = benchmark_fidelity(ref, real, sets, real_source=_real_source(dataset), k=k,
                                    batch_size=batch_size, progress=progress)
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        write_fidelity_report(result, tmp)
    for line in fidelity_findings(result):
        click.echo(line)
    click.echo(f"report written to {out}/index.html")
