"""``PiecewiseLinearMap``: one affine map per k-means cell of the source latent space (label-free).

A single affine map between two VAEs trained on Fashion-MNIST costs about 1.5x the target's own
reconstruction error, while one map per garment class (an oracle that is told each image's
label) costs about 1.16x: the two spaces are closer to linearly related region by region. This
estimator finds the regions without labels.

Fitting, streaming as LinearMap's:

1. k-means cells (scikit-learn ``KMeans``, seeded) on a sample of the source latents: in ``fit``
   a seeded random sample of at most ``kmeans_sample`` rows; in ``partial_fit``/``fit_batches``
   the first ``kmeans_sample`` rows, held back until the cells are known.
2. Per cell, float64 sufficient statistics of its pairs (:class:`latentmap.stats.Moments`),
   merged batch by batch; their merge is the global affine least-squares map W_g.
3. Per cell k, a ridge-regularised affine map centred on the global one:
   argmin_W ‖Y_k − X_k W − b‖² + α‖W − W_g‖² (the intercept unpenalized), i.e.
   (C_k + αI) Δ = C_xy,k − C_k W_g and W_k = W_g + Δ. A cell with few images stays close to
   the global map instead of collapsing towards a constant; ``alpha="auto"`` chooses α per
   cell by generalized cross-validation, ``shrink="zero"`` penalizes ‖W‖ as plain ridge.
   With one cell the map is the global least-squares map, LinearMap's.

``soft=True`` makes the map continuous: an image is mapped by every cell's affine map, weighted
by a softmax over its squared distances to the cell centres,
p_k ∝ exp(−(‖x − c_k‖² − min_j ‖x − c_j‖²) / (temperature · s²)), with s² the mean squared
distance of the k-means sample to its nearest centre (``scale_``). Small temperatures tend to
the hard cells. The cells' maps are fitted on the hard cells either way.

Merging (``merge``, torchrun's ``all_reduce``) adds the cells' statistics, so every part must use the
same cells: those of the stream's first ``kmeans_sample`` rows. Under torch.distributed rank 0 (whose
shard starts the stream) computes them, from its own rows or from the first rows of every rank gathered
in rank order, and the other ranks hold their latent pairs until they receive them.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from latentmap.constants import AUTO_ALPHA
from latentmap.errors import CheckpointError, ConfigError, UnderdeterminedError
from latentmap.maps.base import StreamingMapEstimator
from latentmap.maps.checks import Interval, LatentsLike, StrOptions, merged_moments, pair_moments
from latentmap.maps.solvers import gcv_alpha, solve_spd
from latentmap.stats import Moments

KMEANS_N_INIT = 4
TRANSFORM_CHUNK_ROWS = 2048
SHRINK_TARGETS = ("global", "zero")


class PiecewiseLinearMap(StreamingMapEstimator):
    """One ridge-regularised affine map per k-means cell of the source latents; hard or soft (continuous) cells.

    Parameters
    ----------
    n_cells
        Number of k-means cells (1 gives the global affine least-squares map).
    alpha
        Ridge penalty (>= 0) of each cell's map towards the global map, or ``"auto"``: chosen per cell
        by generalized cross-validation.
    soft
        Blend the cells' maps with softmax weights over the distances to the centres (continuous map).
    temperature
        Softness of the blend, relative to the mean squared distance to the nearest centre.
    shrink
        ``"global"`` (penalize ‖W_k − W_global‖) or ``"zero"`` (penalize ‖W_k‖, plain ridge).
    kmeans_sample
        Rows the k-means cells are computed from.
    seed
        Seed of k-means and of its sample.

    Attributes
    ----------
    cluster_centers_
        [n_cells, n_features].
    coefs_, intercepts_
        [n_cells, n_targets, n_features] and [n_cells, n_targets]: each cell's map.
    alphas_
        [n_cells]: the penalty each cell used.
    cell_counts_
        [n_cells].
    scale_
        The mean squared distance of the k-means sample to its nearest centre, the scale of ``temperature``.
    coef_, intercept_
        The global affine map.
    n_features_in_, n_targets_, n_samples_seen_, fit_metrics_
        Sizes of the fitted problem, and the metrics of the hard cells.
    """

    estimator_name = "piecewise"
    _parameter_constraints = {
        "n_cells": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({AUTO_ALPHA})],
        "soft": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "shrink": [StrOptions(set(SHRINK_TARGETS))],
        "kmeans_sample": [Interval(Integral, 1, None, closed="left")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }
    _statistics = {"_cells": "n_cells"}  # one accumulator of moments per k-means cell
    _cells: list[Moments]
    _FITTED = StreamingMapEstimator._FITTED + ("cluster_centers_", "coefs_", "intercepts_", "alphas_",
                                               "cell_counts_", "scale_", "coef_", "intercept_")

    def __init__(self, n_cells: int = 16, alpha: float | str = AUTO_ALPHA, soft: bool = False,
                 temperature: float = 0.1, shrink: str = "global", kmeans_sample: int = 20000, seed: int = 0) -> None:
        self.n_cells = n_cells
        self.alpha = alpha
        self.soft = soft
        self.temperature = temperature
        self.shrink = shrink
        self.kmeans_sample = kmeans_sample
        self.seed = seed

    # ------------------------------------------------------------------ accumulation
    def _reset(self) -> None:
        super()._reset()
        self._centres: torch.Tensor | None = None  # float64 [K, d_x] once k-means has run
        self._scale: float | None = None
        self._held: list[tuple[torch.Tensor, torch.Tensor]] = []  # pairs waiting for the cells

    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        gen = torch.Generator().manual_seed(int(self.seed))
        rows = torch.randperm(len(x), generator=gen)[:self.kmeans_sample]
        self._run_kmeans(x[rows.to(x.device)])

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self._centres is None:
            self._held.append((x, y))
            if sum(len(h[0]) for h in self._held) >= self.kmeans_sample and not _waits_for_rank_zero():
                self._release_held()
            return
        self._add_to_cells(x, y)

    def _release_held(self) -> None:
        if self._centres is None:
            self._run_kmeans(torch.cat([h[0] for h in self._held])[:self.kmeans_sample])
        held, self._held = self._held, []
        for x, y in held:
            self._add_to_cells(x, y)

    def _run_kmeans(self, sample: torch.Tensor) -> None:
        from sklearn.cluster import KMeans

        if len(sample) < self.n_cells:
            raise UnderdeterminedError(f"n_cells={self.n_cells} k-means cells need at least {self.n_cells} latent "
                                       f"pairs, got {len(sample)}")
        data = sample.detach().to(torch.float64).cpu().numpy()
        km = KMeans(self.n_cells, n_init=KMEANS_N_INIT, random_state=int(self.seed) % 2**32).fit(data)
        self._centres = torch.as_tensor(km.cluster_centers_, dtype=torch.float64)
        self._scale = float(km.inertia_) / len(data)

    def _add_to_cells(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cell = self._nearest(x.to(torch.float64))
        for k in torch.unique(cell).tolist():
            rows = cell == k
            self._cells[k] = merged_moments(x[rows], y[rows], self._cells[k])

    # ------------------------------------------------------------------ merging: the same cells everywhere
    def _merge_from(self, other: PiecewiseLinearMap) -> None:
        """The cells are those of the stream's first ``kmeans_sample`` rows: this estimator's rows come first."""
        if other._centres is not None and self._centres is None:
            if not self._n_seen:  # nothing of its own yet: the other's cells are the merged stream's
                self._centres, self._scale = other._centres.clone(), other._scale
            elif sum(len(h[0]) for h in self._held) >= self.kmeans_sample:
                self._release_held()
            else:  # the sample continues into the other's rows: its cells are not the merged stream's
                raise ConfigError("cannot merge a piecewise map whose cells were computed from fewer rows than a "
                                  "k-means sample into one still waiting for its sample; merge in stream order")
        if self._centres is not None and other._centres is not None and not torch.equal(
                self._centres, other._centres.to(self._centres.device)):
            raise ConfigError("cannot merge piecewise maps with different k-means cells: fit them on the same "
                              "first rows (or merge before the cells are computed)")
        for x, y in other._held:
            self._accumulate(x, y)
        if self._centres is not None:
            super()._merge_from(other)

    def _before_all_reduce(self) -> None:
        """Every rank takes rank 0's cells, those of the stream's first ``kmeans_sample`` rows (rank 0's shard comes
        first): computed there when its shard holds a whole sample, else from the rows gathered in rank order."""
        from latentmap import distributed

        d_x = self._sizes_seen[0]
        ready = torch.tensor([1.0 if distributed.rank() == 0 and self._centres is not None else 0.0],
                             dtype=torch.float64)
        if float(distributed.all_reduce_sum(ready)[0]) == 0:
            sample = torch.cat([h[0] for h in self._held])[:self.kmeans_sample].cpu() if self._held else None
            rows = distributed.gather_rows(sample if sample is None or len(sample) else None)
            if distributed.rank() == 0:
                if rows is None or len(rows) == 0:
                    raise UnderdeterminedError("the piecewise map has seen no latent pairs on any rank")
                self._run_kmeans(torch.as_tensor(rows)[:self.kmeans_sample])
        mine = distributed.rank() == 0
        centres = self._known_cells()[0].reshape(-1) if mine else torch.zeros(self.n_cells * d_x, dtype=torch.float64)
        scale = torch.tensor([self._known_cells()[1] if mine else 0.0], dtype=torch.float64)
        shared = distributed.all_reduce_sum(torch.cat([centres.cpu().to(torch.float64), scale]))
        self._centres, self._scale = shared[:-1].reshape(self.n_cells, d_x).clone(), float(shared[-1])
        if self._held:
            self._release_held()

    def _known_cells(self) -> tuple[torch.Tensor, float]:
        """The k-means centres and scale, where the caller knows k-means has run."""
        assert self._centres is not None and self._scale is not None, "the k-means cells are computed by now"
        return self._centres, self._scale

    def _nearest(self, x: torch.Tensor) -> torch.Tensor:
        return _sq_distances(x, self._known_cells()[0].to(x.device)).argmin(1)

    # ------------------------------------------------------------------ solving
    def _solve(self) -> None:
        if self._held:
            self._release_held()
        cells = self._cells
        total = Moments(full=True)
        for c in cells:
            total.merge(c)
        mean_x, cxx, mean_y, cxy, cyy = pair_moments(total)
        w_g, _ = solve_spd(cxx, cxy, 0.0)
        b_g = mean_y - mean_x @ w_g
        d_x, d_y = w_g.shape
        coefs: list[torch.Tensor] = []
        intercepts: list[torch.Tensor] = []
        alphas: list[float] = []
        counts: list[int] = []
        sse = torch.zeros(d_y, dtype=torch.float64, device=w_g.device)
        for c in cells:
            if not c.n:
                w, b, a, n = w_g, b_g, float("inf"), 0
            else:
                c = _on(c, w_g.device)
                w, a = self._cell_map(c, w_g)
                c_mean_x, c_cxx, c_mean_y, c_cxy, c_cyy = pair_moments(c)
                b, n = c_mean_y - c_mean_x @ w, c.n
                sse += (c_cyy - 2 * (w * c_cxy).sum(0) + (w * (c_cxx @ w)).sum(0)).clamp_min(0)
            coefs.append(w.T)
            intercepts.append(b)
            alphas.append(a)
            counts.append(n)
        centres, scale = self._known_cells()
        self.cluster_centers_ = centres.numpy()
        self.coefs_ = torch.stack(coefs).cpu().numpy()
        self.intercepts_ = torch.stack(intercepts).cpu().numpy()
        self.alphas_ = np.asarray(alphas, dtype=np.float64)
        self.cell_counts_ = np.asarray(counts, dtype=np.int64)
        self.scale_ = float(scale)
        self.coef_, self.intercept_ = w_g.T.cpu().numpy(), b_g.cpu().numpy()
        self.n_samples_seen_ = int(total.n)
        r2 = 1 - sse / cyy.clamp_min(1e-300)
        self.fit_metrics_ = {"n_pairs": int(total.n), "latent_mse": float(sse.sum() / (total.n * d_y)),
                             "r2": float(r2.mean()), "metrics_of": "hard cells",
                             "smallest_cell": int(self.cell_counts_.min()), "largest_cell": int(self.cell_counts_.max())}

    def _cell_map(self, c: Moments, w_g: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The cell's matrix [d_x, d_y] and the penalty it used."""
        prior = w_g if self.shrink == "global" else torch.zeros_like(w_g)
        _, cxx, _, cxy, cyy = pair_moments(c)
        b = cxy - cxx @ prior  # cross-covariance of x with the residual y - x·prior
        if self.alpha == AUTO_ALPHA:
            syy = float(cyy.sum() - 2 * (prior * cxy).sum() + (prior * (cxx @ prior)).sum())
            try:
                alpha, _ = gcv_alpha(cxx, b, max(syy, 0.0), c.n, intercept=True)
            except UnderdeterminedError:  # a cell of one image, or with no spread: the prior alone
                return prior, float("inf")
        else:
            alpha = float(self.alpha)
        delta, _ = solve_spd(cxx, b, alpha)
        return prior + delta, alpha

    # ------------------------------------------------------------------ using the map
    def cell_weights(self, X: LatentsLike) -> torch.Tensor:
        """[N, n_cells] weights of each cell's map for source latents X: one-hot (hard) or softmax (soft)."""
        self._check_fitted()
        x = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(torch.float64)
        return self._weights(x)

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        d2 = _sq_distances(x, torch.as_tensor(self.cluster_centers_, device=x.device))
        if not self.soft:
            return torch.nn.functional.one_hot(d2.argmin(1), d2.shape[1]).to(torch.float64)
        logits = -(d2 - d2.min(1, keepdim=True).values) / (self.temperature * max(self.scale_, 1e-300))
        return torch.softmax(logits, dim=1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        coefs = torch.as_tensor(self.coefs_, device=x.device)
        intercepts = torch.as_tensor(self.intercepts_, device=x.device)
        out = torch.empty(len(x), coefs.shape[1], dtype=torch.float64, device=x.device)
        for start in range(0, len(x), TRANSFORM_CHUNK_ROWS):
            xc = x[start:start + TRANSFORM_CHUNK_ROWS]
            p = self._weights(xc)
            if self.soft:
                per_cell = torch.einsum("nd,ktd->nkt", xc, coefs) + intercepts[None]
                out[start:start + len(xc)] = torch.einsum("nk,nkt->nt", p, per_cell)
            else:
                cell = p.argmax(1)
                out[start:start + len(xc)] = torch.einsum("nd,ntd->nt", xc, coefs[cell]) + intercepts[cell]
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(np.asarray(getattr(self, name + "_"))) for name in
                ("cluster_centers", "coefs", "intercepts", "alphas", "cell_counts", "coef", "intercept")} | {
            "scale": torch.tensor([self.scale_], dtype=torch.float64)}

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        for name in ("cluster_centers", "coefs", "intercepts", "alphas", "cell_counts", "coef", "intercept"):
            setattr(self, name + "_", tensors[name].numpy())
        self.scale_ = float(tensors["scale"][0])
        if self.coefs_.shape[0] != self.n_cells:
            raise CheckpointError(f"the map records n_cells={self.n_cells} but holds {self.coefs_.shape[0]} cells")

    def _sizes(self) -> tuple[int, int]:
        return self.coefs_.shape[2], self.coefs_.shape[1]


def _waits_for_rank_zero() -> bool:
    """In a torch.distributed run, a rank other than 0 holds its pairs until rank 0's cells come (all_reduce)."""
    from latentmap import distributed

    return distributed.active() and distributed.rank() != 0


def _on(m: Moments, device: torch.device | str) -> Moments:
    if pair_moments(m)[0].device == torch.device(device):
        return m
    return Moments.from_state({k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                               for k, v in m.state().items()}, full=True)


def _sq_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """[N, K] squared Euclidean distances in float64 (never negative)."""
    d2 = (x * x).sum(1, keepdim=True) - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return d2.clamp_min(0)
