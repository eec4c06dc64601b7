"""``latentmap demo``: the whole story on the shipped checkpoints and Fashion-MNIST."""

import click

from latentmap.cli.options import data_dir_option, device_option, images_option


@click.command("demo")
@click.option("--checkpoints", type=click.Path(file_okay=False), default="checkpoints", show_default=True)
@click.option("--out", type=click.Path(), default="reports/demo", show_default=True)
@images_option()
@data_dir_option
@device_option
def command(checkpoints, out, images, data_dir, device):
    """Load the shipped models, reconstruct Fashion-MNIST test images, write a report."""
    from latentmap.demo.story import run_demo

    result = run_demo(checkpoints, out, data_dir=data_dir, device=device, test_images=images)
    for row in result.rows:
        click.echo(f"{row['model']:20s} {row['kind']:10s} latent {row['latent_dim']:>4d}  test MSE {row['test_mse']:.5f}")
    click.echo(f"report written to {result.out}/index.html")
