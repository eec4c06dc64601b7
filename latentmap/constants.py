"""Names and choices shared by the library and the CLI, each written once.

Nothing here imports torch (or anything beyond the standard library), so the CLI reads its
choices from here without slowing ``latentmap --help``. ``tests/project/test_constants.py`` checks that
none of these is written a second time anywhere in the package.
"""

from types import MappingProxyType

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth")
"""File endings of a StyleGAN-style generator pickle: what ``load_model`` accepts and ``models`` identifies."""

IMAGE_SPEC_PREFIXES = ("npy:", "folder:")
"""Prefixes of an image-set spec (``npy:PATH``, ``folder:PATH?...``) wherever images are taken."""

ANCHOR_STRATEGIES = ("sectors", "random", "farthest", "kmeans")
"""How a support set's anchors are chosen: the information-gain sectors first, then the baselines."""

BASELINE_STRATEGIES = ANCHOR_STRATEGIES[1:]
"""The anchor strategies other than sectors (random, farthest-point, k-means)."""

SPLITS = ("train", "test", "all")
"""The dataset splits a command may read."""

SAMPLERS = ("auto", "prior", "gaussian", "gmm")
"""Where a model's own samples come from in the generator benchmarks."""

FLAT_MAP_SQUARE_MATRICES = 3
"""Float64 matrices of (d_source + 1)^2 that fitting one linear map between flattened latents holds at once (its
normal equations, their eigenvectors, a working copy): what a spatial latent of C x h x w costs a map that flattens
it, checked before fitting (``latentmap.resources.flattened_map_bytes``)."""

AUTO_ALPHA = "auto"
"""The ridge penalty chosen by generalized cross-validation (``alpha="auto"``, ``--alpha auto``)."""

ANCHOR_MAP_DEFAULTS = MappingProxyType({"bias": False, "alpha": AUTO_ALPHA})
"""A linear map fitted on a few anchor images (a support set or an image set): the paper's bias-free map, its
ridge penalty chosen by GCV (the exact fit would interpolate the anchors). Dataset and sample fits keep
LinearMap's own defaults (an intercept, no penalty)."""

GAIN_IMAGES = 2000
"""Images the information gain is estimated on when a support set is built (or anchor strategies compared)."""

SPREAD_PAIRS = 5000
"""Random image pairs of a support set's spread statistic (the dataset's mean pairwise MSE)."""

COMPARE_ALPHA = 1e-3
"""The fixed ridge penalty of the bias-free maps that compare anchor strategies."""

COMPARE_REFERENCE_IMAGES = 10000
"""Training images of the reference maps an anchor-strategy comparison measures every anchor set against."""
