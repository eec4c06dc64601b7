"""Results in notebooks: ``to_frame()`` holds the result's own values, ``_repr_html_`` shows them in a table."""

import numpy as np
import pandas as pd
import pytest
import torch

from latentmap.errors import ConfigError
from latentmap.evaluation.atlas import AtlasResult
from latentmap.evaluation.coverage import CoverageResult, GeneratorCoverage, SectorSpace
from latentmap.evaluation.diagnostics import LatentDiagnostics
from latentmap.evaluation.expressiveness import ExpressivenessResult, ModelExpressiveness, RatioCI, SetScores
from latentmap.evaluation.fidelity import FidelityResult, FidelityRow
from latentmap.evaluation.interpolation import InterpolationResult
from latentmap.evaluation.inversion import InversionResult
from latentmap.evaluation.relocation import RelocationResult
from latentmap.io.frames import MapRepr, caption, frame_html, model_label, short_fingerprint
from latentmap.maps.linear import LinearMap
from latentmap.evaluation.anchors import CompareResult
from latentmap.support.build import SupportSet

SHA = "ab" * 32


def relocation(source="a", target="b", ratio=1.5, estimator="linear", **over) -> RelocationResult:
    values = dict(source=source, target=target, source_kind="vae", target_kind="vae", type=1,
                  type_name="same architecture and objective, different training", n_images=300, source_mse=0.011,
                  target_mse=0.012, relocated_mse=0.012 * ratio, ratio=ratio, latent_mse=0.25, latent_r2=0.8125,
                  target_ssim=0.7, relocated_ssim=0.6, cycle_mse=0.02, cycle_ratio=0.02 / 0.011,
                  cycle_via="pseudo-inverse of the map", estimator=estimator, by_label=[{"label": 0}],
                  worst_images=[3, 1], extra={"fit_metrics": {"r2": 0.9}})
    return RelocationResult(**{**values, **over})


def cells(html: str) -> str:
    return html.replace("\n", " ")


def test_relocation_frame_is_its_scalar_fields():
    r = relocation()
    frame = r.to_frame()
    assert len(frame) == 1
    assert frame.loc[0, "ratio"] == 1.5 and frame.loc[0, "latent_r2"] == 0.8125
    assert frame.loc[0, "source"] == "a" and frame.loc[0, "n_images"] == 300
    assert not {"by_label", "worst_images", "extra"} & set(frame.columns)
    html = r._repr_html_()
    assert "<table" in html and "<caption>" in html
    assert "0.8125" in html and "1.5" in html and "a -&gt; b" in html


def atlas() -> AtlasResult:
    results = [relocation("a", "b", 1.5), relocation("b", "a", 2.5),
               relocation("a", "b", 1.25, "mlp"), relocation("b", "a", 1.75, "mlp")]
    models = [{"name": "a", "kind": "vae", "sha256": SHA}, {"name": "b", "kind": "vae"}]
    return AtlasResult(results, models, {"kind": "support-set", "name": "s", "count": 64}, {"bias": False},
                       estimators={"linear": {}, "mlp": {}})


def test_atlas_frame_has_one_row_per_pair_and_estimator():
    a = atlas()
    frame = a.to_frame()
    assert list(zip(frame["source"], frame["target"], frame["estimator"], frame["ratio"])) == [
        ("a", "b", "linear", 1.5), ("b", "a", "linear", 2.5), ("a", "b", "mlp", 1.25), ("b", "a", "mlp", 1.75)]
    by_estimator = a.to_frame(by="estimator").set_index("estimator")
    assert by_estimator.loc["linear", "mean_ratio"] == pytest.approx(2.0)
    assert by_estimator.loc["mlp", "worst_ratio"] == 1.75 and by_estimator.loc["mlp", "pairs"] == 2
    html = a._repr_html_()
    assert "<table" in html and "2.5" in html and "1.75" in html
    assert f"a [{SHA[:12]}]" in html and "fitted on support-set s (64 images)" in html  # the models, their fingerprints, the fit
    with pytest.raises(ConfigError):
        a.to_frame(by="type")


