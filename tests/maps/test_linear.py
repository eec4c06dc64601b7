"""LinearMap against numpy float64 lstsq, sklearn Ridge and sklearn's r2_score."""

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from latentmap import LinearMap
from latentmap.errors import (CheckpointError, ConfigError, LatentmapError, NonFiniteError, NotFittedError,
                              ShapeMismatchError, UnderdeterminedError)
from latentmap.maps.solvers import IllConditionedWarning


def make_pair(n=400, d_x=12, d_y=9, noise=0.1, seed=0, offset=3.0):
    """Well-conditioned data with a non-zero mean, an affine relation and noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_x)) + offset
    w = rng.normal(size=(d_x, d_y))
    b = rng.normal(size=d_y)
    y = x @ w + b + noise * rng.normal(size=(n, d_y))
    return x, y, w, b


def rel_err(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


def lstsq_reference(x, y, bias):
    a = np.hstack([x, np.ones((len(x), 1))]) if bias else x
    sol = np.linalg.lstsq(a, y, rcond=None)[0]
    return (sol[:-1], sol[-1]) if bias else (sol, np.zeros(y.shape[1]))


@pytest.mark.parametrize("bias", [True, False])
def test_matches_numpy_lstsq(bias):
    x, y, _, _ = make_pair()
    coef, intercept = lstsq_reference(x, y, bias)
    m = LinearMap(bias=bias).fit(x, y)
    assert m.coef_.shape == (9, 12) and m.intercept_.shape == (9,)  # sklearn's [n_targets, n_features]
    assert rel_err(m.coef_, coef.T) < 1e-8
    if bias:
        assert rel_err(m.intercept_, intercept) < 1e-8
    else:
        assert np.all(m.intercept_ == 0)
    np.testing.assert_allclose(m.predict(x), x @ coef + intercept, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("alpha", [0.5, 30.0])
def test_ridge_matches_sklearn(bias, alpha):
    x, y, _, _ = make_pair(n=200)
    ref = Ridge(alpha=alpha, fit_intercept=bias, solver="svd").fit(x, y)
    m = LinearMap(bias=bias, alpha=alpha).fit(x, y)
    assert m.coef_.shape == ref.coef_.shape and rel_err(m.coef_, ref.coef_) < 1e-8
    if bias:
        assert rel_err(m.intercept_, ref.intercept_) < 1e-8


@pytest.mark.parametrize("bias", [True, False])
def test_partial_fit_uneven_chunks_equals_one_fit(bias):
    x, y, _, _ = make_pair(n=501)
    one = LinearMap(bias=bias).fit(x, y)
    streamed = LinearMap(bias=bias)
    edges = [0, 1, 7, 60, 61, 250, 501]
    for a, b in zip(edges[:-1], edges[1:]):
        streamed.partial_fit(x[a:b], y[a:b])
    assert streamed.n_samples_seen_ == 501
    assert rel_err(streamed.coef_, one.coef_) < 1e-10
    np.testing.assert_allclose(streamed.intercept_, one.intercept_, rtol=1e-10, atol=1e-10)
    batched = LinearMap(bias=bias).fit_batches((x[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:]))
    assert rel_err(batched.coef_, one.coef_) < 1e-10


def test_small_float32_batches_through_the_row_buffer_equal_one_fit(monkeypatch):
    """partial_fit gathers small float32 batches in a row buffer (here 100 rows) before the statistics: overflowing
    it, mixing in batches too large for it, merging mid-buffer and refusing a NaN batch all give the float64 fit."""
    import latentmap.maps.linear as linear

    monkeypatch.setattr(linear, "BUFFER_BYTES", 100 * 4 * (12 + 9))
    x, y, _, _ = make_pair(n=700)
    x, y = x.astype(np.float32), y.astype(np.float32)
    one = LinearMap().fit(x.astype(np.float64), y.astype(np.float64))
    edges = [0, 30, 50, 95, 96, 300, 340, 690, 700]  # 30, 20, 45, 1, 40, 10 buffered; 204 and 350 straight on
    streamed, first, second = LinearMap(), LinearMap(), LinearMap()
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        streamed.partial_fit(torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b]))
        (first if k < 3 else second).partial_fit(x[a:b], y[a:b])
        if k == 2:
            bad = x[a:b].copy()
            bad[1, 3] = np.nan
            with pytest.raises(NonFiniteError, match="source latents X contain NaN"):
                streamed.partial_fit(bad, y[a:b])
    assert "_rows" in streamed.__dict__ and streamed.__dict__["_rows"][2] > 0  # rows still waiting in the buffer
    merged = first.merge(second)
    for m in (streamed, merged):
        assert m.n_samples_seen_ == 700
        assert rel_err(m.coef_, one.coef_) < 1e-10
        np.testing.assert_allclose(m.intercept_, one.intercept_, rtol=1e-10, atol=1e-10)
    assert second.n_samples_seen_ == 700 - 95  # merging folded second's buffer into its own statistics, no more


@pytest.mark.parametrize("bias", [True, False])
def test_square_latents_streamed_in_uneven_chunks_match_one_fit_and_lstsq(bias):
    """d_x == d_y: a transposed coef_ or a swapped cross-product keeps every shape, so only values tell."""
    x, y, w, b = make_pair(n=301, d_x=16, d_y=16, noise=0.05, seed=4)
    coef, intercept = lstsq_reference(x, y, bias)  # numpy float64: y ≈ x @ coef + intercept
    assert rel_err(coef.T, coef) > 0.5  # the true map is far from symmetric
    one = LinearMap(bias=bias).fit(x, y)
    streamed = LinearMap(bias=bias)
    edges = [0, 3, 20, 21, 150, 301]
    for lo, hi in zip(edges[:-1], edges[1:]):
        streamed.partial_fit(x[lo:hi], y[lo:hi])
    assert streamed.n_samples_seen_ == 301
    for m in (one, streamed):
        assert m.coef_.shape == (16, 16)  # sklearn's [n_targets, n_features]
        assert rel_err(m.coef_, coef.T) < 1e-9
        np.testing.assert_allclose(m.intercept_, intercept, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.transform(x), x @ coef + intercept, rtol=1e-9, atol=1e-9)
    assert rel_err(streamed.coef_, one.coef_) < 1e-10
    if bias:
        assert rel_err(one.coef_, w.T) < 0.05  # and close to the map that made the data


def test_fit_after_partial_fit_forgets_the_rows_still_in_the_buffer():
    """Rows a partial_fit left in the float32 buffer belong to the old statistics: a fit starts afresh."""
    x, y, _, _ = make_pair(n=300)
    x, y = x.astype(np.float32), y.astype(np.float32)
    m = LinearMap().partial_fit(x[:30], y[:30]).partial_fit(x[30:40], y[30:40])
    assert m.__dict__["_rows"][2] == 40  # both small batches wait in the buffer, gathered
    m.fit(x[100:], y[100:])
    np.testing.assert_allclose(m.coef_, LinearMap().fit(x[100:], y[100:]).coef_, rtol=1e-10, atol=1e-12)
    assert m.n_samples_seen_ == 200


def test_partial_fit_usable_only_when_determined():
    x, y, _, _ = make_pair(n=40, d_x=12)
    m = LinearMap().partial_fit(x[:5], y[:5])
    with pytest.raises(UnderdeterminedError, match="at least 13"):
        m.transform(x)
    m.partial_fit(x[5:], y[5:])
    assert m.transform(x).shape == (40, 9)


def test_float32_inputs_give_float64_accurate_coefficients():
    x, y, _, _ = make_pair(n=2000, d_x=32, d_y=32, offset=10.0)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    # the reference sees exactly the float32 values, solved in float64
    coef, intercept = lstsq_reference(x32.astype(np.float64), y32.astype(np.float64), True)
    for xs, ys in ((x32, y32), (torch.from_numpy(x32), torch.from_numpy(y32))):
        m = LinearMap().fit(xs, ys)
        assert m.coef_.dtype == np.float64
        assert rel_err(m.coef_, coef.T) < 1e-9
        assert rel_err(m.intercept_, intercept) < 1e-9


def test_transform_returns_the_kind_it_was_given():
    x, y, _, _ = make_pair()
    m = LinearMap().fit(torch.from_numpy(x), torch.from_numpy(y))
    out_np = m.transform(x.astype(np.float32))
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    out_t = m.transform(torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_allclose(out_t.numpy(), m.predict(x), rtol=1e-12)


def test_score_matches_sklearn_r2():
    x, y, _, _ = make_pair(noise=2.0)
    m = LinearMap().fit(x[:300], y[:300])
    assert m.score(x[300:], y[300:]) == pytest.approx(r2_score(y[300:], m.predict(x[300:])), rel=1e-10)
    assert m.fit_metrics_["r2"] == pytest.approx(m.score(x[:300], y[:300]), rel=1e-8)
    assert m.fit_metrics_["latent_mse"] == pytest.approx(np.mean((m.predict(x[:300]) - y[:300]) ** 2), rel=1e-8)


def test_sklearn_contract_clone_and_params():
    m = LinearMap(bias=False, alpha=0.3, method="lstsq")
    assert m.get_params() == {"bias": False, "alpha": 0.3, "method": "lstsq"}
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "coef_")
    c.set_params(alpha=0.0)
    assert c.alpha == 0.0 and m.alpha == 0.3
    x, y, _, _ = make_pair()
    assert m.fit(x, y) is m
    assert not hasattr(clone(m), "coef_")


def test_procrustes_recovers_rotation():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    x = rng.normal(size=(100, 6)) + 2
    shift = rng.normal(size=6)
    m = LinearMap(method="procrustes").fit(x, x @ q + shift)
    np.testing.assert_allclose(m.coef_, q.T, atol=1e-10)
    np.testing.assert_allclose(m.intercept_, shift, atol=1e-10)
    np.testing.assert_allclose(m.coef_.T @ m.coef_, np.eye(6), atol=1e-12)
    with pytest.raises(ShapeMismatchError, match="equal latent sizes"):
        LinearMap(method="procrustes").fit(x, x[:, :4])
    with pytest.raises(ConfigError, match="alpha"):
        LinearMap(method="procrustes", alpha=1.0).fit(x, x)


def test_underdetermined_fit_is_a_clear_error():
    x, y, _, _ = make_pair(n=12, d_x=12)
    with pytest.raises(UnderdeterminedError, match=r"needs at least 13 image pairs, got 12.*alpha.*no-bias"):
        LinearMap(bias=True).fit(x, y)
    LinearMap(bias=False).fit(x, y)  # d pairs determine a bias-free map
    with pytest.raises(UnderdeterminedError, match="at least 12"):
        LinearMap(bias=False).fit(x[:11], y[:11])
    assert LinearMap(alpha=1.0).fit(x[:3], y[:3]).coef_.shape == (9, 12)  # ridge is always determined


def test_singular_system_warns_and_gives_minimum_norm():
    x, y, _, _ = make_pair(n=100, d_x=5)
    x = np.hstack([x, x[:, :1]])  # duplicated column: rank 5 of 6
    with pytest.warns(IllConditionedWarning, match="singular"):
        m = LinearMap(bias=False).fit(x, y)
    np.testing.assert_allclose(m.coef_, (np.linalg.pinv(x) @ y).T, rtol=1e-6, atol=1e-8)


def test_ill_conditioned_but_regular_system_stays_accurate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 8)) * np.logspace(0, -5, 8)  # spreads from 1 to 1e-5 (inactive variables)
    y = x @ rng.normal(size=(8, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = LinearMap().fit(x, y)
    assert rel_err(m.coef_, lstsq_reference(x, y, True)[0].T) < 1e-6


def test_bad_input_errors():
    x, y, _, _ = make_pair(n=50)
    with pytest.raises(ShapeMismatchError, match="same number of rows"):
        LinearMap().fit(x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        LinearMap().fit(bad, y)
    with pytest.raises(NonFiniteError, match=r"target latents Y contain NaN.*1 of 50 rows"):
        LinearMap().fit(x, np.where(np.arange(50)[:, None] == 7, np.nan, y))
    with pytest.raises(NonFiniteError, match="too large"):
        LinearMap().fit(x * 1e300, y)
    bad[3, 2] = np.inf
    with pytest.raises(NonFiniteError):
        LinearMap().partial_fit(x, np.where(y > 1e9, 0, y)).partial_fit(bad, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        LinearMap().transform(x)
    m = LinearMap().fit(x, y)
    with pytest.raises(ShapeMismatchError, match="size 12"):
        m.transform(x[:, :5])
    with pytest.raises(ShapeMismatchError, match="2-dimensional"):
        m.transform(x[0])
    with pytest.raises(ShapeMismatchError, match="partial_fit started"):
        LinearMap().partial_fit(x, y).partial_fit(x[:, :3], y)
    with pytest.raises(ConfigError, match="alpha"):
        LinearMap(alpha=-1).fit(x, y)
    with pytest.raises(ConfigError, match="method"):
        LinearMap(method="svd").fit(x, y)
    assert issubclass(UnderdeterminedError, LatentmapError) and issubclass(UnderdeterminedError, ValueError)


def test_inverse_undoes_an_invertible_map():
    x, y, _, _ = make_pair(n=100, d_x=7, d_y=7, noise=0)
    m = LinearMap().fit(x, y)
    np.testing.assert_allclose(m.inverse().transform(m.transform(x)), x, atol=1e-8)


def test_save_load_round_trip(tmp_path):
    x, y, _, _ = make_pair()
    m = LinearMap(bias=True, alpha=0.1).fit(x, y)
    out = m.save(tmp_path / "a__b", source={"name": "a", "latent_dim": 12}, target={"name": "b", "latent_dim": 9},
                 fit_source={"kind": "dataset", "name": "fashion-mnist", "count": 400})
    info = json.loads((out / "map.json").read_text())
    assert info["hyperparameters"] == {"bias": True, "alpha": 0.1, "method": "lstsq"}
    assert info["source"]["name"] == "a" and info["target"]["latent_dim"] == 9
    assert info["fit_source"]["count"] == 400 and info["fit_metrics"]["n_pairs"] == 400
    loaded = LinearMap.load(out)
    np.testing.assert_array_equal(loaded.coef_, m.coef_)
    np.testing.assert_allclose(loaded.transform(x), m.transform(x), rtol=1e-12)
    assert loaded.get_params() == m.get_params()
    assert not list(tmp_path.glob(".*tmp*"))


def test_save_rejects_wrong_latent_sizes_and_load_rejects_damage(tmp_path):
    x, y, _, _ = make_pair()
    m = LinearMap().fit(x, y)
    with pytest.raises(ShapeMismatchError, match="source latents of size 12, source model 'a' has 32"):
        m.save(tmp_path / "bad", source={"name": "a", "latent_dim": 32})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        LinearMap.load(tmp_path / "missing")
    m.save(tmp_path / "ok")
    with open(tmp_path / "ok" / "map.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(CheckpointError, match="sha256"):
        LinearMap.load(tmp_path / "ok")


def test_memory_does_not_grow_with_images():
    m = LinearMap()
    rng = np.random.default_rng(0)
    for _ in range(20):
        m.partial_fit(rng.normal(size=(100, 4)), rng.normal(size=(100, 3)))
    sizes = {k: tuple(v.shape) for k, v in m._moments.state().items() if isinstance(v, torch.Tensor)}
    assert sizes == {"mean_x": (4,), "mean_y": (3,), "cxx": (4, 4), "cxy": (4, 3), "cyy": (3,)}
    assert m.n_samples_seen_ == 2000


@pytest.mark.gpu
def test_cuda_tensors_accumulate_and_map_on_their_device():
    x, y, _, _ = make_pair()
    xt, yt = torch.from_numpy(x).float().cuda(), torch.from_numpy(y).float().cuda()
    m = LinearMap().partial_fit(xt[:200], yt[:200]).partial_fit(xt[200:], yt[200:])
    assert m._moments.cxx.device.type == "cuda" and m._moments.cxx.dtype == torch.float64
    out = m.transform(xt)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    ref = LinearMap().fit(x.astype(np.float32), y.astype(np.float32))
    assert rel_err(m.coef_, ref.coef_) < 1e-10


# --------------------------------------------------------------------------- alpha="auto" (GCV)

def gcv_brute_force(x, y, alpha, bias):
    """GCV(alpha) = n·RSS / (n - tr H)² from the explicit hat matrix (intercept unpenalized)."""
    n = len(x)
    xc, yc = (x - x.mean(0), y - y.mean(0)) if bias else (x, y)
    hat = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T)
    if bias:
        hat = hat + np.full((n, n), 1.0 / n)
    resid = yc - (hat - (np.full((n, n), 1.0 / n) if bias else 0)) @ yc
    return n * (resid ** 2).sum() / (n - np.trace(hat)) ** 2


@pytest.mark.parametrize("bias", [True, False])
def test_auto_alpha_minimizes_gcv_over_its_grid(bias):
    from latentmap.maps.solvers import GCV_LOG10_GRID

    x, y, _, _ = make_pair(n=30, d_x=20, d_y=5, noise=1.0, offset=0.5)
    m = LinearMap(bias=bias, alpha="auto").fit(x, y)
    a = (x - x.mean(0)).T @ (x - x.mean(0)) if bias else x.T @ x
    grid = np.trace(a) / len(a) * 10.0 ** GCV_LOG10_GRID
    scores = [gcv_brute_force(x, y, al, bias) for al in grid]
    assert m.alpha_ == pytest.approx(grid[int(np.argmin(scores))], rel=1e-9)
    assert m.fit_metrics_["gcv"] == pytest.approx(min(scores) / y.shape[1], rel=1e-6)
    ref = Ridge(alpha=m.alpha_, fit_intercept=bias, solver="cholesky").fit(x, y)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-7, atol=1e-10)


def test_auto_alpha_fixes_the_exactly_determined_fit():
    # as many images as latent dimensions: the exact solution interpolates the noise
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 8))
    x = rng.normal(size=(16, 16))
    y = x @ w + 0.5 * rng.normal(size=(16, 8))
    x_test = rng.normal(size=(2000, 16))
    exact = LinearMap(bias=False).fit(x, y)
    auto = LinearMap(bias=False, alpha="auto").fit(x, y)
    err = lambda m: float(((m.transform(x_test) - x_test @ w) ** 2).mean())  # noqa: E731
    assert auto.alpha_ > 0 and err(auto) < 0.5 * err(exact)
    # with many images the chosen penalty is negligible and the fit is the least-squares one
    x, y, _, _ = make_pair(n=3000, noise=0.01)
    many = LinearMap(alpha="auto").fit(x, y)
    np.testing.assert_allclose(many.coef_, LinearMap().fit(x, y).coef_, rtol=1e-4)


def test_auto_alpha_params_round_trip_and_errors(tmp_path):
    x, y, _, _ = make_pair(n=50)
    m = LinearMap(alpha="auto").fit(x, y)
    assert clone(m).get_params()["alpha"] == "auto"
    loaded = LinearMap.load(m.save(tmp_path / "auto", source={"name": "a", "latent_dim": 12},
                                   target={"name": "b", "latent_dim": 9}))
    assert loaded.alpha == "auto" and loaded.alpha_ == pytest.approx(m.alpha_)
    with pytest.raises(ConfigError, match="auto.*lstsq"):
        LinearMap(alpha="auto", method="procrustes").fit(x, x)
    with pytest.raises(ConfigError, match="alpha"):
        LinearMap(alpha="sometimes").fit(x, y)
    with pytest.raises(UnderdeterminedError, match="too few"):
        LinearMap(alpha="auto").fit(x[:1], y[:1])
