"""Per-image error distributions and their bootstrap intervals against hand-written resampling."""

import numpy as np
import pytest

from latentmap.evaluation.distribution import bootstrap_difference_interval
from tests.helpers.references import percentile_interval, seeded_paired_bootstrap_difference


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bootstrap_difference_interval_is_the_paired_percentile_interval(level):
    rng = np.random.default_rng(5)
    own = rng.uniform(0.5, 1.5, 40)
    a, b = own * rng.uniform(1.0, 2.0, 40), own * rng.uniform(0.9, 1.6, 40)
    diffs = seeded_paired_bootstrap_difference(own, a, b, resamples=250, seed=3)
    expected = percentile_interval(diffs, level)
    assert bootstrap_difference_interval(own, a, b, n_boot=250, seed=3, level=level) == pytest.approx(
        expected, rel=1e-12, abs=1e-15)
