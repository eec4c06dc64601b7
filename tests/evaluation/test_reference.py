"""Evaluation-side numbers against independent references (numpy, scipy, hand-built cases)."""

import numpy as np
import pytest
import torch

from latentmap.evaluation.expressiveness import ModelExpressiveness, RatioCI, SetScores
from latentmap.evaluation.fidelity import FidelityResult, FidelityRow
from latentmap.evaluation.samplers import RANGE_QUANTILE, MixtureSampler, TypicalRegion


def _scores(key="real"):
    a = np.array
    return SetScores(key=key, source="test split",
                     encoder={"mse": a([0.1, 0.3]), "ssim": a([0.5, 0.7]), "lpips": a([0.2, 0.4]),
                              "distance": a([2.0, 4.0]), "outside": a([0.0, 1.0])},
                     refined_index=a([1]),
                     refined={"mse": a([0.05]), "ssim": a([0.9]), "lpips": None, "distance": a([6.0]),
                              "outside": a([1.0])}, worst=[1, 0])


def test_set_summary_is_the_hand_computed_means_and_ratios():
    s = _scores().summary(typical=2.0)
    expected = {"set": "real", "label": "real test images", "source": "test split", "images": 2,
                "encoder_mse": 0.2, "encoder_ssim": 0.6, "encoder_lpips": 0.3, "encoder_distance_ratio": 1.5,
                "encoder_outside_share": 0.5, "refined_images": 1, "encoder_mse_refined_images": 0.3,
                "refined_mse": 0.05, "refined_ssim": 0.9,
                "refined_lpips": None, "refined_distance_ratio": 3.0, "refined_outside_share": 1.0}
    assert s.keys() == expected.keys()
    for k, v in expected.items():
        assert s[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    # no typical distance: no ratio
    assert _scores().summary(typical=0.0)["refined_distance_ratio"] is None


def test_model_expressiveness_record_holds_every_field():
    m = ModelExpressiveness("vae-a", "vae", 32, "prior", {"typical": 2.0, "limit": 3.0}, {"real": _scores()},
                            {"real/own": RatioCI(1.5, 1.2, 1.9)})
    d = m.to_dict()
    assert (d["model"], d["kind"], d["latent_dim"], d["sampler"]) == ("vae-a", "vae", 32, "prior")
    assert d["region"] == {"typical": 2.0, "limit": 3.0}
    assert d["ratios"] == {"real/own": {"value": 1.5, "low": 1.2, "high": 1.9, "level": 0.95}}
    real = d["sets"]["real"]
    assert real["refined_distance_ratio"] == pytest.approx(3.0) and real["worst"] == [1, 0]
    assert real["per_image"] == {"encoder_mse": [0.1, 0.3], "refined_index": [1], "refined_mse": [0.05]}
    row = m.leaderboard_row()
    assert row["kind"] == "vae" and row["real_over_own"] == 1.5 and row["real_over_own_low"] == 1.2
    assert row["encoder_mse_real"] == pytest.approx(0.2) and row["encoder_mse_own"] is None


def test_fidelity_record_holds_every_field():
    row = FidelityRow("gan", "generated", 10, 0.5, 0.25, 1.1, 0.75, 3.5)
    d = FidelityResult("space", "FD in x space", 5, 100, "test split", [row]).to_dict()
    assert d == {"space": "space", "fd_name": "FD in x space", "k": 5, "real_images": 100,
                 "real_source": "test split",
                 "rows": [{"name": "gan", "source": "generated", "images": 10, "precision": 0.5, "recall": 0.25,
                           "density": 1.1, "coverage": 0.75, "frechet": 3.5}], "overlap": {}}


def test_mixture_sampler_factors_are_float64_cholesky_factors():
    cov = np.array([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]], dtype=np.float32)
    s = MixtureSampler(np.array([0.25, 0.75], dtype=np.float32), np.zeros((2, 2), np.float32), cov, "m")
    expected = torch.as_tensor(np.linalg.cholesky(cov.astype(np.float64)))
    torch.testing.assert_close(s.factors, expected)  # dtype included
    assert s.weights.dtype == s.means.dtype == torch.float64


