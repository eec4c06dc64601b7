"""``map fit --estimator`` and ``map atlas --estimators`` through CliRunner: files, numbers, one-line errors."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from latentmap.maps.registry import load_map

from tests.cli.test_map import assert_one_line_error, invoke, synthetic  # noqa: F401  (synthetic is a fixture)


def test_fit_and_eval_a_piecewise_map(synthetic, tmp_path):  # noqa: F811
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--dataset", spec, "--fit-split", "all",
                 "--estimator", "soft-piecewise:2:alpha=0", "--out", tmp_path / "pw")
    assert res.exit_code == 0, res.output
    assert "piecewise (" in res.output and "n_cells=2" in res.output and "soft=True" in res.output
    m = load_map(tmp_path / "pw")
    info = json.loads((tmp_path / "pw" / "map.json").read_text())
    assert info["estimator"] == "piecewise" and info["hyperparameters"]["n_cells"] == 2 and m.soft
    # B is an exact affine image of A: every cell recovers the same map
    for k in range(2):
        np.testing.assert_allclose(m.coefs_[k], synthetic["T"], atol=1e-4)
    res = invoke("map", "eval", "--map", tmp_path / "pw", "--dataset", spec, "--split", "all", "--out",
                 tmp_path / "r", "--no-progress", "--lpips", "off")
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "r" / "relocation.json").read_text())
    assert row["estimator"] == "piecewise" and row["ratio"] == pytest.approx(1.0, abs=1e-3)
    assert row["cycle_mse"] is None and "none (the map has no inverse)" in res.output
    assert (tmp_path / "r" / "worst.png").is_file()
    assert row["ratio_low"] <= row["ratio"] <= row["ratio_high"] and row["image_ratio_median"] == pytest.approx(1, abs=1e-3)


def test_atlas_with_several_estimators(synthetic, tmp_path):  # noqa: F811
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    res = invoke("map", "atlas", "--models", p["a"], p["b"], p["c5"], "--dataset", spec,
                 "--estimators", "linear,piecewise:2,mlp:16:max_epochs=4,ortho", "--out", tmp_path / "atlas",
                 "--no-progress", "--lpips", "off")
    assert res.exit_code == 0, res.output
    out = tmp_path / "atlas"
    saved = json.loads((out / "atlas.json").read_text())
    assert list(saved["estimators"]) == ["linear", "piecewise:2", "mlp:16:max_epochs=4", "ortho"]
    assert len(saved["results"]) == 6 * 4
    frame = pd.read_csv(out / "atlas.csv")
    assert set(frame["estimator"]) == set(saved["estimators"])
    exact = frame[(frame["source"] == "syn-a") & (frame["target"] == "syn-b")].set_index("estimator")["ratio"]
    assert exact["linear"] == pytest.approx(1.0, abs=1e-4) and exact["piecewise:2"] == pytest.approx(1.0, abs=1e-3)
    for label, slug in (("linear", "linear"), ("mlp:16:max_epochs=4", "mlp-16-max_epochs-4")):
        folder = out / "maps" / slug / "syn-c5__syn-a"
        assert json.loads((folder / "map.json").read_text())["estimator_label"] == label
        load_map(folder)
    gap = pd.read_csv(out / "linearity_gap.csv")
    assert len(gap) == 6 and np.allclose(gap["gap"], gap["ratio[linear]"] - gap["ratio[mlp:16:max_epochs=4]"])
    assert (gap["gap_low"] <= gap["gap"] + 1e-12).all() and (gap["gap"] <= gap["gap_high"] + 1e-12).all()
    # CKA by the hand formula on the three models' encodings of the evaluated images (the test split, all of it)
    from latentmap import load_dataset, load_model
    from tests.helpers.references import linear_cka_hand

    test = load_dataset(spec, "test").all_images()
    z = {m.name: m.encode_all(test).double().numpy() for m in (load_model(p[k]) for k in ("a", "b", "c5"))}
    assert saved["results"][0]["n_images"] == len(test)
    cka = pd.read_csv(out / "cka_matrix.csv", index_col=0)
    for x in z:
        for y in z:
            assert cka.loc[x, y] == pytest.approx(linear_cka_hand(z[x], z[y]), rel=1e-9, abs=1e-12), (x, y)
    assert cka.loc["syn-a", "syn-c5"] < 0.9  # an unrelated model: not 1 like the affine pair
    prediction = pd.read_csv(out / "similarity_prediction.csv")
    assert set(prediction["similarity"]) == {"cka", "svcca"} and len(prediction) == 16
    assert set(prediction["pairs"]) == {6, 3}
    assert (out / "similarity.png").is_file() and (out / "worst" / "syn-a__syn-b.png").is_file()
    assert (out / "ratio_matrix_piecewise-2.csv").is_file()
    html = (out / "index.html").read_text()
    assert "Linearity gap" in html and "Worst relocated images" in html and "Estimators by relocation type" in html
    # the verdict: the estimators ranked by their median ratio over the pairs
    verdict = html[html.index('<section class="verdict">'):html.index('class="toc"')]
    medians = frame.groupby("estimator")["ratio"].median().sort_values(kind="stable")
    assert re.findall(r"<tr>\s*<td>([^<]+)</td>", verdict) == list(medians.index)
    # written again from the saved folder (no model loaded): the same numbers, the same page
    import shutil

    from latentmap.report.atlas import rewrite_atlas_page

    again = shutil.copytree(out, tmp_path / "again", ignore=shutil.ignore_patterns("maps"))
    (again / "index.html").unlink()
    rewrite_atlas_page(again)
    for name in ("atlas.csv", "linearity_gap.csv", "linearity_gap_by_type.csv", "similarity.csv",
                 "similarity_prediction.csv", "ratio_matrix_piecewise-2.csv", "cka_matrix.csv"):
        assert (again / name).read_text() == (out / name).read_text(), name
    assert (again / "index.html").read_text() == html
    assert "linearity gap" in res.output and "Spearman" in res.output


@pytest.mark.parametrize("args, fragment", [
    (["map", "atlas", "--estimators", "linear,foo"], "unknown estimator 'foo'"),
    (["map", "atlas", "--estimators", "piecewise:0"], "n_cells must be an int in the range [1, inf)"),
    (["map", "atlas", "--estimators", "mlp:hidden=0x3"], "hidden must be"),
    (["map", "atlas", "--estimators", "ortho", "--method", "procrustes"], "apply to the linear estimator only"),
    (["map", "fit", "--estimator", "mlp", "--no-bias"], "apply to the linear estimator only"),
    (["map", "fit", "--estimator", "ortho", "--alpha", "0.1"], "--alpha does not apply to ortho"),
    (["map", "fit", "--estimator", "linear:alpha=0.5", "--method", "procrustes"], "applies to method 'lstsq' only"),
    (["map", "fit", "--estimator", "adam:steps=1.5"], "steps must be an int in the range [1, inf)"),
])
def test_bad_estimator_options_exit_2_with_one_line(synthetic, tmp_path, args, fragment):  # noqa: F811
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    models = ["--models", p["a"], p["b"]] if args[1] == "atlas" else ["--source", p["a"], "--target", p["b"]]
    res = invoke(*args, *models, "--dataset", spec, "--out", tmp_path / "out")
    assert_one_line_error(res, fragment)
    assert not (tmp_path / "out").exists()


def test_atlas_from_prior_samples_feeds_streaming_and_held_estimators():
    """--fit samples: the MLP gets each source's samples and their re-encodings at once, the others stream them."""
    from latentmap.evaluation.atlas import build_atlas
    from latentmap.maps.fitting import FitSource
    from latentmap.maps.mlp import MLPMap
    from latentmap.maps.piecewise import PiecewiseLinearMap
    from tests.evaluation.test_relocation import known_pair, make_images

    a, b, _, _ = known_pair()
    atlas = build_atlas([a, b], make_images(50, seed=3, model=a), FitSource("samples", 300, seed=1),
                        estimators={"pw": lambda: PiecewiseLinearMap(n_cells=2, alpha=0.0),
                                    "mlp": lambda: MLPMap(hidden=(8,), max_epochs=2)}, batch_size=64, lpips="off")
    assert [(r.source, r.estimator) for r in atlas.results] == [("syn-a", "pw"), ("syn-a", "mlp"),
                                                                 ("syn-b", "pw"), ("syn-b", "mlp")]
    assert all(m.n_samples_seen_ == 300 for m in atlas.estimator_maps.values())
    assert atlas.results_of("pw")[0].ratio == pytest.approx(1.0, abs=1e-4)  # an exact affine pair
    assert atlas.linearity_gap() is None  # no linear estimator to compare with
    assert atlas.similarity["cka"][0][1] == pytest.approx(atlas.similarity["cka"][1][0])


def test_fit_and_eval_an_mlp_map_from_samples(synthetic, tmp_path):  # noqa: F811
    """An estimator without partial_fit gets every pair at once from map fit's stream."""
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--samples", 300, "--estimator",
                 "mlp:8:max_epochs=2", "--out", tmp_path / "mlp", "--batch-size", 64)
    assert res.exit_code == 0, res.output
    assert "held-out pairs" in res.output
    m = load_map(tmp_path / "mlp")
    assert m.n_samples_seen_ == 300 and m.hidden == (8,) and m.fit_metrics_["n_validation"] == 30
    res = invoke("map", "eval", "--map", tmp_path / "mlp", "--dataset", spec, "--split", "all", "--out",
                 tmp_path / "r", "--no-progress", "--lpips", "off")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "relocation.json").read_text())["estimator"] == "mlp"
