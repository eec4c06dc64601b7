"""What a generator cannot produce, in class names (latentmap.evaluation.class_miss), and the total-variation interval
(latentmap.evaluation.coverage.total_variation_interval): hand-built label counts with every share worked out by
hand, a per-image bootstrap as the interval's reference, and a 'generator' made of the test images of classes 0-4."""

from pathlib import Path

import numpy as np
import pytest

from latentmap.errors import ConfigError
from latentmap.evaluation.class_miss import (class_misses, dominant_labels, missed_sectors, missed_share,
                                             unresolvable_classes)
from latentmap.evaluation.coverage import total_variation, total_variation_interval

# 4 sectors x 3 labels: label 2 is never the majority of a sector
COUNTS = np.array([[40, 0, 10],    # sector 0: label 0 dominates (80%)
                   [0, 30, 20],    # sector 1: label 1 (60%)
                   [25, 0, 25],    # sector 2: a tie, nobody dominates (50% is not more than half)
                   [1, 0, 3]])     # sector 3: label 2 holds 75%, but of 4 images only
NAMES = ["zero", "one", "two"]


def test_class_misses_on_hand_counts():
    rows = class_misses(COUNTS, [1, 2], NAMES)
    by_name = {r.name: r for r in rows}
    # label totals: 66, 30, 58; in sectors 1 and 2: 25, 30, 45 (100 images there)
    assert (by_name["zero"].real_images, by_name["zero"].in_missed) == (66, 25)
    assert by_name["one"].share_of_class == 1.0 and by_name["one"].share_of_missed == pytest.approx(0.30)
    assert by_name["two"].share_of_class == pytest.approx(45 / 58) and by_name["two"].share_of_missed == 0.45
    assert [r.name for r in rows] == ["one", "two", "zero"]  # largest share of the class first
    assert [r.named for r in rows] == [True, True, False]  # at least half of the class's images
    assert missed_share(COUNTS, [1, 2]) == pytest.approx(100 / 154)
    none = class_misses(COUNTS, [], NAMES)
    assert all(r.in_missed == 0 and r.share_of_missed == 0.0 and not r.named for r in none)
    assert missed_share(COUNTS, []) == 0.0
    with pytest.raises(ConfigError, match="do not fit 4 sectors"):
        class_misses(COUNTS, [4], NAMES)


def test_missed_sectors_join_never_reached_and_under_represented():
    assert missed_sectors([5, 2], [2, 7, 1]) == [1, 2, 5, 7]


def test_unresolvable_classes_dominate_no_sector():
    assert dominant_labels(COUNTS, min_count=1) == {0: 0, 1: 1, 3: 2}
    assert dominant_labels(COUNTS, min_count=20) == {0: 0, 1: 1}  # sector 3 is too small to count
    found = unresolvable_classes(COUNTS, min_count=20, names=NAMES)
    assert [u["name"] for u in found] == ["two"]
    # its largest share among the sectors of at least 20 images: sector 2, 25 of 50; its sector-mates, weighted by
    # its images in each sector: zero 10 x 40/50 + 25 x 25/50 + 3 x 1/4 = 21.25, one 20 x 30/50 = 12
    assert found[0]["best_sector"] == 2 and found[0]["best_share"] == 0.5
    assert found[0]["shares_with"] == ["zero", "one"]
    assert unresolvable_classes(COUNTS, min_count=1, names=NAMES) == []  # the small sector resolves it


def _tv_reference(real_counts, gen_counts, resamples, seed, level=0.95):
    """The percentile bootstrap by resampling each set's images one by one (sector codes drawn with replacement)."""
    rng = np.random.default_rng(seed)
    real_codes = np.repeat(np.arange(len(real_counts)), real_counts)
    gen_codes = np.repeat(np.arange(len(gen_counts)), gen_counts)
    values = []
    for _ in range(resamples):
        r = np.bincount(rng.choice(real_codes, len(real_codes)), minlength=len(real_counts))
        g = np.bincount(rng.choice(gen_codes, len(gen_codes)), minlength=len(gen_counts))
        values.append(total_variation(r, g))
    return np.quantile(values, [(1 - level) / 2, (1 + level) / 2])


def test_total_variation_interval_agrees_with_a_per_image_bootstrap():
    real, gen = np.array([300, 200, 150, 250, 100]), np.array([120, 260, 90, 330, 200])
    low, high = total_variation_interval(real, gen, resamples=20000, seed=3)
    ref_low, ref_high = _tv_reference(real, gen, 20000, 11)
    assert low < total_variation(real, gen) < high
    # 20,000 resamples: the endpoints move by about 0.001 from seed to seed; a 90% interval sits 0.006-0.007
    # inside the 95% one, so the tolerance tells them apart (at 0.01 a 90% interval labelled 95% passed)
    assert low == pytest.approx(ref_low, abs=0.003) and high == pytest.approx(ref_high, abs=0.003)
    narrow = _tv_reference(real, gen, 20000, 11, level=0.90)
    assert narrow[0] - ref_low > 0.005 and ref_high - narrow[1] > 0.005
    assert (low, high) == total_variation_interval(real, gen, resamples=20000, seed=3)  # seeded
    # the same shares: every resample lies above the estimate 0 (sampling noise alone): no interval
    assert all(np.isnan(total_variation_interval(real * 10, real * 10)))
    assert all(np.isnan(total_variation_interval(real, np.zeros(5))))


def test_a_generator_of_classes_0_to_4_misses_classes_5_to_9_and_shirts_stay_unseen():
    """A 'generator' made of the test images of classes 0-4, against the other test images: the classes it lacks
    (5-9) are named, those it has are not; Shirt (6) shares its sectors with T-shirts, pullovers and coats, so
    sector counts cannot see it missing, and it is the unresolvable class."""
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.coverage import SectorSpace, sector_coverage
    from latentmap.evaluation.image_sets import EncodingCache, GeneratedSet
    from latentmap.models.registry import load_model
    from latentmap.support.build import SupportSet

    support = SupportSet.load(Path(__file__).resolve().parents[2] / "support_sets" / "fmnist-svae")
    reference = load_model("fmnist-svae")
    test = load_dataset("fashion-mnist", "test")
    labels = np.asarray(test.labels)
    real = test.subset(np.arange(0, 6000, 2))  # even positions: the real images
    odd = np.arange(1, 6000, 2)
    half = GeneratedSet("classes 0-4", test.batch(odd[labels[odd] < 5]), "test images of classes 0-4")
    result = sector_coverage(SectorSpace.from_support_set(support), EncodingCache(reference), real, [half],
                             min_count=20)
    g = result.generators[0]
    misses = {m.name: m for m in class_misses(result.label_counts, missed_sectors(g.never_reached, g.under),
                                              result.label_names)}
    missing = ["Sandal", "Sneaker", "Bag", "Ankle boot"]
    for name in missing:
        assert misses[name].named and misses[name].share_of_class > 0.6, misses[name]
    for name in ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]:
        assert not misses[name].named and misses[name].share_of_class < 0.1, misses[name]
    # the missed sectors' real images are almost all of the absent classes
    assert sum(misses[n].share_of_missed for n in [*missing, "Shirt"]) > 0.9
    unresolved = unresolvable_classes(result.label_counts, result.min_count, result.label_names)
    assert [u["name"] for u in unresolved] == ["Shirt"]
    assert not misses["Shirt"].named  # absent from the generator, yet its sectors are full of its neighbours
    assert set(unresolved[0]["shares_with"]) == {"T-shirt/top", "Pullover", "Coat"}
