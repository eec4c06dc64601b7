"""``latentmap map fit | eval | atlas``: linear maps between latent spaces and their evaluation."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import click

from latentmap.cli.options import (RidgeAlpha, batch_size_option, data_dir_option, device_option, progress_option, seed_option,
                      trust_pickle_option)

IMAGE_SPEC_PREFIXES = ("npy:", "folder:")

bias_option = click.option("--bias/--no-bias", default=None,
                           help="Fit an intercept. Default: no bias for a support-set fit (the paper's map, d images "
                                "suffice), bias otherwise.")
alpha_option = click.option("--alpha", type=RidgeAlpha(), default=0.0, show_default=True,
                            help="Ridge penalty on the matrix (the intercept is not penalized), or 'auto': "
                                 "chosen by generalized cross-validation (advised for support-set fits).")
method_option = click.option("--method", type=click.Choice(["lstsq", "procrustes"]), default="lstsq",
                             show_default=True, help="Least squares / ridge, or the orthogonal map (equal sizes).")


@click.group("map")
def command():
    """Fit and evaluate linear maps z_B ≈ M z_A between latent spaces."""


# --------------------------------------------------------------------------- helpers

def _load_support_images(spec: str, data_dir):
    """A support-set folder (SupportSet.load), or any image set given as npy:PATH / folder:PATH."""
    from latentmap.data.datasets import load_dataset
    from latentmap.support.build import SupportSet

    if spec.startswith(IMAGE_SPEC_PREFIXES):
        ds = load_dataset(spec, "all", data_dir=data_dir)
        return ds.all_images(), {"kind": "images", "name": spec, "count": len(ds)}
    support = SupportSet.load(spec)
    return support.images, {"kind": "support-set", "name": support.name, "path": str(spec), "count": len(support)}


def _load(spec, device, trust_pickle=False):
    from latentmap import load_model

    return load_model(spec, device=device, allow_pickle=trust_pickle)


def _alpha_text(alpha, linear_map) -> str:
    return f"auto ({linear_map.alpha_:.3g})" if alpha == "auto" else f"{alpha:g}"


def _fmt(value, digits=5):
    return "n/a" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- fit

@command.command("fit")
@click.option("--source", required=True, help="Model A (checkpoint folder): the map's input space.")
@click.option("--target", required=True, help="Model B (checkpoint folder): the map's output space.")
@click.option("--support-set", "support_set", default=None,
              help="Fit on a support set folder, or on an image set npy:PATH / folder:PATH.")
@click.option("--dataset", default=None, help="Fit on images of a dataset split (streamed through both encoders).")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="With --dataset: a seeded random N images of the split (default all).")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Fit on N prior samples of A, decoded by A and encoded by B.")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="train", show_default=True,
              help="Dataset split for --dataset.")
@bias_option
@alpha_option
@method_option
@click.option("--out", required=True, type=click.Path(), help="Map folder to write (atomically).")
@seed_option
@batch_size_option
@data_dir_option
@device_option
@trust_pickle_option
def fit(source, target, support_set, dataset, n, samples, split, bias, alpha, method, out, seed, batch_size, data_dir,
        device, trust_pickle):
    """Fit a linear map from SOURCE's latent space to TARGET's and save it as a folder."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.relocation import fit_map, image_pairs, model_info, sample_pairs

    chosen = [name for name, v in (("--support-set", support_set), ("--dataset", dataset), ("--samples", samples))
              if v is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --support-set, --dataset, --samples"
                               + (f"; got {', '.join(chosen)}" if chosen else ""))
    if n is not None and dataset is None:
        raise click.UsageError("--n applies to --dataset only")
    model_a, model_b = _load(source, device, trust_pickle), _load(target, device, trust_pickle)
    if support_set is not None:
        images, fit_source = _load_support_images(support_set, data_dir)
        bias = False if bias is None else bias
        pairs = image_pairs(model_a, model_b, images, batch_size)
    elif dataset is not None:
        ds = load_dataset(dataset, split, data_dir=data_dir).random_subset(n, seed)
        fit_source = {"kind": "dataset", "name": dataset, "split": split, "count": len(ds), "seed": seed}
        pairs = image_pairs(model_a, model_b, ds, batch_size)
    else:
        fit_source = {"kind": "samples", "name": model_a.name, "count": samples, "seed": seed}
        pairs = sample_pairs(model_a, model_b, samples, batch_size, seed)
    bias = True if bias is None else bias
    linear_map = fit_map(model_a, model_b, pairs, bias=bias, alpha=alpha, method=method)
    linear_map.save(out, source=model_info(model_a, source), target=model_info(model_b, target),
                    fit_source=fit_source)
    fm = linear_map.fit_metrics_
    click.echo(f"map {model_a.name} ({model_a.latent_dim}) -> {model_b.name} ({model_b.latent_dim}), "
               f"{'affine' if bias else 'bias-free'} {method}, alpha {_alpha_text(alpha, linear_map)}: "
               f"fitted on {fit_source['count']} "
               f"{fit_source['kind']} pairs, latent R² {fm['r2']:.4f}, latent MSE {fm['latent_mse']:.5f}")
    click.echo(f"saved to {out}")


