"""Relocation: fit a linear map A -> B from paired encodings and judge it by decoding with B.

``fit_map`` streams pairs (Enc_A x, Enc_B x) from images, or (z, Enc_B(Dec_A z)) from A's own
samples, into a :class:`~latentmap.maps.linear.LinearMap`. ``evaluate_relocation`` runs a test
split batch by batch on the models' devices and keeps only float64 sums: reconstruction MSE
of A and B, latent MSE and R² of M(Enc_A x) against Enc_B x, image MSE/SSIM (and LPIPS when
available) of Dec_B(M(Enc_A x)) against x, its ratio to B's own reconstruction MSE, and the
cycle A -> B -> A. ``build_atlas`` does this for every ordered pair of a set of models.

Relocation types (from the models' kind and architecture):
1 = same kind and architecture, different training; 2 = same objective family (both
VAE-like, or both adversarial), different kind or architecture; 3 = different objectives
(GAN or StyleGAN vs VAE-like).
"""

from __future__ import annotations

import importlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from latentmap.io.atomic import atomic_directory
from latentmap.batching import image_batches, with_progress
from latentmap.io.checkpoint import json_default
from latentmap.data.datasets import evenly_spaced_indices
from latentmap.errors import ConfigError, DependencyError, LatentmapError, ShapeMismatchError
from latentmap.maps.linear import LinearMap
from latentmap.evaluation.metrics import per_image_mse, per_image_ssim

RELOCATION_TYPES = {
    1: "same architecture and objective, different training",
    2: "same family, different architecture",
    3: "different objectives",
}
# Objective family of the non-VAE kinds; VAE-like adapters are all "vae".
_KIND_FAMILY = {"gan": "adversarial", "stylegan-w": "adversarial"}
GRID_IMAGES = 12
LPIPS_MODULE = "latentmap.evaluation.lpips_metric"


# --------------------------------------------------------------------------- relocation type

def objective_family(model) -> str:
    """``vae`` for VAE-like models, ``adversarial`` for GAN/StyleGAN, else the metadata's objective or kind."""
    if getattr(model, "vae_like", False):
        return "vae"
    meta = getattr(model, "metadata", {}) or {}
    return str(meta.get("objective") or _KIND_FAMILY.get(model.kind, model.kind))


def _architecture(model) -> dict:
    try:
        arch = model.architecture()
    except NotImplementedError:
        arch = {}
    return {"kind": model.kind, "latent_dim": model.latent_dim, "image_shape": list(model.image_shape),
            "architecture": json.loads(json.dumps(arch, default=str))}


def relocation_type(source, target) -> int:
    """1, 2 or 3 (see the module docstring) for the ordered pair of models."""
    if objective_family(source) != objective_family(target):
        return 3
    return 1 if _architecture(source) == _architecture(target) else 2


# --------------------------------------------------------------------------- fitting

def model_info(model, path=None) -> dict:
    """What a map folder records about one of its models (path: how to load it again)."""
    info = {"name": model.name, "kind": model.kind, "latent_dim": model.latent_dim,
            "image_shape": list(model.image_shape)}
    if path is not None:
        info["path"] = str(path)
    return info


