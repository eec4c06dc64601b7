"""The terms the report pages use, each defined once in a sentence or two; a page shows the ones it uses.

``glossary_section(["total variation", "G test", ...])`` is a "Glossary" section with those
entries, in the order given; an unknown term is an error, so a page cannot promise a definition
that is not written here.
"""

from __future__ import annotations

from latentmap.report.html import Section, glossary_html

GLOSSARY = {
    "sector": "A sign orthant of the reference model's chosen latent variables: the sector of an image is the "
              "pattern of signs (+ or −) of those variables in its encoding, so every image lies in exactly one.",
    "sign orthant": "The region of latent space where each chosen variable has a fixed sign; k variables cut the "
                    "space into 2^k orthants.",
    "total variation": "Half the sum, over the sectors, of the absolute differences between the generated and the "
                       "real shares: 0 when the shares match, 1 when the two sets share no sector. Sampling noise alone "
                       "makes it positive (the calibration row shows how much); the interval is a 95% bootstrap "
                       "interval (both sets resampled), left out where the value sits at that noise floor.",
    "G test": "A test of 'generated and real images fall in the sectors with the same shares' (the log-likelihood "
              "ratio form of the chi-square test of a 2 × sectors table); a small p rejects it.",
    "under-represented": "A sector with enough real images whose generated share is below half its real share; "
                         "over-represented: above twice it.",
    "missed sector": "A sector a generator never reaches or under-represents.",
    "unresolvable class": "A class that holds more than half of the real images of no sector (of enough real "
                          "images): its images always share their sectors with a majority of other classes, so "
                          "sector counts cannot show it missing.",
    "calibration": "Real training images scored as if they were a generator: what a generator matching the data "
                   "would score at the same sample size. Read every generator against this row, not against zero.",
    "PRDC": "Precision, recall, density and coverage (Naeem et al. 2020) from k-nearest-neighbour balls in the "
            "reference space. Precision: share of generated images on the real manifold; recall: share of real "
            "images on the generated one; density: the number of real images' balls holding a generated image, "
            "averaged over the generated images and divided by k (about 1 when the sets match); coverage: share of "
            "real images whose ball holds a generated image.",
    "Fréchet distance": "The distance between Gaussians fitted to the real and generated features; here in the "
                        "reference model's latent space, so it is named for that space and is not an FID.",
    "own samples": "Images the model decodes from its own prior (or from a sampler fitted on its encodings).",
    "support set": "A small set of real images, one per sector of the most informative latent directions: spread "
                   "over the data rather than drawn where it is dense.",
    "support / own": "The mean encoder (or inverter) MSE on the support-set images over that on the model's own "
                     "samples: how much worse the model reproduces images it did not draw. Lower is better; the "
                     "interval is a 95% bootstrap interval.",
    "real / own": "The same ratio for real test images.",
    "support / real": "The same ratio with real test images in place of the own samples: what support / own would "
                      "be for a model whose own samples matched the data (the calibration).",
    "refinement": "Gradient descent on the latent, starting from the encoder's, to reconstruct an image as well as "
                  "the decoder can; a refined latent outside the range holding 99% of the own samples' is one the "
                  "model would rarely sample (1 draw in 100 lands there).",
}


def glossary_section(terms, title: str = "Glossary") -> Section:
    """A section defining ``terms`` (keys of :data:`GLOSSARY`), in the order given."""
    unknown = [t for t in terms if t not in GLOSSARY]
    if unknown:
        raise KeyError(f"no glossary entry for {unknown}")
    section = Section(title)
    section.parts.append(glossary_html({t: GLOSSARY[t] for t in terms}))
    return section
