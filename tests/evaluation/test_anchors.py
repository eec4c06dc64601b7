"""The compare experiment of anchor strategies (latentmap.evaluation.anchors); the strategies themselves are in
tests/support/test_selectors.py."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from latentmap import load_dataset
from latentmap.report.anchors import write_compare_report
from latentmap.evaluation.anchors import compare_anchors
from latentmap.cli.main import main
from latentmap.data.datasets import TensorImageDataset
from latentmap.errors import ConfigError, LatentmapError, SupportSetError
from latentmap.models.base import LatentModel
from tests.helpers.progress import Bar, labels, recorded_bars


# --------------------------------------------------------------------------- compare on linearly related models

class LinearModel(LatentModel):
    """x -> (x - 0.5) @ enc, z -> 0.5 + z @ dec: models built from one basis differ by a known matrix."""

    kind = "test-linear"

    def __init__(self, name, enc, dec, image_shape=(1, 4, 4)):
        super().__init__(name, image_shape, enc.shape[1])
        self.enc, self.dec = nn.Parameter(enc.float()), nn.Parameter(dec.float())
        self.holder = nn.ParameterList([self.enc, self.dec])

    def modules(self):
        return {"holder": self.holder}

    def _encode(self, x):
        return (x.flatten(1) - 0.5) @ self.enc

    def _decode(self, z):
        return (0.5 + z @ self.dec).clamp(0, 1).view(-1, *self.image_shape)


def related_models(d=4, pixels=16):
    """A and B with z_B = z_A @ M and Dec_B(z_A @ M) = Dec_A(z_A): the map A -> B is exactly M."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(pixels, d, generator=g, dtype=torch.float64))
    scale = math.sqrt(12)
    m = torch.randn(d, d, generator=g, dtype=torch.float64) + 2 * torch.eye(d, dtype=torch.float64)
    a = LinearModel("A", q * scale, q.T / scale)
    b = LinearModel("B", q * scale @ m, torch.linalg.inv(m) @ q.T / scale)
    return a, b


def toy_split(n, seed):
    return TensorImageDataset("toy", torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed)))


def test_compare_recovers_exact_map_for_every_strategy():
    a, b = related_models()
    train, test = toy_split(300, 1), toy_split(80, 2)
    result = compare_anchors([a, b], train, test, sizes=[4, 8], seeds=(0, 1), alpha=1e-9, gain_images=100,
                             reference_images=200)
    assert len(result.rows) == 4 * 2 * 2 * 2  # strategies x sizes x seeds x ordered pairs
    reconstruction = result.reference.set_index("target")["target_reconstruction_mse"]
    for row in result.rows.itertuples():  # exact anchors -> the relocation is the target's own reconstruction
        assert row.relocated_mse == pytest.approx(reconstruction[row.target], rel=1e-4)
        assert row.latent_r2 == pytest.approx(1.0, abs=1e-6)
    summary = result.summary
    assert set(summary["strategy"]) == {"sectors", "random", "farthest", "kmeans"}
    assert (summary["seeds"] == 2).all()
    np.testing.assert_allclose(summary["vs_random"], 1.0, rtol=1e-3)


def test_each_seed_draws_its_own_anchors_as_the_support_set_builder_does():
    from latentmap.evaluation.anchors import COMPARE_PAIRS
    from latentmap.support.build import build_support_set

    a, b = related_models()
    train, test = toy_split(300, 1), toy_split(40, 2)
    result = compare_anchors([a, b], train, test, sizes=[6], strategies=["random"], seeds=(0, 1), alpha=1e-9,
                             gain_images=100, reference_images=50)
    got = result.rows.groupby("seed")["support_pairwise_mse"].first()
    for seed in (0, 1):
        built = build_support_set(a, train, size=6, strategy="random", seed=seed, pairs=COMPARE_PAIRS)
        assert got[seed] == pytest.approx(built.manifest["statistics"]["support_pairwise_mse"], rel=1e-12)
    assert got[0] != got[1]


def test_compare_too_few_anchors_is_worse_and_errors():
    a, b = related_models()
    train, test = toy_split(300, 1), toy_split(80, 2)
    # 2 anchors for a 4-d map: ridge gives some map, but not the exact one
    result = compare_anchors([a, b], train, test, sizes=[2], strategies=("random",), seeds=(0,), alpha=1e-3,
                             reference_images=200)
    assert (result.rows["latent_r2"] < 0.9).all()
    with pytest.raises(ConfigError, match="at least two models"):
        compare_anchors([a], train, test, sizes=[4])
    with pytest.raises(ConfigError, match="between 1 and the 300 training images"):
        compare_anchors([a, b], train, test, sizes=[301])
    with pytest.raises(ConfigError, match="anchor model 'C' is not among"):
        compare_anchors([a, b], train, test, sizes=[4], anchor_model="C")


def test_compare_report_files(tmp_path):
    a, b = related_models()
    result = compare_anchors([a, b], toy_split(200, 1), toy_split(40, 2), sizes=[4], seeds=(0,),
                             reference_images=100, gain_images=50)
    out = write_compare_report(result, tmp_path / "anchors")
    assert {p.name for p in out.iterdir()} == {"results.csv", "summary.csv", "reference.csv", "summary.json",
                                                "anchors.png", "index.html", ".latentmap-output.json"}
    assert "vs_random" in (out / "summary.csv").read_text()


# --------------------------------------------------------------------------- CLI

