"""What the expressiveness benchmark found: its image metrics (a registry) and its result classes.

:class:`SetScores` holds the per-image scores of one target set, :class:`ModelExpressiveness` one model's
sets and ratios, :class:`ExpressivenessResult` the leaderboard of every model. The metrics are a registry
(:data:`METRICS`, name -> per-image function), so a new metric's scores, tables and report columns all
follow from one function and one line. Computation: :mod:`latentmap.evaluation.expressiveness`, which also
re-exports every name defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.distribution import RatioCI
from latentmap.evaluation.metrics import per_image_mse, per_image_ssim
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.io.model_record import short_fingerprint

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TARGET_SETS", "SET_LABELS", "METRICS", "RUNTIME_METRICS", "LATENT_SCORES", "MetricFn", "register_metric",
           "metric_names", "metric_label", "metric_functions", "SetScores", "ModelExpressiveness",
           "ExpressivenessResult"]

TARGET_SETS = ("own", "real", "support")
SET_LABELS = {"own": "own samples", "real": "real test images", "support": "support-set images"}

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A per-image image metric: (images, reconstructions: [N, C, H, W] in [0, 1]) -> [N]."""

# The image metrics, as torch-fidelity registers its metrics: name -> per-image function. A new metric is one
# function and one line here (or register_metric): its per-image scores, the target-set table, the CSV and the
# report's columns all follow. LPIPS joins at run time, when its weights are available (lpips_function).
METRICS: dict[str, MetricFn] = {"mse": per_image_mse, "ssim": per_image_ssim}
RUNTIME_METRICS = ("lpips",)
LATENT_SCORES = ("distance", "outside")  # how far each latent lies from the sampler's typical region


def register_metric(name: str, fn: MetricFn) -> None:
    """Add a per-image image metric (``fn(images, reconstructions) -> [N]``) to every expressiveness run."""
    if not name.isidentifier() or name in (*RUNTIME_METRICS, *LATENT_SCORES):
        raise ConfigError(f"a metric name must be a new identifier, got '{name}' instead")
    METRICS[name] = fn


def metric_functions() -> dict[str, MetricFn]:
    """The registered image metrics, by name (a copy: :func:`register_metric` adds one)."""
    return dict(METRICS)


def metric_names() -> list[str]:
    """Every image metric a target set may hold, in table order (the run-time ones last)."""
    return [*METRICS, *RUNTIME_METRICS]


def metric_label(name: str) -> str:
    """A metric's name as tables show it (mse -> MSE)."""
    return name.upper()


