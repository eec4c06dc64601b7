"""``latentmap train KIND``: train a reference model and write its checkpoint folder."""

import click

from latentmap.training import TRAINERS, TrainSettings, train

from .options import data_dir_option, dataset_option, device_option, progress_option, seed_option


def _channels(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be comma-separated integers such as 32,64, got '{value}'") from None


@click.command("train")
@click.argument("kind", type=click.Choice(sorted(TRAINERS)))
@dataset_option()
@data_dir_option
@click.option("--latent-dim", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@seed_option
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@device_option
@click.option("--out", required=True, type=click.Path(), help="Checkpoint folder to write (atomically).")
@click.option("--name", default=None, help="Model name (default: the folder name).")
@click.option("--channels", callback=_channels, default=None, help="Conv channels per stage, e.g. 32,64.")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Width of the dense layer.")
@click.option("--train-images", type=click.IntRange(min=1), default=None, help="Use only N training images.")
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Evaluate on only N test images.")
@progress_option
def command(kind, dataset, data_dir, latent_dim, epochs, seed, batch_size, lr, device, out, name, channels, hidden,
            train_images, test_images, progress):
    """Train a reference model of KIND and save it as a checkpoint folder."""
    settings = TrainSettings(kind=kind, out=out, dataset=dataset, latent_dim=latent_dim, epochs=epochs, seed=seed,
                             batch_size=batch_size, lr=lr, device=device, name=name, data_dir=data_dir,
                             train_images=train_images, test_images=test_images, progress=progress,
                             options={"channels": channels, "hidden": hidden})
    model = train(settings)
    metrics = model.metadata.get("metrics", {})
    click.echo(f"saved {kind} '{model.name}' to {out}: test MSE {metrics.get('test_mse', float('nan')):.5f}")
