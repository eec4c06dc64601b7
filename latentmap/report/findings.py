"""A report's findings in a few sentences with numbers, computed from the numbers it saves.

Each function takes the JSON a report writes beside its HTML (``summary.json`` of the demo,
``atlas.json``, the anchor comparison's ``summary.json``, ``relocation.json``,
``diagnostics.json``), so the page's opening sentences and the reports index
(:mod:`latentmap.report.index`) say the same thing, and the index can summarize a report long
after it was written. Missing parts are skipped, never guessed.
"""

from __future__ import annotations

from typing import Any

from latentmap.report.tables import sig

# the paper whose method and figures latentmap reproduces; findings quote its numbers as "the paper's"
PAPER = "Asperti & Tonelli 2023, Comparing the latent space of generative models"
TYPE_NAMES = {1: "Type 1 (same architecture, different training)",
              2: "Type 2 (same objective, different family or architecture)", 3: "Type 3 (different objectives)"}


def count(n: Any) -> str:
    """A count with thousands separators (10,000); as it is if it is not a number."""
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return str(n)


def _range_sentence(pairs: list[dict], key: str = "ratio") -> list[str]:
    """Per relocation type: the best and worst pair by ``key``."""
    out = []
    for kind in sorted({int(p["type"]) for p in pairs if p.get("type") is not None}):
        rows = [p for p in pairs if int(p.get("type", 0)) == kind and p.get(key) is not None]
        if not rows:
            continue
        best, worst = min(rows, key=lambda p: p[key]), max(rows, key=lambda p: p[key])
        if sig(best[key]) == sig(worst[key]):  # one value as printed: said once, with every pair that has it
            name = TYPE_NAMES.get(kind, f"Type {kind}")
            pairs_text = ", ".join(f"{p['source']} → {p['target']}" for p in rows)
            out.append(f"{name}: {sig(best[key])} ({pairs_text})")
        else:
            out.append(f"{TYPE_NAMES.get(kind, f'Type {kind}')} from {sig(best[key])} ({best['source']} → "
                       f"{best['target']}) to {sig(worst[key])} ({worst['source']} → {worst['target']})")
    return out


def relocation_ratio_findings(pairs: list[dict], fit: str) -> str:
    """"Relocation ratio (relocated MSE / B's own), maps fitted on ...: Type 1 from a (x → y) to b ..."."""
    parts = _range_sentence(pairs)
    if not parts:
        return ""
    return f"Relocation ratio (relocated MSE / B's own; 1 = nothing lost), {fit}: " + "; ".join(parts) + "."


def describe_fit(fit: dict | None) -> str:
    """How the maps were fitted, in words, from a report's ``fit`` record (kind, count, split)."""
    fit = fit or {}
    if fit.get("kind") == "samples":
        return f"maps fitted on {count(fit.get('count'))} prior samples"
    if fit.get("kind") == "support-set":
        return f"bias-free maps fitted on the {fit.get('count')}-image support set"
    if fit.get("count"):
        return f"maps fitted on {count(fit.get('count'))} {fit.get('split', '') or ''} images".replace("  ", " ")
    return "fitted maps"


def demo_findings(summary: dict) -> list[str]:
    """The demo report's opening sentences, from its ``summary.json``."""
    out = []
    recon = summary.get("reconstruction") or []
    if recon:
        best = min(recon, key=lambda r: r["test_mse"])
        worst = max(recon, key=lambda r: r["test_mse"])
        out.append(f"{len(recon)} models reconstruct the {count(recon[0].get('test_images'))} test images at "
                   f"MSE {sig(best['test_mse'])} ({best['model']}) to {sig(worst['test_mse'])} ({worst['model']}).")
    gaps = [(g["model"], g["inverter_mse_own_samples"], g["inverter_mse_real_test"])
            for g in summary.get("generators") or [] if g.get("inverter_mse_own_samples") and
            g.get("inverter_mse_real_test")]
    if gaps:
        out.append("Inverters reproduce their generator's own samples far better than real test images (MSE own vs "
                   "real): " + ", ".join(f"{m} {sig(own)} vs {sig(real)}, {sig(real / own)} times worse"
                                         for m, own, real in gaps) + ".")
    out.extend(expressiveness_findings(summary.get("expressiveness") or []))
    atlas = summary.get("relocation_atlas") or {}
    for part in (atlas, summary.get("relocation_atlas_support_set") or {}):
        if part.get("pairs"):
            out.append(relocation_ratio_findings(part["pairs"], describe_fit(part.get("fit"))))
            out.extend(ratio_below_one_findings(part["pairs"]))
            out.extend(negative_r2_findings(part["pairs"]))
    s = summary.get("support_set") or {}
    if s.get("support_pairwise_mse") is not None and s.get("dataset_random_pairs_mse") is not None:
        out.append(f"The {s.get('size')}-image support set is spread wider than the data: mean pairwise MSE "
                   f"{sig(s['support_pairwise_mse'])} against {sig(s['dataset_random_pairs_mse'])} for random pairs "
                   "(the paper's, on CelebA: 0.183 against 0.116).")
    out.extend(diagnostics_demo_findings(summary.get("diagnostics") or []))
    return [s for s in out if s]


