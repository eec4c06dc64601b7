"""Figures of the trajectories of fixed images during training: a static PNG and an animated GIF."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from latentmap.report.figures import figure_png, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

CIRCLE_EPOCHS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)  # the steps that get circles (nearest record)


class RecordedTrajectories(Protocol):
    """What the figures read of a training run's recorded trajectories
    (:class:`latentmap.training.tracking.Trajectories`, a layer above the reports)."""

    steps: np.ndarray  # [S] optimizer steps done before each record
    epochs: np.ndarray  # [S] fractional epoch of each record
    mu: np.ndarray  # [S, N, d] encoder mean (or latent)
    var: np.ndarray  # [S, N, d] encoder variance; NaN for models without one
    labels: np.ndarray  # [N] label of each tracked image (-1 if none)
    mean_sigma2: np.ndarray  # [S] E[sigma^2] over the probe
    var_mu: np.ndarray  # [S] Var(mu) over the probe
    has_variance: bool
    meta: dict[str, Any]

    @property
    def law(self) -> np.ndarray:
        """Var(mu) + E[sigma^2] per record."""

    def npz_bytes(self) -> bytes:
        """Every array as an ``.npz`` file."""

    def csv_bytes(self) -> bytes:
        """Every tracked image's mean and variance per record, as CSV."""

    def stats_csv_bytes(self) -> bytes:
        """The statistics per record, as CSV."""

    def summary(self) -> dict[str, Any]:
        """The run's numbers, JSON-ready."""


def plane(traj: RecordedTrajectories) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 2-d view: (centres [S, N, 2], radii [S, N, 2] or NaN, axis labels).

    2-d latents are drawn as they are. Larger latents with variances: the two variables with the
    largest variance of the tracked means at the last record (the most informative ones), with
    their own sigma. Latents without variances: the first two principal components of every
    recorded mean.
    """
    mu, var = traj.mu.astype(np.float64), traj.var.astype(np.float64)
    d = mu.shape[2]
    if d == 1:
        zero = np.zeros_like(mu)
        return np.concatenate([mu, zero], 2), np.sqrt(np.concatenate([var, zero], 2)), ["z0", "(none)"]
    if d == 2:
        return mu, np.sqrt(var), ["z0", "z1"]
    if traj.has_variance:
        top = np.argsort(-mu[-1].var(0), kind="stable")[:2]
        return mu[:, :, top], np.sqrt(var[:, :, top]), [f"z{top[0]}", f"z{top[1]}"]
    flat = mu.reshape(-1, d)
    centre = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - centre, full_matrices=False)
    proj = (mu - centre) @ vt[:2].T
    return proj, np.full_like(proj, np.nan), ["PC1 of the means", "PC2 of the means"]


def _circle_records(traj: RecordedTrajectories) -> list[int]:
    picks: list[int] = []
    for e in CIRCLE_EPOCHS:
        if e <= traj.epochs[-1] + 1e-9:
            s = int(np.argmin(np.abs(traj.epochs - e)))
            if s not in picks:
                picks.append(s)
    return picks


def _colours(traj: RecordedTrajectories) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(int(label) % 10 if label >= 0 else i % 10) for i, label in enumerate(traj.labels)]


def _draw_paths(ax: Axes, traj: RecordedTrajectories, centres: np.ndarray, radii: np.ndarray, upto: int,
                circles: list[int]) -> None:
    from matplotlib.patches import Ellipse

    colours = _colours(traj)
    for i, c in enumerate(colours):
        ax.plot(centres[:upto + 1, i, 0], centres[:upto + 1, i, 1], "-", color=c, lw=1.0,
                label=str(traj.labels[i]) if traj.labels[i] >= 0 else f"image {i}")
        ax.plot(centres[upto, i, 0], centres[upto, i, 1], "o", color=c, ms=3)
        for s in circles:
            if s <= upto and np.isfinite(radii[s, i]).all():
                ax.add_patch(Ellipse(tuple(centres[s, i]), 2 * radii[s, i, 0], 2 * radii[s, i, 1], fill=False,
                                     color=c, lw=0.7, alpha=0.35 + 0.65 * (s / max(1, upto))))


def _limits(centres: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.nan_to_num(radii, nan=0.0)
    lo = np.min(centres - r, axis=(0, 1))
    hi = np.max(centres + r, axis=(0, 1))
    pad = 0.05 * (hi - lo + 1e-9)
    return lo - pad, hi + pad


def trajectories_png(traj: RecordedTrajectories) -> bytes:
    """Left: paths of the tracked images with circles (radius sigma) at chosen steps; right: E[sigma^2],
    Var(mu) and their sum against the epoch, with the variance law's 1."""
    centres, radii, labels = plane(traj)
    fig = new_figure(11, 4.6)
    ax = fig.add_subplot(1, 2, 1)
    circles = _circle_records(traj)
    _draw_paths(ax, traj, centres, radii, len(traj.steps) - 1, circles)
    lo, hi = _limits(centres, radii)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel(labels[0], fontsize=10)
    ax.set_ylabel(labels[1], fontsize=10)
    what = "circles: radius sigma" if traj.has_variance else "no encoder variance: the latent is tracked"
    ax.set_title(f"{traj.mu.shape[1]} fixed images, epochs 0-{traj.epochs[-1]:.1f}\n({what}, at epochs "
                 + ", ".join(f"{traj.epochs[s]:.2g}" for s in circles) + ")", fontsize=10)
    ax.legend(title="label", fontsize=9, title_fontsize=9, loc="best", ncol=2)
    ax2 = fig.add_subplot(1, 2, 2)
    if traj.has_variance:
        ax2.plot(traj.epochs, traj.mean_sigma2, label="E[sigma^2] (mean posterior variance)")
        ax2.plot(traj.epochs, traj.law, label="Var(mu) + E[sigma^2]")
    ax2.plot(traj.epochs, traj.var_mu, label="Var(mu) (variance of the means)")
    ax2.axhline(1.0, color="grey", ls=":", lw=1, label="1 (the prior's variance)")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch", fontsize=10)
    ax2.set_ylabel("mean over latent variables", fontsize=10)
    ax2.set_title(f"on {traj.meta.get('probe_images', '?')} held-out images", fontsize=10)
    ax2.legend(fontsize=9)
    ax2.tick_params(labelsize=9)
    return figure_png(fig)


