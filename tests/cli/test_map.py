"""``latentmap map fit | eval | atlas`` through click's CliRunner: results, exit codes, one-line errors."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentmap import LinearMap, load_model
from latentmap.io.checkpoint import model_fingerprint
from latentmap.cli.main import main
from latentmap.data.datasets import FASHION_MNIST_CLASSES
from latentmap.support.build import SupportSet

from tests.evaluation.test_relocation import affine_model, make_images, related_model

D = 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Checkpoints of A, B (= T A + t), B0 (= T A), an unrelated 5-d model, and an 8x8 image array."""
    root = tmp_path_factory.mktemp("syn")
    rng = np.random.default_rng(42)
    T, t = np.eye(D) + 0.3 * rng.normal(size=(D, D)), rng.normal(size=D)
    a = affine_model("syn-a", D, seed=0)
    models = {"a": a, "b": related_model(a, "syn-b", T, t), "b0": related_model(a, "syn-b0", T, np.zeros(D)),
              "c5": affine_model("syn-c5", 5, seed=3, tag="c")}
    paths = {}
    for key, model in models.items():
        paths[key] = root / "ckpt" / model.name
        model.save(paths[key])
    (root / "ckpt" / "README.md").write_text("not a checkpoint\n")
    images = make_images(120, seed=5, model=a).numpy()
    np.save(root / "images.npy", images)
    return {"root": root, "paths": paths, "T": T, "t": t, "images": images}


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_fit_support_set_then_eval(synthetic, tmp_path):
    p = synthetic["paths"]
    support = SupportSet("syn-support", torch.from_numpy(synthetic["images"][:D]), {"method": "test"})
    support.save(tmp_path / "support")
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b0"], "--support-set", tmp_path / "support",
                 "--out", tmp_path / "maps" / "a__b0", "--alpha", 0)
    assert res.exit_code == 0, res.output
    m = LinearMap.load(tmp_path / "maps" / "a__b0")
    assert m.bias is False  # a support-set fit defaults to the paper's bias-free map
    assert np.linalg.norm(m.coef_ - synthetic["T"]) / np.linalg.norm(synthetic["T"]) < 1e-6
    info = m.info_
    assert info["fit_source"] == {"kind": "support-set", "name": "syn-support", "path": str(tmp_path / "support"),
                                  "count": D}
    # the model's path is stored relative to the map folder, with the fingerprint of its weights and config
    recorded = {k: v for k, v in info["source"].items() if "fingerprint" not in k}
    assert recorded == {"name": "syn-a", "kind": "test-affine", "latent_dim": D, "image_shape": [1, 8, 8],
                        "objective": "test-affine", "family": "test-affine", "origin": "checkpoint",
                        "spec": os.path.relpath(Path(p["a"]).resolve(), (tmp_path / "maps" / "a__b0").resolve())}
    assert info["source"]["fingerprint"] == model_fingerprint(load_model(p["a"]))
    assert info["target"]["fingerprint"] == model_fingerprint(load_model(p["b0"])) != info["source"]["fingerprint"]
    res = invoke("map", "eval", "--map", tmp_path / "maps" / "a__b0", "--dataset", f"npy:{synthetic['root']}/images.npy",
                 "--split", "all", "--out", tmp_path / "report", "--grid-images", 5)
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "report" / "relocation.json").read_text())
    assert row["n_images"] == 120 and row["type"] == 1
    assert row["ratio"] == pytest.approx(1.0, abs=1e-5)
    for name in ("relocation.csv", "grid.png", "index.html"):
        assert (tmp_path / "report" / name).is_file()
    assert "relocated / target MSE" in res.output and "LPIPS" in res.output


def test_map_eval_works_from_another_folder_and_checks_the_models(synthetic, tmp_path, monkeypatch):
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    work = tmp_path / "work"
    target = shutil.copytree(p["b"], tmp_path / "models" / "syn-b")  # this test changes it at the end
    work.mkdir()
    monkeypatch.chdir(work)  # relative paths, as a user types them
    res = invoke("map", "fit", "--source", os.path.relpath(p["a"]), "--target", os.path.relpath(target),
                 "--dataset", spec, "--fit-split", "all", "--out", "m")
    assert res.exit_code == 0, res.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = invoke("map", "eval", "--map", work / "m", "--dataset", spec, "--split", "all", "--out", "r")
    assert res.exit_code == 0, res.output
    assert json.loads((elsewhere / "r" / "relocation.json").read_text())["ratio"] == pytest.approx(1.0, abs=1e-4)
    # a model changed since the fit (here: a whole, valid checkpoint of another model) is not silently used
    shutil.rmtree(target)
    shutil.copytree(p["b0"], target)
    res = invoke("map", "eval", "--map", work / "m", "--dataset", spec, "--split", "all", "--out", "r2")
    assert_one_line_error(res, "model 'syn-b'", "is not the one", "fingerprint")
    assert not (elsewhere / "r2").exists()


