"""Sector coverage: does a generator put its images where the data are, sector by sector?

The support set's reference model and its most informative variables define the sectors. The
support set itself uses a threshold (0.61 for the shipped one) that leaves most images in no
sector, so coverage counts over the **sign orthants** of the same variables (threshold 0):
every image lands in exactly one of the 2^k sectors. Real test images and each generator's
images are encoded by the reference model; per sector we compare the share of real and of
generated images, test "generated equals real over sectors" with a G test (a chi-square test
of the 2 x sectors contingency table with the log-likelihood statistic, scipy), and flag the
sectors a generator never reaches, under-represents (generated share below half the real
share, where at least ``min_count`` real images lie) or over-represents (above twice the real
share, with at least ``min_count`` generated images). Each flagged sector comes with its
support-set image(s), real examples, and the generated images nearest to the sector's real images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.image_sets import EncodingCache
from latentmap.io.model_record import short_fingerprint
from latentmap.io.frames import FrameRepr, caption, records_frame
from latentmap.support.sectors import sector_signs

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.fidelity import FidelityResult
    from latentmap.evaluation.image_sets import GeneratedSet
    from latentmap.io.support_folder import SupportSet

MIN_COUNT = 20
UNDER, OVER = 0.5, 2.0  # flag below half / above twice the real share
EXAMPLES = 6
TV_RESAMPLES = 2000  # multinomial bootstrap resamples of the total-variation interval


@dataclass
class SectorSpace:
    """Sign orthants of ``variables`` of the reference model's latent space (threshold 0)."""

    reference: str
    variables: list[int]
    support_threshold: float | None = None

    @property
    def k(self) -> int:
        """How many variables: the sectors are the 2^k sign orthants."""
        return len(self.variables)

    @property
    def sectors(self) -> int:
        """How many sectors (2^k)."""
        return 2 ** self.k

    def codes(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Sector of every latent: bit j set when z[variables[j]] > 0 (z = 0 counts as minus)."""
        chosen = torch.as_tensor(latents)[:, list(self.variables)]
        weights = 2 ** torch.arange(chosen.shape[1], dtype=torch.int64)
        return ((chosen > 0).long() * weights).sum(dim=1).numpy()

    def description(self) -> str:
        """The sector rule in words, for reports."""
        text = (f"the {self.sectors} sign orthants of {self.reference}'s variables {list(self.variables)} "
                "(threshold 0: every image is in exactly one sector")
        if self.support_threshold:
            text += f"; the support set itself used threshold {self.support_threshold:.3g}, where most images " \
                    "lie in no sector"
        return text + ")"

    @classmethod
    def from_support_set(cls, support: SupportSet, reference_name: str | None = None) -> SectorSpace:
        """The sectors of a support set built with the sectors strategy: its variables, in the space of
        ``reference_name`` (default the model the manifest records)."""
        manifest = support.manifest
        variables = manifest.get("variables")
        if not variables:
            raise ConfigError(f"support set '{support.name}' records no sector variables (strategy "
                              f"'{manifest.get('strategy', '?')}'); coverage needs one built with --strategy sectors")
        name = reference_name or manifest.get("model", {}).get("name") or "reference"
        return cls(name, [int(v) for v in variables], manifest.get("threshold"))


def reference_model_spec(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> str:
    """How to load a support set's reference model: its recorded path if it exists (as given, or from the
    repository root beside ``support_sets/``), else its name (a shipped model)."""
    model = manifest.get("model", {})
    recorded = model.get("source")
    if recorded:
        for candidate in (Path(recorded), Path(folder).resolve().parent.parent / recorded):
            if candidate.exists():
                return str(candidate)
    if model.get("name"):
        return str(model["name"])
    raise ConfigError(f"support set '{folder}' does not record its reference model; pass one with --reference")


@dataclass
class GeneratorCoverage(FrameRepr):
    """One generator's coverage: its images per sector, the G test against the real images, the total variation
    distance and the flagged sectors (with examples)."""

    name: str
    source: str
    images: int
    counts: np.ndarray
    test: dict[str, Any]  # g_test's record
    never_reached: list[int]  # sectors with real images and no generated one
    unreached: int  # sectors without any generated image
    under: list[int]
    over: list[int]
    tv_distance: float  # half the L1 distance between the generated and real shares
    tv_low: float = float("nan")  # its 95% bootstrap interval (total_variation_interval)
    tv_high: float = float("nan")
    # sector -> {"support": [...], "real": [...], "generated": [...]} (positions)
    examples: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    # sector -> same keys, image tensors (None: no support image)
    example_images: dict[int, dict[str, torch.Tensor | None]] = field(default_factory=dict, repr=False)
    record: dict[str, Any] | None = None  # the generator model's record (latentmap.io.model_record); None for files

    def summary(self) -> dict[str, Any]:
        """The scalar results: G test, TV distance and its interval, and how many sectors are flagged."""
        return {"generator": self.name, "source": self.source, "fingerprint": short_fingerprint(self.record or {}),
                "images": self.images,
                "test": self.test["test"], "statistic": self.test["statistic"], "dof": self.test["dof"],
                "p_value": self.test["p_value"], "tv_distance": self.tv_distance, "tv_low": self.tv_low,
                "tv_high": self.tv_high,
                "never_reached": len(self.never_reached), "unreached": self.unreached,
                "under_represented": len(self.under), "over_represented": len(self.over)}

    def to_dict(self) -> dict[str, Any]:
        """The summary with the model's record, the counts, the flagged sectors and their examples (JSON-like)."""
        return {**self.summary(), "record": self.record, "counts": self.counts.tolist(), "never_reached_sectors": self.never_reached,
                "under_sectors": self.under, "over_sectors": self.over,
                "examples": {str(s): v for s, v in self.examples.items()}}

    _one_row = True  # a notebook shows the summary one field per line

    def to_frame(self) -> pd.DataFrame:
        """The generator's summary (:meth:`summary`) as a one-row frame."""
        return records_frame([self.summary()])

    def _frame_caption(self) -> str:
        return caption(f"Sector coverage of {self.name} ({self.images} images)", [self.name])


