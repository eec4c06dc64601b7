"""Information gain of latent variables: how much the reconstruction worsens when one is zeroed.

For variable i, gain_i = mean over images x of MSE(x, Dec(z with z_i = 0)) - MSE(x, Dec(z)),
z = Enc(x). Every image needs d + 1 decodes (its d zeroed variants and z itself), whatever the
method, so the speed to aim for is the decoder's best throughput on the device. The variants of a
batch of images are decoded in calls of a fixed number of rows (:func:`decode_rows`): a budget of
activation memory per call by device type, divided by what one row of the model's images needs. Never
a timing and never the free memory: a float32 decoder may round a row differently in a call of other
rows, so the rows of every call must be the same on every run, machine and rank for the gains to be.
On a CPU the rule gives a hundred or so rows for small images (they beat thousands: cache); on a GPU
thousands. The losses are summed per variable in float64; :func:`information_gain_sums` returns those
sums so that several processes can add theirs (``latentmap.distributed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, SupportSetError
from latentmap.io.frames import FrameRepr, records_frame

if TYPE_CHECKING:
    import pandas as pd

    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel

# Activation memory one decode call may use, by device type (what the rows per call come from).
CPU_DECODE_BYTES = 32 * 2**20
CUDA_DECODE_BYTES = 2 * 2**30
# Decoders hold many activations per output pixel: bytes of one row = pixels * 4 * this factor.
ACTIVATION_FACTOR = 64
# Rows per call, at least and at most (a power of two in between).
MIN_DECODE_ROWS, MAX_DECODE_ROWS = 16, 65536


@dataclass
class InformationGain(FrameRepr):
    """Per-variable gains (float64, index = latent variable) and the variables ranked by gain."""

    gains: np.ndarray
    n_images: int
    # how the float32 passes ran (the gains depend on these, not on the world size)
    batch_size: int | None = None
    decode_rows: int | None = None
    threads: int | None = None

    @property
    def ranking(self) -> list[int]:
        """The latent variables, most informative first (equal gains keep variable order)."""
        # stable sort: equal gains keep variable order, so the ranking is reproducible
        return [int(i) for i in np.argsort(-self.gains, kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        """What a manifest records: images, ranking, the gains in ranking order (8 decimals), and how the passes ran."""
        ranking = self.ranking
        passes = {k: v for k, v in (("batch_size", self.batch_size), ("decode_rows", self.decode_rows),
                                    ("threads", self.threads)) if v is not None}
        return {"images": self.n_images, "ranking": ranking,
                "gains": [round(float(self.gains[i]), 8) for i in ranking], **passes}

    def to_frame(self) -> pd.DataFrame:
        """One row per latent variable, most informative first: rank, variable, gain (unrounded)."""
        return records_frame(({"rank": r, "variable": i, "gain": float(self.gains[i])}
                              for r, i in enumerate(self.ranking)), ["rank", "variable", "gain"])

    def _frame_caption(self) -> str:
        return f"Information gain of {len(self.gains)} latent variables over {self.n_images} images"


def decode_rows(model: LatentModel, device: torch.device | None = None) -> int:
    """How many latents one decode call takes: the device type's budget (:data:`CPU_DECODE_BYTES`,
    :data:`CUDA_DECODE_BYTES`) over one row's activations, rounded down to a power of two in
    [:data:`MIN_DECODE_ROWS`, :data:`MAX_DECODE_ROWS`]. A function of the image shape and device type only, so
    the same on every run (1x28x28 images: 128 rows on a CPU, 8192 on CUDA)."""
    device = device or model.device
    per_row = int(np.prod(model.image_shape)) * 4 * ACTIVATION_FACTOR
    budget = CUDA_DECODE_BYTES if device.type == "cuda" else CPU_DECODE_BYTES
    rows = max(MIN_DECODE_ROWS, min(MAX_DECODE_ROWS, budget // per_row))
    return 1 << (int(rows).bit_length() - 1)


def zeroed_variants(z: torch.Tensor, keep_original: bool = False) -> torch.Tensor:
    """[B, d] -> [B*d, d]: row b*d + i is z[b] with variable i set to 0. ``keep_original`` adds z[b] itself
    after its variants: [B*(d+1), d]."""
    b, d = z.shape
    variants = z.unsqueeze(1).repeat(1, d + (1 if keep_original else 0), 1)
    variants[:, torch.arange(d), torch.arange(d)] = 0
    return variants.reshape(-1, d)


def _gain_sums(model: LatentModel, x: torch.Tensor, rows: int) -> torch.Tensor:
    """Sum over the batch of the per-variable loss increase, float64 [d]; the variants are decoded ``rows`` at a
    time from the batch's first row (the batch is one process's, so the calls are too)."""
    z = model.encode(x)
    d = z.shape[1]
    variants = zeroed_variants(z, keep_original=True)  # image b's rows: b*(d+1) ... b*(d+1) + d
    owner = torch.arange(len(variants), device=z.device) // (d + 1)
    losses = torch.empty(len(variants), dtype=torch.float64, device=z.device)
    for start in range(0, len(variants), rows):
        stop = min(start + rows, len(variants))
        decoded = model.decode(variants[start:stop])
        losses[start:stop] = (decoded - x[owner[start:stop]]).pow(2).flatten(1).mean(1).double()
    losses = losses.view(len(z), d + 1)
    return (losses[:, :d] - losses[:, d:]).sum(0)


def information_gain_sums(model: LatentModel, images: ImageDataset | torch.Tensor, *, batch_size: int = 64,
                          chunk_rows: int | None = None, progress: bool = False) -> tuple[torch.Tensor, int, int]:
    """(float64 per-variable sums of the loss increase over ``images``, number of images, rows per decode call:
    ``chunk_rows`` or :func:`decode_rows`)."""
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows} instead")
    d = model.latent_dim
    rows = decode_rows(model) if chunk_rows is None else int(chunk_rows)
    batches, total = image_batches(images, batch_size)
    sums = torch.zeros(d, dtype=torch.float64, device=model.device)
    n = 0
    for batch in with_progress(batches, f"information gain {model.name}", progress, total):
        x = model.check_images(batch)
        sums += _gain_sums(model, x, rows)
        n += len(x)
    return sums, n, rows


def information_gain(model: LatentModel, images: ImageDataset | torch.Tensor, *, batch_size: int = 64,
                     chunk_rows: int | None = None, progress: bool = False) -> InformationGain:
    """Information gain of every latent variable of ``model`` over ``images``.

    ``images`` is an :class:`~latentmap.data.datasets.ImageDataset` or an image tensor. ``chunk_rows``
    fixes how many latents one decode call takes (default :func:`decode_rows`); like ``batch_size``, it is a
    setting of the computation, recorded with the gains. In a torch.distributed run every rank passes the
    same images: each takes its whole batches of them (``distributed.shard``), and the sums are added, so
    the gains are one process's to float64 rounding.
    """
    from latentmap import distributed

    if len(images) == 0:
        raise SupportSetError(f"information gain of model '{model.name}' needs at least one image, got none")
    sums, n, rows = information_gain_sums(model, distributed.shard(images, batch_size), batch_size=batch_size,
                                          chunk_rows=chunk_rows, progress=progress)
    sums, n = distributed.all_reduce_sum(sums), distributed.all_reduce_count(n)
    return InformationGain(gains=(sums / n).cpu().numpy(), n_images=n, batch_size=batch_size, decode_rows=rows,
                           **distributed.compute_record())
