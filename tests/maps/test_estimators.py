"""The map estimators beside LinearMap: piecewise, MLP, Procrustes variants, the paper's Adam; their registry."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from latentmap import LinearMap
from latentmap.errors import CheckpointError, ConfigError, NotFittedError, ShapeMismatchError
from latentmap.maps.adam import AdamMap
from latentmap.maps.mlp import MLPMap
from latentmap.maps.piecewise import PiecewiseLinearMap
from latentmap.maps.procrustes import ProcrustesMap
from latentmap.maps.registry import ESTIMATORS, load_map, parse_estimator, parse_estimators


def affine_pair(n=600, d_x=6, d_y=5, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_x)) + 1.0
    w, b = rng.normal(size=(d_x, d_y)), rng.normal(size=d_y)
    return x, x @ w + b + noise * rng.normal(size=(n, d_y)), w, b


def two_regions(n=800, d=4, seed=0):
    """Source latents in two far-apart clusters; the target is a different known affine map of each."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(d)
    centre[0] = 12.0
    side = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, d)) + np.where(side[:, None] == 1, centre, -centre)
    maps = [(rng.normal(size=(d, d)), rng.normal(size=d)) for _ in range(2)]
    y = np.where(side[:, None] == 1, x @ maps[1][0] + maps[1][1], x @ maps[0][0] + maps[0][1])
    return x, y, side, maps, centre


def random_rotation(d, seed=0):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- piecewise

