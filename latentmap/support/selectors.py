"""Anchor strategies other than sectors: ``random``, ``farthest`` (farthest-point sampling in the
model's latent space from a seeded start) and ``kmeans`` (the image nearest to each k-means
centroid of the latents). Each chooses ``size`` positions in a candidate pool.
"""

from __future__ import annotations

import torch

from latentmap.constants import BASELINE_STRATEGIES
from latentmap.errors import ConfigError, SupportSetError


def select_anchors(strategy: str, size: int, *, pool_size: int, latents: torch.Tensor | None = None,
                   seed: int = 0) -> list[int]:
    """Positions (into a pool of ``pool_size`` candidates) of ``size`` distinct anchors."""
    if strategy not in BASELINE_STRATEGIES:
        raise ConfigError(f"anchor strategy must be one of {', '.join(BASELINE_STRATEGIES)}, "
                          f"got '{strategy}' instead")
    if size > pool_size:
        raise SupportSetError(f"cannot choose {size} anchors from {pool_size} candidate images")
    if strategy != "random":
        if latents is None or len(latents) != pool_size:
            found = "none" if latents is None else len(latents)
            raise ConfigError(f"strategy '{strategy}' needs the latents of all {pool_size} candidates, got {found}")
    generator = torch.Generator().manual_seed(int(seed))
    if strategy == "random":
        return torch.randperm(pool_size, generator=generator)[:size].tolist()
    assert latents is not None  # checked above for every strategy but random
    if strategy == "farthest":
        return farthest_points(latents, size, generator)
    return kmeans_nearest(latents, size, seed)


def farthest_points(latents: torch.Tensor, size: int, generator: torch.Generator) -> list[int]:
    """Greedy farthest-point sampling: each new anchor maximizes its distance to those chosen."""
    z = torch.as_tensor(latents).double()
    chosen = [int(torch.randint(len(z), (1,), generator=generator))]
    nearest = (z - z[chosen[0]]).pow(2).sum(1)
    for _ in range(size - 1):
        nearest[chosen] = -1  # never pick twice, even among duplicate points
        nxt = int(torch.argmax(nearest))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, (z - z[nxt]).pow(2).sum(1))
    return chosen


def kmeans_nearest(latents: torch.Tensor, size: int, seed: int) -> list[int]:
    """k-means with ``size`` clusters; for every centroid the nearest not yet chosen point."""
    from sklearn.cluster import KMeans

    z = torch.as_tensor(latents).double()
    km = KMeans(n_clusters=size, n_init=1, random_state=int(seed) % 2**32).fit(z.numpy())
    dist = torch.cdist(torch.from_numpy(km.cluster_centers_), z)  # [size, N]
    candidates = torch.topk(dist, k=min(size, len(z)), dim=1, largest=False).indices
    chosen: list[int] = []
    taken: set[int] = set()
    for row in candidates.tolist():  # among `size` nearest there is always one not taken
        pick = next(i for i in row if i not in taken)
        chosen.append(pick)
        taken.add(pick)
    return chosen
