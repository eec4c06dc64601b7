"""The anchor-strategy comparison as files: CSVs, summary.json, a plot and HTML."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from latentmap.io.atomic import atomic_directory
from latentmap.report.figures import figure_png, new_figure
from latentmap.report.findings import anchors_findings
from latentmap.report.html import Section, render_page
from latentmap.constants import ANCHOR_STRATEGIES
from latentmap.evaluation.anchors import CompareResult


def write_compare_report(result: CompareResult, out: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """results.csv, summary.csv, reference.csv, summary.json, anchors.png and index.html, written atomically."""
    with atomic_directory(out, overwrite=overwrite, kind="report") as tmp:
        result.rows.to_csv(tmp / "results.csv", index=False)
        result.summary.to_csv(tmp / "summary.csv", index=False)
        result.reference.to_csv(tmp / "reference.csv", index=False)
        payload = {"settings": result.settings, "summary": result.summary.to_dict(orient="records"),
                   "reference": result.reference.to_dict(orient="records"), "notes": result.notes}
        (tmp / "summary.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
        (tmp / "anchors.png").write_bytes(compare_png(result))
        s = result.settings
        section = Section("Relocated MSE by anchor strategy and size")
        section.text(f"Anchors chosen in the latent space of '{s['anchor_model']}' from {s['train_images']} training "
                     f"images; bias-{'full' if s['bias'] else 'free'} linear maps (ridge alpha {s['alpha']}) fitted "
                     f"for every ordered pair of {', '.join(s['models'])}; relocated MSE = mean over "
                     f"{s['test_images']} test images of MSE(x, Dec_B(map(Enc_A x))), averaged over the pairs, then "
                     f"over seeds {s['seeds']}. The last column, relocated MSE over that of random anchors of the "
                     "same size, is below 1 where a strategy beats random anchors.")
        section.image("anchors.png", "mean relocated MSE (bars: min-max over seeds); dashed: maps fitted on "
                                     f"{s['reference_images']} training images; dotted: the targets' own "
                                     "reconstruction")
        section.table(result.summary, fold="Every strategy and size", csv="summary.csv")
        reference = Section("Reference: maps fitted on many training images")
        reference.table(result.reference, fold="Every pair", csv="reference.csv")
        parts = [section, reference]
        if result.notes:
            notes = Section("Notes")
            for note in result.notes:
                notes.text(note, "note")
            parts.append(notes)
        (tmp / "index.html").write_text(render_page("Anchor strategies compared", parts,
                                                    findings=anchors_findings(payload), verdict=verdict(result)))
    return Path(out)


VS_RANDOM = "relocated MSE / random anchors', mean over sizes"


def strategy_ranking(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy, ranked by its relocated MSE over that of random anchors of the same size, averaged
    over the sizes (below 1: better than random), with its relocated MSE at each size."""
    rows = []
    for strategy, part in summary.groupby("strategy", sort=False):
        row = {"strategy": strategy, VS_RANDOM: part["vs_random"].mean()}
        row.update({f"relocated MSE, {int(size)} anchors": mse for size, mse in
                    part.sort_values("size")[["size", "relocated_mse"]].itertuples(index=False)})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(VS_RANDOM, kind="stable").reset_index(drop=True)


def verdict(result: CompareResult) -> Section:
    """The page's verdict: :func:`strategy_ranking`'s table, ranked by relocated MSE over random anchors'."""
    section = Section("Verdict: anchor strategies ranked against random anchors")
    section.table(strategy_ranking(result.summary), headline=VS_RANDOM)
    return section


def load_compare_result(folder: str | os.PathLike[str]) -> CompareResult:
    """The comparison a report folder saved (results.csv, summary.csv, reference.csv, summary.json), to render again."""
    base = Path(folder)
    saved = json.loads((base / "summary.json").read_text())
    return CompareResult(pd.read_csv(base / "results.csv"), pd.read_csv(base / "summary.csv"),
                         pd.read_csv(base / "reference.csv"), saved["settings"], saved.get("notes") or [])


def compare_png(result: CompareResult) -> bytes:
    """Mean relocated MSE against the number of anchors, one line per strategy (bars: min-max over seeds), with the
    maps fitted on many images (dashed) and the targets' own reconstruction (dotted) for reference."""
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    summary = result.summary
    for strategy in [s for s in ANCHOR_STRATEGIES if s in set(summary["strategy"])]:
        part = summary[summary["strategy"] == strategy].sort_values("size")
        low = part["relocated_mse"] - part["relocated_mse_min"]
        high = part["relocated_mse_max"] - part["relocated_mse"]
        ax.errorbar(part["size"], part["relocated_mse"], yerr=[low, high], marker="o", capsize=3, label=strategy)
    if len(result.reference):
        ax.axhline(result.reference["relocated_mse"].mean(), color="black", linestyle="--", linewidth=0.8,
                   label=f"fit on {result.settings['reference_images']} images")
        ax.axhline(result.reference["target_reconstruction_mse"].mean(), color="gray", linestyle=":",
                   linewidth=0.8, label="reconstruction")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(summary["size"])))
    ax.set_xticklabels([str(s) for s in sorted(set(summary["size"]))])
    ax.set_xlabel("anchor images")
    ax.set_ylabel("relocated image MSE (test)")
    ax.set_title(f"Anchor strategies, models {', '.join(result.settings['models'])}")
    ax.legend(fontsize=8)
    return figure_png(fig)
