"""Generator benchmarks: samplers, typical regions, expressiveness, sector coverage, fidelity and diversity."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import chi

from latentmap import load_dataset, load_model
from latentmap.errors import ConfigError
from latentmap.evaluation import fidelity as fidelity_module
from latentmap.evaluation.coverage import SectorSpace, flag_sectors, g_test, sector_coverage
from latentmap.evaluation.expressiveness import (ExpressivenessSettings, benchmark_expressiveness, bootstrap_ratio,
                                                 evaluate_expressiveness, score_set)
from latentmap.evaluation.fidelity import frechet_distance, prdc
from latentmap.evaluation.generator_bench import benchmark_coverage, calibration_set, generated_sets
from latentmap.evaluation.image_sets import EncodingCache, GeneratedSet
from latentmap.evaluation.samplers import (GaussianSampler, MixtureSampler, PriorSampler, TypicalRegion, fit_sampler,
                                           typical_region)
from latentmap.models.shipped import shipped_support_sets
from latentmap.models.wrapped import wrap
from latentmap.support.build import SupportSet
from tests.helpers.progress import Bar, labels, recorded_bars
from tests.helpers.references import per_image_mse as hand_mse
from tests.helpers.references import percentile_interval, sector_codes_hand, seeded_bootstrap_ratio


# --------------------------------------------------------------------------- helpers

class _Logit(torch.nn.Module):
    """x -> logit(x) @ W^T: the exact inverse of the decoder below on its range."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        p = x.flatten(1).clamp(1e-3, 1 - 1e-3)
        return torch.log(p / (1 - p)) @ self.w.T


class _Sigmoid(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, z):
        return torch.sigmoid(z @ self.w).view(-1, 1, 28, 28)


def exact_model(d=6, name="exact"):
    """Decoder sigmoid(z W) with orthonormal rows W: its encoder inverts it exactly on its own samples."""
    q, _ = torch.linalg.qr(torch.randn(784, d, generator=torch.Generator().manual_seed(0)))
    w = q.T.contiguous()  # [d, 784], orthonormal rows
    return wrap(_Logit(w), _Sigmoid(w), image_shape=(1, 28, 28), name=name)


@pytest.fixture(scope="module")
def fmnist_test():
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="module")
def shipped_support():
    return SupportSet.load(shipped_support_sets()["fmnist-svae"])


@pytest.fixture(scope="module")
def svae():
    return load_model("fmnist-svae")


# --------------------------------------------------------------------------- bootstrap, samplers, regions

def test_bootstrap_ratio_is_numpys_percentile_bootstrap_with_each_set_its_own_size():
    rng = np.random.default_rng(1)
    a, b = rng.exponential(2.0, 37), rng.exponential(1.0, 120)  # unequal sizes: a mix-up changes the resamples
    ci = bootstrap_ratio(a, b, resamples=600, seed=3)  # 600: more than one chunk of resamples
    assert ci.value == pytest.approx(a.mean() / b.mean(), rel=1e-12)
    ratios = seeded_bootstrap_ratio(a, b, 600, 3)
    assert ci.level == 0.95 and (ci.low, ci.high) == pytest.approx(percentile_interval(ratios, 0.95), rel=1e-12)
    ninety = bootstrap_ratio(a, b, resamples=600, seed=3, level=0.9)
    assert ninety.level == 0.9 and (ninety.low, ninety.high) == pytest.approx(np.percentile(ratios, [5, 95]), rel=1e-12)
    assert ninety.high - ninety.low < 0.9 * (ci.high - ci.low)  # the two levels are told apart
    assert bootstrap_ratio(a, b, resamples=600, seed=3) == ci  # seeded
    with pytest.raises(ConfigError):
        bootstrap_ratio([], b)


def test_bootstrap_ratio_interval_has_the_width_of_the_delta_method():
    """Independent of how resamples are drawn: a constant numerator, so the interval is that of 1 / mean(b*), whose
    normal approximation is 1/m ± 1.96 s / (m² √n) with n = len(b) (not len(a): a size mix-up is 40x wider)."""
    b = np.random.default_rng(2).exponential(1.0, 4000)
    ci = bootstrap_ratio(np.full(5, 3.0), b, resamples=4000, seed=0)
    m, half = b.mean(), 1.959964 * b.std() / (b.mean() ** 2 * np.sqrt(len(b)))
    assert ci.value == pytest.approx(3.0 / m, rel=1e-12)
    assert (ci.high - ci.low) / 3.0 == pytest.approx(2 * half, rel=0.08)
    assert ci.low / 3.0 == pytest.approx(1 / m - half, rel=0.01) and ci.high / 3.0 == pytest.approx(1 / m + half,
                                                                                                       rel=0.01)