def scores(key, mse) -> SetScores:
    mse = np.asarray(mse, dtype=np.float64)
    idx = np.arange(len(mse))
    return SetScores(key, key, {"mse": mse, "ssim": mse * 0 + 0.5, "distance": mse * 0 + 1.0, "outside": mse * 0},
                     idx, {"mse": mse / 2, "ssim": mse * 0 + 0.9, "distance": mse * 0 + 1.0, "outside": mse * 0})


def expressiveness() -> ExpressivenessResult:
    model = ModelExpressiveness("fmnist-gan", "gan", 64, "prior N(0, I)", {"typical": 2.0},
                                {"own": scores("own", [0.01, 0.03]), "real": scores("real", [0.04, 0.08])},
                                {"real/own": RatioCI(3.0, 2.0, 4.5)})
    return ExpressivenessResult([model], {"own_samples": 2, "real_images": 2, "support_images": None})


def test_expressiveness_frames():
    e = expressiveness()
    board = e.to_frame()
    assert list(board["model"]) == ["fmnist-gan"]
    assert board.loc[0, "encoder_mse_own"] == pytest.approx(0.02)
    assert board.loc[0, "encoder_mse_real"] == pytest.approx(0.06)
    assert (board.loc[0, "real_over_own"], board.loc[0, "real_over_own_low"], board.loc[0, "real_over_own_high"]) \
        == (3.0, 2.0, 4.5)
    sets = e.models[0].to_frame()
    assert list(sets["set"]) == ["own", "real"] and sets.loc[1, "refined_mse"] == pytest.approx(0.03)
    html = e._repr_html_()
    assert "<table" in html and "fmnist-gan" in html and "4.5" in html
    assert "<table" in e.models[0]._repr_html_()


def coverage() -> CoverageResult:
    gen = GeneratorCoverage("fmnist-vae-a", "512 draws", 10, np.array([0, 4, 6, 0]),
                            {"test": "G test", "statistic": 7.25, "dof": 3, "p_value": 0.0625}, [0], 2, [0], [2],
                            0.375)
    space = SectorSpace("fmnist-svae", [3, 7])
    return CoverageResult(space, "real test images", np.array([3, 4, 2, 1]), 1, np.array([0, 1, 2, 3]), [gen])


def test_coverage_frames():
    c = coverage()
    frame = c.to_frame()
    assert frame.loc[0, "generator"] == "fmnist-vae-a" and frame.loc[0, "tv_distance"] == 0.375
    assert frame.loc[0, "statistic"] == 7.25 and frame.loc[0, "never_reached"] == 1
    sectors = c.to_frame(by="sector")
    assert list(sectors["generated_count"]) == [0, 4, 6, 0] and list(sectors["real_count"]) == [3, 4, 2, 1]
    assert list(sectors["flag"]) == ["never reached", "", "over", ""]
    html = c._repr_html_()
    assert "<table" in html and "7.25" in html and "0.375" in html and "fmnist-svae" in html
    assert "0.375" in c.generators[0]._repr_html_()


def test_fidelity_frame():
    rows = [FidelityRow("fmnist-gan", "512 draws", 512, 0.5, 0.25, 0.875, 0.625, 12.5),
            FidelityRow("real", "held out", 512, 0.75, 0.75, 1.0, 0.875, 1.5)]
    f = FidelityResult("fmnist-svae latent space (64-d)", "FD in fmnist-svae space", 5, 1000, "real test images", rows)
    frame = f.to_frame()
    assert list(frame["name"]) == ["fmnist-gan", "real"] and list(frame["frechet"]) == [12.5, 1.5]
    assert frame.loc[0, "density"] == 0.875
    html = f._repr_html_()
    assert "<table" in html and "12.5" in html and "0.875" in html and "FD in fmnist-svae space" in html
    empty = FidelityResult("s", "FD", 5, 0, "real", []).to_frame()
    assert empty.empty and "frechet" in empty.columns


