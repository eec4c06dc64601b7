"""Trajectories of fixed images during training ("About Variational Autoencoders").

At fixed step intervals the encoder of the model being trained is run (in eval mode, without
gradients) on a few fixed held-out images, one per class where the data has labels, and on a
fixed probe of held-out images. For each tracked image it records the encoder's mean and
variance (models without an encoder variance: their latent, with the variance left NaN); on the
probe it records the mean posterior variance E[sigma^2], the variance of the means Var(mu) (both
averaged over the latent variables) and their sum, which the variance law wants close to 1.

Files: ``trajectories.npz`` (every array), ``trajectories.csv`` (one row per step and image),
``trajectory_stats.csv`` (one row per step), ``trajectories.png`` (paths with circles of radius
sigma at chosen steps, beside the probe statistics against the step) and ``trajectories.gif``
(the paths growing over the first epochs).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np
import torch
from numpy.typing import ArrayLike

from latentmap.errors import ConfigError

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.models.base import LatentModel, VAELikeModel

DEFAULT_TRACK_EVERY = 10  # training steps between two records
DEFAULT_PROBE = 512  # held-out images on which E[sigma^2] and Var(mu) are measured at every record
GIF_EPOCHS = 5  # the animation covers the first epochs, as the text does
GIF_FRAMES = 60


def choose_tracked(labels: ArrayLike | None, n: int) -> np.ndarray:
    """Indices of ``n`` images: round robin over the classes (the first image of each class, then the
    second, ...), so ``n`` = number of classes gives one image per class; without labels the first ``n``.
    ``labels``: one per image."""
    if n < 1:
        raise ConfigError(f"the number of tracked images must be at least 1, got {n} instead")
    if labels is None:
        return np.arange(n)
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    chosen: list[int] = []
    rank = 0
    while len(chosen) < n and any(rank < len(p) for p in per_class):
        chosen += [int(p[rank]) for p in per_class if rank < len(p)]
        rank += 1
    return np.asarray(chosen[:n], dtype=np.int64)


@dataclass
class Trajectories:
    """What the recorder saw: ``mu``/``var`` are [steps, n_images, d]; the statistics are per step."""

    steps: np.ndarray  # [S] optimizer steps done before the record (0: before training)
    epochs: np.ndarray  # [S] fractional epoch of each record
    mu: np.ndarray  # [S, N, d] encoder mean (or latent)
    var: np.ndarray  # [S, N, d] encoder variance; NaN for models without one
    labels: np.ndarray  # [N] label of each tracked image (-1 if none)
    indices: np.ndarray  # [N] index of each tracked image in the held-out split
    mean_sigma2: np.ndarray  # [S] E[sigma^2] over the probe, averaged over variables (NaN without variances)
    var_mu: np.ndarray  # [S] Var(mu) over the probe, averaged over variables
    steps_per_epoch: int = 1
    has_variance: bool = True
    meta: dict = field(default_factory=dict)

    @property
    def law(self) -> np.ndarray:
        """Var(mu) + E[sigma^2] per step: the variance law wants it close to 1."""
        return self.var_mu + self.mean_sigma2

    def sigma2_drop(self, epoch: float = 1.0) -> float:
        """E[sigma^2] at step 0 divided by E[sigma^2] at the last record no later than ``epoch``."""
        last = np.flatnonzero(self.epochs <= epoch + 1e-9)[-1]
        return float(self.mean_sigma2[0] / self.mean_sigma2[last])

    def summary(self) -> dict[str, Any]:
        """JSON-ready: NaN (no encoder variance) is written as None."""
        data = {"records": int(len(self.steps)), "tracked_images": int(self.mu.shape[1]),
                "latent_dim": int(self.mu.shape[2]), "steps_per_epoch": self.steps_per_epoch,
                "mean_sigma2_start": float(self.mean_sigma2[0]), "mean_sigma2_end": float(self.mean_sigma2[-1]),
                "mean_sigma2_drop_epoch1": self.sigma2_drop(1.0) if self.has_variance else None,
                "var_mu_start": float(self.var_mu[0]), "var_mu_end": float(self.var_mu[-1]),
                "law_end": float(self.law[-1]), **self.meta}
        return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in data.items()}

    def npz_bytes(self) -> bytes:
        """Every array (and ``law``, ``steps_per_epoch``) as the bytes of ``trajectories.npz``."""
        buffer = io.BytesIO()
        np.savez(buffer, steps=self.steps, epochs=self.epochs, mu=self.mu, var=self.var, labels=self.labels,
                 indices=self.indices, mean_sigma2=self.mean_sigma2, var_mu=self.var_mu, law=self.law,
                 steps_per_epoch=self.steps_per_epoch)
        return buffer.getvalue()

    def csv_bytes(self) -> bytes:
        """``trajectories.csv``: one row per record and tracked image, with its mean and variance per variable."""
        d = self.mu.shape[2]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["step", "epoch", "image", "index", "label"] + [f"mu_{j}" for j in range(d)]
                   + [f"var_{j}" for j in range(d)])
        for s in range(len(self.steps)):
            for i in range(self.mu.shape[1]):
                w.writerow([int(self.steps[s]), f"{self.epochs[s]:.4f}", i, int(self.indices[i]), int(self.labels[i])]
                           + [f"{v:.6g}" for v in self.mu[s, i]] + [f"{v:.6g}" for v in self.var[s, i]])
        return out.getvalue().encode()

    def stats_csv_bytes(self) -> bytes:
        """``trajectory_stats.csv``: one row per record with E[sigma^2], Var(mu) and their sum."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["step", "epoch", "mean_sigma2", "var_mu", "var_mu_plus_mean_sigma2"])
        for s in range(len(self.steps)):
            w.writerow([int(self.steps[s]), f"{self.epochs[s]:.4f}", f"{self.mean_sigma2[s]:.6g}",
                        f"{self.var_mu[s]:.6g}", f"{self.law[s]:.6g}"])
        return out.getvalue().encode()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | IO[bytes]) -> Trajectories:
        """Read trajectories back from the ``trajectories.npz`` :meth:`npz_bytes` wrote (a path or a binary file)."""
        with np.load(path) as f:
            var = f["var"]
            return cls(steps=f["steps"], epochs=f["epochs"], mu=f["mu"], var=var, labels=f["labels"],
                       indices=f["indices"], mean_sigma2=f["mean_sigma2"], var_mu=f["var_mu"],
                       steps_per_epoch=int(f["steps_per_epoch"]), has_variance=bool(np.isfinite(var).all()))


