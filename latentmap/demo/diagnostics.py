"""Demo section: latent-space diagnostics of every shipped model (see :mod:`latentmap.evaluation.diagnostics`)."""

from __future__ import annotations

import pandas as pd

from latentmap.demo.context import DemoContext, register_demo_section
from latentmap.evaluation.diagnostics import INACTIVE_THRESHOLD, latent_diagnostics
from latentmap.report.diagnostics import write_diagnostics
from latentmap.report.html import Section

# Means, variances and the PCA spectrum settle well within 2,000 images; evenly spaced test
# images keep every class in the sample and the section quick on a CPU.
DEMO_DIAGNOSTICS_TEST_IMAGES = 2000
TABLE_COLUMNS = ["model", "kind", "latent_dim", "inactive_variables", "variance_law_mean", "mean_radius",
                 "prior_mean_radius", "sqrt_d", "components_90", "components_99", "mse", "variance_loss"]


@register_demo_section(50, "latent diagnostics")
def diagnostics_section(ctx: DemoContext) -> Section:
    test = ctx.test.evenly_spaced_subset(DEMO_DIAGNOSTICS_TEST_IMAGES)
    rows, parts = [], []
    for model in ctx.models:
        diag = latent_diagnostics(model, test, batch_size=512)
        part = write_diagnostics(diag, ctx.out / "diagnostics" / model.name, rel=f"diagnostics/{model.name}/")
        rows.append(diag.summary())
        parts.append(part.render())
    section = Section(f"Latent diagnostics ({len(test)} test images)")
    section.text("How each model fills its latent space. For VAE-like models: inactive variables "
                 f"(Var(mu) < {INACTIVE_THRESHOLD:g}) and the variance law Var(mu) + E[sigma²] ≈ 1 per variable. "
                 "For every model: mean radius ||z|| of the encodings against prior samples and sqrt(d), "
                 "principal components needed for 90% / 99% of the encodings' variance, and the reconstruction "
                 "MSE next to the variance loss Δ_var = mean over pixels of Var(x) − Var(x̂).")
    section.table(_display(rows))
    section.parts.extend(parts)
    ctx.summary["diagnostics"] = rows
    return section


def _display(rows: list[dict]) -> pd.DataFrame:
    """The table's columns, '-' where one does not apply to a model (the VAE-only columns of a GAN)."""
    def cell(v):
        return "-" if v is None else f"{v:.5f}" if isinstance(v, float) else v

    return pd.DataFrame([{k: cell(r[k]) for k in TABLE_COLUMNS} for r in rows])