def test_typical_region_is_the_mahalanobis_distance_of_its_own_seeded_draws():
    cov = np.array([[[4.0, 1.0], [1.0, 1.0]]])
    sampler = MixtureSampler([1.0], [[1.0, -2.0]], cov, "one Gaussian")
    torch.manual_seed(123)  # the global generator must not matter
    region = TypicalRegion.from_sampler(sampler, "draws", samples=500, seed=3)
    torch.manual_seed(456)
    again = TypicalRegion.from_sampler(sampler, "draws", samples=500, seed=3)
    assert (region.typical, region.limit) == (again.typical, again.limit)

    g = torch.Generator().manual_seed(3 + 7919)
    first, second = (sampler.sample(500, g).double().numpy() for _ in range(2))
    mean, c = first.mean(0), np.cov(first.T, bias=True)
    diff = second - mean
    dist = np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(c), diff))
    np.testing.assert_allclose(region.mean.numpy(), mean, rtol=1e-12)
    assert region.typical == pytest.approx(np.median(dist), rel=1e-9)
    assert region.limit == pytest.approx(np.quantile(dist, RANGE_QUANTILE), rel=1e-9)


def test_sector_frame_rows_by_hand():
    from latentmap.evaluation.coverage import CoverageResult, GeneratorCoverage, SectorSpace

    space = SectorSpace("svae", [3, 5])  # 4 sectors
    gen = GeneratorCoverage("gan", "generated", 10, np.array([0, 1, 6, 3]), {}, never_reached=[0], unreached=1,
                            under=[1], over=[2], tv_distance=0.0)
    result = CoverageResult(space, "test split", np.array([2, 4, 2, 2]), 1, np.array([0, 0, 1, 3, 3]), [gen])
    frame = result.sector_frame()
    assert list(frame["flag"]) == ["never reached", "under", "over", ""]
    assert list(frame["generated_share"]) == pytest.approx([0.0, 0.1, 0.6, 0.3])
    assert list(frame["real_share"]) == pytest.approx([0.2, 0.4, 0.2, 0.2])
    assert list(frame["share_ratio"]) == pytest.approx([0.0, 0.25, 3.0, 1.5])
    assert list(frame["support_images"]) == [2, 1, 0, 2]
    assert list(frame["real_count"]) == [2, 4, 2, 2] and list(frame["generated_count"]) == [0, 1, 6, 3]


def test_bootstrap_ratio_resamples_every_image():
    from latentmap.errors import ConfigError
    from latentmap.evaluation.expressiveness import bootstrap_ratio

    # one image carries all of mean(a): the resamples that draw it and those that do not bound the interval
    ci = bootstrap_ratio([4.0, 0.0, 0.0, 0.0], [1.0, 1.0], resamples=400, seed=0)
    assert ci.value == pytest.approx(1.0)
    assert ci.low == 0.0 and ci.high >= 2.0
    with pytest.raises(ConfigError, match="level must be in"):
        bootstrap_ratio([1.0], [1.0], level=1.0)


