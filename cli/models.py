"""``latentmap models list``."""

from pathlib import Path

import click

from latentmap.io.checkpoint import is_checkpoint, read_config
from latentmap.errors import CheckpointError


@click.group("models")
def command():
    """Inspect model checkpoints."""


@command.command("list")
@click.argument("directory", type=click.Path(exists=True, file_okay=False), default="checkpoints")
def list_models(directory):
    """Name, kind, latent size, dataset and test MSE of every checkpoint below DIRECTORY."""
    folders = [p for p in sorted(Path(directory).iterdir()) if p.is_dir() and is_checkpoint(p)]
    if is_checkpoint(directory):
        folders = [Path(directory)]
    if not folders:
        raise CheckpointError(f"no checkpoint folders (with config.json) in '{directory}'")
    click.echo(f"{'name':22s} {'kind':11s} {'latent':>6s} {'dataset':14s} {'test MSE':>9s}")
    for folder in folders:
        cfg = read_config(folder)
        mse = cfg.get("metrics", {}).get("test_mse")
        mse_text = f"{mse:.5f}" if isinstance(mse, (int, float)) else "-"
        click.echo(f"{cfg.get('name', folder.name):22s} {cfg['kind']:11s} {cfg['latent_dim']:>6d} "
                   f"{str(cfg.get('dataset', '-')):14s} {mse_text:>9s}")
