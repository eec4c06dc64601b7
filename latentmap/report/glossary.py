"""The one home of the reports' glossary: each term a page may use, how to spot it in the page's text,
and what it means, in a sentence or two. :func:`latentmap.report.html.render_page` adds the entries of
the terms a page uses at its end (see :func:`used_terms`)."""

from __future__ import annotations

import re

# (term, pattern that finds it in a page's text, meaning)
GLOSSARY: tuple[tuple[str, str, str], ...] = (
    ("ratio (relocated / B's own)", r"relocated ?/ ?(B's )?own|relocation ratio",
     "MSE of Dec_B(M(Enc_A x)) against x, over B's own reconstruction MSE: 1 means nothing is lost by relocating "
     "A's encodings into B's space; 2 means relocated images are twice as far from the originals as B's own."),
    ("Type 1 / 2 / 3", r"\b[Tt]ype [123]\b|\bT[123]\b",
     "the relocation type of a pair of models: 1, the same architecture and objective trained twice; 2, the same "
     "objective with another family or architecture; 3, different objectives (a VAE and a GAN, say)."),
    ("bias-free map", r"\bbias-free\b",
     "a linear map z_B = M z_A with no constant term, the single matrix of the method; an affine map adds one."),
    ("linearity gap", r"\blinearity gap\b",
     "how much larger the relocated MSE of the linear map is than that of a nonlinear one (an MLP), in units of "
     "B's own reconstruction MSE; near 0, a linear map loses nothing a nonlinear one would keep."),
    ("estimator", r"\bestimators?\b",
     "how a map between two latent spaces is fitted: linear least squares, piecewise linear, an MLP, an "
     "orthogonal (Procrustes) map or gradient descent; each has the same fit / transform contract."),
    ("linear CKA, SVCCA", r"\bCKA\b|\bSVCCA\b",
     "similarity of two latent spaces on the same images, from 0 (unrelated) to 1 (the same up to rotation and "
     "scale): centred kernel alignment, and the mean canonical correlation after keeping 99% of each space's "
     "variance."),
    ("sector, sign orthant", r"\bsectors?\b|\borthants?\b",
     "the support set cuts a model's latent space by the signs of its k most informative variables: each sign "
     "pattern (orthant) is a sector, 2^k of them, and the support set holds one image per sector."),
    ("information gain", r"\binformation gain\b|\binfo(rmation)?[ -]gain\b",
     "how much a model's reconstruction MSE grows when one latent variable is set to 0: the variables with the "
     "most gain define the sectors."),
    ("support set", r"\bsupport[ -]set\b",
     "a few real images, one per sector, on which maps are fitted and generators are tested: hard cases that a "
     "generator's own samples rarely hold."),
    ("G test", r"\bG test\b|\bG-test\b",
     "a likelihood-ratio test of whether a generator fills the sectors in the shares the real images do; a small "
     "p-value means the shares differ."),
    ("total variation", r"\btotal variation\b|\bTV\b",
     "half the sum of the absolute differences between the generated and the real share of each sector: 0 for "
     "the same distribution, 1 for disjoint ones. Sampling noise alone makes it positive (the calibration row "
     "shows how much); its interval is a 95% bootstrap interval (both sets resampled), left out where the value "
     "sits at that noise floor."),
    ("under-represented", r"\bunder-represented\b|\bover-represented\b",
     "a sector with enough real images whose generated share is below half its real share; over-represented: "
     "above twice it."),
    ("missed sector", r"\bmissed sectors?\b|\bsectors? (it|they) miss",
     "a sector a generator never reaches or under-represents."),
    ("unresolvable class", r"\bunresolvable\b|\bcannot resolve\b",
     "a class that holds more than half of the real images of no sector (of enough real images): its images "
     "always share their sectors with a majority of other classes, so sector counts cannot show it missing."),
    ("calibration", r"\bcalibration\b",
     "real images scored as if they were a generator: what a generator matching the data would score at the "
     "same sample size. Read every generator against this row, not against zero."),
    ("precision, recall, density, coverage", r"\bprecision\b|\brecall\b",
     "from k-nearest-neighbour balls in a feature space (Naeem et al. 2020): precision, the share of generated "
     "images on the real manifold; recall, the share of real images on the generated one; density, how many real "
     "images' balls hold a generated image, averaged and divided by k (about 1 when the sets match); coverage, "
     "the share of real images whose ball holds a generated image."),
    ("Fréchet distance", r"\bFréchet\b|\bFID\b",
     "the distance between Gaussians fitted to real and generated images' features; 0 for the same distribution. "
     "Computed in a model's latent space it is named for that space and is not an FID."),
    ("inactive variable", r"\binactive\b",
     "a VAE latent variable whose posterior mean barely varies over the data (Var(mu) below the threshold the "
     "page states beside the count): the decoder ignores it."),
    ("variance law", r"Var\(mu\) \+ E\[σ²\]|Var\(mu\) \+ E\[sigma²\]",
     "for a well-trained VAE, Var(mu) + E[σ²] is about 1 for each active variable, as the N(0, 1) prior asks."),
    ("Δ_var", r"Δ_var",
     "variance loss: how much less the reconstructions vary than the images (mean per-pixel variance of the "
     "images minus that of the reconstructions); near 0 for sharp reconstructions, larger for blurry ones."),
    ("prior's typical radius", r"\btypical radius\b|√d|sqrt\(d\)",
     "a d-dimensional N(0, 1) sample lies near radius √d from the origin; a linear path between two such points "
     "dips toward the centre, a spherical one keeps the radius."),
    ("own samples", r"\bown samples\b",
     "images a model decodes from its own prior (or from a sampler fitted on its encodings)."),
    ("support / own, real / own", r"support ?/ ?own|real ?/ ?own",
     "the mean encoder (or inverter) MSE on the support-set images, or on real test images, over that on the "
     "model's own samples: how much worse the model reproduces images it did not draw. Lower is better; "
     "intervals are 95% bootstrap intervals."),
    ("support / real", r"support ?/ ?real",
     "the same ratio with real test images in place of the own samples: what support / own would be for a model "
     "whose own samples matched the data (the calibration)."),
    ("refinement", r"\brefine(d|ment)\b",
     "gradient descent on the latent, starting from the encoder's, to reconstruct an image as well as the decoder "
     "can; a refined latent outside the range holding 99% of the own samples' is one the model would rarely sample "
     "(1 draw in 100 lands there)."),
    ("relocated MSE", r"\brelocated MSE\b",
     "the mean squared error per pixel between the test images and their relocation Dec_B(M(Enc_A x))."),
)


def used_terms(text: str) -> list[tuple[str, str]]:
    """(term, meaning) of every glossary entry whose pattern occurs in ``text``, in the glossary's order."""
    return [(term, meaning) for term, pattern, meaning in GLOSSARY if re.search(pattern, text)]
