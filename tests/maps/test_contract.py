"""The one estimator contract: every estimator on one base, scikit-learn's own checks, merge, old map folders."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from latentmap.errors import ConfigError, NotFittedError
from latentmap.io.checkpoint import sha256_file
from latentmap.maps.base import MapEstimator, StreamingMapEstimator
from latentmap.maps.conv import ConvMLPMap
from latentmap.maps.linear import LinearMap
from latentmap.maps.mlp import MLPMap
from latentmap.maps.registry import ESTIMATOR_CLASSES, ESTIMATORS, load_map, parse_estimator

ROOT = Path(__file__).resolve().parents[2]
# scikit-learn's checks fit on a few dozen rows: small versions of the estimators that take long to fit
CHECKED_SPECS = {"piecewise": "piecewise:2", "soft-piecewise": "soft-piecewise:2", "mlp": "mlp:8:max_epochs=5",
                 "conv-mlp": "conv-mlp:8:max_epochs=5"}
# beyond one per name: ridge with GCV, and a 3x3 convolutional map (on the checks' 2-D latents, one position each)
EXTRA = [LinearMap(alpha="auto"), parse_estimator("conv:3:alpha=auto").make()]
CHECKED = [parse_estimator(CHECKED_SPECS.get(name, name)).make() for name in ESTIMATORS] + EXTRA


def test_every_registered_estimator_is_on_the_one_base():
    assert len(CHECKED) == len(ESTIMATORS) + len(EXTRA)
    for kind in ESTIMATORS.values():
        assert issubclass(kind.cls, MapEstimator), kind.name
        assert ESTIMATOR_CLASSES[kind.cls.estimator_name] is kind.cls
        assert issubclass(kind.cls, StreamingMapEstimator) == hasattr(kind.cls, "partial_fit")
    assert sorted(ESTIMATOR_CLASSES) == ["adam", "conv", "conv-mlp", "linear", "mlp", "piecewise", "procrustes"]
    for cls in (MLPMap, ConvMLPMap):  # trains on every pair at once: no statistics to merge
        assert not issubclass(cls, StreamingMapEstimator)
    # one attribute names the estimator: nobody guesses a default for it any more
    pattern = re.compile(r"getattr\([^)]*[\"']estimator_name[\"']")
    offenders = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("latentmap/**/*.py"), *ROOT.glob("tests/**/*.py")]
                 if p.name != Path(__file__).name and pattern.search(p.read_text())]
    assert offenders == []


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: type(est).expected_failed_checks())
def test_scikit_learn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few-pairs and k-means warnings on the checks' tiny data sets
        check(estimator)


def test_a_map_is_a_multi_output_regressor_answering_in_the_kind_it_was_given():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = x @ rng.normal(size=(4, 3)) + 1
    m = LinearMap().fit(x, y)
    assert isinstance(m.predict(x), np.ndarray) and m.predict(x).shape == (80, 3)
    out = m.predict(torch.as_tensor(x, dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(m.transform(x), m.predict(x))
    one = LinearMap().fit(x, y[:, 0])  # a 1-d target: one target variable, a 1-d answer
    assert one.coef_.shape == (1, 4) and one.predict(x).shape == (80,)
    np.testing.assert_allclose(one.predict(x), m.predict(x)[:, 0], rtol=1e-12)
    for est in CHECKED:
        with pytest.raises(NotFittedError) as caught:
            type(est)(**est.get_params()).predict(x)
        assert isinstance(caught.value, SklearnNotFittedError)
    with pytest.raises(ConfigError, match=r"alpha must be a float in the range \[0.0, inf\) or a str among"):
        LinearMap(alpha=-1).fit(x, y)


STREAMING = ["linear", "piecewise:3", "soft-piecewise:3", "ortho", "l-ortho", "adam:steps=300", "conv",
             "conv:3:alpha=auto"]


@pytest.mark.parametrize("spec", STREAMING + ["linear:alpha=auto:bias=false"])
def test_merged_statistics_of_disjoint_parts_equal_one_fit(spec):
    """What torchrun's all-reduce relies on: parts fed to separate estimators and merged solve as one stream."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 5)) + np.repeat(rng.normal(size=(3, 5)) * 4, 200, axis=0)
    y = np.tanh(x) @ rng.normal(size=(5, 4)) + 0.1 * rng.normal(size=(600, 4))
    whole = parse_estimator(spec).make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole.fit_batches([(x[s:s + 100], y[s:s + 100]) for s in range(0, 600, 100)])
        parts = [parse_estimator(spec).make().partial_fit(x[a:b], y[a:b]) for a, b in ((0, 250), (250, 420), (420, 600))]
        merged = parts[0].merge(parts[1]).merge(parts[2])
        assert merged.n_samples_seen_ == 600
        np.testing.assert_allclose(merged.predict(x), whole.predict(x), rtol=1e-9, atol=1e-9)
    with pytest.raises(ConfigError, match="only the same estimator merges"):
        parse_estimator(spec).make().merge(LinearMap(bias=False))


