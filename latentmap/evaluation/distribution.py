"""Per-image relocation errors: the distribution of the per-image ratio, bootstrap intervals, the worst images.

The headline ratio of a pair is a ratio of means, mean(relocated MSE) / mean(B's own MSE), over
the test images. Behind it, each image has its own ratio relocated_i / own_i: its median and
90th percentile say whether the loss is spread evenly or concentrated on a few images. The
95% interval of the headline ratio is a seeded percentile bootstrap over images (the same seed
draws the same resamples for every estimator of a pair, so differences between estimators,
such as the linearity gap, get paired intervals). Worst images are those whose relocated MSE
exceeds B's own reconstruction MSE the most.

Keeping two floats per test image (and pair) is the one place the relocation evaluation keeps
anything per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from latentmap.errors import ConfigError

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CHUNK = 100
WORST_IMAGES = 8


class PerImageErrors:
    """Own and relocated MSE of every evaluated image of one pair, in evaluation order (float64, CPU)."""

    def __init__(self) -> None:
        self._own: list[torch.Tensor] = []
        self._relocated: list[torch.Tensor] = []

    def update(self, own: torch.Tensor, relocated: torch.Tensor) -> None:
        """Append a batch's own and relocated MSE per image ([B] each)."""
        self._own.append(own.detach().to("cpu", torch.float64).reshape(-1))
        self._relocated.append(relocated.detach().to("cpu", torch.float64).reshape(-1))

    def merge(self, other: PerImageErrors) -> PerImageErrors:
        """Append ``other``'s images after this one's; returns self."""
        self._own += other._own
        self._relocated += other._relocated
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(own [N], relocated [N]) as numpy float64."""
        if not self._own:
            return np.zeros(0), np.zeros(0)
        return torch.cat(self._own).numpy(), torch.cat(self._relocated).numpy()


def per_image_ratios(own: ArrayLike, relocated: ArrayLike) -> np.ndarray:
    """relocated_i / own_i (inf where an image's own error is 0 and its relocated error is not, 1 where both are)."""
    own, relocated = np.asarray(own, np.float64), np.asarray(relocated, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = relocated / own
    out[(own == 0) & (relocated == 0)] = 1.0
    return out


def ratio_quantiles(own: ArrayLike, relocated: ArrayLike, qs: tuple[float, ...] = (0.5, 0.9)) -> list[float]:
    """Quantiles of the per-image ratio (median and 90th percentile by default)."""
    r = per_image_ratios(own, relocated)
    if len(r) == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.quantile(r, qs)]


def _resample_sums(values: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """For each array, its sums over ``n_boot`` seeded resamples (with replacement) of the images."""
    n = len(values[0])
    rng = np.random.default_rng(seed)
    sums = [np.empty(n_boot) for _ in values]
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        stop = min(start + BOOTSTRAP_CHUNK, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        for v, s in zip(values, sums):
            s[start:stop] = v[idx].sum(1)
    return sums


def bootstrap_ratio_interval(own: ArrayLike, relocated: ArrayLike, *, n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                             level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(relocated) / mean(own) over images."""
    own, relocated = np.asarray(own, np.float64), np.asarray(relocated, np.float64)
    if len(own) < 2 or n_boot < 1:
        return float("nan"), float("nan")
    s_own, s_rel = _resample_sums([own, relocated], n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = s_rel / s_own
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_difference_interval(own: ArrayLike, relocated_a: ArrayLike, relocated_b: ArrayLike, *,
                                  n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                                  level: float = 0.95) -> tuple[float, float]:
    """Paired percentile bootstrap interval of ratio_a − ratio_b (two maps judged on the same images)."""
    own = np.asarray(own, np.float64)
    if len(own) < 2 or n_boot < 1:
        return float("nan"), float("nan")
    s_own, s_a, s_b = _resample_sums([own, np.asarray(relocated_a, np.float64),
                                      np.asarray(relocated_b, np.float64)], n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = (s_a - s_b) / s_own
    tail = (1 - level) / 2
    low, high = np.quantile(diff, [tail, 1 - tail])
    return float(low), float(high)


def worst_images(own: ArrayLike, relocated: ArrayLike, k: int = WORST_IMAGES) -> list[int]:
    """Positions of the ``k`` images whose relocated MSE exceeds B's own MSE the most, worst first."""
    excess = np.asarray(relocated, np.float64) - np.asarray(own, np.float64)
    k = min(k, len(excess))
    if k == 0:
        return []
    top = np.argpartition(-excess, k - 1)[:k]
    return [int(i) for i in top[np.argsort(-excess[top], kind="stable")]]


def summarize(own: ArrayLike, relocated: ArrayLike, *, n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
              worst: int = WORST_IMAGES) -> dict[str, Any]:
    """The per-image summary a RelocationResult carries: quantiles, the bootstrap interval, the worst images."""
    median, p90 = ratio_quantiles(own, relocated)
    low, high = bootstrap_ratio_interval(own, relocated, n_boot=n_boot, seed=seed)
    return {"image_ratio_median": median, "image_ratio_p90": p90, "ratio_low": low, "ratio_high": high,
            "worst_images": worst_images(own, relocated, worst)}


# --------------------------------------------------------------------------- bootstrap

EXPRESSIVENESS_BOOTSTRAP = 2000  # the expressiveness benchmark's default resamples (its BOOTSTRAP)


@dataclass
class RatioCI:
    """mean(a) / mean(b) with a percentile bootstrap interval (each set resampled independently)."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict[str, float]:
        """{value, low, high, level} as a report records them."""
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


BOOTSTRAP_DRAW_SECONDS = 3e-8  # one resampled value of bootstrap_ratio (numpy gather and mean; measured roughly)
MAX_BOOTSTRAP = 1_000_000  # resamples: far past where a 95% interval's percentiles stop moving


def bootstrap_ratio(a: ArrayLike, b: ArrayLike, *, resamples: int = EXPRESSIVENESS_BOOTSTRAP, seed: int = 0,
                    level: float = 0.95) -> RatioCI:
    """Ratio of the means of two samples and its percentile bootstrap interval (numpy, seeded, float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ConfigError(f"a ratio of means needs values on both sides, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level} instead")
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    for start in range(0, resamples, 250):  # chunks keep the index arrays small
        m = min(250, resamples - start)
        mean_a = a[rng.integers(0, len(a), (m, len(a)))].mean(1)
        mean_b = b[rng.integers(0, len(b), (m, len(b)))].mean(1)
        ratios[start:start + m] = mean_a / np.maximum(mean_b, 1e-300)
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return RatioCI(float(a.mean() / max(b.mean(), 1e-300)), float(low), float(high), level)


def bootstrap_seconds(resamples: int, models: int, draws: int, ratios: int) -> float:
    """Expected seconds of every model's ``ratios`` bootstrap intervals: ``draws`` values (both sets) per resample
    and ratio."""
    return models * ratios * resamples * draws * BOOTSTRAP_DRAW_SECONDS
