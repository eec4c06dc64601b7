"""Training of the reference models; each kind registers a trainer with ``register_trainer``."""

from .common import TRAINERS, TrainSettings, register_trainer, train  # noqa: F401
from . import vae  # noqa: F401  (registers vae and split-vae)
from . import gan, inverter, stylegan  # noqa: F401  (registers gan, stylegan, inverter)

__all__ = ["TRAINERS", "TrainSettings", "register_trainer", "train"]
