"""The relocation atlas: fit and evaluate every ordered pair of a set of models.

Each model encodes and decodes every test batch once; all pairs share those passes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from latentmap.batching import image_batches, with_progress
from latentmap.errors import ConfigError
from latentmap.evaluation.relocation import (RelocationAccumulator, RelocationResult, label_batches, label_namer,
                                             lpips_function)
from latentmap.maps.fitting import FitSource, check_same_images, fit_all_pairs, model_info
from latentmap.maps.linear import LinearMap


@dataclass
class AtlasResult:
    results: list[RelocationResult]
    models: list[dict]
    fit_source: dict  # FitSource.record()
    map_params: dict  # the maps' hyperparameters (bias, alpha, method)
    maps: dict = field(default_factory=dict, repr=False)  # (source name, target name) -> LinearMap
    skipped: list = field(default_factory=list)  # {"name", "reason"} of models left out

    def frame(self):
        import pandas as pd

        rows = [r.table_row() for r in self.results]
        return pd.DataFrame(rows)

    def by_label_frame(self):
        """One row per pair and label (empty when the test images have no labels)."""
        import pandas as pd

        return pd.DataFrame([{"source": r.source, "target": r.target, "type": r.type, **row}
                             for r in self.results for row in r.by_label])

    def ratio_matrix(self):
        import pandas as pd

        names = [m["name"] for m in self.models]
        mat = pd.DataFrame(np.nan, index=names, columns=names)
        for r in self.results:
            mat.loc[r.source, r.target] = r.ratio
        mat.index.name = "source \\ target"
        return mat


def build_atlas(models, test_data, fit: FitSource, make_map: Callable[[], LinearMap] | None = None, *,
                batch_size: int = 256, lpips: str = "auto", model_paths: dict | None = None,
                progress: bool = False) -> AtlasResult:
    """Fit every ordered pair of ``models`` on ``fit`` and evaluate it on ``test_data``.

    ``make_map`` builds each pair's estimator (default ``fit.new_map()``, the fit source's defaults).
    """
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct for the atlas, got {names}")
    models, skipped = _models_for(models, test_data)
    if len(models) < 2:
        raise ConfigError(f"an atlas needs at least 2 models that work on the test images, got {len(models)}"
                          + (f" ({'; '.join(s['name'] + ': ' + s['reason'] for s in skipped)})" if skipped else ""))
    maps = fit_all_pairs(models, fit, make_map, batch_size=batch_size)
    lpips_fn, note = lpips_function(models[0].device, lpips)
    accs = {(i, j): RelocationAccumulator(models[i], models[j], m, maps[(j, i)], lpips_fn, note)
            for (i, j), m in maps.items()}
    batches, total = image_batches(test_data, batch_size)
    labels = label_batches(test_data, batch_size)
    for x in with_progress(batches, "atlas", progress, total):
        enc = [m.encode(x) for m in models]
        rec = [m.decode(z) for m, z in zip(models, enc)]
        batch_labels = next(labels)
        for (i, j), acc in accs.items():
            acc.update(x, enc[i], rec[i], enc[j], rec[j], labels=batch_labels)
    results = [accs[p].result({"fit_metrics": maps[p].fit_metrics_}, label_namer(test_data)) for p in accs]
    results.sort(key=lambda r: (r.type, r.source, r.target))
    any_map = next(iter(maps.values()))
    return AtlasResult(results, [model_info(m, (model_paths or {}).get(m.name)) for m in models], fit.record(),
                       any_map.get_params(), maps={(models[i].name, models[j].name): m for (i, j), m in maps.items()},
                       skipped=skipped)


def _models_for(models, test_data) -> tuple[list, list[dict]]:
    """The models whose images are the test images' shape; the others skipped with a warning and a reason."""
    shape = tuple(getattr(test_data, "image_shape", None) or tuple(test_data.shape[1:]))
    usable, skipped = [], []
    for m in models:
        if tuple(m.image_shape) == shape:
            usable.append(m)
            continue
        reason = f"works on images {tuple(m.image_shape)}, the test images are {shape}"
        warnings.warn(f"atlas: skipping model '{m.name}': {reason}", stacklevel=3)
        skipped.append({"name": m.name, "reason": reason})
    for m in usable[1:]:
        check_same_images(usable[0], m)
    return usable, skipped