def test_cli_compare(tiny_vae_checkpoint, tmp_path):
    images = load_dataset("fashion-mnist", "test").batch(np.arange(300)).numpy()
    np.save(tmp_path / "f.npy", images)
    first, second = tmp_path / "m1", tmp_path / "m2"
    shutil.copytree(tiny_vae_checkpoint, first)
    shutil.copytree(tiny_vae_checkpoint, second)
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "name": "tiny-vae-copy"}))
    out = tmp_path / "reports" / "anchors"
    args = ["support-set", "compare", "--models", first, second, "--dataset", f"npy:{tmp_path / 'f.npy'}",
            "--sizes", "8,16", "--seeds", 2, "--images", 30, "--gain-images", 50, "--reference-images", 100,
            "--device", "cpu", "--no-progress", "--out", out]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "vs random" in result.output and (out / "index.html").is_file()
    assert result.output.count(" sectors ") == 2

    bad = CliRunner().invoke(main, [str(a) for a in args[:4]] + ["--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0
    assert "at least two models" in bad.output and not (tmp_path / "bad").exists()


def test_errors_are_value_errors():
    assert issubclass(SupportSetError, LatentmapError) and issubclass(SupportSetError, ValueError)


def test_compare_and_atlas_report_the_same_latent_r2_for_the_same_map(tmp_path):
    """One R²: the anchor comparison's per-pair latent R² is the relocation atlas's, on the same map and images."""
    from tests.evaluation.test_relocation import affine_model, make_images

    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap.maps.linear import LinearMap
    from latentmap.evaluation.anchors import _Encoded, _relocate

    a, b = affine_model("r2-a", 6, seed=1), affine_model("r2-b", 5, seed=2)
    anchors, test = make_images(30, seed=3, model=a, noise=0.05), make_images(60, seed=4, model=a, noise=0.05)
    encoded = _Encoded(test, {m.name: m.encode_all(test) for m in (a, b)})
    za, zb = a.encode_all(anchors), b.encode_all(anchors)
    _mse, compare_r2 = _relocate(a, b, za, zb, encoded, 1e-3, False, 16)
    linear_map = LinearMap(bias=False, alpha=1e-3).fit(za.double(), zb.double())
    atlas_r2 = evaluate_relocation(a, b, linear_map, test, batch_size=16, lpips="off").latent_r2
    assert compare_r2 == pytest.approx(atlas_r2, rel=1e-6)
    assert atlas_r2 < 0.99  # unrelated spaces: a value that could differ, not a trivial 1


def test_compare_maps_every_ordered_pair_of_three_models():
    a, b = related_models()
    c = LinearModel("C", a.enc.detach() * 2, a.dec.detach() / 2)
    result = compare_anchors([a, b, c], toy_split(120, 1), toy_split(20, 2), sizes=[8], strategies=("random",),
                             seeds=(0,), alpha=1e-6, reference_images=50)
    pairs = [("A", "B"), ("A", "C"), ("B", "A"), ("B", "C"), ("C", "A"), ("C", "B")]
    assert list(zip(result.rows["source"], result.rows["target"])) == pairs
    assert list(zip(result.reference["source"], result.reference["target"])) == pairs


def test_compare_keeps_the_notes_of_every_run_not_only_the_last():
    """The size-4 run warns (4 pairs for 4 parameters); the size-64 run after it does not."""
    a, b = related_models()
    result = compare_anchors([a, b], toy_split(300, 1), toy_split(20, 2), sizes=[4, 64], strategies=("random",),
                             seeds=(0,), alpha=0.0, reference_images=50)
    assert result.notes == ["random size 4 seed 0: the map is fitted on 4 pairs for 4 parameters per target "
                            "dimension: it can reproduce its fitting pairs whatever it is worth, so judge it on "
                            "held-out images (leave-one-out R², or map eval)"]


def test_compare_errors_word_for_word():
    from latentmap.errors import ShapeMismatchError

    a, b = related_models()
    train, test = toy_split(30, 1), toy_split(10, 2)
    wide = TensorImageDataset("wide", torch.rand(10, 1, 5, 5, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ShapeMismatchError) as caught:
        compare_anchors([a, b], wide, test, sizes=[4])
    assert str(caught.value) == "model 'A' expects images of shape (1, 4, 4), dataset 'wide' has (1, 5, 5)"
    with pytest.raises(ConfigError) as caught:
        compare_anchors([a, b], train, test, sizes=[4], seeds=())
    assert str(caught.value) == "compare needs at least one seed"


def test_compare_shows_its_runs_only_when_asked():
    a, b = related_models()
    train, test = toy_split(300, 1), toy_split(40, 2)
    options = {"sizes": [6], "strategies": ["random"], "seeds": (0, 1), "gain_images": 100, "reference_images": 50}
    with recorded_bars() as bars:
        compare_anchors([a, b], train, test, progress=True, **options)
        assert Bar("anchor strategies", "run", 2) in bars and "encode A" in labels(bars)
        shown = len(bars)
        compare_anchors([a, b], train, test, **options)
    assert len(bars) == shown


def test_compare_passes_the_models_at_most_batch_size_images_at_a_time():
    a, b = related_models()
    passes = []
    for m in (a, b):
        for name in ("_encode", "_decode"):
            inner = getattr(m, name)
            setattr(m, name, lambda t, inner=inner: passes.append(len(t)) or inner(t))
    compare_anchors([a, b], toy_split(300, 1), toy_split(40, 2), sizes=[6], strategies=["random"], seeds=(0,),
                    gain_images=100, reference_images=50, batch_size=7)
    assert max(passes) == 7  # the batch size bounds every pass (the test and reference sets are larger)
