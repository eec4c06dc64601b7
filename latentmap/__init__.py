"""latentmap: linear maps between the latent spaces of generative models, support sets, benchmarks.

The public names below load lazily (PEP 562), so ``import latentmap`` and ``latentmap --help``
do not import torch.
"""

from typing import Any

from latentmap.version import __version__

_PUBLIC = {
    "load_model": "latentmap.models.registry",
    "save_checkpoint": "latentmap.io.checkpoint",
    "load_dataset": "latentmap.data.datasets",
    "LatentmapError": "latentmap.errors",
    "LinearMap": "latentmap.maps.linear",
    "PiecewiseLinearMap": "latentmap.maps.piecewise",
    "MLPMap": "latentmap.maps.mlp",
    "ProcrustesMap": "latentmap.maps.procrustes",
    "AdamMap": "latentmap.maps.adam",
    "ConvMap": "latentmap.maps.conv",
    "ConvMLPMap": "latentmap.maps.conv",
    "ESTIMATORS": "latentmap.maps.registry",
    "parse_estimator": "latentmap.maps.registry",
    "load_map": "latentmap.maps.registry",
    "linear_cka": "latentmap.evaluation.similarity",
    "svcca": "latentmap.evaluation.similarity",
    "LatentModel": "latentmap.models.base",
    "VAELikeModel": "latentmap.models.base",
    "register_adapter": "latentmap.models.registry",
    "ADAPTERS": "latentmap.models.registry",
    "SupportSet": "latentmap.io.support_folder",
    "build_support_set": "latentmap.support.build",
    "wrap": "latentmap.models.wrapped",
    "invert": "latentmap.evaluation.inversion",
    "InversionResult": "latentmap.evaluation.inversion",
    "benchmark_expressiveness": "latentmap.evaluation.expressiveness",
    "benchmark_coverage": "latentmap.evaluation.generator_bench",
    "benchmark_fidelity": "latentmap.evaluation.generator_bench",
    "generated_sets": "latentmap.evaluation.generator_bench",
    "fit_sampler": "latentmap.evaluation.samplers",
    # fitting and evaluating maps from Python, the estimator base, and the result classes
    "MapEstimator": "latentmap.maps.base",
    "parse_estimators": "latentmap.maps.registry",
    "FitSource": "latentmap.maps.fitting",
    "resolve_fit_source": "latentmap.maps.fitting",
    "fit_map": "latentmap.maps.fitting",
    "fit_all_pairs": "latentmap.maps.fitting",
    "evaluate_relocation": "latentmap.evaluation.relocation",
    "RelocationResult": "latentmap.evaluation.relocation",
    "build_atlas": "latentmap.evaluation.atlas",
    "AtlasResult": "latentmap.evaluation.atlas",
    "ExpressivenessResult": "latentmap.evaluation.expressiveness_results",
    "CoverageResult": "latentmap.evaluation.coverage",
    "FidelityResult": "latentmap.evaluation.fidelity",
    "compare_anchors": "latentmap.evaluation.anchors",
    "CompareResult": "latentmap.evaluation.anchors",
    "adapter_class": "latentmap.models.registry",
    "per_image_mse": "latentmap.evaluation.metrics",
    "bootstrap_ratio_interval": "latentmap.evaluation.distribution",
    "ratio_quantiles": "latentmap.evaluation.distribution",
    "TrainSettings": "latentmap.training.common",
    "train": "latentmap.training",
    "prdc": "latentmap.evaluation.fidelity",
    "void_fraction": "latentmap.evaluation.geometry",
    "latent_statistics": "latentmap.evaluation.metrics",
    "reconstruction_mse": "latentmap.evaluation.metrics",
    "knn_radii": "latentmap.evaluation.fidelity",
    "PriorSampler": "latentmap.evaluation.samplers",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (every adapter and model source registered first)."""
    if name in _PUBLIC:
        import importlib

        importlib.import_module("latentmap.models")  # every adapter and model source registered
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'latentmap' has no attribute '{name}'")
