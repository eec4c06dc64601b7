"""Demo section: latent-space diagnostics of every shipped model (see :mod:`latentmap.evaluation.diagnostics`).

Each model is compared with its own prior (StyleGAN's W with the mapping network's output) and
gets its own page, ``diagnostics/<model>/index.html``, with the figures and an interpolation
grid between pairs of encoded test images, carried into a second model through a fitted map
(the atlas's map into the model it relocates to with the lowest relocated MSE, else one fitted here).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

from latentmap.data.datasets import load_dataset
from latentmap.demo.context import DEMO_DATASET, DemoContext, register_demo_section
from latentmap.evaluation.diagnostics import INACTIVE_THRESHOLD, latent_diagnostics
from latentmap.evaluation.interpolation import interpolate, pair_positions
from latentmap.maps.linear import LinearMap
from latentmap.report.diagnostics import write_diagnostics
from latentmap.report.html import Section
from latentmap.report.interpolation import describe as describe_interpolation
from latentmap.io.names import slug

if TYPE_CHECKING:
    from latentmap.data.images import ImageDataset
    from latentmap.evaluation.interpolation import InterpolationResult
    from latentmap.maps.base import MapEstimator
    from latentmap.models.base import LatentModel

# Means, variances and the PCA spectrum settle well within 2,000 images; evenly spaced test
# images keep every class in the sample and the section quick on a CPU.
DEMO_DIAGNOSTICS_TEST_IMAGES = 2000
INTERPOLATION_PAIRS = 2
INTERPOLATION_STEPS = 8
FALLBACK_FIT_IMAGES = 2000  # a map fitted here when the atlas has none for the pair
TABLE_COLUMNS = ["model", "kind", "latent_dim", "prior", "inactive_variables", "variance_law_mean", "mean_radius",
                 "prior_mean_radius", "sqrt_d", "outside_prior_99", "components_90", "components_99", "mse",
                 "variance_loss"]


def _partner(ctx: DemoContext, model: LatentModel) -> tuple[LatentModel | None, MapEstimator | None, str]:
    """(partner model, fitted map model -> partner, how it was fitted), or (None, None, "") with one model."""
    others = [m for m in ctx.models if m is not model and m.image_shape == model.image_shape]
    if not others:
        return None, None, ""
    fitted = [(ctx.maps[(model.name, m.name)][1], m) for m in others if (model.name, m.name) in ctx.maps]
    if fitted:  # the most faithful carrier: the lowest relocated MSE, in absolute terms
        mse, partner = min(fitted, key=lambda item: item[0])
        return partner, ctx.maps[(model.name, partner.name)][0], (
            f"the atlas's affine map (relocated MSE {mse:.3g}, the lowest from {model.name})")
    partner = others[0]
    train = load_dataset(DEMO_DATASET, "train", data_dir=ctx.data_dir)
    fit = train.random_subset(min(FALLBACK_FIT_IMAGES, len(train)), seed=0).all_images()
    linear_map = LinearMap(bias=True).fit(model.encode_all(fit, batch_size=512),
                                          partner.encode_all(fit, batch_size=512))
    return partner, linear_map, f"an affine map fitted on {len(fit)} training images"


def _interpolation(ctx: DemoContext, model: LatentModel, test: ImageDataset) -> InterpolationResult:
    partner, linear_map, how = _partner(ctx, model)
    pairs = pair_positions(len(test), INTERPOLATION_PAIRS)
    x0 = test.batch([a for a, _ in pairs])
    x1 = test.batch([b for _, b in pairs])
    return interpolate(model, x0, x1, steps=INTERPOLATION_STEPS, partner=partner, linear_map=linear_map,
                       map_description=how, pair_ids=[f"{a}-{b}" for a, b in pairs])


@register_demo_section(50, "latent diagnostics")
def diagnostics_section(ctx: DemoContext) -> Section:
    """Latent diagnostics of every model on evenly spaced test images: a summary table, and one page per model
    (``diagnostics/<model>/``) with its figures and an interpolation grid carried into a partner model."""
    test = ctx.test.evenly_spaced_subset(DEMO_DIAGNOSTICS_TEST_IMAGES)
    rows, links = [], []
    for model in ctx.models:
        diag = latent_diagnostics(model, test, batch_size=512)
        paths = _interpolation(ctx, model, test)
        folder = ctx.out / "diagnostics" / slug(model.name)
        write_diagnostics(diag, folder, interpolation=paths, back=("../../index.html", "demo report"))
        rows.append({**diag.summary(), "interpolation": paths.summary()})
        href = f"diagnostics/{slug(model.name)}/index.html"
        links.append(f'<li><a href="{href}">{html.escape(model.name)}</a> ({html.escape(model.kind)}, compared with '
                     f"{html.escape(diag.prior)}). {html.escape(describe_interpolation(paths, named=False))}</li>")
    section = Section(f"Latent diagnostics ({len(test)} test images)")
    section.text("How each model fills its latent space, compared with its own prior: N(0, I) for the VAEs and the "
                 "GAN, the mapping network's output for StyleGAN's W (the mean and covariance of its samples; "
                 "radii are then Mahalanobis distances). For VAE-like models: inactive variables "
                 f"(Var(mu) < {INACTIVE_THRESHOLD:g}) and the variance law Var(mu) + E[sigma²] ≈ 1 per variable. "
                 "For every model: mean radius of the encodings against prior samples and sqrt(d), the share of "
                 "encodings beyond the radius holding 99% of prior samples, principal components needed for 90% / "
                 "99% of the encodings' variance, and the reconstruction MSE next to the variance loss "
                 "Δ_var = mean over pixels of Var(x) − Var(x̂).")
    section.table(pd.DataFrame([{k: "-" if r[k] is None else r[k] for k in TABLE_COLUMNS} for r in rows]))
    section.text("One page per model, with the figures (variances, radius, PCA, axis densities against the prior) "
                 "and an interpolation grid between pairs of encoded test images, linear and spherical, in the "
                 "model and carried into a second model through a fitted map:")
    section.parts.append("<ul>" + "".join(links) + "</ul>")
    ctx.summary["diagnostics"] = rows
    pd.DataFrame([{k: v for k, v in r.items() if k != "interpolation"} for r in rows]).to_csv(
        ctx.out / "diagnostics" / "diagnostics_summary.csv", index=False)
    pd.DataFrame([r["interpolation"] for r in rows]).to_csv(ctx.out / "diagnostics" / "interpolation_summary.csv",
                                                            index=False)
    section.parts.append('<p class="note">Every number: <a href="diagnostics/diagnostics_summary.csv">'
                         'diagnostics_summary.csv</a>, <a href="diagnostics/interpolation_summary.csv">'
                         'interpolation_summary.csv</a>, and each model\'s folder (variables.csv, diagnostics.json, '
                         'interpolation.csv).</p>')
    return section
