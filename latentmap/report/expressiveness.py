"""Render an :class:`~latentmap.evaluation.expressiveness.ExpressivenessResult`: findings, leaderboard, files.

``expressiveness_sections`` writes the CSV/JSON, the error histograms and the worst-image grids
into a folder and returns the HTML sections (the demo embeds them); ``write_expressiveness_report``
adds ``index.html`` with the findings first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from latentmap.evaluation.expressiveness import SET_LABELS, TARGET_SETS, ExpressivenessResult, metric_label, \
    metric_names
from latentmap.io.names import slug
from latentmap.report.findings import PAPER
from latentmap.report.figures import PALETTE, PLOT_FLOOR, figure_png, histogram_legend, new_figure
from latentmap.report.html import Section, render_page
from latentmap.io.model_record import short_fingerprint
from latentmap.report.labels import labelled_grid_png
from latentmap.report.tables import CALIBRATION_MARK, calibration_rows, interval, overlap_clause, percent, sig

if TYPE_CHECKING:
    from latentmap.evaluation.distribution import RatioCI
    from latentmap.evaluation.expressiveness_results import ModelExpressiveness

# The paper's StyleGAN on CelebA (inverter MSE on own samples vs support-set images): Asperti & Tonelli (2023),
# "Comparing the latent space of generative models".
PAPER_CELEBA = {"own": 0.026, "support": 0.251}
SET_COLOURS = {"own": PALETTE[2], "real": PALETTE[0], "support": PALETTE[3]}
SET_STYLES = {"own": "-", "real": "--", "support": ":"}  # the sets told apart without colour too
HEADLINE = "support/own"
CALIBRATION = "support/real"  # support/own of a model whose own samples matched the data
# the calibration row's support / own is the lowest-highest support / real over the models, not a 95% interval
CALIBRATION_ROW = "own samples matching the data: lowest–highest support / real, not an interval" + CALIBRATION_MARK


def _ci(ci: RatioCI) -> str:
    return interval(ci.value, ci.low, ci.high)


def ranked(result: ExpressivenessResult) -> list[ModelExpressiveness]:
    """The models by support / own, lowest (most expressive) first; models without it last, by name."""
    return sorted(result.models, key=lambda m: (HEADLINE not in m.ratios,
                                                m.ratios[HEADLINE].value if HEADLINE in m.ratios else 0.0, m.name))


def calibration_range(result: ExpressivenessResult) -> tuple[float, float] | None:
    """(lowest, highest) support / real over the models: the support / own they would score if their own samples
    matched the data (real / own 1 by definition); None when no model has it."""
    values = [m.ratios[CALIBRATION].value for m in result.models if CALIBRATION in m.ratios]
    return (min(values), max(values)) if values else None


def verdict_table(result: ExpressivenessResult) -> pd.DataFrame:
    """The ranked table of the page's first screen: the ratios with their intervals, the refined support-set MSE and
    the share of refined support-set latents the model would rarely sample; the calibration row last."""
    rows = []
    for rank, m in enumerate(ranked(result), start=1):
        support = m.sets["support"].summary(m.region["typical"]) if "support" in m.sets else None
        rows.append({"#": str(rank), "Model": m.name, "Kind": m.kind,
                     **{f"{name.replace('/', ' / ').capitalize()} (95%)": _ci(m.ratios[name]) if name in m.ratios else ""
                        for name in (HEADLINE, "real/own", CALIBRATION)},
                     "Refined MSE, support set": sig(support["refined_mse"]) if support else "",
                     "Refined support latents outside 99%": percent(support["refined_outside_share"])
                     if support else ""})
    span = calibration_range(result)
    if span is not None:
        rows.append({"#": "", "Model": CALIBRATION_ROW, "Kind": "",
                     "Support / own (95%)": f"{sig(span[0])}–{sig(span[1])}", "Real / own (95%)": sig(1.0),
                     "Support / real (95%)": "", "Refined MSE, support set": "",
                     "Refined support latents outside 99%": ""})
    return pd.DataFrame(rows)


def verdict(result: ExpressivenessResult) -> list[str]:
    """The page's findings: the most and least expressive model, the calibration, and where refinement leads."""
    models = [m for m in ranked(result) if HEADLINE in m.ratios]
    out: list[str] = []
    if models:
        best, worst = models[0], models[-1]
        ci = best.ratios[HEADLINE]
        text = (f"Most expressive: {best.name} ({best.kind}), whose encoder reconstructs support-set images "
                f"{_ci(ci)} times worse than its own samples"
                + overlap_clause((best.name, ci.low, ci.high),
                                 [(m.name, m.ratios[HEADLINE].low, m.ratios[HEADLINE].high) for m in models[1:]]))
        if worst is not best:
            text += f"; least: {worst.name} ({worst.kind}), {_ci(worst.ratios[HEADLINE])} times"
        out.append(text + f" (95% intervals; the paper's StyleGAN on CelebA: "
                          f"{sig(PAPER_CELEBA['support'] / PAPER_CELEBA['own'], 2)}).")
    span = calibration_range(result)
    real = [m for m in models if "real/own" in m.ratios]
    if span is not None and real:
        low = min(real, key=lambda m: m.ratios["real/own"].value)
        high = max(real, key=lambda m: m.ratios["real/own"].value)
        out.append(f"A model whose own samples matched the data would score real / own 1 and support / own equal to "
                   f"its support / real, {sig(span[0])}–{sig(span[1])} here; real / own runs from "
                   f"{sig(low.ratios['real/own'].value)} ({low.name}) to {sig(high.ratios['real/own'].value)} "
                   f"({high.name}).")
    refined = [(m, m.sets["support"].summary(m.region["typical"])) for m in models
               if "support" in m.sets and len(m.sets["support"].refined_index)]
    if refined:
        mses = [s["refined_mse"] for _, s in refined]
        drift = [f"{m.name} {percent(s['refined_outside_share'])}" for m, s in refined]
        out.append(f"After {result.settings.get('steps')} steps of gradient refinement, support-set images reach MSE "
                   f"{sig(min(mses))}–{sig(max(mses))}; refined support-set latents outside the range holding 99% of "
                   f"the model's own samples: {', '.join(drift)}.")
    fitted = [m for m in result.models if m.sampler != "prior"]
    if fitted:
        out.append("Models without a prior sample from a fitted distribution: "
                   + "; ".join(f"{m.name}: {m.sampler}" for m in fitted) + ".")
    chooser = result.settings.get("support_model")
    if chooser and any(m.name == chooser for m in models):
        out.append(f"Caution: the support set was chosen with {chooser}'s encoder, and {chooser} is also ranked "
                   "here: images picked in its own latent space may favour it.")
    return out