def test_support_set_frame_is_its_manifest():
    manifest = {"strategy": "sectors", "model": {"name": "fmnist-svae", "sha256": SHA},
                "dataset": {"spec": "fashion-mnist", "split": "train"}, "indices": [17, 5],
                "images": [{"index": 17, "sector": 0, "role": "sector"}, {"index": 5, "sector": 3, "role": "completion"}]}
    s = SupportSet("demo", torch.zeros(2, 1, 4, 4), manifest)
    frame = s.to_frame()
    assert list(frame["image"]) == [0, 1] and list(frame["index"]) == [17, 5]
    assert list(frame["role"]) == ["sector", "completion"] and list(frame["sector"]) == [0, 3]
    html = s._repr_html_()
    assert "<table" in html and "completion" in html and f"fmnist-svae [{SHA[:12]}]" in html
    assert list(SupportSet("plain", torch.zeros(3, 1, 2, 2), {"indices": [4, 5, 6]}).to_frame()["index"]) == [4, 5, 6]


def test_shipped_support_set_frame():
    from latentmap.models.shipped import shipped_support_sets

    s = SupportSet.load(shipped_support_sets()["fmnist-svae"])
    frame = s.to_frame()
    assert len(frame) == len(s) and list(frame["index"]) == s.indices


def test_compare_result_frames():
    summary = pd.DataFrame({"strategy": ["sectors", "random"], "size": [64, 64], "mse": [0.03125, 0.0625]})
    rows = pd.DataFrame({"strategy": ["sectors"] * 2, "seed": [0, 1], "mse": [0.03, 0.0325]})
    c = CompareResult(rows, summary, pd.DataFrame(), {"models": ["a", "b"], "sizes": [64], "seeds": [0, 1],
                                                       "anchor_model": "a"})
    assert list(c.to_frame()["mse"]) == [0.03125, 0.0625]
    assert list(c.to_frame(by="run")["seed"]) == [0, 1]
    html = c._repr_html_()
    assert "<table" in html and "0.0625" in html and "random" in html


def test_inversion_frame():
    r = InversionResult(torch.zeros(2, 3), torch.tensor([0.125, 0.25]), torch.tensor([0.5, 0.75]),
                        torch.tensor([0.625, 0.1875]), "encoder", "mse")
    frame = r.to_frame()
    assert list(frame.columns) == ["image", "initial_loss", "loss"] and list(frame["image"]) == [0, 1]
    assert list(frame["loss"]) == [0.125, 0.25] and list(frame["initial_loss"]) == [0.5, 0.75]
    assert "<table" in r._repr_html_() and "0.75" in r._repr_html_()


def test_interpolation_frame():
    t = np.array([0.0, 0.5, 1.0])
    radius = {"linear": np.array([[2.0, 1.0, 2.0]]), "spherical": np.array([[2.0, 2.0, 2.0]])}
    r = InterpolationResult("fmnist-vae-a", "vae", t, torch.zeros(1, 2, 1, 2, 2), {}, radius, 2.0, "N(0, I)")
    frame = r.to_frame()
    assert len(frame) == 6 and list(frame["radius_ratio"][:3]) == [1.0, 0.5, 1.0]
    assert "<table" in r._repr_html_() and "spherical" in r._repr_html_()


def test_diagnostics_frame_has_one_row_per_variable():
    d = LatentDiagnostics("m", "vae", 2, 10, 0, np.array([0.5, -0.25]), np.array([1.5, 0.001]),
                          np.array([1.5, 0.001]), np.ones(10), np.ones(10), np.linspace(-1, 1, 3),
                          np.zeros((2, 2)), np.zeros(2), 0.01, 0.1, 0.09, var_mu=np.array([1.25, 0.0]),
                          mean_sigma2=np.array([0.125, 0.875]))
    frame = d.to_frame()
    assert list(frame["mean"]) == [0.5, -0.25] and list(frame["var_mu"]) == [1.25, 0.0]
    assert list(frame["inactive"]) == [False, True]
    assert "<table" in d._repr_html_() and "0.875" in d._repr_html_()


