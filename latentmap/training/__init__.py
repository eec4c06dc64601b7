"""Training of the reference models; each kind registers a trainer with ``register_trainer``."""

from latentmap.training.common import TRAINERS, TrainSettings, register_trainer, train  # noqa: F401
from latentmap.training import vae  # noqa: F401  (registers vae and split-vae)
from latentmap.training import gan  # noqa: F401
from latentmap.training import inverter  # noqa: F401
from latentmap.training import stylegan  # noqa: F401  (registers gan, stylegan, inverter)
from latentmap.training import kl  # noqa: F401  (registers kl: a diffusers AutoencoderKL)

__all__ = ["TRAINERS", "TrainSettings", "register_trainer", "train"]
