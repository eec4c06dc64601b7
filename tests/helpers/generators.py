"""Tiny GAN / StyleGAN training runs shared by the generator tests (a few seconds each)."""

from latentmap.training import TrainSettings, train


def train_tiny(kind: str, out, *, latent_dim: int = 8, train_images: int = 256, inverter_steps: int = 100, **options):
    base = {"channels": [16, 32] if kind == "gan" else [16, 16, 8], "hidden": 64, "inverter_steps": inverter_steps,
            "inverter_batch_size": 32, "inverter_lr": 3e-3}
    if kind == "stylegan":
        base["inverter_channels"] = [16, 32]
    base.update(options)
    lr = 2e-4 if kind == "gan" else 2e-3
    return train(TrainSettings(kind=kind, out=str(out), latent_dim=latent_dim, epochs=1, train_images=train_images,
                               test_images=64, batch_size=64, lr=lr, device="cpu", progress=False, seed=0,
                               options=base))
