"""``latentmap support-set build|show|compare``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from latentmap.constants import (ANCHOR_MAP_DEFAULTS, ANCHOR_STRATEGIES, COMPARE_ALPHA, COMPARE_REFERENCE_IMAGES,
                                 GAIN_IMAGES, SPLITS, SPREAD_PAIRS)
from latentmap.cli.options import (FiniteFloat, RidgeAlpha, batch_size_option, choose_dataset, data_dir_option,
                                   dataset_option, device_option, images_option, input_transform_option,
                                   note_expected_time, output_options, prepare_output, progress_option,
                                   reported_warnings, seed_option,
                                   trust_pickle_option)

if TYPE_CHECKING:
    from latentmap.io.support_folder import SupportSet


def _split_list(ctx: click.Context, param: click.Parameter, values: Iterable[str] | None) -> tuple[str, ...]:
    """Accept repeated options and comma-separated lists alike: --for-models A,B --for-models C."""
    return tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be comma-separated integers such as 16,32,64, got '{value}'") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"must be positive integers, got '{value}'")
    return sizes


@click.group("support-set")
def command() -> None:
    """Build, inspect and compare support sets (anchor images that fix maps between latent spaces)."""


@command.command("build")
@click.option("--model", "model_spec", required=True,
              help="Checkpoint folder (or model spec) whose latent space is used.")
@dataset_option()
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@data_dir_option
@input_transform_option
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Images in the set (default: the largest latent size of --for-models, else the model's).")
@click.option("--for-models", multiple=True, callback=_split_list,
              help="Models the set will map between (repeat or comma-separate); the default size is their "
                   "largest latent size.")
@click.option("--strategy", type=click.Choice(ANCHOR_STRATEGIES), default="sectors",
              show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Variables defining the sectors (default floor(log2(size))).")
@click.option("--threshold", type=FiniteFloat(0), default=None,
              help="Sector threshold on |z| (default: the largest keeping 90% of the sectors populated).")
@click.option("--gain-images", type=click.IntRange(min=1), default=GAIN_IMAGES, show_default=True,
              help="Seeded subsample of the split for the information gain.")
@click.option("--exclude", multiple=True, help="Image indices to leave out: comma-separated, or a file of indices.")
@click.option("--pairs", type=click.IntRange(min=1), default=SPREAD_PAIRS, show_default=True,
              help="Random pairs for the dataset's mean pairwise MSE.")
@seed_option
@batch_size_option
@device_option
@click.option("--name", default=None, help="Name in the manifest (default: the folder name).")
@output_options("support-set", "support-set")
@progress_option
@trust_pickle_option
def build(model_spec: str, dataset: str | None, split: str, data_dir: str | None, image_transform: str | None,
          size: int | None, for_models: tuple[str, ...], strategy: str, top_k: int | None, threshold: float | None,
          gain_images: int, exclude: tuple[str, ...], pairs: int, seed: int, batch_size: int, device: str,
          name: str | None, out: str | None, overwrite: bool, progress: bool, trust_pickle: bool) -> None:
    """Choose anchor images with the sector method (or a baseline) and write the support-set folder."""
    from latentmap.models.registry import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.data.transforms import resolve_dataset
    from latentmap.report.support_set import write_support_set
    from latentmap.support.build import build_support_set, check_pairs, target_size_for

    out = prepare_output(out, "support-set", "support-set", overwrite, inputs=[model_spec, *for_models, *exclude])
    dims: dict[str, int] = {}
    if for_models:
        largest, dims = target_size_for(for_models, allow_pickle=trust_pickle)
        size = size or largest
    model = load_model(model_spec, device=device, allow_pickle=trust_pickle)
    dataset = choose_dataset([model], dataset)
    data = resolve_dataset(image_transform, load_dataset(dataset, split, data_dir=data_dir), model,
                           f"the {dataset} {split} images")
    note_expected_time(check_pairs(pairs, data.image_shape), f"the mean MSE of {pairs:,} random pairs (--pairs)")
    with reported_warnings():
        support = build_support_set(model, data, size=size, strategy=strategy, top_k=top_k, threshold=threshold,
                                    seed=seed, gain_images=gain_images, exclude=exclude, name=name or Path(out).name,
                                    dataset_spec=dataset, split=split, model_source=model_spec, for_models=dims,
                                    batch_size=batch_size, pairs=pairs, progress=progress)
    write_support_set(support, out, overwrite=overwrite)
    _describe(support, out)


@command.command("show")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--sectors/--no-sectors", default=False, help="List the population of every sector.")
def show(directory: str, sectors: bool) -> None:
    """Print a support set's origin, sectors and statistics."""
    from latentmap.support.build import SupportSet

    support = SupportSet.load(directory)
    _describe(support, directory, list_sectors=sectors)


