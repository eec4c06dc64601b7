"""Shared training plumbing: settings, seeding, the trainer registry, atomic saving."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from latentmap.errors import ConfigError, UnknownKindError
from latentmap.io.schema import MAX_SEED, MAX_SIZE

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the package also runs on 3.10

    from tqdm import tqdm

    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel

TRAINERS: dict[str, Callable[[TrainSettings], LatentModel]] = {}

Trainer = TypeVar("Trainer", bound="Callable[[TrainSettings], LatentModel]")
T = TypeVar("T")


def register_trainer(kind: str, *, default_lr: float | None = None, tracks: bool = False
                     ) -> Callable[[Trainer], Trainer]:
    """Decorator: ``fn(settings)`` trains, saves and returns a model of ``kind`` (``latentmap train KIND``).

    ``default_lr``: the learning rate the CLI uses when --lr is not given (else 1e-3); ``tracks``: whether the
    trainer can record trajectories (--track). Both are kept as attributes of ``fn``, where they are read."""

    def decorator(fn: Trainer) -> Trainer:
        TRAINERS[kind] = fn
        # function attributes (mypy types no attribute assignment on a function)
        if default_lr is not None:
            vars(fn)["default_lr"] = default_lr
        if tracks:
            vars(fn)["tracks"] = True
        return fn

    return decorator


@dataclass
class TrainSettings:
    """Everything a training run needs; saved verbatim in the checkpoint's config.json."""

    kind: str
    out: str
    dataset: str = "fashion-mnist"
    latent_dim: int = 32
    epochs: int = 10
    seed: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    device: str = "auto"
    name: str | None = None
    data_dir: str | None = None
    train_images: int | None = None  # limit, for quick runs and tests
    test_images: int | None = None
    progress: bool = True
    overwrite: bool = True  # replace an earlier checkpoint written by latentmap at ``out``
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific (architecture, GAN steps, ...)

    def validate(self) -> None:
        """Refuse (ConfigError) sizes, a seed, a learning rate or image counts no run can use."""
        for key in ("latent_dim", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key.replace('_', '-')} must be at least 1, got {getattr(self, key)} instead")
        # sizes every checkpoint loader accepts (latentmap.io.schema.MAX_SIZE): refused before training, not after
        sizes = {"latent-dim": [self.latent_dim], **{key.replace("_", "-"): self.options.get(key) for key in
                                                    ("channels", "hidden", "z_dim", "inverter_channels")}}
        for key, values in sizes.items():
            values = values if isinstance(values, (list, tuple)) else [values]
            big = [v for v in values if isinstance(v, int) and v > MAX_SIZE]
            if big:
                raise ConfigError(f"{key} must be at most {MAX_SIZE:,} (the largest size a checkpoint may record), "
                                  f"got {big[0]:,} instead")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {self.seed} instead")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr} instead")
        for key in ("train_images", "test_images"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key.replace('_', '-')} must be at least 1, got {value} instead")

    @property
    def model_name(self) -> str:
        """``name``, else the output folder's name."""
        return self.name or Path(self.out).name

    def record(self) -> dict[str, Any]:
        """The settings as the checkpoint records them: all but ``progress`` and ``overwrite``."""
        data = asdict(self)
        data.pop("progress")
        data.pop("overwrite")
        return data


def train(settings: TrainSettings) -> LatentModel:
    """Run the registered trainer for ``settings.kind``; returns the trained model (already saved)."""
    if settings.kind not in TRAINERS:
        raise UnknownKindError(f"no trainer for kind '{settings.kind}'; known: {', '.join(sorted(TRAINERS))}")
    settings.validate()
    if (settings.options.get("track") or 0) > 0 and not getattr(TRAINERS[settings.kind], "tracks", False):
        trackable = ", ".join(sorted(k for k, fn in TRAINERS.items() if getattr(fn, "tracks", False)))
        raise ConfigError(f"--track needs an encoder trained with the model; kind '{settings.kind}' has none "
                          f"(trackable kinds: {trackable})")
    return TRAINERS[settings.kind](settings)


