"""``latentmap map fit | eval | atlas``: linear maps between latent spaces and their evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, SupportsInt

import click

from latentmap.cli.options import (alpha_option, batch_size_option, bias_option, choose_dataset, cycle_option,
                                   data_dir_option,
                                   dataset_option, device_option, estimator_option, estimators_option,
                                   fit_images_option, fit_split_option, image_transform_option, images_option,
                                   lpips_option, method_option,
                                   output_options, prepare_output, progress_option, reported_warnings,
                                   samples_option, seed_option, split_choice, trust_pickle_option, warn_later)

if TYPE_CHECKING:
    from latentmap.evaluation.atlas import AtlasResult
    from latentmap.maps.base import MapEstimator
    from latentmap.maps.fitting import FitSource
    from latentmap.maps.linear import LinearMap
    from latentmap.models.base import LatentModel


@click.group("map")
def command() -> None:
    """Fit and evaluate linear maps z_B ≈ M z_A between latent spaces."""


# --------------------------------------------------------------------------- helpers

def _load(spec: str, device: str, trust_pickle: bool = False) -> LatentModel:
    from latentmap.models.registry import load_model

    return load_model(spec, device=device, allow_pickle=trust_pickle)


def _alpha_text(linear_map: LinearMap) -> str:
    return f"auto ({linear_map.alpha_:.3g})" if linear_map.alpha == "auto" else f"{linear_map.alpha:g}"


def _estimator_factories(text: str, fit_source: FitSource, bias: bool | None, alpha: float | str | None, method: str,
                         method_given: bool) -> dict[str, Callable[[], MapEstimator]]:
    """{label: factory} for the estimator specs in ``text``; --bias/--method go to linear ones, --alpha to those
    that take it. A linear spec keeps the fit source's defaults (bias-free, GCV ridge for a support set)."""
    from latentmap.maps.linear import LinearMap
    from latentmap.maps.registry import parse_estimators

    specs = parse_estimators(text)
    linear = [s for s in specs if s.kind.cls is LinearMap]
    given = [opt for opt, on in (("--bias/--no-bias", bias is not None), ("--method", method_given)) if on]
    if given and not linear:
        raise click.UsageError(f"{' and '.join(given)} apply to the linear estimator only; give the parameters of "
                               f"{', '.join(s.label for s in specs)} in the spec (NAME:KEY=VALUE)")
    if alpha is not None and not any("alpha" in s.kind.cls._get_param_names() for s in specs):
        raise click.UsageError(f"--alpha does not apply to {', '.join(s.label for s in specs)}; give the "
                               "estimator's parameters in the spec (NAME:KEY=VALUE)")
    factories: dict[str, Callable[[], MapEstimator]] = {}
    for spec in specs:
        if spec.kind.cls is LinearMap:
            p = {"bias": bias, "alpha": alpha, "method": method, **spec.params}
            factories[spec.label] = partial(fit_source.new_map, bias=p["bias"], alpha=p["alpha"], method=p["method"])
        else:
            factories[spec.label] = partial(spec.make, overrides={"alpha": alpha})
    for make in factories.values():  # parameters that only conflict together (alpha with procrustes) fail here
        make()._validate_params()
    return factories


def _default_transform(spec: str | None, data_shape: Iterable[SupportsInt], models: Iterable[LatentModel],
                       what: str) -> str | None:
    """``spec``, or "auto" (with a warning) when the models or the data work on images of different shapes."""
    shapes = {tuple(data_shape), *(tuple(m.image_shape) for m in models)}
    if spec is not None or len(shapes) == 1:
        return spec
    warn_later(f"{what} work on images of different shapes ({', '.join(str(list(s)) for s in sorted(shapes))}): "
               "each model gets the images through --image-transform auto (channels, resize of the shorter side, "
               "centre crop); choose another with --image-transform (e.g. pad)")
    return "auto"


def _method_given() -> bool:
    ctx = click.get_current_context()
    return ctx.get_parameter_source("method") not in (click.core.ParameterSource.DEFAULT, None)


# --------------------------------------------------------------------------- fit

@command.command("fit")
@click.option("--source", required=True, help="Model A (checkpoint folder): the map's input space.")
@click.option("--target", required=True, help="Model B (checkpoint folder): the map's output space.")
@click.option("--support-set", "support_set", default=None,
              help="Fit on a support set folder, or on an image set npy:PATH / folder:PATH.")
