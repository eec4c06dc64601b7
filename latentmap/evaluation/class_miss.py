"""What a generator cannot produce, in class names: the labels of the real images in the sectors it misses.

Sector coverage (:mod:`latentmap.evaluation.coverage`) flags sectors; a reader asks which kinds of
image those are. With the real images' labels counted per sector (``CoverageResult.label_counts``,
[sectors, labels]), :func:`class_misses` gives, for each label, how many of its real images lie in
the sectors a generator misses (never reached or under-represented) and what share of the missed
sectors' real images it makes up. A label is *named* as missed when at least
:data:`MISSED_CLASS_SHARE` of its real images lie in those sectors.

Sectors see a class only through the sectors it dominates: a label is *unresolvable*
(:func:`unresolvable_classes`) when no sector holding at least ``min_count`` real images has more
than :data:`DOMINANT_SHARE` of them from that label. Its images always share their sectors with a
majority of other labels, so a generator that drops it while keeping its sector-mates moves no
sector's count enough to be flagged: coverage cannot see it missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from latentmap.errors import ConfigError

MISSED_CLASS_SHARE = 0.5  # a label is named as missed when this share of its real images lies in missed sectors
DOMINANT_SHARE = 0.5  # a sector is dominated by a label holding more than this share of its real images


@dataclass(frozen=True)
class ClassMiss:
    """One label's real images in the sectors a generator misses."""

    label: int
    name: str
    real_images: int  # real images of this label
    in_missed: int  # of them, in sectors the generator misses
    share_of_class: float  # in_missed / real_images
    share_of_missed: float  # in_missed / real images in the missed sectors

    @property
    def named(self) -> bool:
        """Whether at least :data:`MISSED_CLASS_SHARE` of the label's real images lie in missed sectors."""
        return self.share_of_class >= MISSED_CLASS_SHARE

    def to_dict(self) -> dict:
        """The fields and :attr:`named`, as a JSON-ready dict."""
        return {"label": self.label, "name": self.name, "real_images": self.real_images, "in_missed": self.in_missed,
                "share_of_class": self.share_of_class, "share_of_missed": self.share_of_missed, "named": self.named}


def missed_sectors(never_reached: Iterable[int], under: Iterable[int]) -> list[int]:
    """The sectors a generator misses: never reached or under-represented, in order."""
    return sorted({int(s) for s in never_reached} | {int(s) for s in under})


def _counts(label_counts: ArrayLike) -> np.ndarray:
    counts = np.asarray(label_counts, dtype=np.int64)
    if counts.ndim != 2 or (counts < 0).any():
        raise ConfigError(f"label counts must be a [sectors, labels] array of counts, got shape {counts.shape}")
    return counts


def class_misses(label_counts: ArrayLike, missed: Iterable[int], names: Sequence[str] | None = None
                 ) -> list[ClassMiss]:
    """Per label with real images, its real images in the ``missed`` sectors; the largest share of the class first
    (ties: the lower label)."""
    counts = _counts(label_counts)
    missed = [int(s) for s in missed]
    if any(not 0 <= s < len(counts) for s in missed):
        raise ConfigError(f"missed sectors {missed} do not fit {len(counts)} sectors")
    names = list(names) if names is not None else [str(k) for k in range(counts.shape[1])]
    totals = counts.sum(axis=0)
    inside = counts[missed].sum(axis=0) if missed else np.zeros(counts.shape[1], dtype=np.int64)
    pooled = int(inside.sum())
    rows = [ClassMiss(k, names[k], int(totals[k]), int(inside[k]), float(inside[k] / totals[k]),
                      float(inside[k] / pooled) if pooled else 0.0)
            for k in range(counts.shape[1]) if totals[k] > 0]
    return sorted(rows, key=lambda r: (-r.share_of_class, r.label))


def missed_share(label_counts: ArrayLike, missed: Sequence[int]) -> float:
    """The share of all real images that lie in the ``missed`` sectors (what every label would show if the
    missed sectors took no label more than another)."""
    counts = _counts(label_counts)
    total = counts.sum()
    return float(counts[[int(s) for s in missed]].sum() / total) if total and len(missed) else 0.0


def dominant_labels(label_counts: ArrayLike, min_count: int = 1) -> dict[int, int]:
    """Sector -> the label holding more than :data:`DOMINANT_SHARE` of its real images, for sectors with at least
    ``min_count`` real images (sectors without such a label are left out)."""
    counts = _counts(label_counts)
    out = {}
    for s, row in enumerate(counts):
        total = row.sum()
        if total >= min_count and total and row.max() / total > DOMINANT_SHARE:
            out[s] = int(np.argmax(row))
    return out


def unresolvable_classes(label_counts: ArrayLike, min_count: int = 1, names: Sequence[str] | None = None
                         ) -> list[dict]:
    """The labels with real images that dominate no sector (see the module's note), each with the largest share
    it reaches in any sector of at least ``min_count`` real images and the (up to three) labels it shares its
    sectors with most: each other label's share of a sector, weighted by this label's real images there."""
    counts = _counts(label_counts)
    names = list(names) if names is not None else [str(k) for k in range(counts.shape[1])]
    dominated = set(dominant_labels(counts, min_count).values())
    totals = counts.sum(axis=1)
    eligible = totals >= max(min_count, 1)
    out = []
    for k in range(counts.shape[1]):
        if counts[:, k].sum() == 0 or k in dominated:
            continue
        shares = np.where(eligible, counts[:, k] / np.maximum(totals, 1), -1.0)
        best = int(np.argmax(shares))
        weight = (counts[:, k:k + 1] * counts / np.maximum(totals, 1)[:, None]).sum(axis=0)
        weight[k] = 0
        mates = [int(j) for j in np.argsort(-weight, kind="stable") if weight[j] > 0][:3]
        out.append({"label": k, "name": names[k], "best_sector": best,
                    "best_share": float(max(shares[best], 0.0)), "shares_with": [names[j] for j in mates]})
    return out
