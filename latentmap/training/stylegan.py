"""Training of the small StyleGAN-style generator, then its W inverter.

Adam with beta1 = 0 and a lazy R1 penalty, as in StyleGAN2; the mapping network learns at
a tenth of the rate (StyleGAN uses 1/100 with equalized learning rates) so W stays
stable while the synthesis network adapts to it.
"""

from __future__ import annotations

from typing import Any

import torch

from latentmap.models.conv import default_channels
from latentmap.models.gan import DCGANDiscriminator
from latentmap.models.stylegan import StyleGANW, StyleGenerator
from latentmap.training.common import Timer, TrainSettings, check_model_fits, register_trainer, start_run
from latentmap.training.gan import adversarial_training, finish_generator


@register_trainer("stylegan", default_lr=2e-3)
def train_stylegan(settings: TrainSettings) -> StyleGANW:
    """The StyleGAN-style generator on the dataset (R1 weight: option ``r1_gamma``, default 0.5), then its W
    inverter on its own samples."""
    device, generator, train_ds, test_ds = start_run(settings)
    opts = settings.options
    given = {"z_dim": opts.get("z_dim"), "channels": opts.get("channels"),
             "mapping_layers": opts.get("mapping_layers"), "inverter_channels": opts.get("inverter_channels"),
             "inverter_hidden": opts.get("hidden")}
    arch: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    check_model_fits(lambda: StyleGANW(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch), settings,
                     train_ds.image_shape)
    model = StyleGANW(settings.model_name, train_ds.image_shape, settings.latent_dim, **arch)
    model.to(device)
    G = model.G
    assert isinstance(G, StyleGenerator)  # StyleGANW builds one
    # as many stride-2 stages as the image side allows (28 -> 2), widths doubling from 64
    disc_channels = opts.get("disc_channels") or [64 * 2 ** i for i in range(len(default_channels(model.image_shape)))]
    discriminator = DCGANDiscriminator(model.image_shape, disc_channels).to(device)

    def generate(z: torch.Tensor) -> torch.Tensor:
        ws = G.mapping(z, None, update_w_avg=True)
        return (G.synthesis(ws) + 1) / 2

    r1_option = opts.get("r1_gamma")
    r1_gamma = float(r1_option if r1_option is not None else 0.5)
    with Timer() as timer:
        log = adversarial_training(settings, generate=generate, z_dim=model.z_dim, g_modules=[G],
                                   discriminator=discriminator, train_ds=train_ds, generator=generator,
                                   device=device, betas=(0.0, 0.99), r1_gamma=r1_gamma,
                                   param_groups=[{"params": G.mapping.parameters(), "lr": settings.lr * 0.1},
                                                 {"params": G.synthesis.parameters()}])
    model.metadata.setdefault("training", {})["r1_gamma"] = r1_gamma
    finish_generator(model, settings, device, test_ds, log, generator, timer.seconds,
                     "StyleGAN-style: non-saturating logistic loss, lazy R1, Adam(0, 0.99)")
    return model