def test_gaussian_and_mixture_samplers_reproduce_what_they_were_fitted_on():
    gen = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    data = (torch.randn(20000, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T + 3).float()
    g = GaussianSampler.fit(data, "points")
    assert g.name == "gaussian fit on 20000 points"
    draws = g.sample(40000, torch.Generator().manual_seed(1)).double().numpy()
    np.testing.assert_allclose(draws.mean(0), [3, 3], atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), cov.numpy(), atol=0.06)
    # two clusters, 30% / 70%: the mixture finds them, and one seed gives one set of draws
    two = torch.cat([torch.randn(600, 3, generator=gen) * 0.1 - 4, torch.randn(1400, 3, generator=gen) * 0.1 + 4])
    m = MixtureSampler.fit(two, components=2, seed=0, origin="points")
    assert m.name == "GMM(2) fit on 2000 points"
    draws = m.sample(10000, torch.Generator().manual_seed(2))
    assert float((draws[:, 0] < 0).double().mean()) == pytest.approx(0.3, abs=0.02)
    assert torch.equal(draws, m.sample(10000, torch.Generator().manual_seed(2)))
    assert float(draws[draws[:, 0] > 0].std(0).mean()) == pytest.approx(0.1, abs=0.02)


def test_models_without_a_prior_get_a_fitted_sampler(fmnist_test):
    pythae_models = pytest.importorskip("pythae.models")
    from latentmap.models.pythae_model import PythaeModel

    torch.manual_seed(0)
    ae = PythaeModel("ae", pythae_models.AE(pythae_models.AEConfig(input_dim=(1, 28, 28), latent_dim=4)))
    vae = PythaeModel("vae", pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 28, 28), latent_dim=4)))
    assert not ae.has_prior and vae.has_prior and load_model("fmnist-gan").has_prior
    data = fmnist_test.subset(range(300))
    assert fit_sampler(vae, "auto").name == "prior"
    sampler = fit_sampler(ae, "auto", data=data, fit_images=200, components=3, data_name="fmnist test")
    assert isinstance(sampler, MixtureSampler) and sampler.name == "GMM(3) fit on 200 encodings of fmnist test"
    assert fit_sampler(ae, "gaussian", data=data, fit_images=100).name.startswith("gaussian fit on 100 encodings")
    with pytest.raises(ConfigError, match="fitted on encodings"):
        fit_sampler(ae, "auto")
    with pytest.raises(ConfigError, match="sampler must be one of"):
        fit_sampler(ae, "flow")
    # the benchmark records which sampler made the own samples, and draws them from it
    result = benchmark_expressiveness([ae], data.batch(range(8)), samples=8, fit_data=data, fit_images=200,
                                      components=3, refine_images=0, bootstrap=100, lpips_setting="off")
    assert result.models[0].sampler.startswith("GMM(3) fit on 200 encodings")
    assert result.leaderboard().loc[0, "sampler"] == result.models[0].sampler


