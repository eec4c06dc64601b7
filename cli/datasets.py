"""``latentmap datasets list``."""

from __future__ import annotations

import click

from latentmap.cli.options import data_dir_option


@click.group("datasets")
def command() -> None:
    """Datasets latentmap can read."""


@command.command("list")
@data_dir_option
def list_datasets(data_dir: str | None) -> None:
    """Which datasets are available here and where they come from."""
    from latentmap.data.datasets import dataset_sources

    for name, source in sorted(dataset_sources().items()):
        available, where = source.describe(data_dir)
        click.echo(f"{name:14s} {'yes' if available else 'no ':3s}  {where}")
        click.echo(f"{'':14s}      {source.help}")
