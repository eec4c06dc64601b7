"""``latentmap bench``: reports written, numbers consistent with the library, bad input as one line with exit 2;
and the demo's expressiveness and coverage sections."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from latentmap import load_dataset, load_model
from latentmap.cli.main import main
from latentmap.demo import expressiveness as demo_module
from latentmap.demo.story import DemoContext, default_checkpoints
from latentmap.evaluation.expressiveness import own_samples
from latentmap.evaluation.samplers import PriorSampler
from latentmap.io.atomic import write_output_marker
from latentmap.models.shipped import shipped_support_sets
from latentmap.report.tables import interval
from latentmap.support.build import SupportSet
from tests.helpers.references import fid_formula, per_image_mse, percentile_interval, seeded_bootstrap_ratio

SMALL = ["--images", "40", "--samples", "40", "--refine-images", "4", "--steps", "3", "--bootstrap", "200",
         "--lpips", "off"]


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    gan = load_model("fmnist-gan")
    np.save(root / "gan-made.npy", gan.decode(gan.sample_prior(300, torch.Generator().manual_seed(0))).numpy())
    np.save(root / "small.npy", np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32))
    return root


def _run(argv, tmp_path):
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    return result


def test_bench_expressiveness_writes_a_report_that_opens_with_findings(tmp_path):
    out = tmp_path / "expr"
    result = _run(["-q", "bench", "expressiveness", "fmnist-gan", "fmnist-vae-a", *SMALL, "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.model) == ["fmnist-gan", "fmnist-vae-a"] and (board.sampler == "prior").all()
    # the numbers, recomputed here: the same images, numpy's per-image MSE of decode(encode(x)), the seeded bootstrap
    gan = load_model("fmnist-gan")
    with torch.no_grad():
        sets = {"own": own_samples(gan, PriorSampler(gan), 40, 0),
                "real": load_dataset("fashion-mnist", "test").random_subset(40, 0).all_images(),
                "support": SupportSet.load(shipped_support_sets()["fmnist-svae"]).images}
        mse = {k: per_image_mse(gan.decode(gan.encode(x)).numpy(), x.numpy()) for k, x in sets.items()}
    assert len(mse["support"]) == 64  # the shipped support set by default
    ratio = {k: mse[k].mean() / mse["own"].mean() for k in ("support", "real")}
    assert abs(ratio["support"] - ratio["real"]) > 0.2  # the two ratios are told apart below
    for k in ("support", "real"):
        assert board.loc[0, f"{k}_over_own"] == pytest.approx(ratio[k], rel=1e-5)
        low, high = percentile_interval(seeded_bootstrap_ratio(mse[k], mse["own"], 200, 0))
        assert board.loc[0, f"{k}_over_own_low"] == pytest.approx(low, rel=1e-5)
        assert board.loc[0, f"{k}_over_own_high"] == pytest.approx(high, rel=1e-5)
        label = {"support": "support-set images", "real": "real test images"}[k]
        sentence = (f"{label} at {mse[k].mean():#.3g}, {ratio[k]:#.3g} times worse (95% interval {low:#.3g}–"
                    f"{high:#.3g})")
        assert sentence in result.output, (sentence, result.output)
    # the calibration: support/real, the support/own of a model whose own samples were real images
    assert board.loc[0, "support_over_real"] == pytest.approx(mse["support"].mean() / mse["real"].mean(), rel=1e-5)
    low, high = percentile_interval(seeded_bootstrap_ratio(mse["support"], mse["real"], 200, 0))
    assert (board.loc[0, "support_over_real_low"], board.loc[0, "support_over_real_high"]) == \
        (pytest.approx(low, rel=1e-5), pytest.approx(high, rel=1e-5))
    assert f"fmnist-gan (gan) reconstructs its own samples at MSE {mse['own'].mean():#.3g}" in result.output
    data = json.loads((out / "expressiveness.json").read_text())
    # the shipped support set records the model that chose it (fmnist-svae in its manifest); not ranked here
    assert data["settings"]["support_model"] == "fmnist-svae"
    assert "Caution" not in (out / "index.html").read_text()
    gan = data["models"][0]
    from latentmap.io.checkpoint import model_fingerprint

    assert (gan["record"]["origin"], gan["record"]["spec"]) == ("shipped", "fmnist-gan")
    assert gan["record"]["fingerprint"] == model_fingerprint(load_model("fmnist-gan"))
    assert gan["record"]["fingerprint"][:12] in (out / "index.html").read_text()
    page = (out / "index.html").read_text()
    intro = page.split("<nav")[0]  # the findings box and the ranked table, before the contents
    # the verdict first, with the paper's figure; the table ranked by support/own, the calibration row last
    assert 'class="findings"' in intro and 'id="verdict"' in intro and "CelebA: 9.7" in intro
    low, high = percentile_interval(seeded_bootstrap_ratio(mse["support"], mse["own"], 200, 0))
    assert interval(ratio["support"], low, high) in intro
    ranked = list(board.sort_values("support_over_own").model)
    table = intro[intro.index('id="verdict"'):]
    assert table.index(f">{ranked[0]}<") < table.index(f">{ranked[1]}<") < table.index("(calibration)")
    for name in ("errors_fmnist-gan.png", "worst_fmnist-gan_support.png", "worst_fmnist-vae-a_real.png",
                 "target_sets.csv"):
        assert (out / name).is_file(), name
    assert "report written to" in result.output


def test_bench_coverage_and_fidelity_take_image_sets(tmp_path, image_sets):
    out = tmp_path / "cov"
    spec = f"npy:{image_sets / 'gan-made.npy'}"
    result = _run(["-q", "bench", "coverage", spec, "--images", "600", "--samples", "300", "--min-count", "10",
                   "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "coverage_summary.csv")
    assert list(summary.generator) == ["gan-made", "real train images"]
    sectors = pd.read_csv(out / "coverage_sectors.csv")
    assert len(sectors) == 2 * 64 and sectors.groupby("generator").generated_count.sum().tolist() == [300, 300]
    assert sectors.groupby("generator").real_count.sum().tolist() == [600, 600]
    fidelity = pd.read_csv(out / "fidelity.csv")
    assert list(fidelity.name) == ["gan-made", "real train images"]
    assert "FD in fmnist-svae space" in (out / "index.html").read_text()


def test_bench_fidelity_equals_the_reference_prdc_package_and_fid_formula(tmp_path, image_sets):
    """End to end: the features are the reference model's encodings of the chosen images; every number of
    fidelity.csv equals the prdc package (Naeem et al.'s code) and pytorch-fid's formula on them."""
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    out = tmp_path / "fid"
    spec = f"npy:{image_sets / 'gan-made.npy'}"
    result = _run(["-q", "bench", "fidelity", spec, "--images", "600", "--samples", "300", "--k", "4",
                   "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    assert "FID" not in result.output
    table = pd.read_csv(out / "fidelity.csv").set_index("name")
    assert list(table.index) == ["gan-made", "real train images"]
    svae = load_model("fmnist-svae")  # the shipped support set's reference model
    with torch.no_grad():
        real = svae.encode_all(load_dataset("fashion-mnist", "test").random_subset(600, 0).all_images()).double()
        generated = {"gan-made": torch.from_numpy(np.load(image_sets / "gan-made.npy")),
                     "real train images": load_dataset("fashion-mnist", "train").random_subset(300, 1).all_images()}
        features = {k: svae.encode_all(v).double().numpy() for k, v in generated.items()}
    for name, f in features.items():
        ref = compute_prdc(real.numpy(), f, nearest_k=4)
        for key in ("precision", "recall", "density", "coverage"):
            assert table.loc[name, key] == pytest.approx(float(ref[key]), abs=1e-12), (name, key)
        assert table.loc[name, "frechet_distance"] == pytest.approx(fid_formula(real.numpy(), f), rel=1e-6)
        assert table.loc[name, "images"] == len(f)
    assert table.loc["gan-made", "frechet_distance"] > 2 * table.loc["real train images", "frechet_distance"]


BENCH_CASES = [
    (["bench", "expressiveness", "no-such-model"], "no-such-model"),
    (["bench", "expressiveness", "fmnist-gan", "--images", "1"], "--images"),
    (["bench", "expressiveness", "fmnist-gan", "--steps", "-1"], "--steps"),
    (["bench", "expressiveness", "fmnist-gan", "--sampler", "flow"], "--sampler"),
    (["bench", "expressiveness", "fmnist-gan", "--lr", "nan"], "finite number"),
    (["bench", "expressiveness", "fmnist-gan", "--support-set", "{root}/nowhere"], "nowhere"),
    (["bench", "expressiveness", "fmnist-gan", "--support-set", "npy:{root}/small.npy"], "expects images of shape"),
    (["bench", "expressiveness", "fmnist-gan", "--out", "foreign"], "was not written by latentmap"),
    (["bench", "coverage", "fmnist-gan", "--support-set", "npy:{root}/small.npy"], "not an image set"),
    (["bench", "coverage", "npy:{root}/missing.npy"], "does not exist"),
    (["bench", "coverage", "npy:{root}/small.npy"], "expects images of shape"),
    (["bench", "coverage", "fmnist-gan", "--min-count", "0"], "--min-count"),
    (["bench", "coverage", "fmnist-gan", "--support-set", "{root}"], "has no manifest.json"),
    (["bench", "fidelity", "fmnist-gan", "--k", "0"], "--k"),
    (["bench", "fidelity", "fmnist-gan", "--dataset", "digits"], "no shipped support set"),
    (["bench", "fidelity", "fmnist-gan", "--reference", "nowhere"], "nowhere"),
]


@pytest.mark.parametrize("argv,fragment", BENCH_CASES, ids=[f"{a[1]}-{i}" for i, (a, _) in enumerate(BENCH_CASES)])
def test_bench_bad_input_is_one_line_exit_2(argv, fragment, image_sets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    argv = [a.format(root=image_sets) for a in argv]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, no runs/ folder


def test_bench_overwrite_replaces_only_its_own_report(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    write_output_marker(out, "report")
    argv = ["-q", "bench", "expressiveness", "fmnist-vae-a", *SMALL, "--refine-images", "0", "--out", str(out)]
    assert CliRunner().invoke(main, argv).exit_code == 2  # needs --overwrite
    assert CliRunner().invoke(main, argv + ["--overwrite"]).exit_code == 0
    assert (out / "leaderboard.csv").is_file()


def test_demo_sections_expressiveness_and_coverage(tmp_path, monkeypatch):
    for name, value in (("OWN_SAMPLES", 12), ("REAL_IMAGES", 12), ("REFINE_IMAGES", 3), ("STEPS", 2),
                        ("COVERAGE_SAMPLES", 150)):
        monkeypatch.setattr(demo_module, name, value)
    checkpoints = default_checkpoints()
    models = [load_model(checkpoints / n) for n in ("fmnist-gan", "fmnist-svae")]
    test = load_dataset("fashion-mnist", "test").subset(np.arange(400))
    ctx = DemoContext(checkpoints, tmp_path, models, test, None, "cpu")
    section = demo_module.expressiveness_section(ctx)
    html = section.render()
    assert "Demo sizes" in html and "expressiveness/leaderboard.csv" in html
    board = pd.read_csv(tmp_path / "expressiveness" / "leaderboard.csv")
    assert list(board.model) == ["fmnist-gan", "fmnist-svae"]
    assert [r["model"] for r in ctx.summary["expressiveness"]] == ["fmnist-gan", "fmnist-svae"]
    html = demo_module.coverage_section(ctx).render()
    assert "coverage/coverage_sectors.csv" in html and "FD in fmnist-svae space" in html
    names = [r["generator"] for r in ctx.summary["coverage"]]
    assert names == ["fmnist-gan", "fmnist-svae", "real train images"]
    assert all(r["images"] == 150 for r in ctx.summary["coverage"])


def test_default_models_share_one_image_shape_and_another_shape_is_refused_before_sampling(tmp_path, monkeypatch):
    from latentmap.cli import bench as bench_cli

    notes = []
    monkeypatch.setattr(bench_cli, "warn_later", notes.append)
    models, _specs = bench_cli._load_models((), "cpu", False, encoder_needed=False)
    shapes = {tuple(m.image_shape) for m in models}
    assert shapes == {(1, 28, 28)} and "fmnist-vae-32" not in [m.name for m in models]
    assert any("fmnist-vae-32" in n and "1x32x32" in n for n in notes)
    out = tmp_path / "cov"
    result = _run(["-q", "bench", "coverage", "fmnist-vae-32", "--dataset", "fashion-mnist", "--samples", "10",
                   "--out", str(out)], tmp_path)
    assert result.exit_code == 2 and ("Error: model 'fmnist-svae' expects images of shape (1, 28, 28), the images of "
                                      "generator 'fmnist-vae-32' are (1, 32, 32): pass --image-transform auto"
                                      ) in result.output
    assert result.output.strip().count("\n") == 0 and not out.exists()