def test_typical_regions():
    std = TypicalRegion.standard_normal(16)
    z = torch.randn(20000, 16, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(std.distance(z[:5]).numpy(), z[:5].double().norm(dim=1).numpy())
    assert std.limit == pytest.approx(chi.ppf(0.99, 16)) and std.typical == pytest.approx(chi.median(16))
    assert float(std.outside(z).double().mean()) == pytest.approx(0.01, abs=0.003)
    # an anisotropic sampler: 1% of fresh draws outside, a far point outside, the mean inside
    sampler = GaussianSampler(torch.tensor([1.0, -2.0, 0.0]), torch.diag(torch.tensor([4.0, 0.25, 1.0])), "g")
    region = TypicalRegion.from_sampler(sampler, "draws", samples=8192)
    fresh = sampler.sample(20000, torch.Generator().manual_seed(5))
    assert float(region.outside(fresh).double().mean()) == pytest.approx(0.01, abs=0.004)
    assert not region.outside(torch.tensor([[1.0, -2.0, 0.0]])).item()
    assert region.outside(torch.tensor([[1.0, 0.0, 0.0]])).item()  # 4 sd along the narrow axis (limit ~3.37)
    assert not region.outside(torch.tensor([[4.0, -2.0, 0.0]])).item()  # 1.5 sd along the wide one
    # StyleGAN's W: estimated from the mapping network's draws, not N(0, I)
    stylegan = load_model("fmnist-stylegan")
    assert "Mahalanobis" in typical_region(stylegan, PriorSampler(stylegan)).description
    assert "N(0, I)" in typical_region(load_model("fmnist-gan"), PriorSampler(load_model("fmnist-gan"))).description


# --------------------------------------------------------------------------- expressiveness

def test_expressiveness_scores_against_hand_computed_errors(fmnist_test):
    model = exact_model()
    sampler = PriorSampler(model)
    region = typical_region(model, sampler)
    own = model.decode(sampler.sample(24, torch.Generator().manual_seed(0)))
    real = fmnist_test.batch(range(24))
    scores = {k: score_set(model, k, x, k, region, refine_images=6, steps=15, lr=0.1, worst=3)
              for k, x in (("own", own), ("real", real))}
    for key, x in (("own", own), ("real", real)):
        s = scores[key]
        np.testing.assert_allclose(s.encoder_mse, hand_mse(model.reconstruct(x).numpy(), x.numpy()), rtol=1e-5)
        assert len(s.refined_index) == 6 and np.all(s.refined_mse <= s.encoder_mse[s.refined_index] + 1e-9)
        assert s.worst == [int(s.refined_index[i]) for i in np.argsort(-s.refined_mse, kind="stable")[:3]]
        assert s.worst_rows["target"].shape == (3, 1, 28, 28)
        torch.testing.assert_close(s.worst_rows["target"], x[s.worst])
    assert scores["own"].encoder_mse.max() < 1e-9  # the encoder inverts the decoder on its own samples
    assert scores["real"].encoder_mse.min() > 1e-3  # real images are outside a 6-d decoder's range
    assert scores["real"].refined_mse.mean() < scores["real"].encoder_mse[scores["real"].refined_index].mean()
    # the benchmark refines all sets in one batch: the same latents as one set at a time (one settings object
    # carries what the keywords above gave)
    settings = ExpressivenessSettings(refine_images=6, steps=15, lr=0.1, worst=3, bootstrap=100)
    together = evaluate_expressiveness(model, {"own": (own, "own"), "real": (real, "real")}, region=region,
                                       settings=settings)
    for key in ("own", "real"):
        np.testing.assert_allclose(together.sets[key].refined_mse, scores[key].refined_mse, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(together.sets[key].refined_distance, scores[key].refined_distance, rtol=1e-4)
        assert together.sets[key].worst == scores[key].worst


def test_expressiveness_settings_take_keywords_and_refuse_unknown_ones():
    settings = ExpressivenessSettings.of(steps=3, samples=8)
    assert (settings.steps, settings.samples, settings.lr) == (3, 8, ExpressivenessSettings().lr)
    assert ExpressivenessSettings.of(settings, lr=0.5) == ExpressivenessSettings(steps=3, samples=8, lr=0.5)
    with pytest.raises(ConfigError, match="unknown expressiveness settings: step"):
        ExpressivenessSettings.of(step=3)


def test_a_registered_metric_reaches_the_scores_the_csv_and_the_report(fmnist_test, monkeypatch):
    """A new metric is one function and one line: PSNR, checked against 10 log10(1 / MSE) by hand."""
    from latentmap.evaluation import expressiveness as expr
    from latentmap.evaluation import expressiveness_results as registry
    from latentmap.evaluation.metrics import per_image_mse
    from latentmap.report.expressiveness import sets_display
    from latentmap.report.tables import sig

    monkeypatch.setattr(registry, "METRICS", dict(registry.METRICS))  # the registry as it was, after the test
    expr.register_metric("psnr", lambda x, x_hat: 10 * torch.log10(1 / per_image_mse(x, x_hat)))
    model = exact_model()
    real = fmnist_test.batch(range(12))
    m = evaluate_expressiveness(model, {"real": (real, "real")}, refine_images=3, steps=5, lr=0.1, bootstrap=10)
    scores = m.sets["real"]
    hand = 10 * np.log10(1 / hand_mse(model.reconstruct(real).numpy(), real.numpy()))
    np.testing.assert_allclose(scores.encoder_psnr, hand, rtol=1e-4)
    np.testing.assert_allclose(scores.refined_psnr, 10 * np.log10(1 / scores.refined_mse), rtol=1e-4)
    table = expr.ExpressivenessResult([m], {}).set_table()  # what target_sets.csv holds
    assert table.loc[0, "encoder_psnr"] == pytest.approx(hand.mean(), rel=1e-4)
    assert table.loc[0, "refined_psnr"] == pytest.approx(scores.refined_psnr.mean())
    shown = sets_display(expr.ExpressivenessResult([m], {})).iloc[0]
    assert shown["Encoder PSNR"] == sig(table.loc[0, "encoder_psnr"])
    assert shown["Refined PSNR"] == sig(table.loc[0, "refined_psnr"])
    with pytest.raises(ConfigError, match="new identifier"):
        expr.register_metric("lpips", per_image_mse)


def test_expressiveness_leaderboard_on_a_shipped_generator(fmnist_test, shipped_support):
    gan = load_model("fmnist-gan")
    result = benchmark_expressiveness([gan], fmnist_test.batch(range(0, 400, 10)), shipped_support.images[:16],
                                      samples=40, refine_images=4, steps=5, bootstrap=300, lpips_setting="off")
    m = result.models[0]
    own, real, support = (m.sets[k] for k in ("own", "real", "support"))
    assert m.ratios["support/own"].value == pytest.approx(support.encoder_mse.mean() / own.encoder_mse.mean())
    assert m.ratios["support/own"].low > 1.5  # the inverter reproduces its own samples far better (about 5x)
    row = result.leaderboard().iloc[0]
    assert row["model"] == "fmnist-gan" and row["support_over_own"] == pytest.approx(m.ratios["support/own"].value)
    assert row["refined_mse_support"] == pytest.approx(support.refined_mse.mean())
    summary = support.summary(m.region["typical"])
    assert summary["refined_outside_share"] == pytest.approx(
        float(np.mean(support.refined_distance > m.region["limit"])))
    json.dumps(result.to_dict())  # every number serializes
    with pytest.raises(ConfigError, match="own samples must be at least 2"):
        benchmark_expressiveness([gan], fmnist_test.batch(range(4)), samples=1)


def test_the_leaderboard_shows_its_models_only_when_asked(fmnist_test, shipped_support):
    gan = load_model("fmnist-gan")
    options = {"samples": 4, "refine_images": 2, "steps": 2, "bootstrap": 10, "lpips_setting": "off"}
    real, support = fmnist_test.batch(range(4)), shipped_support.images[:4]
    with recorded_bars() as bars:
        benchmark_expressiveness([gan], real, support, progress=True, **options)
        assert Bar("expressiveness", "model", 1) in bars and "expressiveness fmnist-gan" in labels(bars)
        shown = len(bars)
        benchmark_expressiveness([gan], real, support, **options)
    assert len(bars) == shown


# --------------------------------------------------------------------------- coverage

def test_g_test_and_flags():
    real = np.array([100, 100, 100, 0, 50])
    assert g_test(real, real * 3)["p_value"] == pytest.approx(1.0)
    skewed = g_test(real, np.array([300, 0, 0, 0, 0]))
    assert skewed["p_value"] < 1e-12 and skewed["dof"] == 3  # the empty sector is left out
    never, under, over = flag_sectors(real, np.array([200, 5, 0, 30, 50]), min_count=20)
    assert never == [2] and under == [1, 2] and over == [0, 3]


def test_coverage_flags_the_sectors_of_classes_a_generator_cannot_make(svae, shipped_support, fmnist_test):
    """A generator that samples only near encodings of garment classes 0-4 under-represents the sectors those
    absent classes (5-9) fill, and none of the sectors of the classes it makes."""
    train = load_dataset("fashion-mnist", "train")
    labels = np.asarray(train.labels)
    gen = torch.Generator().manual_seed(0)
    kept = np.flatnonzero(labels < 5)[:1500]
    z = svae.encode_all(train.batch(kept)) + 0.1 * torch.randn(len(kept), svae.latent_dim, generator=gen)
    half = GeneratedSet("half-classes", svae.decode_all(z), "near encodings of classes 0-4")
    real = fmnist_test.subset(np.arange(1500))
    space = SectorSpace.from_support_set(shipped_support)
    cache = EncodingCache(svae)
    result = sector_coverage(space, cache, real, [half, calibration_set(train, 1500)], shipped_support.images,
                             min_count=20)
    half_cov, calib = result.generators
    # sector codes by hand (bit j: variable j of the encoding > 0) from the encodings coverage used
    real_codes = sector_codes_hand(cache.encode("real", real).numpy(), space.variables)
    np.testing.assert_array_equal(result.real_counts, np.bincount(real_codes, minlength=space.sectors))
    real_labels = np.asarray(real.labels)
    absent_sectors, present_sectors = [], []
    for s in range(space.sectors):
        inside = real_labels[real_codes == s]
        if len(inside) >= 20:
            share_absent = float((inside >= 5).mean())
            (absent_sectors if share_absent > 0.9 else present_sectors if share_absent < 0.1 else []).append(s)
    assert len(absent_sectors) >= 3 and len(present_sectors) >= 3
    assert set(absent_sectors) <= set(half_cov.under)
    assert not set(present_sectors) & set(half_cov.under)
    assert half_cov.test["p_value"] < 1e-12 and calib.test["p_value"] > 1e-3
    assert not calib.under and not calib.over
    for s in absent_sectors[:2]:  # each flagged sector comes with its examples
        ex = half_cov.examples[s]
        assert len(ex["real"]) and all(real_codes[i] == s for i in ex["real"]) and len(ex["generated"]) == 6
        assert half_cov.example_images[s]["real"].shape[0] == len(ex["real"])
    frame = result.sector_frame()
    assert len(frame) == 2 * space.sectors and frame.real_count.sum() == 2 * 1500  # every image counted


# --------------------------------------------------------------------------- fidelity and diversity

def _brute_prdc(real, fake, k):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_real, r_fake = np.sort(d_rr, 1)[:, k], np.sort(d_ff, 1)[:, k]
    inside = d_rf <= r_real[:, None]
    return {"precision": inside.any(0).mean(), "recall": (d_rf <= r_fake[None]).any(1).mean(),
            "density": inside.sum() / (k * len(fake)), "coverage": (d_rf.min(1) <= r_real).mean()}


def test_prdc_and_frechet_distance_against_references(monkeypatch):
    from scipy import linalg

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 5)), rng.normal(0.5, 1.2, size=(200, 5))
    monkeypatch.setattr(fidelity_module, "_CHUNK", 37)  # chunked distances give the full answer
    ours, ref = prdc(real, fake, k=4), _brute_prdc(real, fake, 4)
    for key in ours:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    cov_a, cov_b = np.cov(real.T), np.cov(fake.T)  # unbiased, as pytorch-fid and torch-fidelity
    expected = (((real.mean(0) - fake.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b)
                - 2 * np.trace(np.real(linalg.sqrtm(cov_a @ cov_b))))
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(real, real) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(real, real + 2.0) == pytest.approx(4 * 5, rel=1e-8)  # shift of 2 in 5 dims
    with pytest.raises(ConfigError, match="same size"):
        prdc(real, fake[:, :3])


def test_fidelity_of_real_images_and_of_a_collapsed_generator(svae, shipped_support, fmnist_test):
    train = load_dataset("fashion-mnist", "train")
    trousers = np.flatnonzero(np.asarray(train.labels) == 1)[:1500]
    collapsed = GeneratedSet("trousers only", train.batch(trousers), "1500 training images of class 1")
    real = fmnist_test.subset(np.arange(3000))
    result = benchmark_coverage(svae, shipped_support, real, [calibration_set(train, 1500), collapsed], k=5)
    by_name = {r.name: r for r in result.fidelity.rows}
    held_out, one_class = by_name["real train images"], by_name["trousers only"]
    assert held_out.precision > 0.75 and held_out.recall > 0.75
    assert held_out.frechet < 0.1 * one_class.frechet
    assert one_class.recall < 0.3 and one_class.coverage < 0.3 and one_class.precision > 0.5  # real, but one class
    assert result.fidelity.fd_name == "FD in fmnist-svae space" and "FID" not in result.fidelity.fd_name


def test_generated_sets_take_models_and_image_sets(tmp_path, svae):
    np.save(tmp_path / "made.npy", np.random.default_rng(0).random((12, 1, 28, 28), dtype=np.float32))
    sets = generated_sets([svae, f"npy:{tmp_path / 'made.npy'}"], samples=10, seed=0)
    assert [s.name for s in sets] == ["fmnist-svae", "made"] and [len(s) for s in sets] == [10, 12]
    torch.testing.assert_close(sets[0].images, svae.decode(svae.sample_prior(10, torch.Generator().manual_seed(0))))
    assert "prior" in sets[0].source and "npy:" in sets[1].source
    with pytest.raises(ConfigError, match="share the name"):
        generated_sets([svae, svae], samples=10)
    with pytest.raises(ConfigError, match="image set"):
        generated_sets([3.5], samples=10)
