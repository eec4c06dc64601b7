"""Convolutional maps (conv:1, conv:K, conv-mlp) against independent references: scikit-learn regressions on
position rows built here by numpy loops, hand-written resizing, a planted per-position channel mixing, and
2 gloo ranks against one process."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, Ridge

from latentmap.errors import ConfigError, ShapeMismatchError, UnderdeterminedError
from latentmap.maps.conv import ConvMap, ConvMLPMap
from latentmap.maps.mlp import MLPMap
from latentmap.maps.registry import load_map, parse_estimator


def grids(n=40, c_a=3, c_b=2, hw=(5, 4), seed=0, hw_b=None):
    """Source grids and a target that is no convolution of them (so every fit has residuals to get right)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_a, *hw)) + rng.normal(size=(1, c_a, 1, 1))
    y = np.tanh(x[:, :c_b]) * 2 + 0.3 * rng.normal(size=(n, c_b, *hw)) + np.arange(c_b)[None, :, None, None]
    if hw_b is not None:
        y = rng.normal(size=(n, c_b, *hw_b))
    return x, y


def rows_1x1(g):
    """[n, C, h, w] -> [n·h·w, C] in image, row, column order."""
    return g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])


def rows_kxk(g, k):
    """The K x K zero-padded neighbourhood of every position by explicit loops, columns (channel, di, dj)."""
    n, c, h, w = g.shape
    r = k // 2
    out = np.zeros((n * h * w, c * k * k))
    row = 0
    for img in range(n):
        for i in range(h):
            for j in range(w):
                col = 0
                for ch in range(c):
                    for di in range(-r, r + 1):
                        for dj in range(-r, r + 1):
                            if 0 <= i + di < h and 0 <= j + dj < w:
                                out[row, col] = g[img, ch, i + di, j + dj]
                            col += 1
                row += 1
    return out


def to_grid(rows, n, hw):
    """[n·h·w, C] -> [n, C, h, w]."""
    return rows.reshape(n, *hw, -1).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- against scikit-learn

def test_conv1_is_linear_regression_on_the_position_rows():
    x, y = grids()
    m = ConvMap().fit(x, y)
    ref = LinearRegression().fit(rows_1x1(x), rows_1x1(y))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.intercept_, ref.intercept_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.predict(x), to_grid(ref.predict(rows_1x1(x)), 40, (5, 4)), rtol=1e-9, atol=1e-12)
    assert m.n_samples_seen_ == 40 and m.fit_metrics_["n_positions"] == 40 * 20
    # the latent MSE over every target number, from the statistics alone
    assert m.fit_metrics_["latent_mse"] == pytest.approx(((m.predict(x) - y) ** 2).mean(), rel=1e-9)


@pytest.mark.parametrize("k", [3, 5])
def test_conv_k_is_linear_regression_on_neighbourhoods_built_by_loops(k):
    x, y = grids(n=30, c_a=2, hw=(5, 4), seed=k)
    rows = rows_kxk(x, k)
    ref = LinearRegression().fit(rows, rows_1x1(y))
    m = parse_estimator(f"conv:{k}").make().fit(x, y)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.predict(x), to_grid(ref.predict(rows), 30, (5, 4)), rtol=1e-8, atol=1e-10)
    assert m.weight_.shape == (2, 2, k, k)
    # flat latents with their shapes: the same map, answering flat
    flat = ConvMap(kernel_size=k, source_shape=(2, 5, 4), target_shape=(2, 5, 4)).fit(x.reshape(30, -1),
                                                                                      y.reshape(30, -1))
    np.testing.assert_array_equal(flat.coef_, m.coef_)
    np.testing.assert_array_equal(flat.predict(x.reshape(30, -1)), m.predict(x).reshape(30, -1))