@dataclass
class SetScores:
    """Per-image scores of one target set (numpy float64); refinement ran on the images at ``refined_index``.

    ``encoder`` and ``refined`` map each metric of :data:`METRICS` (and ``lpips`` when it ran) and each
    latent score (``distance``, ``outside``) to its per-image values; ``scores.encoder_mse`` is
    ``scores.encoder["mse"]`` (None for a metric that did not run)."""

    key: str
    source: str
    encoder: dict[str, Any]
    refined_index: np.ndarray
    refined: dict[str, Any]
    worst: list[int] = field(default_factory=list)  # positions in the set, worst refined MSE first
    worst_rows: dict[str, Any] = field(default_factory=dict, repr=False)  # "target" / "encoder" / "refined" -> images

    def __getattr__(self, name: str) -> Any:
        stage, _, score = name.partition("_")
        if stage in ("encoder", "refined") and score and stage in self.__dict__:
            return self.__dict__[stage].get(score)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def label(self) -> str:
        """The set's name as reports show it ("real test images")."""
        return SET_LABELS.get(self.key, self.key)

    @property
    def n(self) -> int:
        """Images in the set."""
        return len(self.encoder["mse"])

    def summary(self, typical: float) -> dict[str, Any]:
        """The set's mean scores, encoder and refined: each metric, the latents' mean distance over ``typical``
        (the sampler's typical distance) and their share outside the typical region."""
        def mean(v: Any) -> float | None:
            return None if v is None or len(v) == 0 else float(np.mean(v))

        def stage(name: str, scores: dict[str, Any]) -> dict[str, Any]:
            return {**{f"{name}_{m}": mean(scores.get(m)) for m in metric_names()},
                    f"{name}_distance_ratio": _ratio(mean(scores["distance"]), typical),
                    f"{name}_outside_share": mean(scores["outside"])}

        return {"set": self.key, "label": self.label, "source": self.source, "images": self.n,
                **stage("encoder", self.encoder), "refined_images": len(self.refined_index),
                "encoder_mse_refined_images": mean(self.encoder["mse"][self.refined_index]) if len(self.refined_index)
                else None,
                **stage("refined", self.refined)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


@dataclass
class ModelExpressiveness(FrameRepr):
    """One model's expressiveness: its target sets' scores, the ratios of their encoder MSEs (with bootstrap
    intervals), the sampler and typical region the drift is measured against, and the model's record."""

    name: str
    kind: str
    latent_dim: int
    sampler: str
    region: dict[str, Any]
    sets: dict[str, SetScores]  # key -> SetScores
    ratios: dict[str, RatioCI]  # "support/own" -> RatioCI
    record: dict[str, Any] = field(default_factory=dict)  # the model's record (latentmap.io.model_record)

    def set_rows(self) -> list[dict[str, Any]]:
        """One row per target set: the model's name and the set's :meth:`SetScores.summary`."""
        return [{"model": self.name, **s.summary(self.region["typical"])} for s in self.sets.values()]

    def leaderboard_row(self) -> dict[str, Any]:
        """The model's row of the leaderboard: encoder MSE per set, ratios with their intervals, refined MSE and
        the refined latents' share outside the typical region."""
        row = {"model": self.name, "kind": self.kind, "latent_dim": self.latent_dim, "sampler": self.sampler,
               "fingerprint": short_fingerprint(self.record)}
        summaries = {k: s.summary(self.region["typical"]) for k, s in self.sets.items()}
        for key in TARGET_SETS:
            row[f"encoder_mse_{key}"] = summaries[key]["encoder_mse"] if key in summaries else None
        for name, ci in self.ratios.items():
            slug = name.replace("/", "_over_")
            row[slug], row[f"{slug}_low"], row[f"{slug}_high"] = ci.value, ci.low, ci.high
        for key in TARGET_SETS:
            row[f"refined_mse_{key}"] = summaries[key]["refined_mse"] if key in summaries else None
        for key in ("real", "support"):
            if key in summaries:
                row[f"refined_outside_share_{key}"] = summaries[key]["refined_outside_share"]
        return row

    def to_dict(self) -> dict[str, Any]:
        """Everything a report's JSON records: the summaries, the ratios and the per-image MSEs."""
        return {"model": self.name, "kind": self.kind, "latent_dim": self.latent_dim, "sampler": self.sampler,
                "record": self.record, "region": self.region, "ratios": {k: v.to_dict() for k, v in self.ratios.items()},
                "sets": {k: {**s.summary(self.region["typical"]), "worst": s.worst,
                             "per_image": {"encoder_mse": s.encoder_mse.tolist(),
                                           "refined_index": s.refined_index.tolist(),
                                           "refined_mse": s.refined_mse.tolist()}}
                         for k, s in self.sets.items()}}

    def to_frame(self) -> pd.DataFrame:
        """One row per target set (own samples, real images, support set): encoder and refined scores."""
        return records_frame(self.set_rows())

    def _frame_caption(self) -> str:
        return caption(f"Expressiveness of {self.name} ({self.kind}, {self.sampler})", [self.name])


@dataclass
class ExpressivenessResult(FrameRepr):
    """The expressiveness leaderboard (:func:`~latentmap.evaluation.expressiveness.benchmark_expressiveness`): one
    :class:`ModelExpressiveness` per model.

    ``to_frame()`` is the leaderboard, one row per model; ``set_table()`` one row per model and target set."""

    models: list[ModelExpressiveness]
    settings: dict[str, Any]
    lpips_note: str = ""

    def leaderboard(self) -> pd.DataFrame:
        """One row per model (:meth:`ModelExpressiveness.leaderboard_row`)."""
        import pandas as pd

        return pd.DataFrame([m.leaderboard_row() for m in self.models])

    def set_table(self) -> pd.DataFrame:
        """One row per model and target set (what target_sets.csv holds)."""
        import pandas as pd

        return pd.DataFrame([row for m in self.models for row in m.set_rows()])

    def to_dict(self) -> dict[str, Any]:
        """The settings, the LPIPS note and every model's :meth:`ModelExpressiveness.to_dict`."""
        return {"settings": self.settings, "lpips": self.lpips_note, "models": [m.to_dict() for m in self.models]}

    def to_frame(self) -> pd.DataFrame:
        """The leaderboard: one row per model (encoder MSE per set, ratios with their intervals, refined MSE)."""
        return records_frame(m.leaderboard_row() for m in self.models)

    def _frame_caption(self) -> str:
        s = self.settings
        return caption(f"Expressiveness leaderboard: {s.get('own_samples')} own samples, {s.get('real_images')} "
                       f"real images, {s.get('support_images') or 0} support-set images", [m.name for m in self.models])
