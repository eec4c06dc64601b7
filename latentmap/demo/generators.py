"""Demo section: samples of the shipped generators and what their inverters reproduce.

For every model with an inversion network (GAN, StyleGAN-style) it shows prior samples, their
inversions, and inversions of real test images, with the image MSE on each: the gap between
own samples and real images is the expressiveness test of the source texts.
"""

from __future__ import annotations

import pandas as pd
import torch

from latentmap.demo.context import DemoContext, register_demo_section
from latentmap.report.grid import grid_png
from latentmap.report.html import Section
from latentmap.training.inverter import evaluate_inverter
from latentmap.io.names import slug

SAMPLES = 1000


@register_demo_section(20, "generators")
def generators_section(ctx: DemoContext) -> Section:
    """For every model with an inverter: the image MSE of its inversions on own samples and on real test images
    (inverter_mse.csv), and a grid of prior samples, real images and their inversions."""
    section = Section("Generators and their inverters")
    generators = [m for m in ctx.models if isinstance(getattr(m, "inverter", None), torch.nn.Module)]
    if not generators:
        return section.text("No generator checkpoints (kinds gan, stylegan-w) among the shipped models.")
    section.text("Rows: prior samples, their inversions (decode(encode(x))), real test images, their inversions. "
                 f"MSE on own samples uses {SAMPLES} prior samples; on real images, the whole test split.")
    rows, originals = [], ctx.test.batch(ctx.grid_indices())
    for model in generators:
        metrics = evaluate_inverter(model, ctx.test, samples=SAMPLES, generator=torch.Generator().manual_seed(0))
        own, real = metrics["own_samples_image_mse"], metrics["real_test_image_mse"]
        rows.append({"model": model.name, "kind": model.kind, "latent_dim": model.latent_dim,
                     "inverter_mse_own_samples": own, "inverter_mse_real_test": real,
                     "own_real_gap": real / own if own else None})
        with torch.no_grad():
            x = model.decode(model.sample_prior(len(originals), torch.Generator().manual_seed(0))).cpu()
            grid = grid_png([x, model.reconstruct(x).cpu(), originals, model.reconstruct(originals).cpu()],
                            row_labels=["prior samples", "their inversions", "real test images", "their inversions"])
        name = f"generator_{slug(model.name)}.png"
        (ctx.out / name).write_bytes(grid)
        section.image(name, f"{model.name} ({model.kind}, latent {model.latent_dim})")
    frame = pd.DataFrame(rows)
    frame.to_csv(ctx.out / "inverter_mse.csv", index=False)
    ctx.summary["generators"] = rows
    section.table(frame)
    return section