@click.option("--dataset", default=None, help="Fit on images of a dataset split (streamed through both encoders).")
@fit_images_option
@samples_option
@fit_split_option()
@bias_option
@alpha_option
@method_option
@estimator_option
@image_transform_option("auto when the models, or the fit images, differ in shape (with a warning); else none")
@output_options("map", "map")
@seed_option
@batch_size_option
@data_dir_option
@device_option
@progress_option
@trust_pickle_option
def fit(source: str, target: str, support_set: str | None, dataset: str | None, fit_images: int | None,
        samples: int | None, fit_split: str, bias: bool | None, alpha: float | str | None, method: str, estimator: str,
        image_transform: str | None, out: str | None, overwrite: bool, seed: int, batch_size: int,
        data_dir: str | None, device: str, progress: bool, trust_pickle: bool) -> None:
    """Fit a map (linear by default, --estimator) from SOURCE's latent space to TARGET's and save it as a folder."""
    from latentmap.maps.fitting import fit_map, resolve_fit_source
    from latentmap.models.registry import record_model
    from latentmap.maps.registry import describe_estimator, parse_estimator

    from latentmap import distributed

    spec = parse_estimator(estimator)
    out = prepare_output(out, "map", "map", overwrite, inputs=[source, target, support_set])
    fit_source = resolve_fit_source(support_set=support_set, dataset=dataset, samples=samples, split=fit_split,
                                    images=fit_images, seed=seed, data_dir=data_dir)
    make = _estimator_factories(spec.label, fit_source, bias, alpha, method, _method_given())[spec.label]
    model_a, model_b = _load(source, device, trust_pickle), _load(target, device, trust_pickle)
    if spec.kind.name == "linear":  # flattened spatial latents: the normal equations must fit in memory
        from latentmap.resources import check_flattened_map

        check_flattened_map(model_a, model_b)
    image_transform = _default_transform(image_transform, fit_source.data_shape(model_a), [model_a, model_b],
                                         "the two models and the fit images")
    with reported_warnings():
        linear_map = fit_map(model_a, model_b, fit_source, make(), batch_size=batch_size, progress=progress,
                             image_transform=image_transform)
    linear_map.save(out, source=record_model(model_a, source), target=record_model(model_b, target),
                    fit_source=fit_source.record(), extra={"compute": distributed.compute_record(batch_size)},
                    overwrite=overwrite)
    fm = linear_map.fit_metrics_
    if fm.get("loo_r2") is not None:
        quality = f"leave-one-out latent R² {fm['loo_r2']:.4f} (on its own pairs {fm['r2']:.4f})"
    elif fm.get("validation_r2") is not None:
        quality = f"latent R² on its {fm['n_validation']} held-out pairs {fm['validation_r2']:.4f}"
    else:
        quality = f"latent R² on its {fm['n_pairs']} pairs {fm['r2']:.4f}"
    mse = fm.get("latent_mse", fm.get("validation_latent_mse"))
    what = (f"{'affine' if linear_map.bias else 'bias-free'} {method}, alpha {_alpha_text(linear_map)}"
            if spec.kind.name == "linear" else describe_estimator(linear_map))
    click.echo(f"map {model_a.name} ({model_a.latent_dim}) -> {model_b.name} ({model_b.latent_dim}), "
               f"{what}: fitted on {fit_source.count} {fit_source.kind} pairs, {quality}, "
               f"latent MSE {mse:.5f}")
    if getattr(linear_map, "image_transform_", None):
        t = linear_map.image_transform_
        click.echo(f"image transform '{t['spec']}': {t['from']} -> {t['to']} (recorded in map.json)")
    click.echo(f"saved to {out}")


# --------------------------------------------------------------------------- eval

def _model_from_map(map_dir: str, info: dict[str, Any], side: str, override: str | None, device: str,
                    trust_pickle: bool = False) -> tuple[LatentModel, str]:
    """(model, spec): the one given, else the one the map records, refused if it changed since the fit."""
    from latentmap.models.registry import load_recorded_model

    if override is not None:
        return _load(override, device, trust_pickle), override
    return load_recorded_model(info.get(side, {}), map_dir, device, allow_pickle=trust_pickle)