class TrajectoryRecorder:
    """Records the encoder on fixed images every ``every`` steps; call :meth:`step` after each optimizer step.

    ``n_images`` images of ``test_ds`` are tracked (:func:`choose_tracked`), and its first ``probe`` images measure
    E[sigma^2] and Var(mu); ``steps_per_epoch`` turns steps into epochs. Step 0 is recorded at once."""

    def __init__(self, model: LatentModel, test_ds: ImageDataset, n_images: int, every: int = DEFAULT_TRACK_EVERY,
                 steps_per_epoch: int = 1, probe: int = DEFAULT_PROBE):
        if every < 1:
            raise ConfigError(f"track-every must be at least 1, got {every} instead")
        labels = None if test_ds.labels is None else test_ds.labels.numpy()
        self.indices = choose_tracked(labels, min(n_images, len(test_ds)))
        self.labels = np.full(len(self.indices), -1) if labels is None else labels[self.indices]
        self.model, self.every, self.steps_per_epoch = model, every, max(1, steps_per_epoch)
        self.images = test_ds.batch(self.indices)
        self.probe = test_ds.batch(np.arange(min(probe, len(test_ds))))
        self.has_variance = bool(getattr(model, "vae_like", False))
        self.rows: list[tuple[int, np.ndarray, np.ndarray, float, float]] = []
        self.record(0)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.model.device)
        if self.has_variance:
            mu, logvar = cast("VAELikeModel", self.model).encode_stats(x)  # vae_like: it gives encode_stats
            return mu.double().cpu(), logvar.double().exp().cpu()
        z = self.model.encode(x).double().cpu().reshape(len(x), -1)
        return z, torch.full_like(z, float("nan"))

    def record(self, step: int) -> None:
        """Record the encoder (in eval mode, without gradients) on the tracked images and the probe after ``step``
        optimizer steps; the networks' training modes are restored."""
        modules = self.model.modules().values()
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        with torch.no_grad():
            mu, var = self._encode(self.images)
            pmu, pvar = self._encode(self.probe)
        for m, mode in zip(modules, modes):
            m.train(mode)
        self.rows.append((step, mu.numpy(), var.numpy(), float(pvar.mean()),
                          float(pmu.var(0, unbiased=False).mean())))

    def step(self, step: int) -> None:
        """Call after optimizer step number ``step``: records every ``every`` steps."""
        if step % self.every == 0:
            self.record(step)

    def finish(self, step: int, meta: dict[str, Any] | None = None) -> Trajectories:
        """Record the last step (``step``, the number of steps done) unless done, and return everything recorded;
        ``meta`` joins the summary."""
        if self.rows[-1][0] != step:
            self.record(step)
        steps = np.array([r[0] for r in self.rows])
        return Trajectories(steps=steps, epochs=steps / self.steps_per_epoch,
                            mu=np.stack([r[1] for r in self.rows]).astype(np.float32),
                            var=np.stack([r[2] for r in self.rows]).astype(np.float32),
                            labels=self.labels, indices=self.indices,
                            mean_sigma2=np.array([r[3] for r in self.rows]), var_mu=np.array([r[4] for r in self.rows]),
                            steps_per_epoch=self.steps_per_epoch, has_variance=self.has_variance,
                            meta={"track_every": self.every, "probe_images": len(self.probe), **(meta or {})})
