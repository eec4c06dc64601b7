"""Sector coverage on hand-built latents: sector codes, counts, the G test against scipy, total variation, the
flags, and the findings sentence naming the sector with the largest gap."""

import numpy as np
import pytest
import torch
from scipy.stats import chi2, power_divergence

from latentmap.evaluation.coverage import SectorSpace, flag_sectors, g_test, sector_coverage, total_variation
from latentmap.evaluation.image_sets import GeneratedSet
from latentmap.report.coverage import coverage_findings, summary_display
from latentmap.report.tables import sig
from tests.helpers.references import sector_codes_hand


def g_reference(real, generated):
    """scipy's power divergence with the log-likelihood statistic on the 2 x sectors table of the sectors either set
    reaches, expected counts from the margins, (2 - 1)(sectors - 1) degrees of freedom."""
    real, generated = np.asarray(real, float), np.asarray(generated, float)
    used = real + generated > 0
    table = np.stack([real[used], generated[used]])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    dof = used.sum() - 1
    res = power_divergence(table.ravel(), expected.ravel(), ddof=table.size - 1 - dof, lambda_="log-likelihood")
    return float(res.statistic), float(res.pvalue), int(dof)


def test_g_test_equals_scipys_log_likelihood_power_divergence():
    real, generated = np.array([30, 12, 0, 61, 7, 90]), np.array([14, 25, 0, 40, 22, 95])
    statistic, p, dof = g_reference(real, generated)
    out = g_test(real, generated)
    assert out["statistic"] == pytest.approx(statistic, rel=1e-12) and out["p_value"] == pytest.approx(p, rel=1e-9)
    assert out["dof"] == dof == 4 and out["sectors_tested"] == 5  # the sector neither set reaches is left out
    # the hand formula, G = 2 Σ O ln(O / E), and its chi-square tail
    used = real + generated > 0
    table = np.stack([real[used], generated[used]]).astype(float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    g = 2 * (table * np.log(table / expected)).sum()
    assert out["statistic"] == pytest.approx(g, rel=1e-12) and out["p_value"] == pytest.approx(chi2.sf(g, 4), rel=1e-9)
    pearson = ((table - expected) ** 2 / expected).sum()
    assert abs(pearson - g) > 0.02 * g  # Pearson's statistic is a different number here
    # identical shares: G = 0, p = 1
    same = g_test(real, 2 * real)
    assert same["statistic"] == pytest.approx(0, abs=1e-12) and same["p_value"] == pytest.approx(1.0)


def test_total_variation_is_half_the_l1_distance_of_the_shares():
    assert total_variation([2, 2, 0, 0], [0, 1, 1, 2]) == pytest.approx(0.5 * (0.5 + 0.25 + 0.25 + 0.5))
    assert total_variation([5, 5], [1, 1]) == 0.0
    assert total_variation([3, 0], [0, 7]) == pytest.approx(1.0)  # disjoint supports: the largest value


def test_flags_on_hand_counts():
    real, generated = np.array([100, 100, 100, 0, 50, 30]), np.array([200, 5, 0, 30, 50, 0])
    never, under, over = flag_sectors(real, generated, min_count=20)
    # shares: real 100/380, generated 200/285 ...; never reached: sectors with real images and no generated one
    assert never == [2, 5]  # not 3: no real image lies there
    assert under == [1, 2, 5] and over == [0, 3]


class _Cache:
    """An encoding cache with given latents per key (the reference model's encodings, built by hand)."""

    def __init__(self, latents: dict, latent_dim: int):
        self.latents = latents
        self.reference = type("Ref", (), {"latent_dim": latent_dim, "name": "hand"})()

    def encode(self, key, images):
        return self.latents[key]


def _points(counts):
    """Latents [sum(counts), 3] with counts[s] points in sign orthant s of variables (0, 2); variable 1 is noise."""
    rng = np.random.default_rng(sum(counts))
    rows = []
    for s, c in enumerate(counts):
        signs = np.array([1 if s & 1 else -1, 0, 1 if s & 2 else -1], float)
        z = np.abs(rng.normal(1.0, 0.3, size=(c, 3))) * signs
        z[:, 1] = rng.normal(size=c)
        rows.append(z)
    return torch.from_numpy(np.concatenate(rows)).float()


@pytest.fixture
def hand_coverage():
    real_counts, gen_counts = [50, 20, 30, 0], [5, 0, 45, 0]
    real, gen = _points(real_counts), _points(gen_counts)
    cache = _Cache({"real": real, "generated:g": gen}, latent_dim=3)
    space = SectorSpace("hand", [0, 2])
    images = GeneratedSet("g", torch.rand(len(gen), 1, 2, 2), "hand-made")
    result = sector_coverage(space, cache, torch.rand(len(real), 1, 2, 2), [images], min_count=20, examples=2)
    return result, real, gen


def test_sector_coverage_numbers_on_hand_built_latents(hand_coverage):
    result, real, gen = hand_coverage
    np.testing.assert_array_equal(result.space.codes(real), sector_codes_hand(real.numpy(), [0, 2]))
    np.testing.assert_array_equal(result.real_counts, [50, 20, 30, 0])
    g = result.generators[0]
    np.testing.assert_array_equal(g.counts, [5, 0, 45, 0])
    # shares: real 0.5, 0.2, 0.3, 0; generated 0.1, 0, 0.9, 0
    assert g.tv_distance == pytest.approx(0.5 * (0.4 + 0.2 + 0.6))
    assert g.never_reached == [1] and g.unreached == 2  # sector 3 holds neither real nor generated images
    assert g.under == [0, 1] and g.over == [2]
    statistic, p, dof = g_reference([50, 20, 30, 0], [5, 0, 45, 0])
    assert g.test["statistic"] == pytest.approx(statistic, rel=1e-12) and g.test["dof"] == dof == 2
    assert g.test["p_value"] == pytest.approx(p, rel=1e-9)
    summary = g.summary()
    assert (summary["never_reached"], summary["under_represented"], summary["over_represented"]) == (1, 2, 1)


def test_coverage_findings_quote_the_hand_computed_numbers_and_the_largest_gap(hand_coverage):
    result, _, _ = hand_coverage
    statistic, _, _ = g_reference([50, 20, 30, 0], [5, 0, 45, 0])
    text = " ".join(coverage_findings(result))
    assert "g: total variation 0.600 from the real shares" in text
    assert f"G = {sig(statistic)} (2 dof" in text
    assert "under-represents 2 sectors, over-represents 1, never reaches 1 sectors that hold real images" in text
    # under-represented: sector 0 (0.5 real, 0.1 generated: a gap of 0.4) and sector 1 (0.2 and 0: 0.2)
    assert ("the largest shortfall (generated share below the real one) over all 4 sectors is sector 0: 50% of the "
            "real images, 10% of the generated ones "
            "(flagged under-represented)") in text
    row = summary_display(result).iloc[0]
    assert (row["Total variation"], row["Never reached"], row["dof"]) == ("0.600", 1, 2)


def test_coverage_record_holds_every_field_by_name():
    from latentmap.evaluation.coverage import CoverageResult, GeneratorCoverage

    record = {"name": "fmnist-vae-a", "fingerprint": "0123456789abcdef0123"}
    gen = GeneratorCoverage("fmnist-vae-a", "512 draws", 10, np.array([0, 4, 6, 0]),
                            {"test": "G test", "statistic": 7.25, "dof": 3, "p_value": 0.0625}, [0], 2, [0], [2],
                            0.375, examples={3: {"support": [1]}}, record=record)
    result = CoverageResult(SectorSpace("fmnist-svae", [3, 7]), "real test images", np.array([3, 4, 2, 1]), 1,
                            np.array([0, 1, 2, 3]), [gen])
    summary = {"generator": "fmnist-vae-a", "source": "512 draws", "fingerprint": "0123456789ab", "images": 10,
               "test": "G test", "statistic": 7.25, "dof": 3, "p_value": 0.0625, "tv_distance": 0.375,
               "never_reached": 1, "unreached": 2, "under_represented": 1, "over_represented": 1}
    found = gen.summary()
    interval = (found.pop("tv_low"), found.pop("tv_high"))  # no bootstrap interval was drawn: both NaN
    assert found == summary and all(v != v for v in interval)
    summary = {**summary, "tv_low": interval[0], "tv_high": interval[1]}  # the same NaN objects compare equal
    assert result.to_dict() == {
        "reference": "fmnist-svae", "variables": [3, 7], "sectors": 4,
        "sector_rule": "the 4 sign orthants of fmnist-svae's variables [3, 7] (threshold 0: every image is in "
                       "exactly one sector)",
        "real_source": "real test images", "real_images": 10, "real_counts": [3, 4, 2, 1], "min_count": 1,
        "support_codes": [0, 1, 2, 3], "sector_labels": None, "label_counts": None, "label_names": None,
        "fidelity": None,
        "generators": [{**summary, "record": record, "counts": [0, 4, 6, 0], "never_reached_sectors": [0],
                        "under_sectors": [0], "over_sectors": [2], "examples": {"3": {"support": [1]}}}]}


def test_coverage_without_any_generator_says_so_word_for_word():
    from latentmap.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        sector_coverage(SectorSpace("ref", [0, 1]), None, torch.zeros(4, 1, 2, 2), [])
    assert str(caught.value) == "coverage needs at least one generator or image set"


def test_sector_space_from_a_support_set_takes_its_model_name_variables_and_threshold():
    from types import SimpleNamespace

    from latentmap.errors import ConfigError

    support = SimpleNamespace(name="s", manifest={"variables": [4, 1], "threshold": 0.5,
                                                  "model": {"name": "fmnist-svae", "kind": "split-vae"}})
    space = SectorSpace.from_support_set(support)
    assert (space.reference, space.variables, space.support_threshold) == ("fmnist-svae", [4, 1], 0.5)
    assert SectorSpace.from_support_set(support, "other").reference == "other"
    assert SectorSpace.from_support_set(SimpleNamespace(name="s", manifest={"variables": [0]})).reference == "reference"
    with pytest.raises(ConfigError) as caught:
        SectorSpace.from_support_set(SimpleNamespace(name="s", manifest={"strategy": "random"}))
    assert str(caught.value) == ("support set 's' records no sector variables (strategy 'random'); coverage needs "
                                 "one built with --strategy sectors")


def test_g_test_of_fewer_than_two_reached_sectors_is_no_test_at_all():
    out = g_test(np.array([5, 0, 0]), np.array([3, 0, 0]))
    assert out == {"test": "G test", "statistic": 0.0, "dof": 0, "p_value": 1.0, "sectors_tested": 1}


def test_sector_labels_of_images_with_labels_but_no_label_names():
    from types import SimpleNamespace

    from latentmap.evaluation.coverage import sector_labels

    real = SimpleNamespace(labels=[3, 3, 1, 7, 7, 7, 7])
    assert sector_labels(real, np.array([0, 0, 0, 2, 2, 2, 0]), 3) == ["3 (50%)", "", "7 (100%)"]
    assert sector_labels(SimpleNamespace(), np.array([0]), 1) is None
    named = SimpleNamespace(labels=[1, 1], label_name=lambda i: ["T-shirt", "Trouser"][i])
    assert sector_labels(named, np.array([1, 1]), 2) == ["", "Trouser (100%)"]


def test_sector_coverage_codes_the_support_set_in_the_same_sectors():
    real, gen, support = _points([50, 20, 30, 0]), _points([5, 0, 45, 0]), _points([1, 1, 1, 0])
    cache = _Cache({"real": real, "generated:g": gen, "support": support}, latent_dim=3)
    images = GeneratedSet("g", torch.rand(len(gen), 1, 2, 2), "hand-made")
    result = sector_coverage(SectorSpace("hand", [0, 2]), cache, torch.rand(len(real), 1, 2, 2), [images],
                             torch.rand(3, 1, 2, 2), min_count=20, examples=2)
    assert result.support_codes.tolist() == [0, 1, 2]  # one support point built in each of orthants 0, 1, 2
