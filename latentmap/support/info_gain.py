"""Information gain of latent variables: how much the reconstruction worsens when one is zeroed.

For variable i, gain_i = mean over images x of MSE(x, Dec(z with z_i = 0)) - MSE(x, Dec(z)),
z = Enc(x). Every image needs d + 1 decodes (its d zeroed variants and z itself), whatever the
method, so the speed to aim for is the decoder's best throughput on the device. The variants of a
batch of images are decoded in chunks of rows whose size is chosen by measuring: the first chunks of
the real work are decoded at a few sizes (:class:`ChunkTuner`, no extra decodes), and the fastest per
row is kept for the rest. On a CPU a few hundred rows usually beat thousands (cache); on a GPU the sizes go up to
what its free memory holds. The losses are summed per variable in float64; ``sums_of`` returns
those sums so that several processes can add theirs (``latentmap.distributed``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError, SupportSetError
from latentmap.io.frames import FrameRepr, records_frame

# Largest chunk tried on a CPU; on CUDA the largest is sized from free memory.
CPU_MAX_ROWS = 4096
# Decoders hold many activations per output pixel; this factor keeps the CUDA chunk well inside memory.
ACTIVATION_FACTOR = 64
# The tuner tries chunks of at least this many rows, and each size this many times (the best time counts).
MIN_TUNED_ROWS = 16
TUNER_TRIALS = 2
# A size this much slower per image than the best so far ends the trials of larger sizes.
GIVE_UP = 1.3


@dataclass
class InformationGain(FrameRepr):
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

    def to_frame(self):
        """One row per latent variable, most informative first: rank, variable, gain (unrounded)."""
        return records_frame(({"rank": r, "variable": i, "gain": float(self.gains[i])}
                              for r, i in enumerate(self.ranking)), ["rank", "variable", "gain"])

    def _frame_caption(self) -> str:
        return f"Information gain of {len(self.gains)} latent variables over {self.n_images} images"


def variant_chunk_rows(model, device: torch.device | None = None) -> int:
    """The largest number of latents decoded at once: a fixed bound on CPU, sized by free memory on CUDA."""
    device = device or model.device
    if device.type != "cuda":
        return CPU_MAX_ROWS
    free, _total = torch.cuda.mem_get_info(device)
    per_row = int(np.prod(model.image_shape)) * 4 * ACTIVATION_FACTOR
    return int(max(64, min(65536, free // 2 // per_row)))


class ChunkTuner:
    """Chooses how many latents to decode at once, by timing real chunks of the work.

    Candidates are 16, 32, 64, ... rows up to ``max_rows``; each is tried :data:`TUNER_TRIALS` times
    (the best time counts), in ascending order, and a size clearly slower per row than the best so far
    (:data:`GIVE_UP`) ends the trials of larger ones; then the fastest per row is kept. ``fixed`` skips
    the measuring (a caller's ``chunk_rows``).
    """

    def __init__(self, max_rows: int, fixed: int | None = None, device: torch.device | None = None):
        self.device = device
        self.times: dict[int, list[float]] = {}
        if fixed is not None:
            self.candidates, self.chosen, self._queue = [fixed], fixed, []
            return
        sizes = [MIN_TUNED_ROWS * 2 ** i for i in range(24) if MIN_TUNED_ROWS * 2 ** i <= max_rows] or [max_rows]
        self.candidates, self.chosen = sizes, (sizes[0] if len(sizes) == 1 else None)
        self.times = {k: [] for k in sizes}
        self._queue = [k for k in sizes for _ in range(TUNER_TRIALS)] if self.chosen is None else []

    def next_rows(self) -> int:
        return self.chosen if self.chosen is not None else self._queue[0]

    def timing(self) -> bool:
        return self.chosen is None

    def record(self, k: int, rows: int, seconds: float) -> None:
        if self.chosen is not None or rows != k:  # only full chunks of the size being tried count
            return
        self.times[k].append(seconds / k)
        self._queue.pop(0)
        best = min(min(v) for v in self.times.values() if v)
        larger = [c for c in self.candidates if c > k]
        if (len(self.times[k]) == TUNER_TRIALS and min(self.times[k]) > GIVE_UP * best
                and not any(self.times[c] for c in larger)):
            # the largest size tried so far is clearly slower: larger ones will not win either
            self.candidates = [c for c in self.candidates if c not in larger]
            self._queue = [c for c in self._queue if c not in larger]
        if not self._queue:
            self.chosen = self.best()

    def best(self) -> int:
        """The fastest size per row measured so far (the smallest candidate before any measurement)."""
        if self.chosen is not None:
            return self.chosen
        measured = [c for c in self.candidates if self.times.get(c)]
        return min(measured, key=lambda c: min(self.times[c])) if measured else self.candidates[0]

    def sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def zeroed_variants(z: torch.Tensor, keep_original: bool = False) -> torch.Tensor:
    """[B, d] -> [B*d, d]: row b*d + i is z[b] with variable i set to 0. ``keep_original`` adds z[b] itself
    after its variants: [B*(d+1), d]."""
    b, d = z.shape
    variants = z.unsqueeze(1).repeat(1, d + (1 if keep_original else 0), 1)
    variants[:, torch.arange(d), torch.arange(d)] = 0
    return variants.reshape(-1, d)


def _gain_sums(model, x: torch.Tensor, tuner: ChunkTuner) -> torch.Tensor:
    """Sum over the batch of the per-variable loss increase, float64 [d]."""
    z = model.encode(x)
    d = z.shape[1]
    variants = zeroed_variants(z, keep_original=True)  # image b's rows: b*(d+1) ... b*(d+1) + d
    owner = torch.arange(len(variants), device=z.device) // (d + 1)
    losses = torch.empty(len(variants), dtype=torch.float64, device=z.device)
    start = 0
    while start < len(variants):
        k = tuner.next_rows()
        stop = min(start + k, len(variants))
        timed = tuner.timing()
        if timed:
            tuner.sync()
            t0 = time.perf_counter()
        decoded = model.decode(variants[start:stop])
        losses[start:stop] = (decoded - x[owner[start:stop]]).pow(2).flatten(1).mean(1).double()
        if timed:
            tuner.sync()
            tuner.record(k, stop - start, time.perf_counter() - t0)
        start = stop
    losses = losses.view(len(z), d + 1)
    return (losses[:, :d] - losses[:, d:]).sum(0)


def information_gain_sums(model, images, *, batch_size: int = 64, chunk_rows: int | None = None,
                          progress: bool = False) -> tuple[torch.Tensor, int, ChunkTuner]:
    """(float64 per-variable sums of the loss increase over ``images``, number of images, the tuner used)."""
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows} instead")
    d = model.latent_dim
    tuner = ChunkTuner(variant_chunk_rows(model), fixed=chunk_rows, device=model.device)
    batches, total = image_batches(images, batch_size)
    sums = torch.zeros(d, dtype=torch.float64, device=model.device)
    n = 0
    for batch in with_progress(batches, f"information gain {model.name}", progress, total):
        x = model.check_images(batch)
        sums += _gain_sums(model, x, tuner)
        n += len(x)
    return sums, n, tuner


def information_gain(model, images, *, batch_size: int = 64, chunk_rows: int | None = None,
                     progress: bool = False) -> InformationGain:
    """Information gain of every latent variable of ``model`` over ``images``.

    ``images`` is an :class:`~latentmap.data.datasets.ImageDataset` or an image tensor. ``chunk_rows``
    fixes how many latents are decoded at once; by default the size is measured on the device
    (:class:`ChunkTuner`). In a
    torch.distributed run every rank passes the same images: each takes its shard, and the sums are added.
    """
    from latentmap import distributed

    if len(images) == 0:
        raise SupportSetError(f"information gain of model '{model.name}' needs at least one image, got none")
    sums, n, _tuner = information_gain_sums(model, distributed.shard(images), batch_size=batch_size,
                                            chunk_rows=chunk_rows, progress=progress)
    sums, n = distributed.all_reduce_sum(sums), distributed.all_reduce_count(n)
    return InformationGain(gains=(sums / n).cpu().numpy(), n_images=n)