# --------------------------------------------------------------------------- eval

def _model_from_map(info: dict, side: str, override, device, trust_pickle=False):
    if override is not None:
        return _load(override, device, trust_pickle), override
    path = info.get(side, {}).get("path")
    if not path:
        from latentmap.errors import ConfigError

        raise ConfigError(f"the map records no path for its {side} model; pass --{side}")
    return _load(path, device, trust_pickle), path


@command.command("eval")
@click.option("--map", "map_dir", required=True, help="Map folder written by `latentmap map fit`.")
@click.option("--source", default=None, help="Model A (default: the path recorded in the map).")
@click.option("--target", default=None, help="Model B (default: the path recorded in the map).")
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="test", show_default=True)
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="Evaluate a seeded random N images.")
@click.option("--out", required=True, type=click.Path(), help="Report folder to write (atomically).")
@click.option("--grid-images", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--lpips/--no-lpips", "use_lpips", default=True, show_default=True,
              help="Report LPIPS when pretrained LPIPS weights are available.")
@seed_option
@batch_size_option
@data_dir_option
@device_option
@progress_option
@trust_pickle_option
def evaluate(map_dir, source, target, dataset, split, n, out, grid_images, use_lpips, seed, batch_size, data_dir,
             device, progress, trust_pickle):
    """Relocate a dataset split through a map: table (CSV/JSON/HTML) and image grid."""
    import pandas as pd

    from latentmap.io.atomic import atomic_directory
    from latentmap.data.datasets import load_dataset
    from latentmap.maps.linear import LinearMap
    from latentmap.evaluation.relocation import check_map_fits, evaluate_relocation, grid_indices, relocation_rows
    from latentmap.report.grid import grid_png
    from latentmap.report.html import Section, render_page

    linear_map = LinearMap.load(map_dir)
    model_a, path_a = _model_from_map(linear_map.info_, "source", source, device, trust_pickle)
    model_b, path_b = _model_from_map(linear_map.info_, "target", target, device, trust_pickle)
    check_map_fits(linear_map, model_a, model_b)
    ds = load_dataset(dataset, split, data_dir=data_dir).random_subset(n, seed)
    result = evaluate_relocation(model_a, model_b, linear_map, ds, batch_size=batch_size, use_lpips=use_lpips,
                                 progress=progress)
    row = result.table_row()
    by_label = pd.DataFrame(result.by_label)
    images = ds.batch(grid_indices(len(ds), grid_images))
    with atomic_directory(out) as tmp:
        pd.DataFrame([row]).to_csv(tmp / "relocation.csv", index=False)
        if len(by_label):
            by_label.to_csv(tmp / "relocation_by_label.csv", index=False)
        (tmp / "relocation.json").write_text(json.dumps(
            {**row, "by_label": result.by_label, "map": str(map_dir), "source_path": str(path_a),
             "target_path": str(path_b),
             "dataset": dataset, "split": split, "fit_source": linear_map.info_.get("fit_source", {})},
            indent=2) + "\n")
        (tmp / "grid.png").write_bytes(grid_png(relocation_rows(model_a, model_b, linear_map, images)))
        section = Section(f"{result.source} -> {result.target} (type {result.type}: {result.type_name})")
        section.table(pd.DataFrame([{"metric": k, "value": v} for k, v in _table(result)]).astype({"value": object}))
        if len(by_label):
            section.text("By label: B's own and relocated MSE of the images of each label (relocation_by_label.csv).")
            section.table(by_label)
        section.image("grid.png", f"rows: originals, {result.source}'s reconstruction, {result.target} after "
                                  f"mapping, {result.target}'s own reconstruction")
        (tmp / "index.html").write_text(render_page("latentmap relocation", [section],
                                                    f"{result.n_images} images of {dataset} ({split})."))
    for name, value in _table(result):
        click.echo(f"{name:34s} {value}")
    if result.by_label:
        click.echo("ratio by label: " + ", ".join(f"{r['name']} {r['ratio']:.2f}" for r in result.by_label))
    click.echo(f"report written to {out}")


def _table(r) -> list[tuple[str, str]]:
    lp = (_fmt(r.relocated_lpips, 4), _fmt(r.target_lpips, 4)) if r.relocated_lpips is not None else \
        (r.lpips_note, r.lpips_note)
    return [
        ("pair", f"{r.source} -> {r.target}"),
        ("relocation type", f"{r.type} ({r.type_name})"),
        ("images", str(r.n_images)),
        (f"reconstruction MSE {r.source}", _fmt(r.source_mse)),
        (f"reconstruction MSE {r.target}", _fmt(r.target_mse)),
        ("relocated MSE", _fmt(r.relocated_mse)),
        ("relocated / target MSE", _fmt(r.ratio, 3)),
        ("latent MSE", _fmt(r.latent_mse)),
        ("latent R²", _fmt(r.latent_r2, 4)),
        ("relocated SSIM", _fmt(r.relocated_ssim, 4)),
        (f"SSIM {r.target}", _fmt(r.target_ssim, 4)),
        ("relocated LPIPS", lp[0]),
        (f"LPIPS {r.target}", lp[1]),
        (f"cycle MSE ({r.cycle_via})", _fmt(r.cycle_mse)),
        (f"cycle / {r.source} MSE", _fmt(r.cycle_ratio, 3)),
    ]