def test_set_scores_use_the_lpips_function_when_given():
    from latentmap.evaluation.expressiveness import _scores

    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x_hat = x.flip(0)
    scores = _scores(x, x_hat, lambda a, b: (a - b).abs().flatten(1).sum(1), 2, "cpu")
    mse, ssim, lp = scores["mse"], scores["ssim"], scores["lpips"]
    np.testing.assert_allclose(mse, ((x - x_hat) ** 2).flatten(1).mean(1).double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(lp, (x - x_hat).abs().flatten(1).sum(1).double().numpy(), rtol=1e-6)
    assert ssim.shape == (5,) and "lpips" not in _scores(x, x_hat, None, 2, "cpu")


def test_coverage_is_measured_in_the_reference_models_space_not_the_manifests(monkeypatch):
    from types import SimpleNamespace

    import latentmap.evaluation.generator_bench as bench

    seen = {}

    def fake_coverage(space, cache, real, sets, support_images, **kw):
        seen["space"] = space
        return SimpleNamespace(fidelity=None)

    monkeypatch.setattr(bench, "sector_coverage", fake_coverage)
    support = SimpleNamespace(name="s", images=torch.zeros(1, 1, 2, 2),
                              manifest={"variables": [1, 2], "threshold": 0.5, "model": {"name": "svae"}})
    with pytest.warns(UserWarning, match="built in the latent space of 'svae'"):
        bench.benchmark_coverage(SimpleNamespace(name="vae-b"), support, torch.zeros(1, 1, 2, 2), [],
                                 fidelity=False)
    assert seen["space"].reference == "vae-b" and seen["space"].variables == [1, 2]


def test_expressiveness_benchmark_records_its_settings_and_lpips_note(monkeypatch):
    from types import SimpleNamespace

    import latentmap.evaluation.expressiveness as ex
    import latentmap.evaluation.relocation as relocation
    import latentmap.evaluation.samplers as samplers

    monkeypatch.setattr(relocation, "lpips_function", lambda device, setting: (None, f"LPIPS {setting}: off here"))
    monkeypatch.setattr(samplers, "fit_sampler", lambda model, sampler, **kw: SimpleNamespace(name="prior"))
    monkeypatch.setattr(ex, "typical_region", lambda model, chosen, seed: "region")
    monkeypatch.setattr(ex, "own_samples", lambda model, chosen, n, seed, batch_size: torch.zeros(n, 1, 2, 2))
    calls = []
    monkeypatch.setattr(ex, "evaluate_expressiveness", lambda model, targets, **kw: calls.append(targets) or SimpleNamespace(to_dict=lambda: model.name))
    model = SimpleNamespace(name="m", device="cpu", image_shape=(1, 2, 2))
    result = ex.benchmark_expressiveness([model], torch.zeros(3, 1, 2, 2), torch.zeros(2, 1, 2, 2), samples=4,
                                         lpips_setting="none", seed=5, bootstrap=10)
    assert result.lpips_note == "LPIPS none: off here" and result.to_dict()["lpips"] == "LPIPS none: off here"
    assert result.to_dict()["models"] == ["m"] and sorted(calls[0]) == ["own", "real", "support"]
    assert calls[0]["own"][1] == "4 draws of the prior"
    assert result.settings == {"own_samples": 4, "real_images": 3, "real_source": "real test images",
                               "support_images": 2, "support_source": "support set", "sampler": "auto",
                               "refine_images": 128, "steps": 200, "lr": 0.05, "seed": 5, "bootstrap_resamples": 10,
                               "image_transform": None, "support_model": None, "compute": {"batch_size": 256, "threads": torch.get_num_threads()}}


def test_interpolation_summary_by_hand():
    from latentmap.evaluation.interpolation import InterpolationResult

    t = np.array([0.0, 0.5, 1.0])
    radius = {"linear": np.array([[2.0, 1.0, 2.0], [4.0, 3.0, 4.0]]),
              "spherical": np.array([[2.0, 2.0, 2.0], [4.0, 4.0, 4.0]])}
    carried = {"linear": np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]), "spherical": np.zeros((2, 3))}
    r = InterpolationResult("vae", "vae", t, torch.zeros(2, 2, 1, 2, 2), {}, radius, 2.0, "N(0, I)",
                            partner="vae-b", map_description="linear", carried_mse=carried)
    s = r.summary()
    assert s["linear_midpoint_radius"] == pytest.approx(1.0)  # mean of 1/2 and 3/2
    assert s["linear_min_radius"] == pytest.approx(0.5)
    assert s["spherical_midpoint_radius"] == pytest.approx(1.5) and s["spherical_min_radius"] == pytest.approx(1.0)
    assert s["linear_carried_mse"] == pytest.approx(0.2) and s["spherical_carried_mse"] == 0.0
    assert (s["pairs"], s["steps"], s["radius_typical"], s["partner"]) == (2, 3, 2.0, "vae-b")
    assert list(r.frame()["radius_ratio"][:3]) == pytest.approx([1.0, 0.5, 1.0])


