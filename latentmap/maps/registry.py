"""Map estimators by name: ``linear``, ``piecewise``, ``soft-piecewise``, ``mlp``, ``ortho``, ``l-ortho``, ``adam``,
``conv`` (``conv:K``) and ``conv-mlp`` (for C x h x w latents).

A spec is ``NAME[:VALUE][:KEY=VALUE]...``: the bare value sets the estimator's main parameter
(``piecewise:16`` is 16 cells, ``mlp:1024x1024`` two hidden layers of 1024), ``KEY=VALUE`` any
other (``piecewise:64:soft=true:temperature=0.2``). A list is comma-separated:
``linear,piecewise:16,mlp,ortho,l-ortho,adam``. Values are read as integers, numbers, booleans
(true/false), ``AxB`` integer tuples or words, and checked against the estimator's declared
constraints when the spec is parsed, so a bad spec fails before any work.

Map folders record the estimator's name (``map.json``: ``estimator``), and :func:`load_map`
reads any of them back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentmap.constants import ANCHOR_MAP_DEFAULTS, AUTO_ALPHA
from latentmap.errors import ConfigError
from latentmap.maps.adam import AdamMap
from latentmap.maps.base import MapEstimator
from latentmap.maps.conv import ConvMap, ConvMLPMap
from latentmap.maps.linear import LinearMap
from latentmap.maps.mlp import MLPMap
from latentmap.maps.piecewise import PiecewiseLinearMap
from latentmap.maps.procrustes import ProcrustesMap


@dataclass(frozen=True)
class EstimatorKind:
    """A name users type: the class, the parameters the name sets, the parameter a bare value sets."""

    name: str
    cls: type[MapEstimator]
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    primary: str | None = None
    anchor_defaults: dict[str, Any] = field(default_factory=dict)  # for a few anchor images (support-set fits)


ESTIMATORS: dict[str, EstimatorKind] = {k.name: k for k in (
    EstimatorKind("linear", LinearMap, "one affine least-squares map (ridge with alpha)", primary="alpha",
                  anchor_defaults=dict(ANCHOR_MAP_DEFAULTS)),
    EstimatorKind("piecewise", PiecewiseLinearMap, "one affine map per k-means cell of the source latents",
                  primary="n_cells"),
    EstimatorKind("soft-piecewise", PiecewiseLinearMap, "k-means cells blended by softmax weights (continuous)",
                  defaults={"soft": True}, primary="n_cells"),
    EstimatorKind("mlp", MLPMap, "a small MLP with held-out early stopping (the nonlinear reference)",
                  primary="hidden"),
    EstimatorKind("ortho", ProcrustesMap, "orthogonal Procrustes after standard scaling (Maiorca et al. 2023)",
                  defaults={"variant": "ortho"}),
    EstimatorKind("l-ortho", ProcrustesMap, "least squares, then the nearest orthogonal matrix",
                  defaults={"variant": "l-ortho"}),
    EstimatorKind("adam", AdamMap, "bias-free layer, full-batch Adam lr 5e-4, 2,000 steps, L2 1e-4 (the paper's)",
                  primary="steps"),
    EstimatorKind("conv", ConvMap, "one affine map of each position's K x K neighbourhood, shared by all positions "
                  "(a convolution; C x h x w latents)", primary="kernel_size"),
    EstimatorKind("conv-mlp", ConvMLPMap, "a small MLP applied at every position (1x1 convolutions)",
                  primary="hidden"),
)}
"""The estimator names a spec starts with (``linear``, ``piecewise``, ``soft-piecewise``, ``mlp``, ``ortho``,
``l-ortho``, ``adam``, ``conv``, ``conv-mlp``): each name's class, summary and the parameters it sets; ``parse_estimator`` reads specs."""

# the classes map folders name (``estimator_name``), for loading
ESTIMATOR_CLASSES: dict[str, type[MapEstimator]] = {kind.cls.estimator_name: kind.cls for kind in ESTIMATORS.values()}