def test_piecewise_with_one_cell_equals_linear_map():
    x, y, _, _ = affine_pair(noise=0.3)
    lin = LinearMap().fit(x, y)
    for alpha in ("auto", 0.0, 5.0):  # the penalty pulls towards the global map, which is the one cell's map
        one = PiecewiseLinearMap(n_cells=1, alpha=alpha).fit(x, y)
        np.testing.assert_allclose(one.coefs_[0], lin.coef_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(one.intercepts_[0], lin.intercept_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(one.transform(x), lin.transform(x), rtol=1e-10, atol=1e-10)
        assert one.fit_metrics_["r2"] == pytest.approx(lin.fit_metrics_["r2"], rel=1e-10)


def test_piecewise_recovers_two_affine_maps_on_two_regions():
    x, y, side, maps, centre = two_regions()
    global_map = LinearMap().fit(x, y)
    assert np.abs(global_map.transform(x) - y).mean() > 0.5  # one affine map cannot fit both regions
    for alpha in (0.0, "auto"):
        m = PiecewiseLinearMap(n_cells=2, alpha=alpha).fit(x, y)
        for k in range(2):
            region = int(m.cluster_centers_[k] @ centre > 0)
            np.testing.assert_allclose(m.coefs_[k], maps[region][0].T, atol=1e-6)
            np.testing.assert_allclose(m.intercepts_[k], maps[region][1], atol=1e-5)
        np.testing.assert_allclose(m.transform(x), y, atol=1e-5)
        assert sorted(m.cell_counts_.tolist()) == sorted(np.bincount(side).tolist())
    # far-apart cells: the soft (continuous) map is the hard one up to rounding
    soft = PiecewiseLinearMap(n_cells=2, alpha=0.0, soft=True).fit(x, y)
    np.testing.assert_allclose(soft.transform(x), y, atol=1e-5)


def test_piecewise_fit_metrics_are_numpys_errors_of_the_hard_cells():
    """latent_mse and r2 of a noisy two-region fit: the mean squared error over every pair and target variable of
    each pair's own cell map, and sklearn's mean R² (uniform average), recomputed from coefs_ and the cell labels."""
    from sklearn.metrics import r2_score

    x, y, _, _, _ = two_regions(n=600, d=4, seed=3)
    y = y[:, :3] + 0.5 * np.random.default_rng(1).normal(size=(600, 3))  # three targets: d_y != d_x
    m = PiecewiseLinearMap(n_cells=2, alpha=1.0).fit(x, y)
    cell = np.argmin(((x[:, None] - m.cluster_centers_[None]) ** 2).sum(2), axis=1)
    pred = np.einsum("nij,nj->ni", m.coefs_[cell], x) + m.intercepts_[cell]
    np.testing.assert_allclose(m.transform(x), pred, rtol=1e-9, atol=1e-9)
    assert m.fit_metrics_["latent_mse"] == pytest.approx(((pred - y) ** 2).mean(), rel=1e-9)
    assert m.fit_metrics_["r2"] == pytest.approx(r2_score(y, pred), rel=1e-9)
    assert m.fit_metrics_["n_pairs"] == 600
    assert (m.fit_metrics_["smallest_cell"], m.fit_metrics_["largest_cell"]) == tuple(sorted(np.bincount(cell)))


def test_piecewise_streams_and_soft_weights_are_continuous():
    x, y, _, _, _ = two_regions(n=900)
    full = PiecewiseLinearMap(n_cells=2, alpha=0.0, kmeans_sample=300)
    for start in range(0, 900, 128):  # k-means runs on the first 300 rows, held back until then
        full.partial_fit(x[start:start + 128], y[start:start + 128])
    assert full.n_samples_seen_ == 900 and full.cell_counts_.sum() == 900
    batched = PiecewiseLinearMap(n_cells=2, alpha=0.0, kmeans_sample=300).fit_batches(
        (x[s:s + 128], y[s:s + 128]) for s in range(0, 900, 128))
    np.testing.assert_allclose(batched.coefs_, full.coefs_, atol=1e-12)
    np.testing.assert_allclose(full.transform(x), y, atol=1e-5)
    # along a path from one region to the other, the hard map jumps at the cell boundary and the soft one does not
    _, _, _, _, centre = two_regions(n=900)
    path = np.linspace(-centre, centre, 4001)
    hard = PiecewiseLinearMap(n_cells=2, alpha=0.0).fit(x, y)
    soft = PiecewiseLinearMap(n_cells=2, alpha=0.0, soft=True, temperature=5.0).fit(x, y)
    weights = soft.cell_weights(path).numpy()
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-12)
    assert weights[0].max() > 0.999 and weights[-1].max() > 0.999 and np.abs(np.diff(weights, axis=0)).max() < 0.05
    hard_jump = np.abs(np.diff(hard.transform(path), axis=0)).max()
    soft_jump = np.abs(np.diff(soft.transform(path), axis=0)).max()
    assert hard_jump > 1.0 and soft_jump < hard_jump / 10, (hard_jump, soft_jump)


def test_piecewise_errors():
    x, y, _, _ = affine_pair(n=10)
    with pytest.raises(ConfigError, match=r"n_cells must be an int in the range \[1, inf\)"):
        PiecewiseLinearMap(n_cells=0).fit(x, y)
    with pytest.raises(ConfigError, match="temperature must be"):
        PiecewiseLinearMap(temperature=-1.0).fit(x, y)
    with pytest.raises(ValueError, match="need at least 16 latent pairs"):
        PiecewiseLinearMap(n_cells=16).fit(x, y)
    with pytest.raises(NotFittedError):
        PiecewiseLinearMap().transform(x)
    m = PiecewiseLinearMap(n_cells=2).fit(x, y)
    with pytest.raises(ShapeMismatchError, match="size 6"):
        m.transform(x[:, :3])


# --------------------------------------------------------------------------- MLP

def test_mlp_keeps_its_best_epoch_and_reports_its_held_out_error(monkeypatch):
    """Held-out errors scripted per epoch (lowest at epoch 3): the map returned is the network as it was after epoch
    3 (its predictions recorded here as it trains), training stops ``patience`` epochs later, and the metrics are
    numpy's and sklearn's on the held-out pairs, the first ``n_validation`` of the seeded permutation."""
    from sklearn.metrics import r2_score

    x, y, _, _ = affine_pair(n=400, noise=0.2, seed=1)
    scripted = [0.9, 0.5, 0.2, 0.6, 0.4, 0.3, 0.7, 0.8, 0.1, 0.1]
    snapshots = []  # predictions on every x after each epoch

    def recording(self, xs, ys):
        with torch.no_grad():
            snapshots.append(self._forward(torch.from_numpy(x)).double().numpy())
        return scripted[len(snapshots) - 1]

    monkeypatch.setattr(MLPMap, "_mse", recording)
    m = MLPMap(hidden=(32,), lr=1e-2, max_epochs=10, patience=4, batch_size=32, seed=0).fit(x, y)
    assert m.fit_metrics_["epochs"] == len(snapshots) == 7 and m.fit_metrics_["best_epoch"] == 3
    np.testing.assert_allclose(m.transform(x), snapshots[2], rtol=1e-6, atol=1e-6)
    assert np.abs(snapshots[-1] - snapshots[2]).max() > 1e-2  # the last epoch's network is another one
    val = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:40].numpy()
    assert m.fit_metrics_["n_validation"] == 40 and m.fit_metrics_["n_train"] == 360
    pred = m.transform(x[val]).astype(np.float64)
    assert m.fit_metrics_["validation_latent_mse"] == pytest.approx(((pred - y[val]) ** 2).mean(), rel=1e-6)
    assert m.fit_metrics_["validation_r2"] == pytest.approx(r2_score(y[val], pred), rel=1e-6)