def expressiveness_findings(rows: list[dict]) -> list[str]:
    """From the expressiveness leaderboard rows: the support-set / own-sample ratio of each model."""
    rows = [r for r in rows if r.get("support_over_own") is not None]
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: -r["support_over_own"])
    parts = [f"{r['model']} {sig(r['support_over_own'])}"
             + (f" ({sig(r['support_over_own_low'])}–{sig(r['support_over_own_high'])})"
                if r.get("support_over_own_low") is not None else "") for r in rows]
    return ["Support-set images reconstruct worse than each model's own samples (encoder MSE ratio, 95% interval): "
            + ", ".join(parts) + f" (the paper's StyleGAN on CelebA: 9.7; {PAPER})."]


def diagnostics_demo_findings(rows: list[dict]) -> list[str]:
    """The demo's diagnostics sentences, from one row per model (inactive variables, encodings beyond the prior's
    99% radius, the interpolation paths' midpoint radius)."""
    out = []
    vae = [r for r in rows if r.get("inactive_variables") is not None]
    if vae:
        out.append("Inactive latent variables: " + ", ".join(
            f"{r['model']} {r['inactive_variables']} of {r['latent_dim']}" for r in vae) + ".")
    outside = [r for r in rows if r.get("outside_prior_99") is not None]
    if outside:
        out.append("Encodings beyond the radius holding 99% of the model's own prior samples: " + ", ".join(
            f"{r['model']} {r['outside_prior_99']:.0%}" for r in outside) + ".")
    paths = [r["interpolation"] for r in rows if r.get("interpolation")]
    if paths:
        mids = [p["linear_midpoint_radius"] for p in paths]
        out.append(f"Linear interpolation paths between test encodings dip to {sig(min(mids))}–{sig(max(mids))} of "
                   "the prior's typical radius at their midpoint; spherical paths stay at "
                   f"{sig(min(p['spherical_midpoint_radius'] for p in paths))}–"
                   f"{sig(max(p['spherical_midpoint_radius'] for p in paths))}.")
        carried = [p for p in paths if p.get("linear_carried_mse") is not None]
        if carried:
            best = min(carried, key=lambda p: p["linear_carried_mse"])
            worst = max(carried, key=lambda p: p["linear_carried_mse"])
            out.append(f"Carried through a fitted map, a linear path decodes in the other model at MSE "
                       f"{sig(best['linear_carried_mse'])} ({best['model']} → {best['partner']}) to "
                       f"{sig(worst['linear_carried_mse'])} ({worst['model']} → {worst['partner']}) from the "
                       "model's own path.")
    return out


def atlas_findings(atlas: dict) -> list[str]:
    """From ``atlas.json``: the ratio range by type, and the best and worst pair overall."""
    results = [r for r in atlas.get("results") or [] if r.get("ratio") is not None]
    primary = {r.get("estimator") for r in results}
    if len(primary) > 1:  # several estimators: the first one listed is the matrix's
        first = results[0].get("estimator")
        results = [r for r in results if r.get("estimator") == first]
    if not results:
        return []
    out = [relocation_ratio_findings(results, describe_fit(atlas.get("fit_source")))]
    out.extend(useless_target_findings(results))
    out.extend(ratio_below_one_findings(results))
    r2 = [r["latent_r2"] for r in results if r.get("latent_r2") is not None]
    if r2:
        out.append(f"Latent R² of the maps: {sig(min(r2))} to {sig(max(r2))}; {len(results)} ordered pairs of "
                   f"{len(atlas.get('models') or [])} models, judged on {count(results[0].get('n_images'))} "
                   "images.")
    out.extend(negative_r2_findings(results))
    return out


def ratio_below_one_findings(pairs: list[dict]) -> list[str]:
    """One sentence on the pairs whose ratio is below 1 (none: nothing)."""
    below = sorted((p for p in pairs if p.get("ratio") is not None and p["ratio"] < 1 and not _useless(p)),
                   key=lambda p: p["ratio"])  # below 1 against a useless target says nothing: warned apart
    if not below:
        return []
    return ["A ratio below 1 (" + ", ".join(f"{p['source']} → {p['target']} {sig(p['ratio'])}" for p in below)
            + ") means the relocated images are closer to the originals, on average, than B's own reconstructions: "
            "A's encoding, mapped, finds a better latent for B's decoder than B's own encoder or inverter does."]


def _useless(p: dict) -> bool:
    """Whether the pair's target reconstructs no better than the mean image of the evaluated images."""
    return (p.get("mean_image_mse") is not None and p.get("target_mse") is not None
            and p["target_mse"] >= p["mean_image_mse"])