@pytest.mark.parametrize("bias", [True, False])
def test_ridge_is_sklearn_ridge_and_auto_alpha_minimizes_gcv_over_the_position_rows(bias):
    from latentmap.maps.solvers import GCV_LOG10_GRID

    x, y = grids(n=6, c_a=3, hw=(4, 4), seed=5)  # 96 rows of 27 features: a penalty matters
    rows, target = rows_kxk(x, 3), rows_1x1(y)
    m = ConvMap(kernel_size=3, bias=bias, alpha=0.8).fit(x, y)
    ref = Ridge(alpha=0.8, fit_intercept=bias, solver="cholesky").fit(rows, target)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.intercept_, ref.intercept_ if bias else 0, rtol=1e-8, atol=1e-10)
    auto = ConvMap(kernel_size=3, bias=bias, alpha="auto").fit(x, y)
    n = len(rows)
    xc, yc = (rows - rows.mean(0), target - target.mean(0)) if bias else (rows, target)
    grid = np.trace(xc.T @ xc) / rows.shape[1] * 10.0 ** GCV_LOG10_GRID

    def gcv(alpha):  # n·RSS / (n − tr H)² from the explicit hat matrix, the intercept unpenalized
        hat = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(rows.shape[1]), xc.T)
        resid = yc - hat @ yc
        return n * (resid ** 2).sum() / (n - np.trace(hat) - (1 if bias else 0)) ** 2

    scores = [gcv(a) for a in grid]
    assert auto.alpha_ == pytest.approx(grid[int(np.argmin(scores))], rel=1e-9)
    assert auto.fit_metrics_["gcv"] == pytest.approx(min(scores) / target.shape[1], rel=1e-6)
    ref = Ridge(alpha=auto.alpha_, fit_intercept=bias, solver="cholesky").fit(rows, target)
    np.testing.assert_allclose(auto.coef_, ref.coef_, rtol=1e-7, atol=1e-10)


def test_a_known_per_position_channel_mixing_is_recovered_exactly():
    """The second latent is the first mixed at every position by a known C_b x C_a matrix plus a bias."""
    rng = np.random.default_rng(11)
    z_a = rng.normal(size=(64, 4, 7, 7)) * rng.uniform(0.5, 3, size=(1, 4, 1, 1)) + 2.0
    mixing, shift = rng.normal(size=(6, 4)), rng.normal(size=6)
    z_b = np.einsum("ba,nahw->nbhw", mixing, z_a) + shift[:, None, None]
    m = ConvMap().fit(z_a, z_b)
    np.testing.assert_allclose(m.coef_, mixing, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.intercept_, shift, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.predict(z_a), z_b, rtol=0, atol=1e-10)
    assert m.fit_metrics_["r2"] == pytest.approx(1.0, abs=1e-12)
    # a 3x3 neighbourhood finds the same map: its centre tap, and nothing around it
    m3 = ConvMap(kernel_size=3).fit(z_a, z_b)
    np.testing.assert_allclose(m3.weight_[:, :, 1, 1], mixing, rtol=0, atol=1e-10)
    m3.weight_[:, :, 1, 1] = 0
    assert np.abs(m3.weight_).max() < 1e-10
    # and so does the flat pipeline (latents [N, C·h·w] with their shapes), through a map folder
    flat = ConvMap(source_shape=(4, 7, 7), target_shape=(6, 7, 7)).fit(z_a.reshape(64, -1), z_b.reshape(64, -1))
    np.testing.assert_allclose(flat.coef_, mixing, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- resizing

def bilinear_up2(g):
    """Bilinear upsampling by 2 with align_corners=False, written out: source coordinate (i + 0.5)/2 − 0.5,
    clamped at the edges."""
    def axis(n):
        src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo
    lo_i, hi_i, t_i = axis(g.shape[2])
    lo_j, hi_j, t_j = axis(g.shape[3])
    rows = g[:, :, lo_i] * (1 - t_i)[:, None] + g[:, :, hi_i] * t_i[:, None]
    return rows[..., lo_j] * (1 - t_j) + rows[..., hi_j] * t_j


@pytest.mark.parametrize("mode", ["bilinear", "area"])
def test_a_source_grid_is_resized_to_the_target_grid(mode, tmp_path):
    rng = np.random.default_rng(4)
    if mode == "bilinear":  # 3x4 -> 6x8
        x, y = rng.normal(size=(20, 3, 3, 4)), rng.normal(size=(20, 2, 6, 8))
        resized = bilinear_up2(x)
    else:  # 6x8 -> 3x4, each target position the mean of its 2x2 block
        x, y = rng.normal(size=(20, 3, 6, 8)), rng.normal(size=(20, 2, 3, 4))
        resized = x.reshape(20, 3, 3, 2, 4, 2).mean(axis=(3, 5))
    m = ConvMap(kernel_size=3, resize=mode).fit(x, y)
    rows = rows_kxk(resized, 3)
    ref = LinearRegression().fit(rows, rows_1x1(y))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.predict(x), to_grid(ref.predict(rows), 20, y.shape[2:]), rtol=1e-8, atol=1e-10)
    assert m.source_shape_ == x.shape[1:] and m.target_shape_ == y.shape[1:]
    # the map folder records the mode and both grids
    back = load_map(m.save(tmp_path / "map"))
    assert back.resize == mode and back.source_shape_ == x.shape[1:] and back.target_shape_ == y.shape[1:]
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    info = json.loads((tmp_path / "map" / "map.json").read_text())
    assert info["estimator"] == "conv" and info["hyperparameters"]["resize"] == mode


