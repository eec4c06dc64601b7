"""Anchor baselines (random, farthest, kmeans): the anchor strategies of latentmap.support.selectors."""

import pytest
import torch

from latentmap.errors import ConfigError, SupportSetError
from latentmap.support.selectors import farthest_points, select_anchors


def test_random_anchors_seeded_and_distinct():
    a = select_anchors("random", 20, pool_size=100, seed=3)
    assert a == select_anchors("random", 20, pool_size=100, seed=3) and len(set(a)) == 20
    assert a != select_anchors("random", 20, pool_size=100, seed=4)


def test_farthest_point_sampling_is_greedy_max_min():
    z = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    chosen = farthest_points(z, 6, torch.Generator().manual_seed(1))
    assert len(set(chosen)) == 6
    for step in range(1, 6):  # each new point is the farthest from those already chosen
        nearest = torch.cdist(z.double(), z[chosen[:step]].double()).min(dim=1).values
        assert nearest[chosen[step]] == pytest.approx(float(nearest.max()))
    assert chosen == select_anchors("farthest", 6, pool_size=200, latents=z, seed=1)


def test_farthest_with_duplicates_never_repeats():
    z = torch.zeros(10, 2)
    z[0] = 1.0
    assert len(set(select_anchors("farthest", 5, pool_size=10, latents=z, seed=0))) == 5


def test_kmeans_anchors_are_nearest_to_centroids():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    z = (centers[:, None, :] + 0.3 * torch.randn(4, 50, 2, generator=g)).reshape(-1, 2)
    chosen = select_anchors("kmeans", 4, pool_size=200, latents=z, seed=0)
    assert sorted(i // 50 for i in chosen) == [0, 1, 2, 3]  # one per blob
    km = KMeans(n_clusters=4, n_init=1, random_state=0).fit(z.double().numpy())
    dist = torch.cdist(torch.from_numpy(km.cluster_centers_), z.double())
    assert chosen == dist.argmin(dim=1).tolist()


def test_strategy_errors():
    with pytest.raises(ConfigError, match="needs the latents of all 10 candidates"):
        select_anchors("kmeans", 3, pool_size=10)
    with pytest.raises(SupportSetError, match="cannot choose 11 anchors from 10"):
        select_anchors("random", 11, pool_size=10)
    with pytest.raises(ConfigError, match="got 'best'"):
        select_anchors("best", 3, pool_size=10)
