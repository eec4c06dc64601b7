"""pythae folders with a planted pickle in each place pythae's loader could unpickle one.

Unpickling the planted object opens (so creates) a sentinel file: a test that finds the sentinel
knows the planted code ran. The folders need neither pythae nor a trained model: consent is
decided before pythae reads anything, so only ``model.pt`` ever reaches pythae's loader.
"""

import builtins
import json
import pickle
from pathlib import Path

import torch


class Planted:
    """Pickles as ``open(sentinel, "w")``: loading it creates the sentinel file."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return builtins.open, (self.sentinel, "w")


# slot: (pythae config name, the config's flags, the file the planted pickle goes to)
SLOTS = {
    "encoder": ("VAEConfig", {"uses_default_encoder": False}, "encoder.pkl"),
    "decoder": ("VAEConfig", {"uses_default_decoder": False}, "decoder.pkl"),
    "metric": ("RHVAEConfig", {"uses_default_metric": False}, "metric.pkl"),
    "discriminator-vaegan": ("VAEGANConfig", {"uses_default_discriminator": False}, "discriminator.pkl"),
    "discriminator-aae": ("Adversarial_AE_Config", {"uses_default_discriminator": False}, "discriminator.pkl"),
    # pydantic reads the text "false" (also "no", "0", 0) as False: pythae unpickles metric.pkl
    "metric-flag-text": ("RHVAEConfig", {"uses_default_metric": "false"}, "metric.pkl"),
    "discriminator-flag-zero": ("VAEGANConfig", {"uses_default_discriminator": 0}, "discriminator.pkl"),
    # default networks, but model.pt itself is a pickle that runs code when loaded without weights_only
    "weights": ("VAEConfig", {}, "model.pt"),
}


def planted_pythae_folder(root, slot: str, sentinel) -> Path:
    """A pythae folder whose ``slot`` holds a planted pickle that creates ``sentinel`` when loaded."""
    name, flags, file = SLOTS[slot]
    folder = Path(root) / f"pythae-planted-{slot}"
    folder.mkdir(parents=True)
    config = {"name": name, "input_dim": [1, 28, 28], "latent_dim": 4, "reconstruction_loss": "mse",
              "uses_default_encoder": True, "uses_default_decoder": True, **flags}
    (folder / "model_config.json").write_text(json.dumps(config))
    if file == "model.pt":
        torch.save({"model_state_dict": Planted(sentinel)}, folder / "model.pt")
    else:
        torch.save({"model_state_dict": {}}, folder / "model.pt")
        (folder / file).write_bytes(pickle.dumps(Planted(sentinel)))
    return folder
