"""Support-set builder: information gain, sectors, selection, completion, exclusions, errors, artifact."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentmap.data.datasets import TensorImageDataset
from latentmap.errors import ConfigError, DatasetError, LatentmapError, SupportSetError
from latentmap.report.support_set import write_support_set
from latentmap.support.info_gain import information_gain, zeroed_variants
from latentmap.models.base import LatentModel
from latentmap.support.sectors import (NO_SECTOR, default_threshold, nonempty_count, populations, sector_codes,
                               sector_signs)
from latentmap.support.build import (SupportSet, SupportSetSettings, build_support_set, mean_pairwise_mse,
                                   random_pairs_mse, read_exclusions, select_from_sectors)
from tests.helpers.progress import labels, recorded_bars


class PartialDecoderModel(LatentModel):
    """Orthogonal linear encoder (latents of variance ~1 on uniform images); the decoder projects back
    through only the first ``used`` variables, so zeroing one of them can only lose information."""

    kind = "test-partial"

    def __init__(self, latent_dim=6, used=3, image_shape=(1, 4, 4)):
        super().__init__("partial", image_shape, latent_dim)
        pixels = int(np.prod(image_shape))
        q, _ = torch.linalg.qr(torch.randn(pixels, latent_dim, generator=torch.Generator().manual_seed(0)))
        self.used = used
        self.scale = math.sqrt(12)  # uniform pixels have variance 1/12
        self.enc = nn.Linear(pixels, latent_dim, bias=False)
        self.dec = nn.Linear(used, pixels, bias=False)
        with torch.no_grad():
            self.enc.weight.copy_(q.T * self.scale)
            self.dec.weight.copy_(q[:, :used] / self.scale)

    def modules(self):
        return {"enc": self.enc, "dec": self.dec}

    def _encode(self, x):
        return self.enc(x.flatten(1) - 0.5)

    def _decode(self, z):
        return (0.5 + self.dec(z[:, :self.used])).clamp(0, 1).view(-1, *self.image_shape)


def toy_dataset(n=300, seed=1, shape=(1, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return TensorImageDataset("toy", torch.rand(n, *shape, generator=g))


@pytest.fixture(scope="module")
def model():
    return PartialDecoderModel()


@pytest.fixture(scope="module")
def data():
    return toy_dataset()


def direct_gain(model, images):
    """One variable at a time, the definition written out."""
    z = model.encode(images)
    base = (model.decode(z) - images).pow(2).flatten(1).mean(1).double()
    gains = []
    for i in range(model.latent_dim):
        zi = z.clone()
        zi[:, i] = 0
        gains.append(float(((model.decode(zi) - images).pow(2).flatten(1).mean(1).double() - base).mean()))
    return np.array(gains)


# --------------------------------------------------------------------------- information gain

def test_ignored_variables_rank_last_with_zero_gain(model, data):
    info = information_gain(model, data)
    assert set(info.ranking[-3:]) == {3, 4, 5}
    np.testing.assert_allclose(info.gains[3:], 0.0, atol=1e-9)
    assert (info.gains[:3] > 1e-3).all()
    assert info.n_images == len(data)


def test_batched_gain_matches_one_variable_at_a_time(model, data):
    reference = direct_gain(model, data.all_images())
    for batch_size, chunk_rows in [(64, None), (50, 7), (300, 1)]:
        info = information_gain(model, data, batch_size=batch_size, chunk_rows=chunk_rows)
        np.testing.assert_allclose(info.gains, reference, rtol=1e-5, atol=1e-9)


def test_zeroed_variants_layout():
    z = torch.arange(1, 7, dtype=torch.float32).view(2, 3)
    v = zeroed_variants(z)
    assert v.shape == (6, 3)
    for b, i in itertools.product(range(2), range(3)):
        expected = z[b].clone()
        expected[i] = 0
        torch.testing.assert_close(v[b * 3 + i], expected)


# --------------------------------------------------------------------------- sectors

def test_sector_codes_match_direct_sign_computation():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(400, 6, generator=g)
    z[0, 4] = 0.25  # exactly on the threshold (representable in float32): in no sector
    variables, th = [4, 1, 2], 0.25
    codes = sector_codes(z, variables, th)
    for n in range(len(z)):
        member_of = [s for s, dirs in enumerate(itertools.product([-1, 1], repeat=3))
                     if all(d * float(z[n, v]) > th for d, v in zip(dirs[::-1], variables))]
        # itertools.product varies the last element fastest; reversed, dirs[j] is bit j of s
        assert len(member_of) <= 1
        assert int(codes[n]) == (member_of[0] if member_of else NO_SECTOR)
        if member_of:
            signs = sector_signs(int(codes[n]), 3)
            assert all((ch == "+") == (float(z[n, v]) > 0) for ch, v in zip(signs, variables))
    assert int(codes[0]) == NO_SECTOR
    assert populations(codes, 3).sum() == int((codes != NO_SECTOR).sum())


def test_default_threshold_is_largest_keeping_most_sectors():
    z = torch.randn(2000, 5, generator=torch.Generator().manual_seed(2))
    th, rule = default_threshold(z, [0, 1, 2, 3], min_share=0.9)
    best = nonempty_count(z, [0, 1, 2, 3], 0.0)
    assert best == 16 and th > 0
    assert nonempty_count(z, [0, 1, 2, 3], th) >= math.ceil(0.9 * best)
    larger = [c for c in rule["candidates"] if c["quantile"] > rule["quantile"]]
    assert larger and larger[0]["nonempty"] < math.ceil(0.9 * best)  # the next candidate fails the share


# --------------------------------------------------------------------------- selection and completion

def codes_with_populations(pops):
    codes = torch.cat([torch.full((p,), s, dtype=torch.int64) for s, p in enumerate(pops)])
    return torch.cat([codes, torch.full((3,), NO_SECTOR)])[torch.randperm(sum(pops) + 3)]


def test_one_per_sector_then_most_crowded():
    codes = codes_with_populations([5, 1, 3, 10])
    sel = select_from_sectors(codes, 2, 9, torch.Generator().manual_seed(0))
    assert sel.roles[:4] == ["sector"] * 4 and sorted(sel.sectors[:4]) == [0, 1, 2, 3]
    # round-robin over the most crowded sectors; sector 1 (one member) has nothing more to give
    assert sel.sectors[4:] == [3, 0, 2, 3, 0] and set(sel.roles[4:]) == {"completion"}
    assert len(set(sel.positions)) == 9
    assert all(int(codes[p]) == s for p, s in zip(sel.positions, sel.sectors))
    assert sel.dropped == []


def test_more_sectors_than_size_drops_least_populated():
    codes = codes_with_populations([5, 1, 3, 10])
    sel = select_from_sectors(codes, 2, 2, torch.Generator().manual_seed(0))
    assert sorted(sel.sectors) == [0, 3] and sel.dropped == [1, 2]


def test_build_default_size_and_manifest(model, data):
    ss = build_support_set(model, data, seed=3, gain_images=100, pairs=500, split="train")
    m = ss.manifest
    assert len(ss) == model.latent_dim == len(set(m["indices"]))
    assert m["top_k"] == 2 and m["variables"] == m["information_gain"]["ranking"][:2]
    assert m["information_gain"]["images"] == 100
    pops = [s["population"] for s in m["sector_populations"]]
    assert len(pops) == 4 and m["statistics"]["empty_sectors"] == pops.count(0)
    roles = [im["role"] for im in m["images"]]
    assert roles.count("sector") == m["statistics"]["nonempty_sectors"]
    z = model.encode(data.batch(m["indices"]))
    for row, im in zip(z, m["images"]):  # every image lies in the sector the manifest says
        assert all(((ch == "+") and row[v] > m["threshold"]) or ((ch == "-") and row[v] < -m["threshold"])
                   for ch, v in zip(im["signs"], m["variables"]))
    torch.testing.assert_close(ss.images, data.batch(m["indices"]))


def test_completion_to_larger_size(model, data):
    ss = build_support_set(model, data, size=20, top_k=3, seed=0, gain_images=50, pairs=100)
    roles = [im["role"] for im in ss.manifest["images"]]
    assert len(ss) == 20 and roles.count("completion") == 20 - roles.count("sector")
    pops = {s["sector"]: s["population"] for s in ss.manifest["sector_populations"]}
    extra = [im["sector"] for im in ss.manifest["images"] if im["role"] == "completion"]
    crowded = sorted((s for s in pops if pops[s]), key=lambda s: (-pops[s], s))
    assert extra[:len(crowded)] == crowded[:len(extra)]  # first completion round: most crowded first


def test_same_seed_same_indices(model, data):
    a = build_support_set(model, data, size=10, seed=7, gain_images=80, pairs=100)
    b = build_support_set(model, data, SupportSetSettings(size=10, seed=7, gain_images=80, pairs=100))
    c = build_support_set(model, data, SupportSetSettings(size=10, seed=7, gain_images=80, pairs=100), seed=8)
    assert a.indices == b.indices and a.manifest == b.manifest  # keywords and a settings object build the same set
    assert a.indices != c.indices  # a keyword replaces the settings' field
    with pytest.raises(ConfigError, match="unknown support-set settings: sizes"):
        build_support_set(model, data, sizes=10)


def test_exclusions_are_never_chosen(model, data, tmp_path):
    first = build_support_set(model, data, size=8, seed=0, gain_images=50, pairs=100)
    file = tmp_path / "no_hats.txt"
    file.write_text("\n".join(map(str, first.indices[:4])) + "\n")
    again = build_support_set(model, data, size=8, seed=0, gain_images=50, pairs=100,
                              exclude=[str(file), ",".join(map(str, first.indices[4:]))])
    assert not set(again.indices) & set(first.indices)
    assert again.manifest["excluded"] == sorted(first.indices)
    assert read_exclusions(["3, 1 2", 7]).tolist() == [1, 2, 3, 7]
    with pytest.raises(DatasetError, match="excluded index 300"):
        build_support_set(model, data, size=8, exclude=[300])
    with pytest.raises(ConfigError, match="'x'"):
        read_exclusions(["1,x"])


def test_baseline_strategies_in_builder(model, data):
    for strategy in ("random", "farthest", "kmeans"):
        ss = build_support_set(model, data, size=12, strategy=strategy, seed=1, pairs=100)
        assert len(set(ss.indices)) == 12 and ss.manifest["strategy"] == strategy
        assert "top_k" not in ss.manifest


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, error, text", [
    ({"top_k": 7}, ConfigError, "at most the latent dimension of 'partial' (6), got 7"),
    ({"threshold": 50.0, "top_k": 2}, SupportSetError, "every one of the 4 sectors is empty"),
    ({"size": 301}, SupportSetError, "300 usable images (0 excluded), fewer than the support-set size 301"),
    ({"threshold": 0.5, "top_k": 3, "size": 250}, SupportSetError, "fewer than the support-set size 250"),
    ({"strategy": "best"}, ConfigError, "strategy must be one of"),
    ({"threshold": -1.0}, ConfigError, "non-negative"),
    ({"threshold": float("inf")}, ConfigError, "non-negative"),
    ({"threshold": float("nan")}, ConfigError, "non-negative"),
])
def test_bad_input_errors(model, data, kwargs, error, text):
    with pytest.raises(error) as info:
        build_support_set(model, data, gain_images=20, pairs=10, **kwargs)
    assert text in str(info.value)
    assert isinstance(info.value, LatentmapError) and isinstance(info.value, ValueError)


def test_wrong_image_shape(model):
    with pytest.raises(DatasetError, match=r"expects images of shape \(1, 4, 4\)"):
        build_support_set(model, toy_dataset(shape=(1, 5, 5)))


# --------------------------------------------------------------------------- statistics and artifact

def test_pairwise_statistics():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 3, 3, generator=g)
    brute = np.mean([float((images[i] - images[j]).pow(2).mean()) for i in range(6) for j in range(i + 1, 6)])
    assert mean_pairwise_mse(images) == pytest.approx(brute, rel=1e-6)
    assert mean_pairwise_mse(images[:1]) is None
    black_white = TensorImageDataset("bw", torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]))
    # random pairs are always two distinct images, so black vs white every time
    assert random_pairs_mse(black_white, np.arange(2), 50, torch.Generator().manual_seed(0), 16) == 1.0


def test_save_load_round_trip(model, data, tmp_path):
    ss = build_support_set(model, data, size=9, seed=2, gain_images=60, pairs=200, name="toy-set")
    out = write_support_set(ss, tmp_path / "toy-set")
    assert {p.name for p in out.iterdir()} == {"manifest.json", "images.npy", "contact_sheet.png", ".latentmap-output.json",
                                                "info_gain.png", "sector_populations.png"}
    loaded = SupportSet.load(out)
    torch.testing.assert_close(loaded.images, ss.images)
    assert loaded.indices == ss.indices and loaded.name == "toy-set"
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["statistics"]
    assert stats["support_pairwise_mse"] == pytest.approx(mean_pairwise_mse(ss.images), abs=1e-6)
    assert stats["dataset_random_pairs_mse"] > 0 and stats["random_pairs"] == 200
    assert manifest["model"]["name"] == "partial" and manifest["size"] == 9


def test_precomputed_latents_and_gain_give_the_same_set(model, data):
    from latentmap.support.build import subsample_information_gain

    fresh = build_support_set(model, data, size=10, seed=5, gain_images=70, pairs=100)
    info = subsample_information_gain(model, data, np.arange(len(data)), 70, 5)
    reused = build_support_set(model, data, size=10, seed=5, pairs=100, latents=model.encode_all(data), info=info)
    assert reused.indices == fresh.indices and reused.manifest == fresh.manifest
    with pytest.raises(ValueError, match=r"latents of the split must have shape \(300, 6\)"):
        build_support_set(model, data, size=10, latents=torch.zeros(299, 6))


def test_too_few_images_names_the_dataset_and_its_split_word_for_word(model, data):
    with pytest.raises(SupportSetError) as info:
        build_support_set(model, data, split="train", size=301, gain_images=20, pairs=10)
    assert str(info.value) == ("dataset 'toy' (train split) has 300 usable images (0 excluded), fewer than the "
                               "support-set size 301")


def test_sector_populations_name_each_sector_and_its_signs(model, data):
    m = build_support_set(model, data, seed=3, gain_images=100, pairs=200).manifest
    k = m["top_k"]
    entries = m["sector_populations"]
    assert [set(e) for e in entries] == [{"sector", "signs", "population"}] * 2 ** k
    # sector s has bit j set when variable j (in ranking order) is positive
    assert [(e["sector"], e["signs"]) for e in entries] == [
        (s, "".join("+" if s >> j & 1 else "-" for j in range(k))) for s in range(2 ** k)]


def test_dropped_sectors_and_for_models_are_recorded(model, data):
    with pytest.warns(UserWarning) as caught:
        m = build_support_set(model, data, size=3, top_k=3, seed=0, gain_images=50, pairs=50,
                              for_models={"fmnist-vae-b": "sha256:00"}).manifest
    assert m["for_models"] == {"fmnist-vae-b": "sha256:00"}
    populations = {e["sector"]: e["population"] for e in m["sector_populations"]}
    dropped = m["dropped_sectors"]
    assert dropped and [set(e) for e in dropped] == [{"sector", "signs", "population"}] * len(dropped)
    for e in dropped:
        s = e["sector"]
        assert e["signs"] == "".join("+" if s >> j & 1 else "-" for j in range(3))
        assert e["population"] == populations[s] > 0
    populated = sum(1 for p in populations.values() if p)
    assert [str(w.message) for w in caught] == [f"{populated} sectors are populated but the size is 3: kept the 3 most "
                                               f"populated, dropped sectors {[e['sector'] for e in dropped]}"]


def test_building_shows_the_encoding_of_the_split_only_when_asked(model, data):
    with recorded_bars() as bars:
        build_support_set(model, data, seed=3, gain_images=100, pairs=50, progress=True)
        assert f"encode {model.name}" in labels(bars)
        shown = len(bars)
        build_support_set(model, data, seed=3, gain_images=100, pairs=50)
    assert len(bars) == shown