def findings(result: ExpressivenessResult) -> list[str]:
    """The report's opening sentences, with numbers."""
    out = []
    ranked = sorted(result.models, key=lambda m: -(m.ratios["support/own"].value if "support/own" in m.ratios else 0))
    for m in ranked:
        own, parts = m.sets["own"].summary(1.0), []
        for name, key in (("support/own", "support"), ("real/own", "real")):
            if name in m.ratios:
                ci = m.ratios[name]
                parts.append(f"{SET_LABELS[key]} at {sig(m.sets[key].summary(1.0)['encoder_mse'])}, "
                             f"{sig(ci.value)} times worse (95% interval {sig(ci.low)}–{sig(ci.high)})")
        if parts:
            out.append(f"{m.name} ({m.kind}) reconstructs its own samples at MSE {sig(own['encoder_mse'])} through "
                       f"its encoder, but " + " and ".join(parts) + ".")
    out.append(f"The paper's StyleGAN on CelebA ({PAPER}): {PAPER_CELEBA['own']} on its own samples against "
               f"{PAPER_CELEBA['support']} on support-set faces, {sig(PAPER_CELEBA['support'] / PAPER_CELEBA['own'], 2)} "
               "times worse.")
    steps = result.settings.get("steps")
    refined = [(m, m.sets[k].summary(m.region["typical"])) for m in result.models for k in ("support",)
               if k in m.sets and len(m.sets[k].refined_index)]
    if refined:
        worst_own = max(m.sets["own"].summary(1.0)["refined_mse"] or 0 for m in result.models)
        # encoder and refined MSE of the same images: refinement runs on a subset of each set
        text = ", ".join(f"{m.name} {sig(s['encoder_mse_refined_images'])} → {sig(s['refined_mse'])}"
                         for m, s in sorted(refined, key=lambda p: p[1]["refined_mse"]))
        count = sorted({s["refined_images"] for _, s in refined})
        out.append(f"After {steps} steps of gradient refinement own samples reach MSE {sig(worst_own)} or less, so "
                   f"ratios lose their meaning; support-set images (the {'/'.join(map(str, count))} refined ones, "
                   f"encoder MSE → refined MSE of the same images) stay at: {text}.")
        drift = [(m, s) for m, s in refined if (s["refined_outside_share"] or 0) > 0.05]
        if drift:
            out.append("Refined support-set latents outside the 99% range of the model's own samples (images the model "
                       "reproduces only from latents it would rarely sample): "
                       + ", ".join(f"{m.name} {percent(s['refined_outside_share'])}" for m, s in drift) + ".")
    fitted = [m for m in result.models if m.sampler != "prior"]
    if fitted:
        out.append("Models without a prior sample from a fitted distribution: "
                   + "; ".join(f"{m.name}: {m.sampler}" for m in fitted) + ".")
    if result.lpips_note:
        out.append(result.lpips_note + ".")
    return out