def test_mlp_with_a_skip_connection_starts_from_the_least_squares_map():
    """The last layer starts at zero, so a step too small to move it leaves numpy's lstsq map between the
    standardized training pairs (ddof 0 standardization), scaled back."""
    x, y, _, _ = affine_pair(n=300, noise=0.3, seed=2)
    m = MLPMap(hidden=(16,), lr=1e-12, max_epochs=1, seed=4).fit(x, y)
    train = torch.randperm(300, generator=torch.Generator().manual_seed(4))[30:].numpy()
    mx, sx, my, sy = x[train].mean(0), x[train].std(0), y[train].mean(0), y[train].std(0)
    xs, ys = (x[train] - mx) / sx, (y[train] - my) / sy
    design = np.hstack([xs, np.ones((len(xs), 1))])
    coef = np.linalg.lstsq(design, ys, rcond=None)[0]
    expected = (np.hstack([(x - mx) / sx, np.ones((300, 1))]) @ coef) * sy + my
    np.testing.assert_allclose(m.transform(x), expected, rtol=1e-4, atol=1e-4)


def test_mlp_learns_a_nonlinear_map_and_is_seeded():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(1500, 2)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 0] * x[:, 1]], 1).astype(np.float32)
    a = MLPMap(hidden=(64, 64), max_epochs=60, patience=10, lr=3e-3, seed=3).fit(x, y)
    b = MLPMap(hidden=(64, 64), max_epochs=60, patience=10, lr=3e-3, seed=3).fit(x, y)
    assert a.transform(x).dtype == np.float32
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    assert a.score(x, y) > LinearMap().fit(x, y).score(x, y) + 0.3


# --------------------------------------------------------------------------- Procrustes

@pytest.mark.parametrize("variant", ["ortho", "l-ortho"])
def test_procrustes_recovers_a_random_rotation_exactly(variant):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 7)) * np.linspace(0.5, 2, 7)
    r, t = random_rotation(7), rng.normal(size=7)
    m = ProcrustesMap(variant=variant, standardize=False).fit(x, x @ r + t)
    np.testing.assert_allclose(m.rotation_, r, atol=1e-10)
    np.testing.assert_allclose(m.transform(x), x @ r + t, atol=1e-10)
    # the inverse is exact for an orthogonal map
    np.testing.assert_allclose(m.inverse().transform(x @ r + t), x, atol=1e-9)


@pytest.mark.parametrize("variant", ["ortho", "l-ortho"])
def test_standardized_procrustes_is_invariant_to_isotropic_scaling(variant):
    x, y, _, _ = affine_pair(n=400, d_x=6, d_y=6, noise=0.5)
    base = ProcrustesMap(variant=variant).fit(x, y)
    scaled = ProcrustesMap(variant=variant).fit(3.0 * x, 0.25 * y)
    np.testing.assert_allclose(scaled.rotation_, base.rotation_, atol=1e-10)
    np.testing.assert_allclose(scaled.transform(3.0 * x), 0.25 * base.transform(x), atol=1e-10)
    rot = base.rotation_
    np.testing.assert_allclose(rot.T @ rot, np.eye(6), atol=1e-10)


def standardized_procrustes_reference(x, y, variant):
    """Maiorca et al.'s map by hand: z-score both spaces (numpy std, ddof 0), R from the SVD of X̃ᵀỸ (ortho) or
    of numpy's lstsq solution between the standardized spaces (l-ortho), answer in the target's units."""
    mx, sx, my, sy = x.mean(0), x.std(0), y.mean(0), y.std(0)
    xs, ys = (x - mx) / sx, (y - my) / sy
    target = xs.T @ ys if variant == "ortho" else np.linalg.lstsq(xs, ys, rcond=None)[0]
    u, _, vt = np.linalg.svd(target, full_matrices=False)
    r = u @ vt
    return r, lambda v: ((v - mx) / sx) @ r * sy + my