def useless_target_findings(pairs: list[dict]) -> list[str]:
    """A warning for each target B that reconstructs no better than the evaluated images' mean image (B's own
    MSE at or above the MSE of that constant guess), naming the ratios into B that therefore mean nothing."""
    out = []
    for target in dict.fromkeys(p["target"] for p in pairs):
        flagged = [p for p in pairs if p["target"] == target and _useless(p)]
        if not flagged:
            continue
        first = flagged[0]
        ratios = ", ".join(f"{p['source']} → {target} ({sig(p.get('ratio'))})" for p in flagged)
        out.append(f"Warning: {target}'s own reconstruction MSE {sig(first['target_mse'])} is no better than the "
                   f"{sig(first['mean_image_mse'])} of drawing every image as the images' mean image, so {target} "
                   f"reconstructs nothing of these images, and " + (
                       f"the ratios {ratios} compare against a useless baseline: they say nothing about the maps."
                       if len(flagged) > 1 else
                       f"the ratio {ratios} compares against a useless baseline: it says nothing about the map."))
    return out


def negative_r2_findings(pairs: list[dict]) -> list[str]:
    """One sentence on the maps whose latent R² is negative (none: nothing)."""
    negative = sorted((p for p in pairs if p.get("latent_r2") is not None and p["latent_r2"] < 0),
                      key=lambda p: p["latent_r2"])
    if not negative:
        return []
    return ["A negative latent R² (" + ", ".join(f"{p['source']} → {p['target']} {sig(p['latent_r2'])}"
                                                   for p in negative)
            + ") means the map predicts B's latents of the test images worse than the constant guess of their mean."]


def anchors_findings(data: dict) -> list[str]:
    """From the anchor comparison's ``summary.json``: the best strategy per size, sectors against random."""
    rows = data.get("summary") or []
    if not rows:
        return []
    out, sizes = [], sorted({r["size"] for r in rows})
    best = []
    for size in sizes:
        at = [r for r in rows if r["size"] == size]
        top = min(at, key=lambda r: r["relocated_mse"])
        best.append(f"{size}: {top['strategy']} ({sig(top['relocated_mse'])})")
    out.append("Lowest mean relocated MSE per number of anchors: " + ", ".join(best) + ".")
    sectors = {r["size"]: r.get("vs_random") for r in rows if r["strategy"] == "sectors"}
    if sectors and all(v is not None for v in sectors.values()):
        out.append("Sector anchors against random ones (relocated MSE ratio, below 1 is better): "
                   + ", ".join(f"{sig(v)} at {k}" for k, v in sorted(sectors.items())) + ".")
    ref = data.get("reference") or []
    if ref:
        mean = sum(r["relocated_mse"] for r in ref) / len(ref)
        own = sum(r["target_reconstruction_mse"] for r in ref) / len(ref)
        out.append(f"Maps fitted on {count(ref[0].get('fit_images'))} training images relocate at {sig(mean)}; "
                   f"the targets' own reconstruction is {sig(own)}.")
    return out


def relocation_findings(r: dict) -> list[str]:
    """From ``relocation.json`` of ``map eval``."""
    if r.get("ratio") is None:
        return []
    text = (f"{r['source']} → {r['target']} (type {r.get('type')}): relocated MSE {sig(r['relocated_mse'])} against "
            f"{r['target']}'s own {sig(r['target_mse'])}, ratio {sig(r['ratio'])}")
    if r.get("ratio_low") is not None:
        text += f" (95% interval {sig(r['ratio_low'])}–{sig(r['ratio_high'])})"
    out = [text + f", on {count(r.get('n_images'))} images."]
    out.extend(useless_target_findings([r]))
    out.extend(ratio_below_one_findings([r]))
    if r.get("latent_r2") is not None:
        cycle = r.get("cycle_ratio")
        out.append(f"Latent R² {sig(r['latent_r2'])}" + ("." if cycle is None else
                                                       f"; cycle A → B → A at {sig(cycle)} times A's own error."))
        out.extend(negative_r2_findings([r]))
    labels = r.get("by_label") or []
    if labels:
        best, worst = min(labels, key=lambda x: x["ratio"]), max(labels, key=lambda x: x["ratio"])
        out.append(f"By label the ratio runs from {sig(best['ratio'])} ({best.get('name')}) to {sig(worst['ratio'])} "
                   f"({worst.get('name')}).")
    return out


def diagnostics_findings(data: dict) -> list[str]:
    """From ``diagnostics.json`` of ``diagnose``."""
    s = data.get("summary") or {}
    if not s:
        return []
    out = [f"{s['model']} ({s['kind']}, latent {s['latent_dim']}) on {count(s['n_images'])} images: reconstruction "
           f"MSE {sig(s['mse'])}, {s['components_90']} principal components explain 90% of the encodings' variance."]
    if s.get("inactive_variables") is not None:
        out.append(f"{s['inactive_variables']} of {s['latent_dim']} variables are inactive; Var(mu) + E[σ²] averages "
                   f"{sig(s['variance_law_mean'])}.")
    if s.get("outside_prior_99") is not None:
        out.append(f"Against {s.get('prior', 'its prior')}: mean radius {sig(s['mean_radius'])} for the encodings, "
                   f"{sig(s['prior_mean_radius'])} for prior samples; {s['outside_prior_99']:.0%} of the encodings lie "
                   "beyond the radius holding 99% of prior samples.")
    return out
