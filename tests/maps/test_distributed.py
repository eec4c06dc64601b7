"""`map fit --estimator ...` on 2 gloo ranks against one process: every streaming estimator shards and merges.

One torchrun launch and one single process run the same fits (the steps of tests/helpers/distributed.py). The
streaming estimators' statistics are added over the ranks, so their maps equal one process's to 1e-9 (the
convolutional map too, here on vector latents, one position each); the MLP and the per-position MLP, which train on
every pair at once, are fitted in full by every rank (no speed-up) and equal one process's map exactly on a CPU.
"""

import json

import numpy as np
import pytest

from tests.test_distributed import FIT, TESTS, _single, _torchrun

# (folder, spec): the piecewise maps' cells from the gathered first rows (kmeans_sample beyond rank 0's 300
# rows), and from rank 0's own first rows (kmeans_sample=200)
SPECS = [("piecewise", "piecewise:16"), ("piecewise-200", "piecewise:16:kmeans_sample=200"),
         ("soft", "soft-piecewise:8"), ("ortho", "ortho"), ("l-ortho", "l-ortho"), ("adam", "adam"),
         ("ridge", "linear:alpha=auto"), ("mlp", "mlp:16:max_epochs=3"), ("conv", "conv:alpha=auto"),
         ("conv-mlp", "conv-mlp:16:max_epochs=3")]
STREAMED_STATE = {"piecewise": ("cluster_centers", "coefs", "intercepts", "alphas", "cell_counts", "scale"),
                  "procrustes": ("coef", "intercept", "rotation"), "adam": ("coef", "intercept"),
                  "linear": ("coef", "intercept"), "conv": ("coef", "intercept")}


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist-estimators")
    done = {}
    for name, launch in (("one", _single), ("two", _torchrun)):
        (root / name).mkdir()
        spec = root / f"{name}.json"
        spec.write_text(json.dumps([["cli", [*FIT, "--estimator", est, "--out", str(root / name / folder)]]
                                    for folder, est in SPECS]))
        run = launch([str(TESTS / "helpers" / "distributed.py"), "steps", str(spec)])
        assert run.returncode == 0, run.stderr[-3000:]
        done[name] = root / name
    done["encoded"] = {name: json.loads((root / f"{name}.json.encoded-0.json").read_text()) for name in ("one", "two")}
    return done


@pytest.mark.parametrize("folder", [f for f, _ in SPECS])
def test_map_fit_of_every_estimator_on_two_ranks_equals_one_process(fits, folder):
    from latentmap.maps.registry import load_map

    a, b = load_map(fits["one"] / folder), load_map(fits["two"] / folder)
    assert type(a) is type(b) and a.get_params() == b.get_params() and a.n_samples_seen_ == b.n_samples_seen_ == 600
    k = [f for f, _ in SPECS].index(folder)
    one, two = fits["encoded"]["one"][k], fits["encoded"]["two"][k]
    x = np.random.default_rng(0).normal(size=(200, a.n_features_in_))
    if a.estimator_name in ("mlp", "conv-mlp"):  # every rank trains on every pair, as one process does
        assert two >= one
        np.testing.assert_array_equal(b.predict(x), a.predict(x))
        return
    assert two <= 0.6 * one + 8  # rank 0 encoded its shard only
    for name in STREAMED_STATE[a.estimator_name]:
        want, got = np.asarray(getattr(a, name + "_"), dtype=np.float64), np.asarray(getattr(b, name + "_"))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(np.abs(want).max(), 1e-300), err_msg=name)
    np.testing.assert_allclose(b.predict(x), a.predict(x), rtol=1e-9, atol=1e-9 * np.abs(a.predict(x)).max())
    for key, value in a.fit_metrics_.items():
        if isinstance(value, float):
            assert b.fit_metrics_[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