@dataclass
class CoverageResult(FrameRepr):
    """Sector coverage of each generator against real images (:func:`sector_coverage`, ``benchmark_coverage``).

    ``to_frame()`` gives one row per generator, ``to_frame(by="sector")`` one row per sector and generator."""

    space: SectorSpace
    real_source: str
    real_counts: np.ndarray
    min_count: int
    support_codes: np.ndarray
    generators: list[GeneratorCoverage]
    fidelity: FidelityResult | None = None  # fidelity and diversity from the same encodings
    sector_labels: list[str] | None = None  # per sector, the most common label of its real images ("Sneaker (58%)")
    label_counts: np.ndarray | None = None  # [sectors, labels]: real images of each label in each sector
    label_names: list[str] | None = None  # label k's name

    @property
    def real_images(self) -> int:
        """How many real images were placed in the sectors."""
        return int(self.real_counts.sum())

    def summary_frame(self) -> pd.DataFrame:
        """One row per generator: :meth:`GeneratorCoverage.summary`."""
        import pandas as pd

        return pd.DataFrame([g.summary() for g in self.generators])

    def sector_frame(self) -> pd.DataFrame:
        """One row per sector and generator: counts, shares, ratio and the flag."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        real_share = self.real_counts / max(self.real_images, 1)
        for g in self.generators:
            gen_share = g.counts / max(g.images, 1)
            for s in range(self.space.sectors):
                flag = ("never reached" if s in g.never_reached else "under" if s in g.under
                        else "over" if s in g.over else "")
                rows.append({"generator": g.name, "sector": s, "signs": sector_signs(s, self.space.k),
                             "real_majority": self.sector_labels[s] if self.sector_labels else "",
                             "support_images": int((self.support_codes == s).sum()),
                             "real_count": int(self.real_counts[s]), "real_share": float(real_share[s]),
                             "generated_count": int(g.counts[s]), "generated_share": float(gen_share[s]),
                             "share_ratio": float(gen_share[s] / real_share[s]) if real_share[s] > 0 else None,
                             "flag": flag})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """The sectors, the real counts, every generator's :meth:`GeneratorCoverage.to_dict` and the fidelity."""
        return {"reference": self.space.reference, "variables": self.space.variables,
                "sectors": self.space.sectors, "sector_rule": self.space.description(),
                "real_source": self.real_source, "real_images": self.real_images,
                "real_counts": self.real_counts.tolist(), "min_count": self.min_count,
                "support_codes": self.support_codes.tolist(), "sector_labels": self.sector_labels,
                "label_counts": None if self.label_counts is None else self.label_counts.tolist(),
                "label_names": self.label_names,
                "generators": [g.to_dict() for g in self.generators],
                "fidelity": None if self.fidelity is None else self.fidelity.to_dict()}

    def to_frame(self, by: str = "generator") -> pd.DataFrame:
        """``by="generator"``: one row per generator (G test, TV distance, flagged sectors; :meth:`summary_frame`);
        ``by="sector"``: one row per sector and generator (:meth:`sector_frame`)."""
        if by == "sector":
            return self.sector_frame()
        if by != "generator":
            raise ConfigError(f"by must be 'generator' or 'sector', got {by!r} instead")
        return records_frame((g.summary() for g in self.generators),
                             None if self.generators else ["generator", "source", "images"])

    def _frame_caption(self) -> str:
        return caption(f"Sector coverage over {self.space.sectors} sectors of {self.space.reference}'s variables "
                       f"{list(self.space.variables)}, against {self.real_images} {self.real_source}",
                       [self.space.reference, *(g.name for g in self.generators)])


