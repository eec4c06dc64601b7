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
@progress_option
def command(model_spec, trust_pickle, dataset, data_dir, split, image_transform, images, out, overwrite, batch_size,
            device, seed, progress):
    """Latent-space diagnostics of a model on a dataset split, against its own prior (StyleGAN's W: the mapping
    network's output statistics), with linear and spherical interpolation grids: CSV, JSON, figures, index.html."""
    from latentmap.models.registry import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.data.transforms import resolve_dataset
    from latentmap.evaluation.diagnostics import latent_diagnostics
    from latentmap.evaluation.interpolation import interpolate, pair_positions
    from latentmap.report.diagnostics import describe, save_diagnostics

    out = prepare_output(out, "report", "diagnose", overwrite, inputs=[model_spec])
    model = load_model(model_spec, device=device, allow_pickle=trust_pickle)
    dataset = choose_dataset([model], dataset)
    data = load_dataset(dataset, split, data_dir=data_dir).random_subset(images, seed)
    data = resolve_dataset(image_transform, data, model, f"the {dataset} {split} images")
    diag = latent_diagnostics(model, data, batch_size=batch_size, progress=progress, seed=seed)
    pairs = pair_positions(len(data), 2)  # interpolation grids between two pairs of the images
    paths = interpolate(model, data.batch([a for a, _ in pairs]), data.batch([b for _, b in pairs]),
                        pair_ids=[f"{a}-{b}" for a, b in pairs], seed=seed)
    save_diagnostics(diag, out, overwrite=overwrite, interpolation=paths)
    click.echo(f"{diag.model} ({diag.kind}), latent size {diag.latent_dim}, {diag.n_images} images of {dataset} "
               f"({split})")
    for line in describe(diag):
        click.echo(line)
    click.echo(f"report written to {out}")