@pytest.mark.parametrize("variant", ["ortho", "l-ortho"])
def test_standardized_procrustes_equals_the_hand_computed_map(variant):
    rng = np.random.default_rng(9)
    # variables on very different scales, correlated sources: standardizing and XᵀX both matter
    x = (rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))) * np.array([0.1, 1.0, 5.0, 20.0, 2.0]) + 3.0
    y = x @ rng.normal(size=(5, 4)) * np.array([1.0, 0.2, 8.0, 1.0]) + rng.normal(size=(500, 4)) - 1.0
    r, reference = standardized_procrustes_reference(x, y, variant)
    m = ProcrustesMap(variant=variant).fit(x, y)
    np.testing.assert_allclose(m.source_scale_, x.std(0), rtol=1e-12)
    np.testing.assert_allclose(m.target_scale_, y.std(0), rtol=1e-12)
    np.testing.assert_allclose(m.rotation_, r, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(m.transform(x), reference(x), rtol=1e-9, atol=1e-9)
    # scipy's orthogonal Procrustes agrees on the standardized spaces (ortho)
    if variant == "ortho":
        from scipy.linalg import orthogonal_procrustes

        r_scipy, _ = orthogonal_procrustes((x - x.mean(0)) / x.std(0), np.hstack([(y - y.mean(0)) / y.std(0),
                                                                                  np.zeros((500, 1))]))
        np.testing.assert_allclose(m.rotation_, r_scipy[:, :4], atol=1e-9)


def test_procrustes_between_unequal_sizes_is_the_zero_padded_solution():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 5)) + rng.normal(size=(200, 8))[:, :5]
    for a, b in ((x, y), (y, x)):
        m = ProcrustesMap(standardize=False).fit(a, b)
        d = max(a.shape[1], b.shape[1])
        pad = lambda v, d=d: np.hstack([v - v.mean(0), np.zeros((len(v), d - v.shape[1]))])  # noqa: E731
        u, _, vt = np.linalg.svd(pad(a).T @ pad(b))
        np.testing.assert_allclose(m.rotation_, (u @ vt)[:a.shape[1], :b.shape[1]], atol=1e-10)


# --------------------------------------------------------------------------- the paper's Adam map

def test_adam_map_takes_the_full_batch_steps_of_keras_adam():
    x, y, _, _ = affine_pair(n=300, d_x=4, d_y=3, noise=0.1)
    m = AdamMap(lr=1e-2, steps=50, l2=1e-3, seed=5).fit(x, y)
    # reference: the same Glorot start and Keras's Adam update, with autograd gradients of the loss on the data
    limit = np.sqrt(6 / 7)
    gen = torch.Generator().manual_seed(5)
    w = ((torch.rand(4, 3, generator=gen, dtype=torch.float64) * 2 - 1) * limit).requires_grad_()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    mom, vel = torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
    for t in range(1, 51):
        w.grad = None
        ((xt @ w - yt) ** 2).mean().add(1e-3 * (w ** 2).sum()).backward()
        with torch.no_grad():
            mom = 0.9 * mom + 0.1 * w.grad
            vel = 0.999 * vel + 0.001 * w.grad ** 2
            w -= 1e-2 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * mom / (vel.sqrt() + 1e-7)
    np.testing.assert_allclose(m.coef_, w.detach().numpy().T, rtol=1e-9, atol=1e-12)
    assert np.all(m.intercept_ == 0)
    # the recorded final loss and gradient norm are autograd's at the final weights
    w_end = torch.from_numpy(np.ascontiguousarray(m.coef_.T)).requires_grad_()
    loss = ((xt @ w_end - yt) ** 2).mean().add(1e-3 * (w_end ** 2).sum())
    loss.backward()
    assert m.fit_metrics_["final_loss"] == pytest.approx(float(loss), rel=1e-9)
    assert m.fit_metrics_["gradient_norm"] == pytest.approx(float(w_end.grad.norm()), rel=1e-6)
    long = AdamMap(lr=1e-2, steps=5000, l2=0.0).fit(x, y)
    np.testing.assert_allclose(long.coef_, LinearMap(bias=False).fit(x, y).coef_, atol=1e-3)


# --------------------------------------------------------------------------- registry, clone, save/load