def g_test(real_counts: np.ndarray, generated_counts: np.ndarray) -> dict[str, Any]:
    """G test of homogeneity (real vs generated) over the sectors either set reaches."""
    from scipy.stats import chi2_contingency

    used = (real_counts + generated_counts) > 0
    if used.sum() < 2:
        return {"test": "G test", "statistic": 0.0, "dof": 0, "p_value": 1.0, "sectors_tested": int(used.sum())}
    table = np.stack([real_counts[used], generated_counts[used]])
    statistic, p_value, dof, _ = chi2_contingency(table, correction=False, lambda_="log-likelihood")
    return {"test": "G test", "statistic": float(statistic), "dof": int(dof), "p_value": float(p_value),
            "sectors_tested": int(used.sum())}


def total_variation(real_counts: ArrayLike, generated_counts: ArrayLike) -> float:
    """Total variation distance between the real and generated shares over the sectors: ½ Σ |p_gen − p_real|."""
    real_counts, generated_counts = np.asarray(real_counts), np.asarray(generated_counts)
    real_share = real_counts / max(real_counts.sum(), 1)
    gen_share = generated_counts / max(generated_counts.sum(), 1)
    return 0.5 * float(np.abs(gen_share - real_share).sum())


def total_variation_interval(real_counts: ArrayLike, generated_counts: ArrayLike, *, resamples: int = TV_RESAMPLES, seed: int = 0,
                             level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`total_variation`: both sets' images resampled with replacement
    (a multinomial draw of each set's size from its sector shares), seeded, float64.

    Sampling noise alone makes the statistic positive, so near that floor (two sets from one distribution: the
    calibration) the resampled values all lie above the estimate and the percentile interval misses it; such an
    interval says nothing about the distance and (nan, nan) is returned instead."""
    real_counts, generated_counts = np.asarray(real_counts), np.asarray(generated_counts)
    if real_counts.sum() < 1 or generated_counts.sum() < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    real = rng.multinomial(int(real_counts.sum()), real_counts / real_counts.sum(), size=resamples)
    gen = rng.multinomial(int(generated_counts.sum()), generated_counts / generated_counts.sum(), size=resamples)
    tv = 0.5 * np.abs(gen / generated_counts.sum() - real / real_counts.sum()).sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(tv, [tail, 1 - tail])
    estimate = total_variation(real_counts, generated_counts)
    if not low <= estimate <= high:
        return float("nan"), float("nan")
    return float(low), float(high)


def flag_sectors(real_counts: ArrayLike, generated_counts: ArrayLike, min_count: int = MIN_COUNT
                 ) -> tuple[list[int], list[int], list[int]]:
    """(never reached, under-represented, over-represented) sectors; never-reached ones are also under."""
    real_counts, generated_counts = np.asarray(real_counts), np.asarray(generated_counts)
    real_share = real_counts / max(real_counts.sum(), 1)
    gen_share = generated_counts / max(generated_counts.sum(), 1)
    never = [int(s) for s in np.flatnonzero((real_counts > 0) & (generated_counts == 0))]
    under = [int(s) for s in np.flatnonzero((real_counts >= min_count) & (gen_share < UNDER * real_share))]
    over = [int(s) for s in np.flatnonzero((generated_counts >= min_count) & (gen_share > OVER * real_share))]
    return never, under, over


def _examples(sector: int, space: SectorSpace, real_codes: np.ndarray, real_latents: torch.Tensor,
              gen_codes: np.ndarray, gen_latents: torch.Tensor, support_codes: np.ndarray, n: int
              ) -> dict[str, list[int]]:
    real_pos = np.flatnonzero(real_codes == sector)
    centre_from = real_latents[real_pos] if len(real_pos) else gen_latents[np.flatnonzero(gen_codes == sector)]
    nearest: list[int] = []
    if len(centre_from) and len(gen_latents):
        centre = centre_from.double().mean(0, keepdim=True)
        dist = torch.cdist(centre, gen_latents.double())[0]
        nearest = torch.argsort(dist, stable=True)[:n].tolist()
    return {"support": [int(i) for i in np.flatnonzero(support_codes == sector)],
            "real": [int(i) for i in real_pos[:n]], "generated": [int(i) for i in nearest]}


def sector_coverage(space: SectorSpace, cache: EncodingCache, real: ImageDataset | torch.Tensor,
                    generated: Sequence[GeneratedSet], support_images: torch.Tensor | None = None, *,
                    real_source: str = "real images", min_count: int = MIN_COUNT,
                    examples: int = EXAMPLES) -> CoverageResult:
    """Coverage of ``generated`` (GeneratedSet list) against ``real`` images (tensor or dataset), sector by sector."""
    if min_count < 1:
        raise ConfigError(f"min_count must be at least 1, got {min_count} instead")
    if not generated:
        raise ConfigError("coverage needs at least one generator or image set")
    if max(space.variables) >= cache.reference.latent_dim:
        raise ConfigError(f"the sector variables {space.variables} do not fit reference model "
                          f"'{cache.reference.name}' (latent size {cache.reference.latent_dim})")
    real_latents = cache.encode("real", real)
    real_codes = space.codes(real_latents)
    real_counts = np.bincount(real_codes, minlength=space.sectors)
    support_codes = np.empty(0, dtype=np.int64)
    if support_images is not None:
        support_codes = space.codes(cache.encode("support", support_images))
    results: list[GeneratorCoverage] = []
    for gen in generated:
        gen_latents = cache.encode(f"generated:{gen.name}", gen.images)
        gen_codes = space.codes(gen_latents)
        counts = np.bincount(gen_codes, minlength=space.sectors)
        never, under, over = flag_sectors(real_counts, counts, min_count)
        tv = total_variation(real_counts, counts)
        result = GeneratorCoverage(gen.name, gen.source, len(gen), counts, g_test(real_counts, counts), never,
                                   int((counts == 0).sum()), under, over, tv,
                                   *total_variation_interval(real_counts, counts), record=gen.record)
        for sector in sorted(set(never) | set(under) | set(over)):
            ex = _examples(sector, space, real_codes, real_latents, gen_codes, gen_latents, support_codes, examples)
            result.examples[sector] = ex
            result.example_images[sector] = {
                "support": support_images[ex["support"][:1]] if support_images is not None and ex["support"] else None,
                "real": _take(real, ex["real"]), "generated": gen.images[ex["generated"]]}
        results.append(result)
    label_counts, label_names = sector_label_counts(real, real_codes, space.sectors)
    return CoverageResult(space, real_source, real_counts, min_count, support_codes, results,
                          sector_labels=sector_labels(real, real_codes, space.sectors), label_counts=label_counts,
                          label_names=label_names)


def sector_label_counts(real: object, codes: np.ndarray, sectors: int) -> tuple[np.ndarray | None, list[str] | None]:
    """([sectors, labels] counts of the real images of each label in each sector, the labels' names); (None, None)
    for unlabelled images."""
    labels = getattr(real, "labels", None)
    if labels is None:
        return None, None
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.zeros((sectors, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(codes), labels), 1)
    name = getattr(real, "label_name", str)
    return counts, [str(name(k)) for k in range(classes)]


def sector_labels(real: object, codes: np.ndarray, sectors: int) -> list[str] | None:
    """Per sector, the most common label among its real images and its share ("Sneaker (58%)"); None unlabelled."""
    labels = getattr(real, "labels", None)
    if labels is None:
        return None
    labels, name = np.asarray(labels), getattr(real, "label_name", str)
    out: list[str] = []
    for s in range(sectors):
        inside = labels[codes == s]
        if not len(inside):
            out.append("")
            continue
        values, counts = np.unique(inside, return_counts=True)
        top = int(np.argmax(counts))
        out.append(f"{name(int(values[top]))} ({counts[top] / len(inside):.0%})")
    return out


def _take(images: ImageDataset | torch.Tensor, positions: list[int]) -> torch.Tensor:
    if isinstance(images, torch.Tensor) or not hasattr(images, "batch"):
        return torch.as_tensor(images)[list(positions)]
    return images.batch(positions) if len(positions) else torch.empty(0, *images.image_shape)
