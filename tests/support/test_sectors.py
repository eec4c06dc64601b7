"""Sector helpers against hand values."""

import pytest

from latentmap.support.sectors import MAX_TOP_K, default_top_k


@pytest.mark.parametrize("size, latent_dim, expected", [
    (1, 8, 1), (2, 8, 1), (3, 8, 1), (4, 8, 2), (7, 8, 2), (8, 8, 3), (1024, 8, 8), (1024, 1, 1),
    (2 ** 20, 64, MAX_TOP_K)])
def test_default_top_k_is_floor_log2_of_the_size_within_one_and_the_latent_size(size, latent_dim, expected):
    assert default_top_k(size, latent_dim) == expected