@pytest.mark.parametrize("alpha, expected", [(0.5, 0.5), ("auto", 0.0)])
def test_a_map_folder_without_a_recorded_alpha_loads_with_the_alpha_it_was_made_with(tmp_path, alpha, expected):
    """Folders written before fit metrics recorded the penalty: the loaded map's alpha_ is its own alpha, and 0
    for a GCV-chosen one whose value was never kept."""
    x, y = grids(n=40, c_a=2, c_b=2, hw=(4, 4), seed=3)
    folder = ConvMap(kernel_size=1, alpha=alpha).fit(x, y).save(tmp_path / "map")
    info = json.loads((folder / "map.json").read_text())
    info.get("fit_metrics", {}).pop("alpha", None)
    (folder / "map.json").write_text(json.dumps(info))
    assert load_map(folder).alpha_ == expected


# --------------------------------------------------------------------------- streaming, merging

def test_partial_fit_in_batches_and_merged_halves_equal_one_fit():
    x, y = grids(n=90, c_a=3, c_b=2, hw=(6, 5), seed=2)
    for spec in ("conv", "conv:3", "conv:3:alpha=auto:bias=false"):
        whole = parse_estimator(spec).make().fit(x, y)
        streamed = parse_estimator(spec).make()
        for start in range(0, 90, 17):
            streamed.partial_fit(x[start:start + 17], y[start:start + 17])
        halves = [parse_estimator(spec).make().partial_fit(x[a:b], y[a:b]) for a, b in ((0, 41), (41, 90))]
        merged = halves[0].merge(halves[1])
        for m in (streamed, merged):
            assert m.n_samples_seen_ == 90
            np.testing.assert_allclose(m.coef_, whole.coef_, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(m.intercept_, whole.intercept_, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(m.predict(x), whole.predict(x), rtol=1e-9, atol=1e-12)
    one = ConvMap().partial_fit(x[:10], y[:10])
    with pytest.raises(ShapeMismatchError, match=r"grids \(3, 6, 5\) -> \(2, 6, 5\), this batch has \(3, 5, 6\)"):
        one.partial_fit(x[10:20].reshape(10, 3, 5, 6), y[10:20])
    other = ConvMap().partial_fit(x[:10].reshape(10, 3, 5, 6), y[:10].reshape(10, 2, 5, 6))
    with pytest.raises(ShapeMismatchError, match="cannot merge latent grids"):
        ConvMap().partial_fit(x[:10], y[:10]).merge(other)


# --------------------------------------------------------------------------- shapes and errors

def test_shapes_are_read_off_4d_latents_or_the_parameters_and_checked():
    x, y = grids(n=80)
    flat_x, flat_y = x.reshape(80, -1), y.reshape(80, -1)
    with pytest.raises(ShapeMismatchError, match=r"^X is flat and source_shape is not set, while the other side's "
                                                 r"latents are 5x4 grids"):
        ConvMap().fit(flat_x, y)
    with pytest.raises(ShapeMismatchError, match=r"source_shape=\(3, 4, 5\) but the source latents X are grids of "
                                                 r"shape \(3, 5, 4\)"):
        ConvMap(source_shape=(3, 4, 5)).fit(x, y)
    with pytest.raises(ShapeMismatchError, match=r"target_shape=\(2, 5, 5\) holds 50 numbers per image, but the "
                                                 r"target latents Y have 40"):
        ConvMap(source_shape=(3, 5, 4), target_shape=(2, 5, 5)).fit(flat_x, flat_y)
    with pytest.raises(ConfigError, match=r"kernel_size must be odd"):
        ConvMap(kernel_size=2).fit(x, y)
    with pytest.raises(ConfigError, match=r"source_shape must be None or a tuple \(C, h, w\)"):
        ConvMap(source_shape=(3, 5)).fit(x, y)
    with pytest.raises(ConfigError, match=r"resize must be a str among"):
        parse_estimator("conv:3:resize=cubic")
    assert parse_estimator("conv:3:source_shape=3x5x4").make().source_shape == (3, 5, 4)
    m = ConvMap().fit(x, y)
    with pytest.raises(ShapeMismatchError, match=r"maps source grids of shape \(3, 5, 4\), X has grids of shape"):
        m.predict(x.reshape(80, 3, 4, 5))
    # vectors: flat latents without shapes are one position each, on which conv:1 is the affine map
    v = ConvMap().fit(flat_x, flat_y)
    assert v.source_shape_ == (60, 1, 1)
    from latentmap.maps.linear import LinearMap

    np.testing.assert_allclose(v.predict(flat_x), LinearMap().fit(flat_x, flat_y).predict(flat_x), rtol=1e-9)
    assert ConvMap(source_shape=(60,), target_shape=(40,)).fit(flat_x, flat_y).source_shape_ == (60, 1, 1)


def test_a_vector_latent_against_a_grid_is_refused_in_one_line_before_any_pair():
    """A vector model's shape (d,) against a grid of several positions has no position-by-position map: refused
    from the parameters (the fit loop's check before encoding), and at fit with flat or 4-D latents."""
    from types import SimpleNamespace

    from latentmap.maps.fitting import with_latent_shapes

    vector, grid = SimpleNamespace(latent_dim=32), SimpleNamespace(latent_dim=196, latent_shape=(4, 7, 7))
    for source, target, param, side in ((vector, grid, "source_shape=\\(32,\\)", "target"),
                                        (grid, vector, "target_shape=\\(32,\\)", "source")):
        for make in (ConvMap, lambda: ConvMap(kernel_size=3), ConvMLPMap):
            m = with_latent_shapes(make(), source, target)
            with pytest.raises(ShapeMismatchError, match=rf"^a convolutional map needs C x h x w latents on both "
                                                         rf"sides, but {param} is a vector latent and the {side} "
                                                         r"latents are 7x7 grids; map flattened latents instead"):
                m._validate_params()
    rng = np.random.default_rng(0)
    v, g = rng.normal(size=(50, 32)), rng.normal(size=(50, 4, 7, 7))
    with pytest.raises(ShapeMismatchError, match=r"source_shape=\(32,\) is a vector latent"):
        ConvMap(source_shape=(32,), target_shape=(4, 7, 7)).fit(v, g.reshape(50, -1))
    with pytest.raises(ShapeMismatchError, match=r"source_shape=\(32,\) is a vector latent"):
        ConvMap(source_shape=(32,)).fit(v, g)
    with pytest.raises(ShapeMismatchError, match=r"target_shape=\(32,\) is a vector latent"):
        ConvMap(target_shape=(32,)).fit(g, v)
    # vectors against vectors or one-position grids stay the affine map; an explicit 1x1 grid may be resized
    assert ConvMap(source_shape=(32,), target_shape=(196, 1, 1)).fit(v, g.reshape(50, -1)).source_shape_ == (32, 1, 1)
    assert ConvMap(source_shape=(32, 1, 1)).fit(v, g).target_shape_ == (4, 7, 7)


def test_too_few_positions_are_refused_in_words_of_positions():
    x, y = grids(n=1, c_a=4, hw=(3, 3))
    with pytest.raises(UnderdeterminedError, match=r"conv:3 map fits 37 numbers per target channel .* needs at least"
                                                   r" 37 positions \(images x h x w\), got 9"):
        ConvMap(kernel_size=3).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer rows than parameters: the ridge fit warns and goes on
        assert ConvMap(kernel_size=3, alpha=1.0).fit(x, y).coef_.shape == (2, 36)


# --------------------------------------------------------------------------- the per-position MLP

def test_conv_mlp_is_the_mlp_on_the_position_rows_and_beats_conv1_on_a_nonlinear_mixing(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 2, 6, 6))
    y = np.stack([np.tanh(2 * x[:, 0] - x[:, 1]), np.sin(x[:, 0] * x[:, 1])], axis=1)
    params = dict(hidden=(32,), max_epochs=12, patience=12, batch_size=128, lr=1e-2)
    m = ConvMLPMap(**params).fit(x, y)
    ref = MLPMap(**params).fit(rows_1x1(x), rows_1x1(y))
    np.testing.assert_allclose(m.predict(x), to_grid(ref.predict(rows_1x1(x)), 40, (6, 6)), rtol=1e-6, atol=1e-6)
    assert m.fit_metrics_["n_pairs"] == 40 and m.fit_metrics_["n_positions"] == 40 * 36
    x_test = rng.normal(size=(20, 2, 6, 6))
    y_test = np.stack([np.tanh(2 * x_test[:, 0] - x_test[:, 1]), np.sin(x_test[:, 0] * x_test[:, 1])], axis=1)
    assert m.score(x_test, y_test) > ConvMap().fit(x, y).score(x_test, y_test) + 0.2
    back = load_map(m.save(tmp_path / "mlp"))
    assert type(back) is ConvMLPMap and back.get_params() == m.get_params() and back.target_shape_ == (2, 6, 6)
    np.testing.assert_allclose(back.predict(x), m.predict(x), rtol=1e-6, atol=1e-6)
    assert clone(m).get_params() == m.get_params()
    assert "n_positions" in set(m.to_frame()["name"])


# --------------------------------------------------------------------------- 2 gloo ranks against one process

CASES = {  # name: (spec, source grid, target grid, flat with shapes, rank 1 gets no pairs)
    "conv1": ("conv", (3, 6, 5), (2, 6, 5), False, False),
    "conv3-flat-resized": ("conv:3:alpha=auto:source_shape=3x8x8:target_shape=2x4x4", (3, 8, 8), (2, 4, 4), True,
                           False),
    "conv3-rank1-empty": ("conv:3", (3, 6, 5), (2, 6, 5), False, True),
}


def case_data(name):
    _, src, tgt, flat, _ = CASES[name]
    rng = np.random.default_rng(len(name))
    x = rng.normal(size=(120, *src)) + 1.0
    y = rng.normal(size=(120, *tgt)) + x.mean(axis=(1, 2, 3))[:, None, None, None]
    return (x.reshape(120, -1), y.reshape(120, -1)) if flat else (x, y)


def ranks_script(out):
    """Each rank folds its contiguous block of the pairs into the statistics, the ranks add them up, rank 0
    saves what every rank solved."""
    from latentmap import distributed

    distributed.init()
    rank, world = distributed.rank(), distributed.world_size()
    saved = {}
    for name, (spec, _, _, _, rank1_empty) in CASES.items():
        x, y = case_data(name)
        cut = [0, 120, 120] if rank1_empty else [0, 50, 120]
        m = parse_estimator(spec).make()
        if cut[rank + 1] > cut[rank]:
            m.partial_fit(x[cut[rank]:cut[rank + 1]], y[cut[rank]:cut[rank + 1]])
        m.all_reduce(x[0].size, y[0].size).solve()
        saved.update({f"{name}.coef": m.coef_, f"{name}.intercept": m.intercept_,
                      f"{name}.n": np.array([m.n_samples_seen_, world])})
    if rank == 0:
        np.savez(out, **saved)
    distributed.shutdown()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    from pathlib import Path

    from tests.test_distributed import _torchrun

    out = tmp_path / "ranks.npz"
    run = _torchrun([str(Path(__file__).resolve()), "ranks", str(out)])
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(out)
    for name, (spec, *_rest) in CASES.items():
        x, y = case_data(name)
        one = parse_estimator(spec).make().fit(x, y)
        assert list(got[f"{name}.n"]) == [120, 2]
        np.testing.assert_allclose(got[f"{name}.coef"], one.coef_, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(got[f"{name}.intercept"], one.intercept_, rtol=1e-9, atol=1e-12, err_msg=name)


if __name__ == "__main__" and sys.argv[1] == "ranks":
    torch.set_num_threads(1)
    ranks_script(sys.argv[2])
