"""Numbers and words a reader can trust: legends, findings sentences, warnings and paths, from hand-built results."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.evaluation.coverage import CoverageResult, GeneratorCoverage, SectorSpace
from latentmap.evaluation.expressiveness import ExpressivenessResult, ModelExpressiveness, RatioCI, SetScores
from latentmap.evaluation.fidelity import FidelityResult, FidelityRow
from latentmap.evaluation.generator_bench import real_overlap
from latentmap.evaluation.image_sets import GeneratedSet
from latentmap.report import expressiveness as expr_report
from latentmap.report.coverage import coverage_findings, fidelity_findings
from latentmap.report.findings import atlas_findings, relocation_findings
from latentmap.report.html import Section, shown_path
from latentmap.report.index import SHOWN_FINDINGS, report_headline, write_reports_index

from tests.evaluation.test_relocation import affine_model, make_images


# --------------------------------------------------------------------------- expressiveness

def _scores(key, encoder, refined_index, refined):
    encoder, refined = np.asarray(encoder, float), np.asarray(refined, float)
    n, r = len(encoder), len(refined)
    index = np.asarray(refined_index, dtype=np.int64)
    return SetScores(key, f"{key} images", {"mse": encoder, "ssim": np.full(n, 0.9), "distance": np.ones(n),
                                            "outside": np.zeros(n)},
                     index, {"mse": refined, "ssim": np.full(r, 0.95), "distance": np.ones(r), "outside": np.zeros(r)})


def _model(name="m", own_refined=(1.08e-12, 3e-12)):
    sets = {"own": _scores("own", [0.002, 0.004, 0.003, 0.001], [0, 2], own_refined),
            # the support set: all four images at mean 0.2, the two refined ones (positions 1 and 3) at 0.05, refined 0.04
            "support": _scores("support", [0.3, 0.04, 0.4, 0.06], [1, 3], [0.035, 0.045])}
    return ModelExpressiveness(name, "vae", 8, "prior", {"typical": 1.0, "description": "radius"}, sets,
                               {"support/own": RatioCI(80.0, 60.0, 100.0)})


def test_histogram_legend_gives_the_tables_mean_and_the_plot_floor(monkeypatch):
    captured = []
    monkeypatch.setattr(expr_report, "figure_png", lambda fig: captured.append(fig) or b"")
    model = _model()
    expr_report.error_histogram_png(model)
    labels = [t.get_text() for ax in captured[0].axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    own_refined = model.sets["own"].summary(1.0)["refined_mse"]  # 2.04e-12, the number the tables show
    assert own_refined == pytest.approx(2.04e-12)
    shown = expr_report.sig(own_refined)
    assert any(f"own samples (mean {shown}; 2 below 1.00e-07, drawn at 1.00e-07)" == label for label in labels), labels
    assert any(label == f"support-set images (mean {expr_report.sig(0.2)})" for label in labels), labels
    assert not any("mean 1e-07" in label for label in labels)


def test_expressiveness_summary_compares_encoder_and_refined_mse_on_the_same_images():
    result = ExpressivenessResult([_model()], {"steps": 7}, "")
    text = " ".join(expr_report.findings(result))
    # encoder MSE of the refined images (0.04, 0.06: mean 0.05) before their refined MSE (0.04), not 0.2 (all four)
    assert "m 0.0500 → 0.0400" in text
    assert "the 2 refined ones" in text
    assert "The paper's StyleGAN" in text and "Asperti & Tonelli" in text
    assert "seeds'" not in text
    rows = expr_report.sets_display(result)
    support = rows[rows["Target set"] == "support-set images"].iloc[0]
    assert support["Encoder MSE"] == "0.200" and support["Encoder MSE, refined images"] == "0.0500"


# --------------------------------------------------------------------------- atlas and relocation findings

def _pair(source, target, kind, ratio, r2, n=500):
    return {"source": source, "target": target, "type": kind, "ratio": ratio, "latent_r2": r2, "n_images": n}


def test_atlas_findings_say_one_value_once_and_explain_ratios_below_one_and_negative_r2():
    atlas = {"models": ["a", "b", "g"], "fit_source": {"kind": "support-set", "count": 64}, "results": [
        _pair("a", "b", 1, 1.4912, 0.71), _pair("b", "a", 1, 1.4877, 0.73),
        _pair("a", "g", 3, 0.922, 0.41), _pair("g", "a", 3, 3.31, -0.176)]}
    text = " ".join(atlas_findings(atlas))
    assert "Type 1 (same architecture, different training): 1.49 (a → b, b → a)" in text
    assert "from 1.49" not in text
    assert "Type 3 (different objectives) from 0.922 (a → g) to 3.31 (g → a)" in text
    assert "A ratio below 1 (a → g 0.922) means the relocated images are closer to the originals" in text
    assert "A negative latent R² (g → a -0.176) means the map predicts B's latents" in text
    useless = {**atlas, "results": [{**r, "target_mse": 0.3 if r["target"] == "a" else 0.01, "mean_image_mse": 0.07}
                                    for r in atlas["results"]]}
    text = " ".join(atlas_findings(useless))
    assert text.count("Warning") == 1
    assert "Warning: a's own reconstruction MSE 0.300 is no better than the 0.0700" in text
    assert "the ratios b → a (1.49), g → a (3.31) compare against a useless baseline" in text
    plain = {**atlas, "results": [_pair("a", "b", 1, 1.2, 0.5), _pair("b", "a", 1, 1.7, 0.6)]}
    text = " ".join(atlas_findings(plain))
    assert "from 1.20 (a → b) to 1.70 (b → a)" in text
    assert "below 1" not in text and "negative" not in text


def test_linearity_gap_is_defined_in_units_of_the_targets_own_error_not_as_a_share():
    from latentmap.report.estimators import _linearity_gap

    types = pd.DataFrame([{"type": 3, "pairs": 2, "mean_gap": 1.302}])
    pairs = pd.DataFrame([{"source": "g", "target": "a", "gap": 1.302}])
    for frame in (types, pairs):
        frame.attrs.update(linear="linear", nonlinear="mlp")

    class Atlas:
        def linearity_gap(self):
            return pairs, types

    section = Section("x")
    _linearity_gap(Atlas(), Path(pytest.importorskip("tempfile").mkdtemp()), section, "")
    text = section.render()
    assert "share" not in text
    assert "in units of B&#x27;s own reconstruction MSE" in text or "in units of B's own reconstruction MSE" in text
    assert "above 1" in text


def test_map_eval_findings_warn_when_the_target_reconstructs_nothing():
    row = {"source": "a", "target": "b", "type": 3, "relocated_mse": 0.2418, "target_mse": 0.243, "ratio": 0.995,
           "n_images": 100, "mean_image_mse": 0.0712}
    text = " ".join(relocation_findings(row))
    assert "Warning: b's own reconstruction MSE 0.243 is no better than the 0.0712" in text
    assert "the ratio a → b (0.995) compares against a useless baseline" in text
    assert "A ratio below 1" not in text  # against a useless target a ratio below 1 is no achievement
    fine = {**row, "target_mse": 0.01, "relocated_mse": 0.015, "ratio": 1.5}
    assert "Warning" not in " ".join(relocation_findings(fine))


def test_relocation_records_the_mse_of_the_mean_image():
    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap import LinearMap

    a = affine_model("syn-a", 4, seed=0)
    images = make_images(50, seed=3, model=a)
    identity = LinearMap(bias=False, alpha=0)
    z = a.encode(images)
    identity.fit(z, z)
    result = evaluate_relocation(a, a, identity, images, lpips="off", cycle=False)
    x = images.double().flatten(1).numpy()
    expected = float(((x - x.mean(0)) ** 2).mean())  # the best constant image is the mean image
    assert result.mean_image_mse == pytest.approx(expected, rel=1e-9)
    assert not result.target_useless()


# --------------------------------------------------------------------------- coverage, index, fidelity

def _coverage():
    space = SectorSpace("ref", [0, 1, 2])
    real = np.array([10, 10, 20, 10, 10, 10, 15, 15]) * 10  # 1,000 real images
    # sector 2: 20% real, 12% generated (gap 8 points, not flagged: 0.6 x real);
    # sector 0: 10% real, 4% generated (gap 6 points, flagged under)
    gen = np.array([4, 10, 12, 10, 14, 20, 15, 15]) * 10
    g = GeneratorCoverage("gen", "hand", int(gen.sum()), gen, {"test": "G test", "statistic": 12.0, "dof": 7,
                                                              "p_value": 0.01},
                          [], 0, [0], [5], 0.1)
    return CoverageResult(space, "real test images", real, 20, np.zeros(0), [g], sector_labels=None)


def test_coverage_findings_name_the_largest_gap_over_all_sectors():
    text = " ".join(coverage_findings(_coverage()))
    # sector 5 (over-represented, 10% real, 20% generated) differs more, the other way: it is no shortfall
    assert ("the largest shortfall (generated share below the real one) over all 8 sectors is sector 2: 20% of the "
            "real images, 12% of the generated ones") in text
    assert "not flagged: its generated share is at least 0.5 times the real one" in text
    assert "the largest among the under-represented sectors is sector 0: 10% of the real images, 4.0% of the" in text


def test_reports_index_names_every_generator_of_a_coverage_report(tmp_path):
    folder = tmp_path / "cov"
    folder.mkdir()
    (folder / "index.html").write_text("<html><head><title>c</title></head></html>")
    names = [f"gen-{k}" for k in range(SHOWN_FINDINGS + 2)] + ["real train images"]
    pd.DataFrame([{"generator": n, "tv_distance": 0.1 + k / 100, "never_reached": k, "under_represented": 2 * k,
                   "over_represented": 3} for k, n in enumerate(names)]).to_csv(folder / "coverage_summary.csv",
                                                                                index=False)
    kind, findings = report_headline(folder)
    assert kind == "coverage"
    shown = " ".join(findings[:SHOWN_FINDINGS])
    for name in names:
        assert name in shown
    assert "gen-5 0.150 (5, 10, 3)" in shown and "real train images (calibration)" in shown
    assert f"{SHOWN_FINDINGS + 2} generators and the calibration" in shown
    page = write_reports_index(tmp_path).read_text()
    assert all(name in page for name in names)


def test_fidelity_warns_when_generated_images_are_real_images():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.random((40, 1, 6, 6), dtype=np.float32))
    own = torch.from_numpy(rng.random((30, 1, 6, 6), dtype=np.float32))
    # 10 of 40 generated images are real ones, one of them after a round trip through uint8
    copied = torch.cat([own, real[:9], (real[9:10] * 255).round() / 255])
    sets = [GeneratedSet("copier", copied, "hand"), GeneratedSet("honest", own, "hand")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        overlap = real_overlap(real, sets, "real test images")
    assert overlap == {"copier": pytest.approx(0.25)}
    assert len(caught) == 1 and "'copier': 25.0% of its 40 images are copies of the real test images" in str(
        caught[0].message)
    row = FidelityRow("copier", "hand", 40, 1.0, 0.5, 1.2, 0.6, 0.1)
    result = FidelityResult("ref latent space (4-d)", "FD in ref space", 5, 40, "real test images", [row], overlap)
    text = " ".join(fidelity_findings(result))
    assert "Warning: 25% of copier's images are copies of the real test images" in text
    assert result.to_dict()["overlap"] == {"copier": pytest.approx(0.25)}


# --------------------------------------------------------------------------- LPIPS notice and machine paths

def test_lpips_note_names_no_folder_of_this_machine(monkeypatch, tmp_path):
    from latentmap.evaluation.relocation import lpips_function

    hub = tmp_path / "home" / "someone" / ".cache" / "torch" / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    fn, note = lpips_function("cpu", "auto")
    assert fn is None and str(tmp_path) not in note
    assert "$TORCH_HOME/hub/checkpoints/alexnet" in note


def test_shown_path_is_relative_or_a_name():
    assert shown_path("reports/demo") == "reports/demo"
    assert shown_path(Path.cwd() / "checkpoints") == "checkpoints"
    assert shown_path("/somewhere/else/checkpoints") == "checkpoints"
    assert shown_path("/r/out/maps/a", base="/r/out") == "maps/a"


def test_map_eval_report_warns_of_a_useless_target_once_and_names_no_machine_path(tmp_path):
    a = affine_model("syn-a", 4, seed=0)
    bad = affine_model("syn-bad", 4, seed=1)
    bad.lin.dec_b.fill_(0.95)  # reconstructs everything far from grey: worse than the mean image
    for m in (a, bad):
        m.save(tmp_path / "ckpt" / m.name)
    np.save(tmp_path / "images.npy", make_images(60, seed=2, model=a).numpy())
    spec = f"npy:{tmp_path / 'images.npy'}"
    runner = CliRunner()
    res = runner.invoke(main, ["map", "fit", "--source", str(tmp_path / "ckpt" / "syn-a"), "--target",
                               str(tmp_path / "ckpt" / "syn-bad"), "--dataset", spec, "--fit-split", "all",
                               "--out", str(tmp_path / "map")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["map", "eval", "--map", str(tmp_path / "map"), "--dataset", spec, "--split", "all",
                               "--out", str(tmp_path / "report"), "--grid-images", "3"])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "report" / "relocation.json").read_text())
    assert row["target_mse"] > row["mean_image_mse"]
    assert "no better than the" in res.output and "reconstructs nothing" in res.output
    assert res.output.count("LPIPS unavailable") + res.output.count("LPIPS off") <= 1
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Warning: syn-bad&#x27;s own reconstruction MSE" in page
    assert page.count("LPIPS unavailable") <= 1
    for name in ("index.html", "relocation.json", "relocation.csv"):
        text = (tmp_path / "report" / name).read_text()
        for machine in (str(tmp_path), str(Path.home()), str(Path(torch.hub.get_dir()))):
            assert machine not in text, (name, machine)


def test_expressiveness_report_names_no_machine_path(tmp_path):
    from latentmap.evaluation.relocation import lpips_function

    _fn, note = lpips_function("cpu", "auto")
    result = ExpressivenessResult([_model()], {"steps": 7, "own_samples": 4, "real_images": 0, "real_source": "x",
                                               "support_images": 4, "support_source": "y", "bootstrap_resamples": 100,
                                               "lr": 0.1, "refine_images": 2}, note)
    expr_report.write_expressiveness_report(result, tmp_path)
    for path in tmp_path.iterdir():
        if path.suffix in (".html", ".json", ".csv"):
            text = path.read_text()
            for machine in (str(tmp_path), str(Path.home()), str(Path(torch.hub.get_dir()))):
                assert machine not in text, (path.name, machine)


def test_bench_fidelity_warns_of_an_image_set_holding_the_reference_images(tmp_path):
    from latentmap import load_dataset

    real = load_dataset("fashion-mnist", "test").random_subset(60, 0).all_images()  # the images --seed 0 scores against
    other = load_dataset("fashion-mnist", "train").random_subset(60, 3).all_images()
    np.save(tmp_path / "leaky.npy", torch.cat([real[:30], other[:30]]).numpy())
    out = tmp_path / "fid"
    res = CliRunner().invoke(main, ["bench", "fidelity", f"npy:{tmp_path / 'leaky.npy'}", "--images", "60",
                                    "--no-calibration", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "'leaky': 50.0% of its 60 images are copies of the fashion-mnist test images" in res.output
    page = (out / "index.html").read_text()
    assert "Warning: 50% of leaky&#x27;s images are copies" in page
    assert json.loads((out / "fidelity.json").read_text())["overlap"] == {"leaky": 0.5}
    for name in ("index.html", "fidelity.json", "fidelity.csv"):
        assert str(tmp_path) not in (out / name).read_text(), name


def test_atlas_report_warns_of_a_useless_target_and_names_no_machine_path(tmp_path):
    a = affine_model("syn-a", 4, seed=0)
    b = affine_model("syn-b", 4, seed=1)
    b.lin.dec_b.fill_(0.95)  # reconstructs nothing of images around grey
    for m in (a, b):
        m.save(tmp_path / "ckpt" / m.name)
    np.save(tmp_path / "images.npy", make_images(60, seed=2, model=a).numpy())
    res = CliRunner().invoke(main, ["map", "atlas", "--models", f"{tmp_path / 'ckpt'}/*", "--dataset",
                                    f"npy:{tmp_path / 'images.npy'}", "--out", str(tmp_path / "atlas"),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.output.count("LPIPS unavailable") <= 1
    saved = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert [m["spec"] for m in saved["models"]] == ["syn-a", "syn-b"]
    assert "Warning: syn-b's own reconstruction MSE" in res.output and "syn-a → syn-b" in res.output
    assert "Warning: syn-a's own" not in res.output
    assert "Warning: syn-b&#x27;s own reconstruction MSE" in (tmp_path / "atlas" / "index.html").read_text()
    for name in ("index.html", "atlas.json", "atlas.csv"):
        text = (tmp_path / "atlas" / name).read_text()
        for machine in (str(tmp_path), str(Path.home()), str(Path(torch.hub.get_dir()))):
            assert machine not in text, (name, machine)


def test_coverage_findings_write_the_calibration_count_with_separators_and_one_sector_singular():
    result = _coverage()
    real = result.real_counts
    calibration = GeneratorCoverage("real train images", "hand", 2000, real * 2, {"test": "G test", "statistic": 1.0,
                                    "dof": 7, "p_value": 0.73}, [], 0, [], [3], 0.0636)
    result.generators.append(calibration)
    assert ("For calibration, 2,000 real training images score total variation 0.0636, p 0.73, with 1 flagged "
            "sector: what a generator matching the data would get at this sample size.") in coverage_findings(result)