def trajectories_gif(traj: RecordedTrajectories, epochs: float = 5.0, frames: int = 60, fps: int = 8) -> bytes:
    """The paths growing over the first ``epochs`` epochs, with each image's current circle."""
    from PIL import Image

    centres, radii, labels = plane(traj)
    last = int(np.flatnonzero(traj.epochs <= epochs + 1e-9)[-1])
    picks = np.unique(np.linspace(0, last, min(frames, last + 1)).round().astype(int))
    lo, hi = _limits(centres[:last + 1], radii[:last + 1])
    images = []
    for s in picks:
        fig = new_figure(4.6, 4.6)
        ax = fig.add_subplot(1, 1, 1)
        _draw_paths(ax, traj, centres, radii, int(s), [int(s)])
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel(labels[0], fontsize=10)
        ax.set_ylabel(labels[1], fontsize=10)
        ax.set_title(f"step {traj.steps[s]} (epoch {traj.epochs[s]:.2f})", fontsize=10)
        ax.legend(title="label", fontsize=9, title_fontsize=9, loc="upper right", ncol=2)
        frame = Image.open(io.BytesIO(figure_png(fig)))
        # the ignore: Pillow sets ADAPTIVE at import, out of its stub's sight (Image.Palette needs Pillow 9.1)
        images.append(frame.convert("P", palette=Image.ADAPTIVE))  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buffer.getvalue()


def trajectory_files(traj: RecordedTrajectories) -> dict[str, bytes]:
    """Every file of the trajectories, by name, for a checkpoint folder."""
    import json

    return {"trajectories.npz": traj.npz_bytes(), "trajectories.csv": traj.csv_bytes(),
            "trajectory_stats.csv": traj.stats_csv_bytes(), "trajectories.png": trajectories_png(traj),
            "trajectories.gif": trajectories_gif(traj, epochs=5.0),
            "trajectories.json": json.dumps(traj.summary(), indent=2).encode()}