def test_fit_dataset_with_bias_and_from_samples(synthetic, tmp_path):
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--dataset", spec, "--fit-split", "all",
                 "--fit-images", 20, "--out", tmp_path / "m1")
    assert res.exit_code == 0, res.output
    m = LinearMap.load(tmp_path / "m1")
    assert m.bias is True and m.info_["fit_source"]["count"] == 20
    assert np.abs(m.intercept_ - synthetic["t"]).max() < 1e-5
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--samples", 40, "--alpha", 0,
                 "--out", tmp_path / "m2")
    assert res.exit_code == 0, res.output
    m2 = LinearMap.load(tmp_path / "m2")
    assert m2.info_["fit_source"]["kind"] == "samples"
    assert np.linalg.norm(m2.coef_ - synthetic["T"]) / np.linalg.norm(synthetic["T"]) < 1e-4


def test_underdetermined_fit_exits_2_and_writes_nothing(synthetic, tmp_path):
    p = synthetic["paths"]
    np.save(tmp_path / "few.npy", synthetic["images"][:D])
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--support-set", f"npy:{tmp_path}/few.npy",
                 "--bias", "--alpha", 0, "--out", tmp_path / "out")
    assert_one_line_error(res, "needs at least 7 image pairs, got 6", "alpha")
    assert not (tmp_path / "out").exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".out")]


def test_missing_map_folder(tmp_path):
    res = invoke("map", "eval", "--map", tmp_path / "nowhere", "--out", tmp_path / "report")
    assert_one_line_error(res, "map folder", "does not exist")
    assert not (tmp_path / "report").exists()


def test_mismatched_latent_sizes(synthetic, tmp_path):
    p = synthetic["paths"]
    assert invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--samples", 30,
                  "--out", tmp_path / "m").exit_code == 0
    res = invoke("map", "eval", "--map", tmp_path / "m", "--source", p["c5"], "--dataset",
                 f"npy:{synthetic['root']}/images.npy", "--out", tmp_path / "report")
    assert_one_line_error(res, "map expects source latents of size 6, model 'syn-c5' gives 5")
    assert not (tmp_path / "report").exists()


def test_nan_latents_and_nan_images(synthetic, tmp_path):
    p = synthetic["paths"]
    broken = affine_model("syn-nan", D, seed=0)
    broken.lin.enc_b[0] = float("nan")
    broken.save(tmp_path / "syn-nan")
    res = invoke("map", "fit", "--source", tmp_path / "syn-nan", "--target", p["b"], "--dataset",
                 f"npy:{synthetic['root']}/images.npy", "--out", tmp_path / "m")
    assert_one_line_error(res, "NaN")
    bad = synthetic["images"].copy()
    bad[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--dataset", f"npy:{tmp_path}/bad.npy",
                 "--out", tmp_path / "m")
    assert_one_line_error(res, "NaN")
    assert not (tmp_path / "m").exists()


def test_fit_needs_exactly_one_source(synthetic, tmp_path):
    p = synthetic["paths"]
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--samples", 5, "--dataset", "digits",
                 "--out", tmp_path / "m")
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--out", tmp_path / "m")
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_atlas_takes_comma_lists_and_skips_models_that_do_not_fit_the_data(synthetic, tmp_path):
    root, p = synthetic["root"], synthetic["paths"]
    other = affine_model("syn-16px", D, seed=4, shape=(1, 16, 16))  # works on other images than the dataset's
    other.save(tmp_path / "syn-16px")
    res = invoke("map", "atlas", "--models", f"{p['a']},{p['b']}", "--models", tmp_path / "syn-16px",
                 "--dataset", f"npy:{root}/images.npy", "--image-transform", "identity", "--out", tmp_path / "atlas",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert {m["name"] for m in saved["models"]} == {"syn-a", "syn-b"} and len(saved["results"]) == 2
    assert saved["skipped"] == [{"name": "syn-16px", "reason": "works on images (1, 16, 16), the test images are "
                                                              "(1, 8, 8)"}]
    assert "Warning: atlas: skipping model 'syn-16px'" in res.output
    assert "syn-16px" in (tmp_path / "atlas" / "index.html").read_text()
    # by default a model of another shape gets the images through --image-transform auto, with a warning
    res = invoke("map", "atlas", "--models", f"{p['a']},{p['b']}", "--models", tmp_path / "syn-16px",
                 "--dataset", f"npy:{root}/images.npy", "--out", tmp_path / "atlas-auto", "--no-progress")
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "atlas-auto" / "atlas.json").read_text())
    assert len(saved["results"]) == 6 and not saved["skipped"] and "--image-transform auto" in res.output
    assert {m["name"]: m.get("image_transform") for m in saved["models"]}["syn-16px"] == {
        "spec": "auto", "from": [1, 8, 8], "to": [1, 16, 16]}