def check_model_fits(build: Callable[[], LatentModel], settings: TrainSettings, image_shape: Sequence[int]) -> None:
    """Refuse, before any training, a model whose training cannot fit in memory (ResourceError with the estimate).

    The model is built on torch's ``meta`` device (shapes only, no memory): its parameters need 16 bytes each in
    training (float32 weights, gradients and Adam's two moments), and a VAE's forward pass on one batch adds its
    activations twice (outputs kept for the backward pass, and their gradients)."""
    from latentmap.resources import check_memory, format_bytes

    with torch.device("meta"):
        model = build()
    networks = list(model.modules().values())
    params = sum(p.numel() for net in networks for p in net.parameters())
    activations = 0
    train_forward = getattr(model, "train_forward", None)  # the VAE-like adapters' training pass
    if train_forward is not None:
        sizes: list[int] = []

        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            sizes.extend(o.numel() * o.element_size() for o in (output if isinstance(output, (tuple, list))
                                                                else [output]) if isinstance(o, torch.Tensor))

        leaves = [sub for net in networks for sub in net.modules() if not list(sub.children())]
        handles = [leaf.register_forward_hook(hook) for leaf in leaves]
        try:
            with torch.device("meta"):
                train_forward(torch.zeros((settings.batch_size, *image_shape)))
            activations = 2 * sum(sizes)
        except (RuntimeError, NotImplementedError, TypeError):
            activations = 0  # a network meta tensors cannot run: judged on its parameters alone
        finally:
            for handle in handles:
                handle.remove()
    check_memory(16 * params + activations,
                 f"training this {settings.kind} ({params:,} parameters"
                 + (f", {format_bytes(activations)} of activations per batch of {settings.batch_size}"
                    if activations else "") + ")",
                 "choose smaller --channels, --hidden or --latent-dim (or --batch-size)")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's and numpy's global generators with ``seed``; returns a torch generator seeded with it too."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    return torch.Generator().manual_seed(seed)


def load_splits(settings: TrainSettings) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits, optionally cut to the first N images of each (seeded choice)."""
    from latentmap.data.datasets import load_dataset

    train_ds = load_dataset(settings.dataset, "train", data_dir=settings.data_dir)
    test_ds = load_dataset(settings.dataset, "test", data_dir=settings.data_dir)
    rng = np.random.default_rng(settings.seed)
    return train_ds.random_subset(settings.train_images, rng), test_ds.random_subset(settings.test_images, rng)


def start_run(settings: TrainSettings) -> tuple[torch.device, torch.Generator, ImageDataset, ImageDataset]:
    """What every trainer does first: pick the device, seed everything, load the splits.

    Returns (device, generator for shuffling, train split, test split).
    """
    from latentmap.device import resolve_device

    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    train_ds, test_ds = load_splits(settings)
    return device, generator, train_ds, test_ds


def shuffled_batches(dataset: ImageDataset, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch of image batches of ``dataset`` in an order drawn from ``generator`` (the last batch may be
    smaller)."""
    order = torch.randperm(len(dataset), generator=generator).numpy()
    for start in range(0, len(order), batch_size):
        yield dataset.batch(order[start:start + batch_size])


def epoch_progress(settings: TrainSettings, n_batches: int, epoch: int) -> tqdm:
    """The progress bar of one epoch of ``n_batches`` batches (disabled unless ``settings.progress``)."""
    from latentmap.batching import progress_bar

    return progress_bar(n_batches, f"{settings.model_name} epoch {epoch}/{settings.epochs}", settings.progress)


def environment_record(device: torch.device) -> dict[str, Any]:
    """The torch and Python versions, the device and torch's thread count, for the training record."""
    return {"torch": torch.__version__, "device": str(device), "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def sanity_step(step: Callable[[], T], what: str) -> T:
    """Run one training step before the long run, re-raising failures with likely causes; returns what it returns.

    ``what`` names the model in the message (``vae 'fmnist-vae-a'``)."""
    from latentmap.errors import LatentmapError

    try:
        return step()
    except LatentmapError:
        raise
    except RuntimeError as exc:
        raise ConfigError(
            f"the first training batch of {what} failed ({str(exc).splitlines()[0]}); likely causes: "
            "images whose size does not fit the architecture, too little memory for the batch size, "
            "or a device mismatch"
        ) from exc


class Timer:
    """``with Timer() as timer:`` measures the block's wall-clock time: ``timer.seconds`` after it."""

    start: float
    seconds: float

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