@command.command("eval")
@click.option("--map", "map_dir", required=True, help="Map folder written by `latentmap map fit`.")
@click.option("--source", default=None, help="Model A (default: the path recorded in the map).")
@click.option("--target", default=None, help="Model B (default: the path recorded in the map).")
@dataset_option()
@click.option("--split", type=split_choice, default="test", show_default=True)
@images_option()
@output_options("report", "map-eval")
@click.option("--grid-images", type=click.IntRange(min=1), default=12, show_default=True)
@lpips_option
@cycle_option
@image_transform_option("the one recorded in the map (none for a map without one)")
@seed_option
@batch_size_option
@data_dir_option
@device_option
@progress_option
@trust_pickle_option
def evaluate(map_dir: str, source: str | None, target: str | None, dataset: str | None, split: str,
             images: int | None, out: str | None, overwrite: bool, grid_images: int, lpips: str, cycle: bool,
             image_transform: str | None, seed: int, batch_size: int, data_dir: str | None, device: str,
             progress: bool, trust_pickle: bool) -> None:
    """Relocate a dataset split through a map: table (CSV/JSON/HTML) and image grid."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap.data.transforms import image_transform as resolve_transform
    from latentmap.maps.fitting import check_map_fits, pair_transform
    from latentmap.maps.registry import load_map
    from latentmap.report.findings import useless_target_findings
    from latentmap.report.html import shown_path, shown_spec
    from latentmap.models.registry import record_model
    from latentmap.io.model_record import relative_record
    from latentmap import distributed
    from latentmap.report.relocation import relocation_table, save_relocation_report

    out = prepare_output(out, "report", "map-eval", overwrite, inputs=[map_dir, source, target])
    linear_map = load_map(map_dir)
    model_a, path_a = _model_from_map(map_dir, linear_map.info_, "source", source, device, trust_pickle)
    model_b, path_b = _model_from_map(map_dir, linear_map.info_, "target", target, device, trust_pickle)
    check_map_fits(linear_map, model_a, model_b)
    if image_transform is not None:  # replaces the map's own for this evaluation (grids included)
        linear_map.image_transform_ = resolve_transform(image_transform, model_a.image_shape,
                                                        model_b.image_shape).record()
    recorded = pair_transform(linear_map)
    dataset = choose_dataset([model_a, model_b], dataset)
    ds = load_dataset(dataset, split, data_dir=data_dir).random_subset(images, seed)
    result = evaluate_relocation(model_a, model_b, linear_map, ds, batch_size=batch_size, lpips=lpips,
                                 progress=progress, seed=seed, cycle=cycle,
                                 image_transform=None if recorded is None else recorded.spec)
    save_relocation_report(result, out, model_a, model_b, linear_map, ds, grid_images,
                           {"map": shown_path(map_dir), "source_path": shown_path(path_a),
                            "target_path": shown_path(path_b),
                            "models": {"source": relative_record(record_model(model_a), out),
                                       "target": relative_record(record_model(model_b), out)},
                            "dataset": shown_spec(dataset), "split": split, "compute": distributed.compute_record(batch_size),
                            **({"image_transform": recorded.record()} if recorded else {})}, overwrite=overwrite)
    for name, value in relocation_table(result):
        click.echo(f"{name:34s} {value}")
    if result.relocated_lpips is None and result.lpips_note:
        click.echo(result.lpips_note)
    for line in useless_target_findings([result.table_row()]):
        warn_later(line.removeprefix("Warning: "))
    if result.by_label:
        click.echo("ratio by label: " + ", ".join(f"{r['name']} {r['ratio']:.2f}" for r in result.by_label))
    if recorded is not None:
        click.echo(f"image transform '{recorded.spec}': {list(recorded.from_shape)} -> {list(recorded.to_shape)}")
    click.echo(f"report written to {out}")


# --------------------------------------------------------------------------- atlas

@command.command("atlas")
@click.option("--models", "models_opt", multiple=True,
              help="Models: checkpoint folders, pickles (with --trust-code), shipped names; repeatable or comma-separated; "
                   "a glob such as checkpoints/* or a folder of models.")
@click.argument("more_models", nargs=-1)
@click.option("--fit", "fit_kind", type=click.Choice(["support-set", "dataset", "samples"]), default="dataset",
              show_default=True, help="What every map is fitted on.")
@click.option("--support-set", "support_set", default=None, help="With --fit support-set: folder, npy:PATH or folder:PATH.")
@dataset_option()
@fit_split_option()
@fit_images_option
@samples_option
@click.option("--split", type=split_choice, default="test", show_default=True, help="Evaluation split.")
@images_option()
@bias_option
@alpha_option
@method_option
@estimators_option
@image_transform_option("auto when a model's images differ from the dataset's (with a warning); else none")
@output_options("report", "atlas")
@lpips_option
@cycle_option
@seed_option
@batch_size_option
@data_dir_option
@device_option
@progress_option
@trust_pickle_option
def atlas(models_opt: tuple[str, ...], more_models: tuple[str, ...], fit_kind: str, support_set: str | None,
          dataset: str | None, fit_split: str, fit_images: int | None, samples: int | None, split: str,
          images: int | None, bias: bool | None, alpha: float | str | None, method: str, estimators: str | None,
          image_transform: str | None, out: str | None, overwrite: bool, lpips: str, cycle: bool, seed: int,
          batch_size: int, data_dir: str | None, device: str, progress: bool, trust_pickle: bool) -> None:
    """Every ordered pair of models: fit, relocate, compare (ratio matrix by type, grids, CSV, JSON)."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.atlas import build_atlas
    from latentmap.maps.fitting import resolve_fit_source
    from latentmap.report.atlas import save_atlas

    from latentmap.models.registry import expand_model_specs

    specs, notes = expand_model_specs(list(models_opt) + list(more_models))
    for note in notes:
        warn_later(note)
    if len(specs) < 2:
        raise click.UsageError(f"an atlas needs at least 2 models (--models checkpoints/*), got {len(specs)}")
    if fit_kind == "support-set" and support_set is None:
        raise click.UsageError("--fit support-set needs --support-set DIR (or npy:PATH / folder:PATH)")
    if fit_kind != "support-set" and support_set is not None:
        raise click.UsageError("--support-set applies to --fit support-set only")
    if fit_kind != "samples" and samples is not None:
        raise click.UsageError("--samples applies to --fit samples only")
    if estimators is not None:
        from latentmap.maps.registry import parse_estimators

        parse_estimators(estimators)  # a bad spec fails before any model is loaded
    out = prepare_output(out, "report", "atlas", overwrite, inputs=[*specs, support_set])
    models = [_load(s, device, trust_pickle) for s in specs]
    if estimators is None or "linear" in estimators.split(","):  # the largest flattened pair must fit in memory
        from latentmap.resources import check_flattened_map

        widest = sorted(models, key=lambda m: m.latent_dim)[-2:]
        check_flattened_map(widest[-1], widest[0])
    dataset = choose_dataset(models, dataset)
    fit = resolve_fit_source(support_set=support_set, dataset=dataset if fit_kind == "dataset" else None,
                             samples=(samples or 10000) if fit_kind == "samples" else None, split=fit_split,
                             images=fit_images, seed=seed, data_dir=data_dir)
    test = load_dataset(dataset, split, data_dir=data_dir).random_subset(images, seed)
    image_transform = _default_transform(image_transform, test.image_shape, models, "the models and the dataset")
    factories = None
    if estimators is not None:
        factories = _estimator_factories(estimators, fit, bias, alpha, method, _method_given())
    with reported_warnings():
        result = build_atlas(models, test, fit, lambda: fit.new_map(bias=bias, alpha=alpha, method=method),
                             estimators=factories, batch_size=batch_size,
                             lpips=lpips,
                             model_paths={m.name: s for m, s in zip(models, specs)}, progress=progress, seed=seed,
                             cycle=cycle, image_transform=image_transform)
    save_atlas(result, out, models, test, overwrite=overwrite)
    _print_atlas(result)
    from latentmap.report.findings import useless_target_findings

    for line in useless_target_findings([r.table_row() for r in result.results_of(result.primary)]):
        warn_later(line.removeprefix("Warning: "))
    click.echo(f"report written to {out}/index.html")