def image_pairs(source, target, data, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(Enc_A x, Enc_B x) batch by batch for an ImageDataset or an image tensor."""
    _check_same_images(source, target)
    batches, _ = image_batches(data, batch_size)
    for x in batches:
        z_a = source.encode(x)
        z_b = target.encode(x).to(z_a.device)
        yield z_a, z_b


def sample_pairs(source, target, n: int, batch_size: int = 256, seed: int = 0):
    """(z, Enc_B(Dec_A z)) for ``n`` prior samples z of A: fits a generator's own space to B."""
    _check_same_images(source, target)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        z = source.sample_prior(min(batch_size, n - start), gen)
        images = source.decode(z)
        yield z.to(images.device), target.encode(images).to(images.device)


def fit_map(source, target, pairs: Iterable, *, bias: bool = True, alpha: float | str = 0.0,
            method: str = "lstsq") -> LinearMap:
    """Fit A -> B from an iterable of (z_A, z_B) batches; statistics only, one solve."""
    return LinearMap(bias=bias, alpha=alpha, method=method).fit_batches(pairs)


def _check_same_images(source, target) -> None:
    if tuple(source.image_shape) != tuple(target.image_shape):
        raise ShapeMismatchError(f"models '{source.name}' and '{target.name}' work on different images: "
                                 f"{tuple(source.image_shape)} and {tuple(target.image_shape)}")


def check_map_fits(linear_map: LinearMap, source, target) -> None:
    """The map's latent sizes must be the models'."""
    if linear_map.n_features_in_ != source.latent_dim:
        raise ShapeMismatchError(f"map expects source latents of size {linear_map.n_features_in_}, "
                                 f"model '{source.name}' gives {source.latent_dim}")
    if linear_map.n_targets_ != target.latent_dim:
        raise ShapeMismatchError(f"map gives target latents of size {linear_map.n_targets_}, "
                                 f"model '{target.name}' takes {target.latent_dim}")


# --------------------------------------------------------------------------- LPIPS hook

def lpips_function(device) -> tuple[Callable | None, str]:
    """(per-image LPIPS callable, note). Uses ``latentmap.evaluation.lpips_metric.load_lpips(device)`` if present.

    Never falls back to an LPIPS with untrained or random weights: without the pretrained
    loader the metric is reported as unavailable.
    """
    try:
        module = importlib.import_module(LPIPS_MODULE)
    except ImportError:
        return None, f"LPIPS unavailable: {LPIPS_MODULE} (pretrained LPIPS loader) is not installed"
    loader = getattr(module, "load_lpips", None)
    if loader is None:
        return None, f"LPIPS unavailable: {LPIPS_MODULE} has no load_lpips(device)"
    try:
        return loader(device=device), "LPIPS (pretrained, alex)"
    except DependencyError as exc:
        return None, f"LPIPS unavailable: {exc}"


# --------------------------------------------------------------------------- evaluation

@dataclass
class RelocationResult:
    """Metrics of one ordered pair on an evaluation split (image metrics in [0,1] intensity units)."""

    source: str
    target: str
    source_kind: str
    target_kind: str
    type: int
    type_name: str
    n_images: int
    source_mse: float  # A's own reconstruction
    target_mse: float  # B's own reconstruction
    relocated_mse: float  # Dec_B(M(Enc_A x)) vs x
    ratio: float  # relocated_mse / target_mse
    latent_mse: float
    latent_r2: float
    target_ssim: float
    relocated_ssim: float
    cycle_mse: float  # Dec_A(M'(Enc_B(Dec_B(M(Enc_A x))))) vs x
    cycle_ratio: float  # cycle_mse / source_mse
    cycle_via: str
    target_lpips: float | None = None
    relocated_lpips: float | None = None
    lpips_note: str = ""
    # per label of a labelled dataset: label, name, n_images, target_mse, relocated_mse, ratio
    by_label: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table_row(self) -> dict:
        """The scalar metrics: one row of a table (the per-label breakdown and extras left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("extra", "by_label")}


class _Sums:
    """float64 running sums on one device; nothing per image is kept."""

    def __init__(self):
        self.values: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().to(torch.float64)
        v = v.sum(0) if v.ndim else v
        self.values[key] = self.values[key] + v.to(self.values[key].device) if key in self.values else v

    def get(self, key: str) -> torch.Tensor:
        return self.values[key].cpu()


class RelocationAccumulator:
    """Streams the batches of one ordered pair A -> B into float64 sums."""

    def __init__(self, source, target, linear_map: LinearMap, reverse_map: LinearMap | None = None,
                 lpips: Callable | None = None, lpips_note: str = ""):
        check_map_fits(linear_map, source, target)
        self.source, self.target, self.map = source, target, linear_map
        self.cycle_via = "fitted reverse map" if reverse_map is not None else "pseudo-inverse of the map"
        self.reverse = reverse_map if reverse_map is not None else linear_map.inverse()
        check_map_fits(self.reverse, target, source)
        self.lpips, self.lpips_note = lpips, lpips_note
        self.sums, self.n = _Sums(), 0
        self.label_sums: torch.Tensor | None = None  # [labels, 3]: count, target MSE sum, relocated MSE sum

    def update(self, x, z_a, x_a, z_b, x_b, labels=None) -> None:
        """x: images; z_a, x_a: A's encodings and reconstructions; z_b, x_b: B's; labels: optional, per image."""
        dev = self.target.device
        x_t = x.to(dev)
        z_mapped = self.map.transform(z_a.to(dev))
        x_mapped = self.target.decode(z_mapped)
        z_cycle = self.reverse.transform(self.target.encode(x_mapped).to(self.source.device))
        x_cycle = self.source.decode(z_cycle).to(dev)
        z_b = z_b.to(dev, torch.float64)
        s = self.sums
        s.add("source_mse", per_image_mse(x_a.to(dev), x_t))
        target_mse, relocated_mse = per_image_mse(x_b.to(dev), x_t), per_image_mse(x_mapped, x_t)
        s.add("target_mse", target_mse)
        s.add("relocated_mse", relocated_mse)
        if labels is not None:
            self._add_by_label(torch.as_tensor(labels), target_mse, relocated_mse)
        s.add("cycle_mse", per_image_mse(x_cycle, x_t))
        s.add("target_ssim", per_image_ssim(x_b.to(dev), x_t))
        s.add("relocated_ssim", per_image_ssim(x_mapped, x_t))
        s.add("latent_sse", (z_mapped.to(torch.float64) - z_b).pow(2))  # per dimension
        s.add("z_b_sum", z_b)
        s.add("z_b_sq", z_b.pow(2))
        if self.lpips is not None:
            s.add("target_lpips", self.lpips(x_b.to(dev), x_t))
            s.add("relocated_lpips", self.lpips(x_mapped, x_t))
        self.n += len(x)

    def _add_by_label(self, labels: torch.Tensor, target_mse: torch.Tensor, relocated_mse: torch.Tensor) -> None:
        labels = labels.to(target_mse.device, torch.int64)
        if len(labels) != len(target_mse) or bool((labels < 0).any()):
            raise ConfigError("labels must be one non-negative integer per image")
        old = self.label_sums
        k = max(int(labels.max()) + 1, 0 if old is None else len(old))  # labels seen so far, or in this batch
        sums = torch.stack([torch.bincount(labels, minlength=k).to(torch.float64),
                            torch.bincount(labels, target_mse.to(torch.float64), minlength=k),
                            torch.bincount(labels, relocated_mse.to(torch.float64), minlength=k)], dim=1).cpu()
        if old is not None:
            sums[:len(old)] += old
        self.label_sums = sums

    def _by_label(self, label_name: Callable[[int], str]) -> list[dict]:
        if self.label_sums is None:
            return []
        rows = []
        for label, (count, target, relocated) in enumerate(self.label_sums.tolist()):
            if count:
                rows.append({"label": label, "name": label_name(label), "n_images": int(count),
                             "target_mse": target / count, "relocated_mse": relocated / count,
                             "ratio": _ratio(relocated, target)})
        return rows

    def result(self, extra: dict | None = None, label_name: Callable[[int], str] = str) -> RelocationResult:
        if self.n == 0:
            raise ConfigError(f"no images were evaluated for the pair {self.source.name} -> {self.target.name}")
        s, n = self.sums, self.n
        mean = {k: float(s.get(k)) / n for k in ("source_mse", "target_mse", "relocated_mse", "cycle_mse",
                                                 "target_ssim", "relocated_ssim")}
        sse = s.get("latent_sse")
        sst = s.get("z_b_sq") - s.get("z_b_sum").pow(2) / n
        r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300),
                         torch.where(sse == 0, torch.ones_like(sse), torch.zeros_like(sse)))
        lp = {k: float(s.get(k)) / n for k in ("target_lpips", "relocated_lpips")} if self.lpips else {}
        kind = relocation_type(self.source, self.target)
        return RelocationResult(
            source=self.source.name, target=self.target.name, source_kind=self.source.kind,
            target_kind=self.target.kind, type=kind, type_name=RELOCATION_TYPES[kind], n_images=n,
            source_mse=mean["source_mse"], target_mse=mean["target_mse"], relocated_mse=mean["relocated_mse"],
            ratio=_ratio(mean["relocated_mse"], mean["target_mse"]),
            latent_mse=float(sse.sum()) / (n * len(sse)), latent_r2=float(r2.mean()),
            target_ssim=mean["target_ssim"], relocated_ssim=mean["relocated_ssim"],
            cycle_mse=mean["cycle_mse"], cycle_ratio=_ratio(mean["cycle_mse"], mean["source_mse"]),
            cycle_via=self.cycle_via, target_lpips=lp.get("target_lpips"),
            relocated_lpips=lp.get("relocated_lpips"), lpips_note=self.lpips_note,
            by_label=self._by_label(label_name), extra=dict(extra or {}))


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 1.0 if a == 0 else float("inf")


def evaluate_relocation(source, target, linear_map: LinearMap, data, *, reverse_map: LinearMap | None = None,
                        batch_size: int = 256, use_lpips: bool = True, progress: bool = False) -> RelocationResult:
    """Relocation metrics of A -> B on ``data`` (ImageDataset or image tensor), batched on the devices."""
    _check_same_images(source, target)
    lpips, note = lpips_function(target.device) if use_lpips else (None, "LPIPS not requested")
    acc = RelocationAccumulator(source, target, linear_map, reverse_map, lpips, note)
    batches, total = image_batches(data, batch_size)
    labels = label_batches(data, batch_size)
    for x in with_progress(batches, f"{source.name} -> {target.name}", progress, total):
        z_a, z_b = source.encode(x), target.encode(x)
        acc.update(x, z_a, source.decode(z_a), z_b, target.decode(z_b), labels=next(labels))
    return acc.result(label_name=_label_namer(data))


def label_batches(data, batch_size: int) -> Iterator:
    """The labels of each batch that ``image_batches(data, batch_size)`` yields; None when unlabelled."""
    labels = getattr(data, "labels", None)
    if labels is None:
        return itertools.repeat(None)
    return (labels[s:s + batch_size] for s in range(0, len(labels), batch_size))


def _label_namer(data) -> Callable[[int], str]:
    return data.label_name if hasattr(data, "label_name") else str


def relocation_rows(source, target, linear_map: LinearMap, images: torch.Tensor) -> list[torch.Tensor]:
    """Grid rows as in the source texts' figures: original / A's reconstruction / B after mapping / B's own."""
    check_map_fits(linear_map, source, target)
    z_a = source.encode(images)
    mapped = target.decode(linear_map.transform(z_a.to(target.device)))
    return [images.cpu(), source.decode(z_a).cpu(), mapped.cpu(), target.reconstruct(images).cpu()]


def grid_indices(n_total: int, n: int = GRID_IMAGES) -> np.ndarray:
    return evenly_spaced_indices(n_total, n)


# --------------------------------------------------------------------------- atlas

@dataclass
class AtlasResult:
    results: list[RelocationResult]
    models: list[dict]
    fit_source: dict
    out: Path | None = None
    maps: dict = field(default_factory=dict, repr=False)  # (source name, target name) -> LinearMap

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


def _pair_name(a: str, b: str) -> str:
    return f"{a}__{b}"


def fit_all_pairs(models, fit_data=None, *, samples: int | None = None, bias: bool = True, alpha: float | str = 0.0,
                  method: str = "lstsq", batch_size: int = 256, seed: int = 0) -> dict[tuple[int, int], LinearMap]:
    """One LinearMap per ordered pair, encoding every fit batch once per model."""
    pairs = [(i, j) for i, j in itertools.permutations(range(len(models)), 2)]
    maps = {p: LinearMap(bias=bias, alpha=alpha, method=method) for p in pairs}
    if samples is not None:  # each source's own samples, re-encoded by every target
        for i, source in enumerate(models):
            targets = [j for j in range(len(models)) if j != i]
            gen = torch.Generator().manual_seed(seed)
            for start in range(0, samples, batch_size):
                z = source.sample_prior(min(batch_size, samples - start), gen)
                images = source.decode(z)
                for j in targets:
                    maps[(i, j)].partial_fit(z, models[j].encode(images).to(z.device), solve=False)
    else:
        for x in image_batches(fit_data, batch_size)[0]:
            latents = [m.encode(x) for m in models]  # statistics stay on each source model's device
            for i, j in pairs:
                maps[(i, j)].partial_fit(latents[i], latents[j], solve=False)
    for (i, j), m in maps.items():
        try:
            m.solve()
        except LatentmapError as exc:  # name the pair; keep the error's class for the CLI's policy
            exc.args = (f"map {models[i].name} -> {models[j].name}: {exc}",) + exc.args[1:]
            raise
    return maps


def build_atlas(models, test_data, *, fit_data=None, samples: int | None = None, fit_source: dict | None = None,
                bias: bool = True, alpha: float | str = 0.0, method: str = "lstsq", batch_size: int = 256,
                seed: int = 0, out=None, use_lpips: bool = True, grid_count: int = GRID_IMAGES,
                model_paths: dict | None = None, progress: bool = False) -> AtlasResult:
    """Fit and evaluate every ordered pair of ``models``; write the report folder when ``out`` is given."""
    if len(models) < 2:
        raise ConfigError(f"an atlas needs at least 2 models, got {len(models)}")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct for the atlas, got {names}")
    for m in models[1:]:
        _check_same_images(models[0], m)
    maps = fit_all_pairs(models, fit_data, samples=samples, bias=bias, alpha=alpha, method=method,
                         batch_size=batch_size, seed=seed)
    lpips, note = lpips_function(models[0].device) if use_lpips else (None, "LPIPS not requested")
    accs = {(i, j): RelocationAccumulator(models[i], models[j], m, maps[(j, i)], lpips, note)
            for (i, j), m in maps.items()}
    batches, total = image_batches(test_data, batch_size)
    labels = label_batches(test_data, batch_size)
    for x in with_progress(batches, "atlas", progress, total):
        enc = [m.encode(x) for m in models]
        rec = [m.decode(z) for m, z in zip(models, enc)]
        batch_labels = next(labels)
        for (i, j), acc in accs.items():
            acc.update(x, enc[i], rec[i], enc[j], rec[j], labels=batch_labels)
    fit_info = dict(fit_source or {})
    results = [accs[p].result({"fit_metrics": maps[p].fit_metrics_}, _label_namer(test_data)) for p in accs]
    results.sort(key=lambda r: (r.type, r.source, r.target))
    atlas = AtlasResult(results, [model_info(m, (model_paths or {}).get(m.name)) for m in models], fit_info,
                        maps={(models[i].name, models[j].name): m for (i, j), m in maps.items()})
    if out is not None:
        with atomic_directory(out) as tmp:
            write_atlas(atlas, tmp, models, test_data, grid_count)
        atlas.out = Path(out)
    return atlas


def write_atlas(atlas: AtlasResult, folder: Path, models, test_data, grid_count: int = GRID_IMAGES,
                rel: str = "", title: str = "Relocation atlas"):
    """CSV, JSON, ratio matrix (CSV + PNG), one grid and one map folder per pair into ``folder``.

    Returns the HTML section (image links prefixed by ``rel``); with ``rel == ""`` also writes
    ``index.html``, so ``folder`` is a standalone report.
    """
    from latentmap.report.grid import grid_png
    from latentmap.report.html import Section, render_page

    folder = Path(folder)
    (folder / "grids").mkdir(parents=True, exist_ok=True)
    frame = atlas.frame()
    frame.to_csv(folder / "atlas.csv", index=False)
    by_label = atlas.by_label_frame()
    if len(by_label):
        by_label.to_csv(folder / "atlas_by_label.csv", index=False)
    matrix = atlas.ratio_matrix()
    matrix.to_csv(folder / "ratio_matrix.csv")
    (folder / "atlas.json").write_text(json.dumps(
        {"models": atlas.models, "fit_source": atlas.fit_source,
         "results": [r.to_dict() for r in atlas.results]}, indent=2, default=json_default) + "\n")
    types = {(r.source, r.target): r.type for r in atlas.results}
    (folder / "ratio_matrix.png").write_bytes(ratio_matrix_png(matrix, types))
    idx = grid_indices(len(test_data), grid_count)
    images = test_data.batch(idx) if hasattr(test_data, "batch") else test_data[torch.as_tensor(idx)]
    by_name = {m.name: k for k, m in enumerate(models)}
    grids = []
    for r in atlas.results:
        i, j = by_name[r.source], by_name[r.target]
        name = _pair_name(r.source, r.target)
        pair_map = atlas.maps[(r.source, r.target)]
        (folder / "grids" / f"{name}.png").write_bytes(grid_png(relocation_rows(models[i], models[j],
                                                                                 pair_map, images)))
        pair_map.save(folder / "maps" / name, source=atlas.models[i], target=atlas.models[j],
                      fit_source=atlas.fit_source)
        grids.append((r, f"{rel}grids/{name}.png"))
    section = Section(title)
    section.text(f"Every ordered pair A -> B: a linear map fitted on {_describe_fit(atlas.fit_source)}, "
                 f"evaluated on {atlas.results[0].n_images} images. ratio = MSE of Dec_B(M(Enc_A x)) against x, "
                 "divided by B's own reconstruction MSE (1 = nothing lost by relocating).")
    section.image(f"{rel}ratio_matrix.png", "relocated-MSE ratio, rows source A, columns target B; "
                                           "T1/T2/T3 = relocation type")
    cols = ["type", "source", "target", "source_mse", "target_mse", "relocated_mse", "ratio", "latent_r2",
            "relocated_ssim", "target_ssim", "cycle_mse", "cycle_ratio"]
    lp = frame["relocated_lpips"].notna().any()
    if lp:
        cols += ["relocated_lpips", "target_lpips"]
    for kind in sorted(frame["type"].unique()):
        section.parts.append(f"<h3>Type {kind}: {RELOCATION_TYPES[int(kind)]}</h3>")
        section.table(frame.loc[frame["type"] == kind, cols])
    if not lp:
        section.text(atlas.results[0].lpips_note + "; the LPIPS columns are omitted.", cls="note")
    section.parts.append(f'<p class="note">Files: <a href="{rel}atlas.csv">atlas.csv</a>, '
                         f'<a href="{rel}atlas.json">atlas.json</a>, <a href="{rel}ratio_matrix.csv">ratio_matrix.csv'
                         f'</a>' + (f', <a href="{rel}atlas_by_label.csv">atlas_by_label.csv</a> (ratio per label)'
                                    if len(by_label) else '') + f', maps in {rel}maps/.</p>')
    for r, src in grids:
        section.image(src, f"{r.source} -> {r.target} (type {r.type}, ratio {r.ratio:.3f}): originals, "
                           f"{r.source}'s reconstruction, {r.target} after mapping, {r.target}'s own reconstruction")
    if not rel:
        (folder / "index.html").write_text(render_page("latentmap relocation atlas", [section]))
    return section


def _describe_fit(fit: dict) -> str:
    kind = fit.get("kind", "?")
    if kind == "samples":
        return f"{fit.get('count')} prior samples of each source model"
    return f"{fit.get('count')} images of {kind} '{fit.get('name')}'"


def ratio_matrix_png(matrix, types: dict) -> bytes:
    """Heatmap of the ratio matrix, cells labelled with the ratio and the relocation type."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * n, 1.2 + 1.1 * n))
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(np.log2(np.where(np.isfinite(values), values, np.nan)), cmap="viridis_r", vmin=0, vmax=3)
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(n), matrix.index)
    ax.set_xlabel("target B")
    ax.set_ylabel("source A")
    for a in range(n):
        for b in range(n):
            if a == b or not np.isfinite(values[a, b]):
                continue
            t = types.get((matrix.index[a], matrix.columns[b]), "?")
            ax.text(b, a, f"{values[a, b]:.2f}\nT{t}", ha="center", va="center", fontsize=8,
                    color="white" if values[a, b] > 2.5 else "black")
    fig.colorbar(im, ax=ax, label="log2(relocated MSE / B's own MSE)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