def test_caption_names_models_with_short_fingerprints():
    assert short_fingerprint("sha256:" + SHA) == SHA[:12] and short_fingerprint(None) is None
    assert model_label({"name": "a", "sha256": SHA}) == f"a [{SHA[:12]}]" and model_label("b") == "b"
    assert caption("T", ["a", {"name": "b"}]) == "T; models: a, b" and caption("T") == "T"
    html = frame_html(pd.DataFrame({"x": [1]}), "<b> & c")
    assert "<caption>&lt;b&gt; &amp; c</caption>" in html


def test_map_repr_shows_parameters_and_fit_metrics():
    assert issubclass(LinearMap, MapRepr)  # every estimator shows itself through the one mixin
    m = LinearMap(alpha=0.5)
    assert "not fitted" in m._repr_html_() and "alpha" in m._repr_html_()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    m.fit(x, x @ rng.normal(size=(3, 2)))
    frame = m.to_frame()
    metrics = frame[frame["part"] == "fit metric"].set_index("name")["value"]
    assert set(m.fit_metrics_) == set(metrics.index)
    assert frame[(frame["part"] == "parameter") & (frame["name"] == "alpha")]["value"].item() == 0.5
    assert "fit metric" in m._repr_html_() and "fitted" in m._repr_html_()


def test_information_gain_frame_ranks_the_variables():
    from latentmap.support.info_gain import InformationGain

    info = InformationGain(np.array([0.125, 0.5, 0.25]), 40)
    frame = info.to_frame()
    assert list(frame["variable"]) == [1, 2, 0] and list(frame["gain"]) == [0.5, 0.25, 0.125]
    assert list(frame["rank"]) == [0, 1, 2]
    assert "<table" in info._repr_html_() and "40 images" in info._repr_html_()


def test_demo_result_frame_is_its_rows(tmp_path):
    from latentmap.demo.story import DemoResult

    rows = [{"model": "a", "kind": "vae", "latent_dim": 32, "test_mse": 0.0125, "test_images": 300}]
    result = DemoResult(tmp_path, rows, {})
    assert result.to_frame().to_dict("records") == rows
    assert "<table" in result._repr_html_() and "0.0125" in result._repr_html_()


def test_atlas_caption_says_what_the_maps_were_fitted_on():
    results = [relocation("a", "b", 1.5), relocation("b", "a", 2.5)]
    models = [{"name": "a", "kind": "vae"}, {"name": "b", "kind": "vae"}]
    on_samples = AtlasResult(results, models, {"kind": "samples", "count": 300}, {"bias": False},
                             estimators={"linear": {}})
    assert on_samples._frame_caption() == ("Relocation atlas: 2 results of linear, fitted on 300 prior samples; "
                                           "models: a, b")
    on_images = AtlasResult(results, models, {"kind": "dataset", "name": "fashion-mnist", "count": 64},
                            {"bias": False}, estimators={"linear": {}})
    assert on_images._frame_caption() == ("Relocation atlas: 2 results of linear, fitted on dataset fashion-mnist "
                                          "(64 images); models: a, b")


def test_diagnostics_caption_word_for_word():
    d = LatentDiagnostics("m", "vae", 2, 10, 0, np.array([0.5, -0.25]), np.array([1.5, 0.001]),
                          np.array([1.5, 0.001]), np.ones(10), np.ones(10), np.linspace(-1, 1, 3),
                          np.zeros((2, 2)), np.zeros(2), 0.01, 0.1, 0.09)
    assert d._frame_caption() == ("Latent diagnostics of m (vae, 2 variables) on 10 images; eigenvalue: the "
                                  "covariance's, by rank; models: m")