def _print_atlas(result: AtlasResult) -> None:
    several = len(result.estimators) > 1
    width = max([len(label) for label in result.estimators] + [9])
    est = f" {'estimator':{width}s}" if several else ""
    click.echo(f"{'type':>4s}  {'source':20s} {'target':20s}{est} {'own MSE B':>9s} {'relocated':>9s} {'ratio':>6s} "
               f"{'95% interval':>15s} {'latent R²':>9s}")
    for r in result.results:
        est = f" {r.estimator:{width}s}" if several else ""
        click.echo(f"{r.type:>4d}  {r.source:20s} {r.target:20s}{est} {r.target_mse:9.5f} {r.relocated_mse:9.5f} "
                   f"{r.ratio:6.3f} [{r.ratio_low:6.3f}, {r.ratio_high:6.3f}] {r.latent_r2:9.4f}")
    if result.results[0].relocated_lpips is None:
        click.echo(result.results[0].lpips_note)
    gap = result.linearity_gap()
    if gap is not None:
        types = gap[1]
        click.echo(f"linearity gap, ratio({types.attrs['linear']}) - ratio({types.attrs['nonlinear']}) (extra "
                   "relocated MSE of the linear map, in units of B's own MSE), mean over pairs: "
                   + ", ".join(f"type {int(t.type)} {t.mean_gap:.3f}" for t in types.itertuples()))
    prediction = result.similarity_prediction()
    if len(prediction):
        first = prediction[prediction["estimator"] == result.primary]
        click.echo(f"similarity vs ratio ({result.primary}), Spearman over pairs: " + ", ".join(
            f"{row.similarity} {row.spearman_rho:+.2f} ({row.ratio_of})" for row in first.itertuples()))