def leaderboard_display(result: ExpressivenessResult) -> pd.DataFrame:
    """Every column of the leaderboard as the page shows it: per model, its encoder and refined MSE on each target
    set and every ratio with its interval."""
    rows = []
    for m in result.models:
        s = {k: v.summary(m.region["typical"]) for k, v in m.sets.items()}
        row = {"Model": m.name, "Kind": m.kind, "Latent size": m.latent_dim, "Own samples from": m.sampler,
               "Fingerprint": short_fingerprint(m.record)}
        for key in TARGET_SETS:
            if key in s:
                row[f"Encoder MSE, {SET_LABELS[key]}"] = sig(s[key]["encoder_mse"])
        for name, ci in m.ratios.items():
            row[f"{name} (95% CI)"] = _ci(ci)
        for key in TARGET_SETS:
            if key in s:
                row[f"Refined MSE, {SET_LABELS[key]}"] = sig(s[key]["refined_mse"])
        if "support" in s:
            row["Refined support latents outside 99% range"] = percent(s["support"]["refined_outside_share"])
        rows.append(row)
    return pd.DataFrame(rows)


def sets_display(result: ExpressivenessResult) -> pd.DataFrame:
    """One row per model and target set as the page shows it: MSE, SSIM and the latents' distances, before and
    after refinement."""
    rows = []
    for m in result.models:
        for scores in m.sets.values():
            s = scores.summary(m.region["typical"])
            rows.append({"Model": m.name, "Target set": s["label"], "Images": s["images"],
                         **{f"Encoder {metric_label(k)}": sig(s[f"encoder_{k}"]) for k in metric_names()},
                         "Refined images": s["refined_images"],
                         "Encoder MSE, refined images": sig(s["encoder_mse_refined_images"]),
                         **{f"Refined {metric_label(k)}": sig(s[f"refined_{k}"]) for k in metric_names()},
                         "Distance / typical, encoder": sig(s["encoder_distance_ratio"]),
                         "Distance / typical, refined": sig(s["refined_distance_ratio"]),
                         "Outside 99%, encoder": percent(s["encoder_outside_share"]),
                         "Outside 99%, refined": percent(s["refined_outside_share"])})
    return pd.DataFrame(rows)