def test_piecewise_cells_from_different_samples_do_not_merge():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 3)), rng.normal(size=(200, 2))
    a = parse_estimator("piecewise:3:kmeans_sample=50").make().partial_fit(x[:100], y[:100])
    b = parse_estimator("piecewise:3:kmeans_sample=50").make().partial_fit(x[100:], y[100:])
    with pytest.raises(ConfigError, match="different k-means cells"):
        a.merge(b)
    fresh = parse_estimator("piecewise:3:kmeans_sample=50").make().merge(a)  # an empty one takes the cells
    np.testing.assert_array_equal(fresh.cluster_centers_, a.cluster_centers_)
    np.testing.assert_array_equal(fresh.predict(x), a.predict(x))


# --------------------------------------------------------------------------- map folders of every earlier format

def _folder(path: Path, config: dict, tensors: dict) -> Path:
    path.mkdir()
    save_file({k: torch.as_tensor(v).contiguous() for k, v in tensors.items()}, str(path / "map.safetensors"))
    config["weights"] = {"map.safetensors": sha256_file(path / "map.safetensors")}
    (path / "map.json").write_text(json.dumps(config))
    return path


def test_map_folders_of_every_earlier_format_load_and_predict_the_same(tmp_path):
    """Format 1 (coef stored transposed, no estimator name), 2 (linear, sklearn's coef) and 3 (another estimator)
    as earlier versions wrote them by hand, and the committed demo maps against their own tensors."""
    rng = np.random.default_rng(3)
    coef, intercept = rng.normal(size=(3, 4)), rng.normal(size=3)
    x = rng.normal(size=(20, 4))
    expected = x @ coef.T + intercept
    base = {"format": "latentmap-map", "latentmap_version": "0.1.0", "hyperparameters": {"bias": True, "alpha": 0.0},
            "source": {"name": "a", "latent_dim": 4}, "target": {"name": "b", "latent_dim": 3},
            "fit_metrics": {"r2": 0.9}, "n_samples_seen": 50}
    v1 = _folder(tmp_path / "v1", {**base, "format_version": 1}, {"coef": coef.T, "intercept": intercept})
    v2 = _folder(tmp_path / "v2", {**base, "format_version": 2, "estimator": "linear"},
                 {"coef": coef, "intercept": intercept})
    for folder in (v1, v2):
        for m in (load_map(folder), LinearMap.load(folder)):
            assert type(m) is LinearMap and m.n_samples_seen_ == 50 and m.fit_metrics_ == {"r2": 0.9}
            np.testing.assert_allclose(m.predict(x), expected, rtol=1e-12)
    scale = np.ones(4)
    v3 = _folder(tmp_path / "v3", {**base, "format_version": 3, "estimator": "procrustes",
                                   "hyperparameters": {"variant": "ortho", "standardize": True}},
                 {"coef": coef, "intercept": intercept, "rotation": coef.T, "source_scale": scale,
                  "target_scale": scale[:3]})
    np.testing.assert_allclose(load_map(v3).predict(x), expected, rtol=1e-12)
    demo = sorted(ROOT.glob("reports/demo/atlas/maps/*/map.json"))
    assert demo
    from latentmap.io.map_folder import read_map_state

    for cfg in demo[:5]:
        info, tensors = read_map_state(cfg.parent)
        m = load_map(cfg.parent)
        z = rng.normal(size=(7, m.n_features_in_))
        c, b = tensors["coef"].numpy(), tensors["intercept"].numpy()
        c = c.T if info["format_version"] == 1 else c
        np.testing.assert_allclose(m.predict(z), z @ c.T + b, rtol=1e-12, atol=1e-12)