def _describe(support: SupportSet, folder: str, list_sectors: bool = False) -> None:
    m = support.manifest  # field types checked by SupportSet.load; entries of its lists are read defensively
    model, data = m.get("model") or {}, m.get("dataset") or {}
    click.echo(f"support set '{support.name}': {len(support)} images, strategy {m.get('strategy', '?')}, "
               f"seed {m.get('seed', '?')}")
    click.echo(f"  model {model.get('name', '?')} ({model.get('kind', '?')}, latent {model.get('latent_dim', '?')}); "
               f"dataset {data.get('spec', '?')} split {data.get('split', '?')} ({data.get('images', '?')} images, "
               f"{len(m.get('excluded') or [])} excluded)")
    if "top_k" in m:
        click.echo(f"  top-k {m['top_k']} variables {m.get('variables', '?')}; threshold {_g(m.get('threshold'))}")
        roles = [im.get("role") for im in _dicts(m.get("images"))]
        click.echo(f"  {roles.count('sector')} images one per sector, {roles.count('completion')} completion "
                   f"images from the most crowded sectors")
    stats = m.get("statistics") or {}
    if "sectors" in stats:
        click.echo(f"  sectors: {stats.get('nonempty_sectors', '?')} of {stats['sectors']} populated, "
                   f"{stats.get('empty_sectors', '?')} empty; population min {stats.get('population_min', '?')} / "
                   f"median {_g(stats.get('population_median'))} / max {stats.get('population_max', '?')}; "
                   f"{stats.get('points_outside_sectors', '?')} images in no sector")
    for dropped in _dicts(m.get("dropped_sectors")):
        click.echo(f"  dropped sector {dropped.get('sector', '?')} ({dropped.get('signs', '?')}, "
                   f"{dropped.get('population', '?')} images)")
    if stats.get("support_pairwise_mse") is not None:
        click.echo(f"  mean pairwise MSE: support set {_g(stats['support_pairwise_mse'], '.4f')} vs random dataset "
                   f"pairs {_g(stats.get('dataset_random_pairs_mse'), '.4f')} ({stats.get('random_pairs', '?')} pairs)")
    if list_sectors:
        for sector in _dicts(m.get("sector_populations")):
            click.echo(f"  sector {str(sector.get('sector', '?')):>5} {sector.get('signs', '?')}  "
                       f"{sector.get('population', '?')}")
    click.echo(f"  files in {folder}: manifest.json, images.npy, contact_sheet.png"
               + (", info_gain.png, sector_populations.png" if "top_k" in m else ""))


def _g(value: object, spec: str = ".4g") -> str:
    """A recorded number formatted, or '?' when the manifest holds none."""
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _dicts(values: object) -> list[dict[str, Any]]:
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


@command.command("compare")
@click.option("--models", "model_specs", multiple=True, callback=_split_list,
              help="Models to map between: --models A B C, --models A,B,C or repeated.")
@click.argument("more_models", nargs=-1)
@dataset_option()
@data_dir_option
@input_transform_option
@click.option("--sizes", callback=_sizes, default="16,32,64,128", show_default=True, help="Anchor-set sizes.")
@click.option("--strategies", callback=lambda c, p, v: tuple(s.strip() for s in v.split(",") if s.strip()),
              default=",".join(ANCHOR_STRATEGIES), show_default=True)