def test_registry_parses_specs_and_rejects_bad_ones():
    specs = parse_estimators("linear,piecewise:16,soft-piecewise:8:temperature=0.2,mlp:128x64,ortho,l-ortho,adam")
    assert [s.label for s in specs][:3] == ["linear", "piecewise:16", "soft-piecewise:8:temperature=0.2"]
    made = [s.make() for s in specs]
    assert made[1].n_cells == 16 and made[2].soft is True and made[2].temperature == 0.2
    assert made[3].hidden == (128, 64) and made[4].variant == "ortho" and made[5].variant == "l-ortho"
    assert isinstance(made[6], AdamMap) and made[6].steps == 2000
    assert parse_estimator("mlp:256").make().hidden == (256,)
    for bad, fragment in (("nope", "unknown estimator 'nope'"), ("piecewise:0", "n_cells must be"),
                          ("mlp:foo=1", "no parameter 'foo'"), ("ortho:3", "takes KEY=VALUE"),
                          ("ortho:variant=l-ortho", "fixed by the name"), ("adam:lr=-1", "lr must be"),
                          ("linear,linear", "distinct"), ("", "no estimator")):
        with pytest.raises(ConfigError, match=fragment):
            parse_estimators(bad)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_clones_and_round_trips_through_a_map_folder(name, tmp_path):
    x, y, _, _ = affine_pair(n=300, noise=0.1)
    spec = {"mlp": "mlp:16:max_epochs=3", "piecewise": "piecewise:3", "soft-piecewise": "soft-piecewise:3",
            "conv-mlp": "conv-mlp:16:max_epochs=3"}.get(name, name)
    m = parse_estimator(spec).make()
    copy = clone(m)
    assert copy.get_params() == m.get_params() and "n_features_in_" not in copy.__dict__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(x, y)
        again = clone(m).fit(x, y)
    np.testing.assert_array_equal(again.transform(x), m.transform(x))  # seeded: the same fit twice
    m.save(tmp_path / "map", source={"name": "a", "latent_dim": 6}, target={"name": "b", "latent_dim": 5})
    back = load_map(tmp_path / "map")
    assert type(back) is type(m) and back.get_params() == m.get_params()
    np.testing.assert_allclose(back.transform(x), m.transform(x), rtol=1e-6, atol=1e-6)
    assert back.info_["estimator"] == m.estimator_name
    assert back.score(x, y) == pytest.approx(m.score(x, y), abs=1e-6)
    if name != "linear":
        with pytest.raises(CheckpointError, match="load it with latentmap.load_map"):
            LinearMap.load(tmp_path / "map")


def test_streaming_estimators_partial_fit_equals_fit():
    x, y, _, _ = affine_pair(n=500, noise=0.2)
    for make in (lambda: ProcrustesMap(variant="l-ortho"), lambda: AdamMap(steps=100)):
        one = make().fit(x, y)
        streamed = make()
        for start in range(0, 500, 70):
            streamed.partial_fit(x[start:start + 70], y[start:start + 70])
        np.testing.assert_allclose(streamed.coef_, one.coef_, rtol=1e-9, atol=1e-12)
        assert streamed.n_samples_seen_ == 500
    with pytest.raises(ShapeMismatchError, match="partial_fit started with latents of size 6 -> 5"):
        ProcrustesMap().partial_fit(x, y).partial_fit(x[:, :4], y)


def test_a_map_folder_of_an_unknown_estimator_is_refused(tmp_path):
    import json

    x, y, _, _ = affine_pair(n=100)
    ProcrustesMap().fit(x, y).save(tmp_path / "m")
    config = tmp_path / "m" / "map.json"
    info = json.loads(config.read_text())
    assert info["estimator"] == "procrustes" and info["format_version"] == 3
    assert info["hyperparameters"] == {"standardize": True, "variant": "ortho"}
    with pytest.raises(CheckpointError, match="not a 'piecewise' one"):
        PiecewiseLinearMap.load(tmp_path / "m")
    config.write_text(json.dumps({**info, "estimator": "spline"}))
    with pytest.raises(CheckpointError, match="'spline' map, which this latentmap does not know"):
        load_map(tmp_path / "m")


@pytest.mark.slow
def test_shipped_type1_pair_label_free_piecewise_map_reaches_the_goal():
    """fmnist-vae-a -> fmnist-vae-b fitted on 20,000 training images: soft cells at most 1.10x B's own error
    (measured 1.089 on the 10,000 test images) and within 2% of the hard cells; one affine map is near 1.5x."""
    from tests.conftest import CHECKPOINTS

    from latentmap import load_dataset, load_model
    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap.maps.fitting import FitSource, fit_pairs

    if not (CHECKPOINTS / "fmnist-vae-a" / "config.json").is_file():
        pytest.skip("shipped checkpoints are not there")
    a, b = (load_model(CHECKPOINTS / n, device="cpu") for n in ("fmnist-vae-a", "fmnist-vae-b"))
    train = load_dataset("fashion-mnist", "train").random_subset(20000, 0)
    fit = FitSource("dataset", len(train), name="fashion-mnist", split="train", data=train)
    maps = fit_pairs([a, b], fit, {"linear": LinearMap, "hard": lambda: PiecewiseLinearMap(64),
                                   "soft": lambda: PiecewiseLinearMap(64, soft=True)}, batch_size=1000)
    test = load_dataset("fashion-mnist", "test").subset(np.arange(0, 10000, 4))
    ratio = {label: evaluate_relocation(a, b, m[(0, 1)], test, batch_size=500, lpips="off").ratio
             for label, m in maps.items()}
    assert ratio["soft"] <= 1.10 and ratio["soft"] <= 1.02 * ratio["hard"], ratio
    assert ratio["linear"] > 1.35, ratio
