"""Information gain of latent variables: how much the reconstruction worsens when one is zeroed.

For variable i, gain_i = mean over images x of MSE(x, Dec(z with z_i = 0)) - MSE(x, Dec(z)),
z = Enc(x). The d zeroed variants of a batch are decoded together, in chunks of rows that fit
the device, so the cost is one decode of B*d latents per batch instead of d separate passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, SupportSetError

# Rows of zeroed variants decoded at once on CPU; on CUDA the chunk is sized from free memory.
CPU_CHUNK_ROWS = 2048
# Decoders hold many activations per output pixel; this factor keeps the CUDA chunk well inside memory.
ACTIVATION_FACTOR = 64


@dataclass
class InformationGain:
    """Per-variable gains (float64, index = latent variable) and the variables ranked by gain."""

    gains: np.ndarray
    n_images: int

    @property
    def ranking(self) -> list[int]:
        # stable sort: equal gains keep variable order, so the ranking is reproducible
        return [int(i) for i in np.argsort(-self.gains, kind="stable")]

    def to_dict(self) -> dict:
        ranking = self.ranking
        return {"images": self.n_images, "ranking": ranking,
                "gains": [round(float(self.gains[i]), 8) for i in ranking]}


def variant_chunk_rows(model, device: torch.device | None = None) -> int:
    """How many zeroed latents to decode at once: a fixed number on CPU, sized by free memory on CUDA."""
    device = device or model.device
    if device.type != "cuda":
        return CPU_CHUNK_ROWS
    free, _total = torch.cuda.mem_get_info(device)
    per_row = int(np.prod(model.image_shape)) * 4 * ACTIVATION_FACTOR
    return int(max(64, min(65536, free // 2 // per_row)))


def zeroed_variants(z: torch.Tensor) -> torch.Tensor:
    """[B, d] -> [B*d, d]: row b*d + i is z[b] with variable i set to 0."""
    b, d = z.shape
    variants = z.unsqueeze(1).repeat(1, d, 1)
    variants[:, torch.arange(d), torch.arange(d)] = 0
    return variants.reshape(b * d, d)


def _batch_gain_sums(model, x: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """Sum over the batch of the per-variable loss increase, float64 [d]."""
    z = model.encode(x)
    base = (model.decode(z) - x).pow(2).flatten(1).mean(1).double()
    variants = zeroed_variants(z)
    d = z.shape[1]
    owner = torch.arange(len(variants), device=x.device) // d  # image each variant row belongs to
    losses = torch.cat([
        (model.decode(variants[s:s + chunk_rows]) - x[owner[s:s + chunk_rows]]).pow(2).flatten(1).mean(1).double()
        for s in range(0, len(variants), chunk_rows)
    ])
    return (losses.view(-1, d) - base.unsqueeze(1)).sum(0)


def information_gain(model, images, *, batch_size: int = 64, chunk_rows: int | None = None,
                     progress: bool = False) -> InformationGain:
    """Information gain of every latent variable of ``model`` over ``images``.

    ``images`` is an :class:`~latentmap.data.datasets.ImageDataset` or an image tensor; ``chunk_rows``
    bounds how many zeroed latents are decoded at once (default: :func:`variant_chunk_rows`).
    """
    n = len(images)
    if n == 0:
        raise SupportSetError(f"information gain of model '{model.name}' needs at least one image, got none")
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows} instead")
    rows = chunk_rows or variant_chunk_rows(model)
    batches, total = image_batches(images, batch_size)
    sums = torch.zeros(model.latent_dim, dtype=torch.float64, device=model.device)
    for batch in with_progress(batches, f"information gain {model.name}", progress, total):
        sums += _batch_gain_sums(model, model.check_images(batch), rows)
    return InformationGain(gains=(sums / n).cpu().numpy(), n_images=n)