@dataclass(frozen=True)
class EstimatorSpec:
    """One parsed spec: its label (the spec as typed, normalized), its kind and the parameters it sets."""

    label: str
    kind: EstimatorKind
    params: dict[str, Any]

    def make(self, *, anchors: bool = False, overrides: dict[str, Any] | None = None) -> MapEstimator:
        """A fresh, unfitted estimator. ``anchors``: defaults for a few anchor images; ``overrides``: values for
        parameters the spec leaves unset, applied where the estimator has them (the CLI's --bias, --alpha, ...)."""
        names = set(self.kind.cls._get_param_names())
        params = {**(self.kind.anchor_defaults if anchors else {}),
                  **{k: v for k, v in (overrides or {}).items() if k in names and v is not None},
                  **self.kind.defaults, **self.params}
        return self.kind.cls(**params)


def _value(text: str) -> bool | tuple[int, ...] | int | float | str:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if re.fullmatch(r"\d+(x\d+)+", low):
        return tuple(int(v) for v in low.split("x"))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_estimator(spec: str) -> EstimatorSpec:
    """``NAME[:VALUE][:KEY=VALUE]...`` -> EstimatorSpec, its parameters checked; ConfigError names what is wrong."""
    parts = [p.strip() for p in str(spec).strip().split(":")]
    name = parts[0]
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator '{name}' in '{spec}'; choose from {', '.join(ESTIMATORS)}")
    kind = ESTIMATORS[name]
    names = kind.cls._get_param_names()
    params: dict[str, Any] = {}
    for i, part in enumerate(parts[1:]):
        key, eq, text = part.partition("=")
        if not eq:
            if i > 0 or kind.primary is None:
                raise ConfigError(f"estimator '{name}' takes KEY=VALUE after its name here, got '{part}' in '{spec}'"
                                  f"; its parameters: {', '.join(names)}")
            key, text = kind.primary, part
        key = key.strip().replace("-", "_")
        if key not in names:
            raise ConfigError(f"estimator '{name}' has no parameter '{key}' (in '{spec}'); its parameters: "
                              f"{', '.join(names)}")
        if key in kind.defaults:
            raise ConfigError(f"'{key}' is fixed by the name '{name}' (in '{spec}')")
        value = _value(text.strip())
        params[key] = (value,) if key == "hidden" and isinstance(value, int) else value
    out = EstimatorSpec(label=str(spec).strip(), kind=kind, params=params)
    try:
        out.make()._validate_params()
    except ConfigError as exc:
        raise ConfigError(f"estimator '{spec}': {exc}") from None
    return out


def parse_estimators(text: str) -> list[EstimatorSpec]:
    """A comma-separated list of specs (labels must be distinct)."""
    specs = [parse_estimator(part) for part in str(text).split(",") if part.strip()]
    if not specs:
        raise ConfigError(f"no estimator in '{text}'; give a comma-separated list such as linear,piecewise:16,mlp")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"estimators must be distinct, got {', '.join(labels)}")
    return specs


def estimator_name(estimator: MapEstimator) -> str:
    """The name a map folder records for ``estimator`` (its class's ``estimator_name``)."""
    return estimator.estimator_name


def describe_estimator(estimator: MapEstimator) -> str:
    """A short human description: "linear (affine lstsq, alpha 0)", "piecewise (n_cells=16, soft=False, ...)"."""
    params = estimator.get_params()
    if isinstance(estimator, LinearMap):
        alpha = (f"auto ({estimator.alpha_:.3g})" if params["alpha"] == AUTO_ALPHA and "alpha_" in estimator.__dict__
                 else params["alpha"])
        return f"linear ({'affine' if params['bias'] else 'bias-free'} {params['method']}, alpha {alpha})"
    return f"{estimator_name(estimator)} ({', '.join(f'{k}={v}' for k, v in params.items())})"


def load_map(path: str | Path) -> MapEstimator:
    """Read any map folder (LinearMap or another estimator) by the estimator name its map.json records."""
    from latentmap.io.map_folder import read_map_state

    info, _ = read_map_state(path)
    name = info.get("estimator", "linear")
    if name not in ESTIMATOR_CLASSES:
        from latentmap.errors import CheckpointError

        raise CheckpointError(f"map folder '{path}' holds a '{name}' map, which this latentmap does not know "
                              f"({', '.join(ESTIMATOR_CLASSES)})")
    return ESTIMATOR_CLASSES[name].load(path)