def test_atlas_over_a_folder_glob(synthetic, tmp_path):
    root = synthetic["root"]
    # the glob also matches a README (skipped) and a model of another latent size (every pair still gets a map)
    res = invoke("map", "atlas", "--models", f"{root}/ckpt/*", "--dataset", f"npy:{root}/images.npy",
                 "--fit-split", "train", "--split", "test", "--out", tmp_path / "atlas", "--no-progress")
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert {m["name"] for m in saved["models"]} == {"syn-a", "syn-b", "syn-b0", "syn-c5"}
    assert len(saved["results"]) == 12
    same_geometry = [r for r in saved["results"] if "syn-c5" not in (r["source"], r["target"])]
    assert len(same_geometry) == 6 and all(r["ratio"] == pytest.approx(1.0, abs=1e-4) for r in same_geometry)
    assert {r["type"] for r in saved["results"]} == {1, 2}
    assert (tmp_path / "atlas" / "maps" / "syn-c5__syn-a" / "map.json").is_file()
    assert "ratio" in res.output and "report written" in res.output
    res = invoke("map", "atlas", "--models", f"{root}/ckpt/syn-a", "--out", tmp_path / "atlas3")
    assert res.exit_code == 2 and "at least 2 models" in res.output


def test_real_vae_self_map_is_identity(tiny_vae_checkpoint, tmp_path):
    res = invoke("map", "fit", "--source", tiny_vae_checkpoint, "--target", tiny_vae_checkpoint, "--dataset",
                 "fashion-mnist", "--fit-images", 200, "--out", tmp_path / "self", "--device", "cpu")
    assert res.exit_code == 0, res.output
    m = LinearMap.load(tmp_path / "self")
    np.testing.assert_allclose(m.coef_, np.eye(8), atol=1e-6)
    res = invoke("map", "eval", "--map", tmp_path / "self", "--images", 100, "--out", tmp_path / "r", "--device", "cpu",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "r" / "relocation.json").read_text())
    assert row["ratio"] == pytest.approx(1.0, abs=1e-4) and row["type"] == 1
    # Fashion-MNIST is labelled: a row per garment class, which together make up the whole
    import pandas as pd

    by_label = pd.read_csv(tmp_path / "r" / "relocation_by_label.csv")
    assert by_label["n_images"].sum() == 100 and set(by_label["name"]) <= set(FASHION_MNIST_CLASSES)
    assert (by_label["n_images"] * by_label["target_mse"]).sum() / 100 == pytest.approx(row["target_mse"], rel=1e-9)
    assert row["by_label"][0]["label"] == by_label["label"].iloc[0] and "ratio by label: " in res.output


def test_fit_with_alpha_auto_and_a_bad_alpha(synthetic, tmp_path):
    p, spec = synthetic["paths"], f"npy:{synthetic['root']}/images.npy"
    res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--dataset", spec, "--fit-split", "all",
                 "--alpha", "auto", "--out", tmp_path / "auto")
    assert res.exit_code == 0, res.output
    m = LinearMap.load(tmp_path / "auto")
    assert m.alpha == "auto" and m.info_["fit_metrics"]["alpha"] == m.alpha_ and "alpha auto (" in res.output
    # noise-free affine pair: cross-validation keeps the penalty negligible
    assert np.abs(m.intercept_ - synthetic["t"]).max() < 1e-4
    for bad in ("sometimes", "-1", "inf"):
        res = invoke("map", "fit", "--source", p["a"], "--target", p["b"], "--samples", 30, "--alpha", bad,
                     "--out", tmp_path / "bad")
        assert res.exit_code == 2 and "'auto'" in res.output and not (tmp_path / "bad").exists()


def _renamed(src, dst, name):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["name"] = name
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_atlas_of_models_whose_names_are_paths_writes_only_inside_out(synthetic, tmp_path):
    """Model names come from configs: '../../evil' and '/abs' are made file-safe (one slug rule), names whose slugs
    coincide stay apart, and nothing is written outside --out."""
    p = synthetic["paths"]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    models = [_renamed(p["a"], tmp_path / "m1", "../../evil"), _renamed(p["b"], tmp_path / "m2", "evil"),
              _renamed(p["b0"], tmp_path / "m3", "/tmp/abs:name")]
    before = sorted(str(q) for q in tmp_path.rglob("*"))
    res = invoke("map", "atlas", "--models", ",".join(map(str, models)), "--dataset",
                 f"npy:{synthetic['root']}/images.npy", "--estimators", "linear,ortho", "--out", work / "atlas",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    after = sorted(str(q) for q in tmp_path.rglob("*"))
    outside = [q for q in after if q not in before and not q.startswith(str(work / "atlas"))]
    assert outside == []
    grids = sorted(q.name for q in (work / "atlas" / "grids").iterdir())
    assert grids == sorted(["evil__evil-2.png", "evil__tmp-abs-name.png", "evil-2__evil.png",
                            "evil-2__tmp-abs-name.png", "tmp-abs-name__evil.png", "tmp-abs-name__evil-2.png"])
    assert len(list((work / "atlas" / "maps" / "ortho").iterdir())) == 6
    assert not list(Path("/tmp").glob("abs:name*"))