@click.option("--seeds", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Seeds per strategy and size: --seed, --seed+1, ...")
@seed_option
@click.option("--anchor-model", default=None, help="Model whose latent space chooses the anchors (default: the first).")
@click.option("--alpha", type=RidgeAlpha(), default=COMPARE_ALPHA, show_default=True,
              help="Ridge penalty of the maps (needed for sizes below the source latent size), or 'auto' (GCV).")
@click.option("--bias/--no-bias", default=ANCHOR_MAP_DEFAULTS["bias"], show_default=True,
              help="Fit an intercept (the paper's map is bias-free).")
@images_option(2000, "test")
@click.option("--gain-images", type=click.IntRange(min=1), default=GAIN_IMAGES, show_default=True)
@click.option("--reference-images", type=click.IntRange(min=1), default=COMPARE_REFERENCE_IMAGES, show_default=True,
              help="Training images for the reference maps (an upper bound for any anchor set).")
@batch_size_option
@device_option
@output_options("report", "anchors")
@progress_option
@trust_pickle_option
def compare(model_specs: tuple[str, ...], more_models: tuple[str, ...], dataset: str | None, data_dir: str | None,
            image_transform: str | None, sizes: list[int], strategies: tuple[str, ...], seeds: int, seed: int,
            anchor_model: str | None, alpha: float | str, bias: bool, images: int, gain_images: int,
            reference_images: int, batch_size: int, device: str, out: str | None, overwrite: bool, progress: bool,
            trust_pickle: bool) -> None:
    """Fit maps between models from each strategy's anchors and report relocated MSE on the test split."""
    from latentmap.report.anchors import write_compare_report
    from latentmap.evaluation.anchors import compare_anchors
    from latentmap.models.registry import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.data.transforms import resolve_dataset
    from latentmap.errors import ConfigError

    specs = tuple(model_specs) + tuple(more_models)
    if len(specs) < 2:
        raise ConfigError(f"compare needs at least two models to map between (--models A B ...), got {len(specs)}")
    out = prepare_output(out, "report", "anchors", overwrite, inputs=specs)
    models = [load_model(spec, device=device, allow_pickle=trust_pickle) for spec in specs]
    dataset = choose_dataset(models, dataset)
    shapes = {tuple(m.image_shape) for m in models}
    if len(shapes) > 1:
        raise ConfigError("support-set compare maps between models of one image shape (relocated images are "
                          f"compared with the test images); the models work on {', '.join(map(str, sorted(shapes)))}")
    train = resolve_dataset(image_transform, load_dataset(dataset, "train", data_dir=data_dir), models[0],
                            f"the {dataset} train images")
    test = load_dataset(dataset, "test", data_dir=data_dir).random_subset(images, seed)
    test = resolve_dataset(image_transform, test, models[0], f"the {dataset} test images")
    result = compare_anchors(models, train, test, sizes=sizes, strategies=strategies,
                             seeds=tuple(range(seed, seed + seeds)), anchor_model=anchor_model, alpha=alpha,
                             bias=bias, gain_images=gain_images, reference_images=reference_images,
                             batch_size=batch_size, progress=progress)
    write_compare_report(result, out, overwrite=overwrite)
    click.echo(f"{'size':>5s} {'strategy':9s} {'relocated MSE':>14s} {'std':>8s} {'vs random':>9s}")
    for row in result.summary.itertuples():
        vs = getattr(row, "vs_random", float("nan"))
        click.echo(f"{row.size:>5d} {row.strategy:9s} {row.relocated_mse:>14.5f} {row.relocated_mse_std:>8.5f} "
                   f"{vs:>9.3f}")
    ref = result.reference
    click.echo(f"reference: maps fitted on {result.settings['reference_images']} training images give "
               f"{ref['relocated_mse'].mean():.5f}; the targets' own reconstruction "
               f"{ref['target_reconstruction_mse'].mean():.5f}")
    click.echo(f"report written to {out}/index.html")
