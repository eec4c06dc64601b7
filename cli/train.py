"""``latentmap train KIND``: train a reference model and write its checkpoint folder."""

from typing import Any

import click

from latentmap.cli.options import (MAX_SIZE, SIZE_RANGE, FiniteFloat, LazyChoice, PositiveInts, data_dir_option,
                                   dataset_option, device_option, input_transform_option, output_options,
                                   prepare_output, progress_option, seed_option, trust_pickle_option)


@click.command("train")
@click.argument("kind", type=LazyChoice("latentmap.training", "TRAINERS", sort=True))
@dataset_option("fashion-mnist")
@data_dir_option
@click.option("--latent-dim", type=SIZE_RANGE, default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@seed_option
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=FiniteFloat(0, low_open=True), default=None,
              help="Learning rate [default: 1e-3; gan 2e-4; stylegan 2e-3].")
@device_option
@output_options("checkpoint", "train")
@click.option("--name", default=None, help="Model name (default: the folder name).")
@click.option("--channels", type=PositiveInts(MAX_SIZE), default=None, help="Conv channels per stage, e.g. 32,64.")
@click.option("--hidden", type=SIZE_RANGE, default=None, help="Width of the dense layer.")
@click.option("--train-images", type=click.IntRange(min=1), default=None, help="Use only N training images.")
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Evaluate on only N test images.")
@click.option("--model", "model_spec", default=None,
              help="inverter: the generator (checkpoint, StyleGAN-style pickle or py:module:factory).")
@trust_pickle_option
@click.option("--inverter-steps", type=click.IntRange(min=1), default=None,
              help="gan/stylegan/inverter: inverter training steps [default: 2000].")
@click.option("--inverter-batch-size", type=click.IntRange(min=2), default=None, help="[default: 128]")
@click.option("--inverter-lr", type=FiniteFloat(0, low_open=True), default=None, help="[default: 1e-3]")
@click.option("--inverter-image-weight", type=FiniteFloat(0), default=None,
              help="Weight of the image MSE added to the inverter's latent MSE [default: 0].")
@click.option("--inverter-channels", type=PositiveInts(MAX_SIZE), default=None, help="Inverter conv channels per stage.")
@click.option("--inverter-eval-samples", type=click.IntRange(min=1), default=None,
              help="Own samples the trained inverter is measured on [default: 256].")
@input_transform_option
@click.option("--own-samples-only", is_flag=True, default=False,
              help="inverter: no real images at all, neither dataset nor test images: the inverter is trained and "
                   "measured on the generator's own samples (for generators of images no dataset here has).")
@click.option("--z-dim", type=SIZE_RANGE, default=None, help="stylegan: size of z (default: --latent-dim).")
@click.option("--gamma-min", type=FiniteFloat(0, low_open=True), default=None,
              help="vae/split-vae: lower bound on the balanced loss's gamma (more weight on the KL term).")
@click.option("--r1-gamma", type=FiniteFloat(0), default=None, help="stylegan: R1 penalty weight [default: 0.5].")
@click.option("--latent-channels", type=click.IntRange(1, MAX_SIZE), default=None,
              help="kl: channels C of the C x h x w latent (--latent-dim is not used) [default: 4].")
@click.option("--kl-weight", type=FiniteFloat(0), default=None,
              help="kl: weight of the KL divergence per pixel beside the MSE [default: 1e-4].")
@click.option("--track", type=click.IntRange(min=0), default=0, show_default=True,
              help="vae/split-vae/ae: record the encoder's mean and variance (or the latent) of N fixed held-out "
                   "images, one per class in turn, every --track-every steps: trajectories.npz/.csv/.png/.gif.")
@click.option("--track-every", type=click.IntRange(min=1), default=None,
              help="Training steps between two trajectory records [default: 10].")
