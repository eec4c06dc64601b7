"""``latentmap invert``: optimization-based inversion of images (or the model's own samples)."""

import json

import click

from latentmap.cli.options import (FiniteFloat, LazyChoice, choose_dataset, data_dir_option, dataset_option,
                                   device_option, input_transform_option, lpips_option, model_spec_option,
                                   output_options, prepare_output, progress_option, seed_option, split_option,
                                   trust_pickle_option)


@click.command("invert")
@model_spec_option
@trust_pickle_option
@dataset_option()
@data_dir_option
@split_option
@input_transform_option
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True, help="How many images to invert.")
@click.option("--own-samples", is_flag=True, default=False,
              help="Invert the model's own samples instead of dataset images.")
@click.option("--sampler", type=LazyChoice("latentmap.evaluation.samplers", "SAMPLERS"), default="auto",
              show_default=True,
              help="--own-samples: where they come from, as in `latentmap bench`: the prior, or a gaussian / gmm "
                   "fitted on the model's encodings of training images; auto: the prior, or gmm for models without "
                   "one (pythae AE, RAE, WAE, VQ-VAE).")
@click.option("--steps", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--lr", type=FiniteFloat(0, low_open=True), default=0.05, show_default=True)
@click.option("--init", type=LazyChoice("latentmap.evaluation.inversion", "INITS"), default="auto", show_default=True,
              help="Start from the encoder/inverter or the prior mean; auto: the encoder when it is trained.")
@click.option("--loss", type=LazyChoice("latentmap.evaluation.inversion", "LOSSES"), default="mse", show_default=True)
@lpips_option
@click.option("--lpips-net", type=LazyChoice("latentmap.evaluation.lpips_metric", "NETS"), default="alex", show_default=True)
@seed_option
@device_option
@progress_option
@output_options("inversion", "invert")
def command(model_spec: str, trust_pickle: bool, dataset: str | None, data_dir: str | None, split: str,
            image_transform: str | None, images: int, own_samples: bool, sampler: str, steps: int, lr: float,
            init: str, loss: str, lpips: str, lpips_net: str, seed: int, device: str, progress: bool,
            out: str | None, overwrite: bool) -> None:
    """Optimize latents so the model reproduces images; write latents, losses and a grid to OUT."""
    import numpy as np
    import torch

    from latentmap.data.datasets import load_dataset
    from latentmap.data.transforms import resolve_dataset, resolve_images
    from latentmap.evaluation.samplers import fit_sampler, needs_fit_data
    from latentmap.evaluation.inversion import invert
    from latentmap.io.atomic import atomic_directory
    from latentmap.models.registry import load_model
    from latentmap.report.grid import grid_png

    out = prepare_output(out, "inversion", "invert", overwrite, inputs=[model_spec])
    model = load_model(model_spec, device=device, allow_pickle=trust_pickle)
    if own_samples:
        fit_data = None
        if needs_fit_data(model, sampler):
            dataset = choose_dataset([model], dataset)
            fit_data = resolve_dataset(image_transform, load_dataset(dataset, "train", data_dir=data_dir), model,
                                       f"the {dataset} train images")
        chosen = fit_sampler(model, sampler, data=fit_data, seed=seed)
        x = model.decode(chosen.sample(images, torch.Generator().manual_seed(seed)).to(model.device)).cpu()
        source = f"own samples ({chosen.name})"
    else:
        dataset = choose_dataset([model], dataset)
        ds = load_dataset(dataset, split, data_dir=data_dir)
        idx = np.linspace(0, len(ds) - 1, min(images, len(ds))).round().astype(int)
        x = resolve_images(image_transform, ds.batch(idx), model, f"the {dataset} {split} images")
        source = f"{dataset} {split}"
    if loss == "mse+lpips" and lpips == "off":
        raise click.BadParameter("--loss mse+lpips needs LPIPS: --lpips auto or --lpips PATH", param_hint="--lpips")
    result = invert(model, x, steps=steps, lr=lr, init=init, loss=loss, seed=seed,
                    lpips_weights=None if lpips == "auto" else lpips, lpips_net=lpips_net,
                    progress=progress)
    summary = {"model": model.name, "kind": model.kind, "images": len(x), "source": source, "steps": steps, "lr": lr,
               "init": result.init, "loss": loss, "seed": seed, "initial_loss_mean": float(result.initial_loss.mean()),
               "final_loss_mean": float(result.loss.mean())}
    with atomic_directory(out, overwrite=overwrite, kind="inversion") as tmp:
        np.save(tmp / "latents.npy", result.latents.numpy())
        rows = ["index,initial_loss,final_loss"] + [f"{i},{a:.6g},{b:.6g}" for i, (a, b) in
                                                     enumerate(zip(result.initial_loss.tolist(), result.loss.tolist()))]
        (tmp / "losses.csv").write_text("\n".join(rows) + "\n")
        (tmp / "curve.csv").write_text("step,mean_loss\n" + "".join(f"{i},{v:.6g}\n"
                                                                    for i, v in enumerate(result.curve.tolist())))
        n = min(16, len(x))
        (tmp / "inversions.png").write_bytes(grid_png([x[:n], model.decode(result.latents[:n]).cpu()],
                                                      row_labels=["targets", "decoded inverted latents"]))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"inverted {len(x)} images ({source}) with '{model.name}': {loss} {summary['initial_loss_mean']:.5f} "
               f"-> {summary['final_loss_mean']:.5f}; wrote {out}")