# --------------------------------------------------------------------------- atlas

def _expand_models(specs) -> list[str]:
    """Globs and folders of checkpoints into model specs; plain files (a README beside them) are skipped."""
    from latentmap.io.checkpoint import is_checkpoint

    out = []
    for spec in specs:
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        for item in matches:
            path = Path(item)
            if path.is_file():
                continue
            if path.is_dir() and not is_checkpoint(path) and any(is_checkpoint(p) for p in path.iterdir()):
                out += [str(p) for p in sorted(path.iterdir()) if p.is_dir() and is_checkpoint(p)]
            else:
                out.append(item)
    return list(dict.fromkeys(out))


@command.command("atlas")
@click.option("--models", "models_opt", multiple=True,
              help="Model checkpoints (repeatable; a glob such as checkpoints/* or a folder of checkpoints).")
@click.argument("more_models", nargs=-1)
@click.option("--fit", "fit_kind", type=click.Choice(["support-set", "dataset", "samples"]), default="dataset",
              show_default=True, help="What every map is fitted on.")
@click.option("--support-set", "support_set", default=None, help="With --fit support-set: folder, npy:PATH or folder:PATH.")
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--fit-split", type=click.Choice(["train", "test", "all"]), default="train", show_default=True)
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="--fit dataset: a seeded random N images (default all); --fit samples: N samples (default 10000).")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="test", show_default=True,
              help="Evaluation split.")
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Evaluate a seeded random N images.")
@bias_option
@alpha_option
@method_option
@click.option("--out", required=True, type=click.Path(), help="Report folder to write (atomically).")
@click.option("--lpips/--no-lpips", "use_lpips", default=True, show_default=True)
@seed_option
@batch_size_option
@data_dir_option
@device_option
@progress_option
@trust_pickle_option
def atlas(models_opt, more_models, fit_kind, support_set, dataset, fit_split, n, split, test_images, bias, alpha,
          method, out, use_lpips, seed, batch_size, data_dir, device, progress, trust_pickle):
    """Every ordered pair of models: fit, relocate, compare (ratio matrix by type, grids, CSV, JSON)."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.relocation import build_atlas

    specs = _expand_models(list(models_opt) + list(more_models))
    if len(specs) < 2:
        raise click.UsageError(f"an atlas needs at least 2 models (--models checkpoints/*), got {len(specs)}")
    if fit_kind == "support-set" and support_set is None:
        raise click.UsageError("--fit support-set needs --support-set DIR (or npy:PATH / folder:PATH)")
    if fit_kind != "support-set" and support_set is not None:
        raise click.UsageError("--support-set applies to --fit support-set only")
    models = [_load(s, device, trust_pickle) for s in specs]
    fit_data, samples = None, None
    if fit_kind == "support-set":
        fit_data, fit_source = _load_support_images(support_set, data_dir)
        bias = False if bias is None else bias
    elif fit_kind == "dataset":
        fit_data = load_dataset(dataset, fit_split, data_dir=data_dir).random_subset(n, seed)
        fit_source = {"kind": "dataset", "name": dataset, "split": fit_split, "count": len(fit_data), "seed": seed}
    else:
        samples = n or 10000
        fit_source = {"kind": "samples", "count": samples, "seed": seed}
    bias = True if bias is None else bias
    fit_source.update({"bias": bias, "alpha": alpha, "method": method})
    test = load_dataset(dataset, split, data_dir=data_dir).random_subset(test_images, seed)
    result = build_atlas(models, test, fit_data=fit_data, samples=samples, fit_source=fit_source, bias=bias,
                         alpha=alpha, method=method, batch_size=batch_size, seed=seed, out=out, use_lpips=use_lpips,
                         model_paths={m.name: s for m, s in zip(models, specs)}, progress=progress)
    click.echo(f"{'type':>4s}  {'source':20s} {'target':20s} {'own MSE B':>9s} {'relocated':>9s} {'ratio':>6s} "
               f"{'latent R²':>9s}")
    for r in result.results:
        click.echo(f"{r.type:>4d}  {r.source:20s} {r.target:20s} {r.target_mse:9.5f} {r.relocated_mse:9.5f} "
                   f"{r.ratio:6.3f} {r.latent_r2:9.4f}")
    if result.results[0].relocated_lpips is None:
        click.echo(result.results[0].lpips_note)
    click.echo(f"report written to {out}/index.html")