def test_per_image_errors_of_nothing_are_empty():
    from latentmap.evaluation.distribution import PerImageErrors

    own, relocated = PerImageErrors().arrays()
    assert own.shape == relocated.shape == (0,)
    e = PerImageErrors()
    e.update(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
    e.merge(PerImageErrors())
    np.testing.assert_array_equal(e.arrays()[1], [3.0, 4.0])


def test_lpips_inputs_are_rgb_in_minus_one_to_one():
    from latentmap.evaluation.lpips_metric import MIN_SIDE, LPIPSMetric

    grey = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 1, 2, 2).expand(2, 1, 2, 2)
    big = torch.nn.functional.interpolate(grey, size=(MIN_SIDE, MIN_SIDE))  # no resize needed
    out = LPIPSMetric._prepare(big)
    assert out.shape == (2, 3, MIN_SIDE, MIN_SIDE)
    torch.testing.assert_close(out, (2 * big - 1).expand(-1, 3, -1, -1))
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    small = LPIPSMetric._prepare(torch.full((1, 3, 8, 8), 0.75))
    assert min(small.shape[2:]) == MIN_SIDE and torch.allclose(small, torch.full_like(small, 0.5))
    # the module compares the prepared images
    metric = LPIPSMetric(_Difference(), None, "test")
    torch.testing.assert_close(metric(big, 1 - big), (2 * big - 1).abs().mean((1, 2, 3)) * 2)


class _Difference(torch.nn.Module):
    def forward(self, a, b):
        return (a - b).abs().mean((1, 2, 3), keepdim=True)


def test_model_expressiveness_leaderboard_row_holds_every_column():
    m = ModelExpressiveness("vae-a", "vae", 32, "prior", {"typical": 2.0, "limit": 3.0}, {"real": _scores()},
                            {"real/own": RatioCI(1.5, 1.2, 1.9)})
    row = m.leaderboard_row()
    expected = {"model": "vae-a", "kind": "vae", "latent_dim": 32, "sampler": "prior", "fingerprint": "",
                "encoder_mse_own": None, "encoder_mse_real": 0.2, "encoder_mse_support": None,
                "real_over_own": 1.5, "real_over_own_low": 1.2, "real_over_own_high": 1.9,
                "refined_mse_own": None, "refined_mse_real": 0.05, "refined_mse_support": None,
                "refined_outside_share_real": 1.0}
    assert list(row) == list(expected)
    for k, v in expected.items():
        assert row[k] == (pytest.approx(v) if isinstance(v, float) else v), k


def test_expressiveness_benchmark_scores_with_the_lpips_function_it_resolved(monkeypatch):
    from types import SimpleNamespace

    import latentmap.evaluation.expressiveness as ex
    import latentmap.evaluation.relocation as relocation
    import latentmap.evaluation.samplers as samplers

    def lpips_fn(x, y):
        return torch.zeros(len(x))

    monkeypatch.setattr(relocation, "lpips_function", lambda device, setting: (lpips_fn, "LPIPS here"))
    monkeypatch.setattr(samplers, "fit_sampler", lambda model, sampler, **kw: SimpleNamespace(name="prior"))
    monkeypatch.setattr(ex, "typical_region", lambda model, chosen, seed: "region")
    monkeypatch.setattr(ex, "own_samples", lambda model, chosen, n, seed, batch_size: torch.zeros(n, 1, 2, 2))
    calls = []
    monkeypatch.setattr(ex, "evaluate_expressiveness", lambda model, targets, **kw: calls.append(kw) or SimpleNamespace(to_dict=lambda: model.name))
    model = SimpleNamespace(name="m", device="cpu", image_shape=(1, 2, 2))
    ex.benchmark_expressiveness([model], torch.zeros(3, 1, 2, 2), torch.zeros(2, 1, 2, 2), samples=4, seed=5,
                                bootstrap=10)
    assert len(calls) == 1 and calls[0]["lpips"] is lpips_fn and calls[0]["region"] == "region"


def test_set_scores_record_their_source_and_the_hand_computed_encoder_errors():
    from latentmap.evaluation.expressiveness import score_set
    from tests.evaluation.test_relocation import affine_model, make_images

    model = affine_model("syn-a", 3)
    images = make_images(6, seed=2, model=model)
    region = TypicalRegion.standard_normal(3)
    s = score_set(model, "real", images, "test split", region, refine_images=2, steps=2, batch_size=4)
    assert (s.key, s.source) == ("real", "test split")
    recon = model.decode(model.encode(images))
    expected = ((recon.double() - images.double()) ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(s.encoder["mse"], expected, rtol=1e-5, atol=1e-9)
    assert s.summary(region.typical)["source"] == "test split"
