"""``latentmap demo``: the whole story on the shipped checkpoints and Fashion-MNIST."""

from __future__ import annotations

import click

from latentmap.cli.options import (data_dir_option, device_option, images_option, output_options, prepare_output,
                                   progress_option, reported_warnings)


@click.command("demo")
@click.option("--checkpoints", type=click.Path(file_okay=False), default=None,
              help="Folder of checkpoints (default: the shipped models).")
@output_options("report", "demo")
@images_option()
@click.option("--quick", is_flag=True, default=False,
              help="A smoke run on small sizes (300 test images unless --images says otherwise), about a minute.")
@data_dir_option
@device_option
@progress_option
def command(checkpoints: str | None, out: str | None, overwrite: bool, images: int | None, quick: bool,
            data_dir: str | None, device: str, progress: bool) -> None:
    """Load the shipped models, reconstruct Fashion-MNIST test images, write a report."""
    from latentmap.demo.story import default_checkpoints, run_demo

    folder = checkpoints or default_checkpoints()
    from pathlib import Path

    support_sets = Path(folder).parent / "support_sets"  # the demo reads its support set beside the checkpoints
    out = prepare_output(out, "report", "demo", overwrite, inputs=[folder, support_sets])
    with reported_warnings():  # e.g. the support-set atlas fits as many pairs as parameters: said once, at the end
        result = run_demo(folder, out, data_dir=data_dir, device=device, test_images=images, quick=quick,
                          overwrite=overwrite, progress=progress)
    for row in result.rows:
        click.echo(f"{row['model']:20s} {row['kind']:10s} latent {row['latent_dim']:>4d}  test MSE {row['test_mse']:.5f}")
    click.echo(f"report written to {result.out}/index.html")
