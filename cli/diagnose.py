"""``latentmap diagnose``: how a model fills its latent space (variance law, radius, PCA, axis densities)."""

import click

from latentmap.cli.options import (batch_size_option, choose_dataset, data_dir_option, dataset_option, device_option,
                                   images_option, input_transform_option, model_spec_option, output_options,
                                   prepare_output, progress_option, seed_option, split_option, trust_pickle_option)


@click.command("diagnose")
@model_spec_option
@trust_pickle_option
@dataset_option()
@data_dir_option
@split_option
@input_transform_option
@images_option()
@output_options("report", "diagnose")
@batch_size_option
@device_option
@seed_option
@click.option("--geometry/--no-geometry", default=True, show_default=True,
              help="Void fraction, density of codes against samples, t-SNE maps and decodes from voids.")
@click.option("--geometry-points", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Real codes and as many samples for the void fraction (compare void fractions at equal N).")
@click.option("--tsne/--no-tsne", default=True, show_default=True, help="t-SNE maps of the codes (at most 2,000).")
@click.option("--reference", default=None,
              help="Model whose latent space measures the fidelity of samples from voids and near the data "
                   "(default: the model itself).")
@progress_option
def command(model_spec: str, trust_pickle: bool, dataset: str | None, data_dir: str | None, split: str,
            image_transform: str | None, images: int | None, out: str | None, overwrite: bool, batch_size: int,
            device: str, seed: int, geometry: bool, geometry_points: int, tsne: bool, reference: str | None,
            progress: bool) -> None:
    """Latent-space diagnostics of a model on a dataset split, against its own prior (StyleGAN's W: the mapping
    network's output statistics), with linear and spherical interpolation grids: CSV, JSON, figures, index.html."""
    from latentmap.models.registry import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.data.transforms import resolve_dataset
    from latentmap.evaluation.diagnostics import latent_diagnostics
    from latentmap.evaluation.interpolation import interpolate, pair_positions
    from latentmap.report.diagnostics import describe, save_diagnostics

    out = prepare_output(out, "report", "diagnose", overwrite, inputs=[model_spec, reference])
    model = load_model(model_spec, device=device, allow_pickle=trust_pickle)
    dataset = choose_dataset([model], dataset)
    data = load_dataset(dataset, split, data_dir=data_dir).random_subset(images, seed)
    data = resolve_dataset(image_transform, data, model, f"the {dataset} {split} images")
    diag = latent_diagnostics(model, data, batch_size=batch_size, progress=progress, seed=seed)
    pairs = pair_positions(len(data), 2)  # interpolation grids between two pairs of the images
    paths = interpolate(model, data.batch([a for a, _ in pairs]), data.batch([b for _, b in pairs]),
                        pair_ids=[f"{a}-{b}" for a, b in pairs], seed=seed)
    geo = None
    if geometry:
        from latentmap.evaluation.geometry import latent_geometry
        from latentmap.report.geometry import describe as describe_geometry

        ref = load_model(reference, device=device, allow_pickle=trust_pickle) if reference else None
        full = resolve_dataset(image_transform, load_dataset(dataset, split, data_dir=data_dir), model,
                               f"the {dataset} {split} images")
        geo = latent_geometry(model, full, n=min(geometry_points, len(full)), seed=seed, reference=ref, tsne=tsne,
                              batch_size=batch_size, progress=progress)
    save_diagnostics(diag, out, overwrite=overwrite, interpolation=paths, geometry=geo)
    click.echo(f"{diag.model} ({diag.kind}), latent size {diag.latent_dim}, {diag.n_images} images of {dataset} "
               f"({split})")
    for line in describe(diag):
        click.echo(line)
    if geo is not None:
        click.echo(describe_geometry(geo))
    click.echo(f"report written to {out}")