def error_histogram_png(model: ModelExpressiveness) -> bytes:
    """Encoder and refined MSE per image, one step histogram per target set, log scale.

    The legend gives each set's true mean (the number in the tables); values below the plot floor are drawn
    at the floor, and the legend says how many."""
    fig = new_figure(9.0, 4.0)
    values = [v for s in model.sets.values() for v in (s.encoder_mse, s.refined_mse) if len(v)]
    low = max(min(float(np.min(v)) for v in values), PLOT_FLOOR)
    bins = np.logspace(np.log10(low), np.log10(max(max(float(np.max(v)) for v in values) * 1.01, low * 1.01)), 40)
    for i, (what, attr) in enumerate((("encoder / inverter", "encoder_mse"), ("after refinement", "refined_mse"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, scores in model.sets.items():
            raw = np.asarray(getattr(scores, attr), dtype=np.float64)
            if len(raw):  # the ignore: matplotlib's stub leaves out arrays of bin edges, which hist takes
                ax.hist(np.clip(raw, low, None), bins=bins,  # type: ignore[arg-type]
                        histtype="step", weights=np.full(len(raw), 1 / len(raw)),
                        color=SET_COLOURS.get(key), linestyle=SET_STYLES.get(key, "-"),
                        label=histogram_legend(scores.label, raw, low, sig))
        ax.set_xscale("log")
        ax.set_xlabel("per-image MSE" + (f" (below {sig(low)}: drawn at it)" if low == PLOT_FLOOR else ""),
                      fontsize=9)
        ax.set_ylabel("share of images", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(f"{model.name}: {what}", fontsize=9)
        if ax.get_legend_handles_labels()[0]:  # below the axes: never over the data or the other panel
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        else:
            ax.text(0.5, 0.5, "no images refined", ha="center", va="center", transform=ax.transAxes)
    return figure_png(fig)


def expressiveness_sections(result: ExpressivenessResult, folder: str | os.PathLike[str], prefix: str = ""
                            ) -> list[Section]:
    """Write the CSV, JSON and figures into ``folder`` (file names relative to the HTML: ``prefix`` + name)."""
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    result.leaderboard().to_csv(base / "leaderboard.csv", index=False)
    result.set_table().to_csv(base / "target_sets.csv", index=False)
    (base / "expressiveness.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    st = result.settings
    top = Section("Models ranked by support / own", anchor="verdict")
    frame = verdict_table(result)
    top.table(frame, headline="Support / own (95%)", order="asc", calibration=calibration_rows(frame.Model))
    top.text(f"Encoder MSE ratios with 95% bootstrap intervals ({st['bootstrap_resamples']} resamples), lower is "
             f"better: {st['support_images'] or 0} images of {st['support_source']}, {st['real_images']} "
             f"{st['real_source']}, {st['own_samples']} own samples of each model. Support / real is the support / "
             "own a model would score if its own samples matched the data: the calibration. Refined: after "
             f"{st['steps']} gradient steps on the latent.", cls="note")
    board = Section("Expressiveness leaderboard")
    board.text(f"Target sets: {st['own_samples']} own samples of each model, {st['real_images']} "
               f"{st['real_source']}, and {st['support_images'] or 0} images of {st['support_source']}. "
               "Encoder MSE: per-pixel MSE of decode(encode(x)) in [0,1] intensity units. Ratios: the mean encoder MSE "
               f"of a set over that of the other, with a {st['bootstrap_resamples']}-resample bootstrap 95% "
               f"interval. Refined: {st['steps']} Adam steps (lr {st['lr']}) on the latents of up to "
               f"{st['refine_images']} images per set, starting from the encoder."
               + (f" A model working on images of another shape gets the real and support-set images through the "
                  f"image transform '{st['image_transform']}'." if st.get("image_transform") else "")
               + (f" {result.lpips_note}." if result.lpips_note else ""))
    board.table(leaderboard_display(result), fold="Every column (encoder and refined MSE per target set, every ratio)",
                note_html=f'<p class="note">Every number: <a href="{prefix}leaderboard.csv">leaderboard.csv</a>, '
                          f'<a href="{prefix}target_sets.csv">target_sets.csv</a>, '
                          f'<a href="{prefix}expressiveness.json">expressiveness.json</a> (per-image errors).</p>')
    details = Section("Target sets in detail")
    details.text("Distance / typical: the mean distance of the latents from the centre of the model's own samples, "
                 "divided by the typical distance of its own samples; outside 99%: the share of latents beyond the "
                 "range that holds 99% of the model's own samples.")
    details.table(pd.DataFrame([{"Model": m.name, "Own samples from": m.sampler, "Distance": m.region["description"]}
                                for m in result.models]), fold="How each model measures the distance")
    details.table(sets_display(result), fold="Every model and target set (MSE, SSIM and distances, before and after "
                  "refinement)", csv=f"{prefix}target_sets.csv")
    figures = Section("Errors and worst reconstructions")
    figures.text("Per model: histograms of the per-image MSE of each target set, then the worst-reconstructed "
                 "support-set and real images (after refinement), rows target / encoder reconstruction / refined.")
    for m in result.models:
        name = f"errors_{slug(m.name)}.png"
        (base / name).write_bytes(error_histogram_png(m))
        figures.image(prefix + name, f"{m.name}: per-image MSE by target set, before and after refinement")
        worst = Section("")  # folded: one line per model until a reader opens it
        for key in ("support", "real"):
            scores = m.sets.get(key)
            if scores is None or not scores.worst:
                continue
            rows = scores.worst_rows
            name = f"worst_{slug(m.name)}_{key}.png"
            (base / name).write_bytes(labelled_grid_png(
                [rows["target"], rows["encoder"], rows["refined"]], ["target", "encoder reconstruction", "refined"]))
            mses = ", ".join(sig(float(v)) for v in np.sort(scores.refined_mse)[::-1][:len(scores.worst)])
            worst.image(prefix + name, f"{m.name}: the {len(scores.worst)} worst {scores.label} after refinement "
                                       f"(refined MSE {mses}); rows target / encoder reconstruction / refined")
        if worst.parts:
            figures.fold(f"The worst reconstructions of {m.name}, as images", worst)
    return [top, board, details, figures]


def write_expressiveness_report(result: ExpressivenessResult, folder: str | os.PathLike[str],
                                title: str = "Generator expressiveness") -> Path:
    """All files plus ``index.html`` (the verdict first: findings and the ranked table) into ``folder`` (an existing,
    usually temporary, directory)."""
    base = Path(folder)
    top, *sections = expressiveness_sections(result, base)
    (base / "index.html").write_text(render_page(title, sections, findings=verdict(result), verdict=top))
    return base / "index.html"