@progress_option
def command(kind: str, dataset: str, data_dir: str | None, latent_dim: int, epochs: int, seed: int, batch_size: int,
            lr: float | None, device: str, out: str | None, overwrite: bool, name: str | None,
            channels: list[int] | None, hidden: int | None, train_images: int | None, test_images: int | None,
            model_spec: str | None, trust_pickle: bool, inverter_steps: int | None, inverter_batch_size: int | None,
            inverter_lr: float | None, inverter_image_weight: float | None, inverter_channels: list[int] | None,
            inverter_eval_samples: int | None, image_transform: str | None, own_samples_only: bool, z_dim: int | None,
            gamma_min: float | None, r1_gamma: float | None, latent_channels: int | None, kl_weight: float | None,
            track: int, track_every: int | None, progress: bool) -> None:
    """Train a reference model of KIND and save it as a checkpoint folder.

    For gan and stylegan, --latent-dim is the size of z (gan) or w (stylegan), and the
    inverter is trained on the generator's own samples after the adversarial epochs.
    `inverter` trains the W inverter of --model (e.g. a StyleGAN-style pickle with
    --trust-pickle) and writes it as a checkpoint that refers to the generator.
    """
    from latentmap.training import TRAINERS, TrainSettings, train

    out = prepare_output(out, "checkpoint", f"train-{kind}", overwrite, inputs=[model_spec, data_dir])
    if model_spec and kind != "inverter":
        raise click.BadParameter("--model is only used with `latentmap train inverter`", param_hint="--model")
    if own_samples_only and kind != "inverter":
        raise click.BadParameter("--own-samples-only is only used with `latentmap train inverter`",
                                 param_hint="--own-samples-only")
    if image_transform is not None and (kind != "inverter" or own_samples_only):
        raise click.BadParameter("--image-transform is only used with `latentmap train inverter` measured on real "
                                 "test images", param_hint="--image-transform")
    for flag, value in (("--latent-channels", latent_channels), ("--kl-weight", kl_weight)):
        if value is not None and kind != "kl":
            raise click.BadParameter(f"{flag} is only used with `latentmap train kl`", param_hint=flag)
    if kind == "kl":
        latent_dim_source = click.get_current_context().get_parameter_source("latent_dim")
        assert latent_dim_source is not None  # a parameter of the running command always has a source
        if latent_dim_source.name != "DEFAULT":
            raise click.BadParameter("kl's latent is C x h x w: --latent-channels sets C, --channels the blocks "
                                     "(h x w)", param_hint="--latent-dim")
    if kind == "inverter" and not model_spec:
        raise click.BadParameter("`latentmap train inverter` needs --model PATH", param_hint="--model")
    if lr is None:  # each trainer has its own sensible default (Adam for VAEs, GAN rates for GANs)
        lr = getattr(TRAINERS[kind], "default_lr", 1e-3)
    options: dict[str, Any] = {"channels": channels, "hidden": hidden}
    extra = {"model": model_spec, "trust_pickle": trust_pickle or None, "inverter_steps": inverter_steps,
             "inverter_batch_size": inverter_batch_size, "inverter_lr": inverter_lr,
             "inverter_image_weight": inverter_image_weight, "inverter_channels": inverter_channels,
             "inverter_eval_samples": inverter_eval_samples, "image_transform": image_transform, "z_dim": z_dim,
             "gamma_min": gamma_min, "r1_gamma": r1_gamma, "latent_channels": latent_channels, "kl_weight": kl_weight,
             "own_samples_only": own_samples_only or None,
             "track": track or None, "track_every": track_every}
    if track_every is not None and not track:
        raise click.BadParameter("--track-every needs --track N", param_hint="--track-every")
    options.update({k: v for k, v in extra.items() if v is not None})
    settings = TrainSettings(kind=kind, out=out, dataset=dataset, latent_dim=latent_dim, epochs=epochs, seed=seed,
                             batch_size=batch_size, lr=lr, device=device, name=name, data_dir=data_dir,
                             train_images=train_images, test_images=test_images, progress=progress, overwrite=overwrite,
                             options=options)
    model = train(settings)
    metrics = model.metadata.get("metrics", {})
    if own_samples_only:
        inv = metrics.get("inverter", {})
        click.echo(f"saved {kind} '{model.name}' to {out}: image MSE on {inv.get('own_samples')} own samples "
                   f"{inv.get('own_samples_image_mse', float('nan')):.5f}; real images not measured "
                   "(--own-samples-only)")
        return
    click.echo(f"saved {kind} '{model.name}' to {out}: test MSE {metrics.get('test_mse', float('nan')):.5f}")
    if track:
        click.echo(f"trajectories of {track} images written to {out}/trajectories.npz (.csv, .png, .gif)")
