"""Relocation: synthetic models related by a known affine map, relocation types, atlas, SSIM, shipped pair."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from latentmap import LinearMap, load_dataset, load_model
from latentmap.errors import ShapeMismatchError, UnderdeterminedError
from latentmap.evaluation.metrics import per_image_ssim
from latentmap.models.base import LatentModel
from latentmap.models.registry import register_adapter
from latentmap.evaluation.atlas import build_atlas
from latentmap.evaluation.relocation import evaluate_relocation, lpips_function, relocation_rows, relocation_type
from latentmap.maps.fitting import FitSource, fit_map
from latentmap.report.atlas import save_atlas

from tests.conftest import CHECKPOINTS
from tests.helpers.progress import labels, recorded_bars


def on_images(images) -> FitSource:
    return FitSource("images", len(images), name="test images", data=images)


SHAPE = (1, 8, 8)


class _Affine(nn.Module):
    def __init__(self, n_pixels: int, latent_dim: int):
        super().__init__()
        self.register_buffer("dec_w", torch.zeros(n_pixels, latent_dim, dtype=torch.float64))
        self.register_buffer("dec_b", torch.zeros(n_pixels, dtype=torch.float64))
        self.register_buffer("enc_w", torch.zeros(latent_dim, n_pixels, dtype=torch.float64))
        self.register_buffer("enc_b", torch.zeros(latent_dim, dtype=torch.float64))


@register_adapter("test-affine")
class AffineModel(LatentModel):
    """decode(z) = clamp(W z + c), encode(x) = E x + e: a model whose latent geometry is known exactly."""

    def __init__(self, name, image_shape, latent_dim, *, tag="a", metadata=None):
        super().__init__(name, image_shape, latent_dim, metadata=metadata)
        self.tag = tag
        self.lin = _Affine(int(np.prod(self.image_shape)), self.latent_dim)

    def modules(self):
        return {"lin": self.lin}

    def architecture(self):
        return {"tag": self.tag}

    @classmethod
    def from_architecture(cls, name, image_shape, latent_dim, architecture, metadata=None):
        return cls(name, image_shape, latent_dim, metadata=metadata, **architecture)

    def _encode(self, x):
        z = x.flatten(1).double() @ self.lin.enc_w.T + self.lin.enc_b
        return z.float()

    def _decode(self, z):
        x = z.double() @ self.lin.dec_w.T + self.lin.dec_b
        return x.clamp(0, 1).float().reshape(len(z), *self.image_shape)


def affine_model(name, latent_dim=6, seed=0, tag="a", shape=SHAPE, metadata=None) -> AffineModel:
    """Orthogonal decoder columns (scale 0.05) around grey 0.5; the encoder is its pseudo-inverse."""
    rng = np.random.default_rng(seed)
    n_pix = int(np.prod(shape))
    q, _ = np.linalg.qr(rng.normal(size=(n_pix, latent_dim)))
    m = AffineModel(name, shape, latent_dim, tag=tag, metadata=metadata)
    w = torch.from_numpy(0.05 * q)
    m.lin.dec_w.copy_(w)
    m.lin.dec_b.fill_(0.5)
    m.lin.enc_w.copy_(torch.linalg.pinv(w))
    m.lin.enc_b.copy_(-m.lin.enc_w @ m.lin.dec_b)
    return m


def related_model(base: AffineModel, name, t_mat: np.ndarray, t_vec: np.ndarray, tag=None, metadata=None):
    """A model whose latents are T z_base + t for the same images: z_B = T z_A + t."""
    T, t = torch.from_numpy(t_mat), torch.from_numpy(t_vec)
    m = AffineModel(name, base.image_shape, base.latent_dim, tag=tag or base.tag, metadata=metadata)
    t_inv = torch.linalg.inv(T)
    m.lin.dec_w.copy_(base.lin.dec_w @ t_inv)
    m.lin.dec_b.copy_(base.lin.dec_b - base.lin.dec_w @ t_inv @ t)
    m.lin.enc_w.copy_(T @ base.lin.enc_w)
    m.lin.enc_b.copy_(T @ base.lin.enc_b + t)
    return m


def known_pair(d=6, seed=0):
    rng = np.random.default_rng(seed + 100)
    T = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    t = rng.normal(size=d)
    a = affine_model("syn-a", d, seed)
    return a, related_model(a, "syn-b", T, t), T, t


def make_images(n=64, seed=0, latent_scale=1.0, noise=0.02, model=None):
    """Images near the decoder's range (so nothing is clamped) plus off-range noise."""
    rng = np.random.default_rng(seed)
    model = model or affine_model("syn-a")
    z = torch.from_numpy(latent_scale * rng.normal(size=(n, model.latent_dim))).float()
    x = model.decode(z) + torch.from_numpy(noise * rng.normal(size=(n, *model.image_shape))).float()
    return x.clamp(0, 1)


def test_fit_from_d_plus_1_images_recovers_the_known_map():
    a, b, T, t = known_pair()
    images = make_images(a.latent_dim + 1, seed=1, model=a)
    m = fit_map(a, b, on_images(images), LinearMap(bias=True))
    # z_B = T z_A + t  <=>  rows: z_B = z_A @ T^T + t
    assert np.linalg.norm(m.coef_ - T) / np.linalg.norm(T) < 1e-6
    assert np.linalg.norm(m.intercept_ - t) / np.linalg.norm(t) < 1e-6
    with pytest.raises(UnderdeterminedError, match="at least 7 image pairs, got 6"):
        fit_map(a, b, on_images(images[:6]), LinearMap(bias=True))


def test_bias_free_fit_from_d_images_recovers_a_linear_map():
    a, _, T, _ = known_pair()
    b = related_model(a, "syn-b0", T, np.zeros(6))
    m = fit_map(a, b, on_images(make_images(6, seed=2, model=a)), LinearMap(bias=False))
    assert np.linalg.norm(m.coef_ - T) / np.linalg.norm(T) < 1e-6


def test_relocation_of_known_map_equals_targets_own_reconstruction():
    a, b, _, _ = known_pair()
    m = fit_map(a, b, on_images(make_images(7, seed=1, model=a)), LinearMap())
    data = make_images(100, seed=3, model=a)
    r = evaluate_relocation(a, b, m, data, batch_size=17)
    assert r.n_images == 100 and r.type == 1
    assert r.target_mse > 1e-4  # the noise is off the decoders' range
    assert r.relocated_mse == pytest.approx(r.target_mse, rel=1e-5)
    assert r.ratio == pytest.approx(1.0, abs=1e-5)
    assert r.latent_r2 == pytest.approx(1.0, abs=1e-6)
    assert r.relocated_ssim == pytest.approx(r.target_ssim, rel=1e-5)
    assert r.cycle_mse == pytest.approx(r.source_mse, rel=1e-5)
    assert r.cycle_via == "pseudo-inverse of the map"


def test_batched_sums_equal_a_direct_computation():
    a = affine_model("syn-a", 6, seed=0)
    c = affine_model("syn-c", 6, seed=5, tag="c")  # unrelated: the map is far from exact
    data = make_images(90, seed=4, model=a, noise=0.05)
    m = fit_map(a, c, on_images(make_images(40, seed=7, model=a)), LinearMap(alpha=0.5))
    r = evaluate_relocation(a, c, m, data, batch_size=13)
    z_a, z_c = a.encode(data), c.encode(data)
    mapped = c.decode(m.transform(z_a))
    relocated = float(((mapped.double() - data.double()) ** 2).mean())
    own = float(((c.reconstruct(data).double() - data.double()) ** 2).mean())
    assert r.relocated_mse == pytest.approx(relocated, rel=1e-6) and r.target_mse == pytest.approx(own, rel=1e-6)
    assert r.ratio == pytest.approx(relocated / own, rel=1e-6)
    assert r.relocated_ssim == pytest.approx(float(per_image_ssim(mapped, data).double().mean()), rel=1e-6)
    assert r.latent_mse == pytest.approx(float((m.transform(z_a).double() - z_c.double()).pow(2).mean()), rel=1e-6)
    from sklearn.metrics import r2_score

    assert r.latent_r2 == pytest.approx(r2_score(z_c.double().numpy(), m.transform(z_a).double().numpy()), rel=1e-6)
    assert r.ratio > 1.02 and r.type == 1  # the same networks, trained (here: drawn) differently
    cycle = a.decode(m.inverse().transform(c.encode(mapped)))
    assert r.cycle_mse == pytest.approx(float(((cycle.double() - data.double()) ** 2).mean()), rel=1e-6)


def test_map_with_wrong_latent_sizes_is_rejected():
    a, b, _, _ = known_pair()
    m = LinearMap().fit(np.random.default_rng(0).normal(size=(20, 5)), np.random.default_rng(1).normal(size=(20, 6)))
    with pytest.raises(ShapeMismatchError, match="map expects source latents of size 5, model 'syn-a' gives 6"):
        evaluate_relocation(a, b, m, make_images(4))


def test_fit_from_generator_samples_recovers_the_map():
    a, b, T, t = known_pair()
    m = fit_map(a, b, FitSource("samples", 50, seed=0), LinearMap(), batch_size=16)
    assert np.linalg.norm(m.coef_ - T) / np.linalg.norm(T) < 1e-5  # prior samples may touch the clamp rarely


class _Declared(AffineModel):
    """A stand-in adapter that declares its kind, objective and family like the real ones, with networks built
    from ``arch`` (one layer per size it names), as a real adapter's constructor arguments build them."""

    def __init__(self, kind, objective, arch, latent_dim, family):
        super().__init__(kind, SHAPE, latent_dim)
        self.kind, self.OBJECTIVE, self.FAMILY, self._arch = kind, objective, family, arch
        sizes = [n for v in arch.values() for n in (v if isinstance(v, list) else [v])]
        self.net = nn.Sequential(*[nn.Linear(latent_dim, n) for n in sizes])

    def modules(self):
        return {"lin": self.lin, "net": self.net}

    def architecture(self):
        return self._arch


def _model(kind, objective, arch, latent_dim=8, family=None):
    return _Declared(kind, objective, arch, latent_dim, family)


def test_relocation_types_from_declarations():
    vae_a, vae_b = _model("vae", "vae", {"channels": [32, 64]}), _model("vae", "vae", {"channels": [32, 64]})
    wide = _model("vae", "vae", {"channels": [64, 128]})
    svae = _model("split-vae", "vae", {"channels": [32, 64]})
    gan, style = _model("gan", "adversarial", {"ngf": 64}), _model("stylegan-w", "adversarial", {"w": 512})
    assert relocation_type(vae_a, vae_b) == 1
    assert relocation_type(vae_a, wide) == 2 and relocation_type(vae_a, svae) == 2
    assert relocation_type(vae_a, _model("vae", "vae", {"channels": [32, 64]}, latent_dim=16)) == 2
    assert relocation_type(vae_a, gan) == 3 and relocation_type(style, svae) == 3
    assert relocation_type(gan, style) == 2  # both adversarial, different architecture
    # an external StyleGAN and the StyleGAN-W adapter: one adversarial family, not different objectives
    ext = _model("external-stylegan", "adversarial", {"w": 512}, family="stylegan")
    assert relocation_type(ext, _model("stylegan-w", "adversarial", {"w": 256}, family="stylegan")) == 2


def test_stylegan_like_generators_with_other_synthesis_networks_are_not_type_1():
    """Same family, latent size, image shape and inverter layout: only the generators' own networks differ."""
    from tests.helpers.external import TinyStyleGenerator
    from latentmap.evaluation.relocation import relocation_kind
    from latentmap.models.external_stylegan import ExternalStyleGAN

    torch.manual_seed(0)
    sg2, sg2_b = ExternalStyleGAN("sg2", TinyStyleGenerator()), ExternalStyleGAN("sg2-b", TinyStyleGenerator())
    sg3 = ExternalStyleGAN("sg3", TinyStyleGenerator(hidden=16))
    assert sg2.latent_dim == sg3.latent_dim and sg2.architecture() == sg3.architecture()
    assert relocation_kind(sg2, sg2_b) == (1, "same architecture and objective, different training")
    assert relocation_kind(sg2, sg3) == (2, "same family, different architecture")


def test_shipped_adapters_declare_their_objectives():
    from latentmap.models import ConvVAE, GANModel, SplitVAE, StyleGANW
    from latentmap.models.external_stylegan import ExternalStyleGAN

    assert {cls.OBJECTIVE for cls in (GANModel, StyleGANW, ExternalStyleGAN)} == {"adversarial"}
    assert ConvVAE.FAMILY is None and SplitVAE.vae_like and ExternalStyleGAN.FAMILY == StyleGANW.FAMILY


def test_atlas_every_ordered_pair(tmp_path):
    a, b, _, _ = known_pair()
    c = related_model(a, "syn-gan", np.eye(6) * 2, np.ones(6), tag="g", metadata={"objective": "adversarial"})
    data = make_images(40, seed=3, model=a)
    atlas = build_atlas([a, b, c], data, on_images(make_images(30, seed=8, model=a)), LinearMap, batch_size=16)
    save_atlas(atlas, tmp_path / "atlas", [a, b, c], data, grid_count=4)
    assert len(atlas.results) == 6
    assert atlas.compute == {"threads": torch.get_num_threads(), "batch_size": 16}  # how its passes ran
    types = {(r.source, r.target): r.type for r in atlas.results}
    assert types[("syn-a", "syn-b")] == 1 and types[("syn-b", "syn-gan")] == 3
    for r in atlas.results:  # all three share one latent geometry: every relocation is exact
        assert r.ratio == pytest.approx(1.0, abs=1e-4)
        assert r.cycle_via == "fitted reverse map"
    out = tmp_path / "atlas"
    for name in ("index.html", "atlas.csv", "atlas.json", "ratio_matrix.csv", "ratio_matrix.png",
                 "grids/syn-a__syn-gan.png", "maps/syn-gan__syn-a/map.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "atlas.json").read_text())
    assert len(saved["results"]) == 6 and saved["fit_source"]["count"] == 30
    loaded = LinearMap.load(out / "maps" / "syn-a__syn-b")
    assert loaded.info_["source"]["name"] == "syn-a"
    html = (out / "index.html").read_text()
    assert "Type 1" in html and "Type 3" in html and "LPIPS" in html
    # models built in memory: recorded as such, with their fingerprints, shown short on the page
    from latentmap.io.checkpoint import model_fingerprint

    assert [(m["origin"], m["fingerprint"]) for m in saved["models"]] == [("memory", model_fingerprint(m))
                                                                        for m in (a, b, c)]
    assert loaded.info_["source"]["fingerprint"] == model_fingerprint(a)
    assert all(model_fingerprint(m)[:12] in html for m in (a, b, c))


def test_atlas_underdetermined_pair_writes_nothing(tmp_path):
    a, b, _, _ = known_pair()
    with pytest.raises(UnderdeterminedError, match="syn-a -> syn-b"):
        build_atlas([a, b], make_images(5), on_images(make_images(4)), LinearMap)
    assert not (tmp_path / "atlas").exists() and not list(tmp_path.iterdir())


def test_grid_rows_order():
    a, b, _, _ = known_pair()
    images = make_images(5, seed=2, model=a)
    m = fit_map(a, b, on_images(make_images(7, seed=1, model=a)), LinearMap())
    rows = relocation_rows(a, b, m, images)
    assert [tuple(r.shape) for r in rows] == [(5, *SHAPE)] * 4
    torch.testing.assert_close(rows[0], images)
    torch.testing.assert_close(rows[2], rows[3], atol=1e-5, rtol=0)  # B after mapping == B's own


def test_lpips_is_never_faked():
    fn, note = lpips_function("cpu")
    if fn is None:
        assert note.startswith("LPIPS unavailable")
    else:
        x = torch.rand(2, 1, 28, 28)
        assert torch.allclose(fn(x, x), torch.zeros(2), atol=1e-6)


# --------------------------------------------------------------------------- SSIM

def test_ssim_constant_images_closed_form():
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.7)
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.7 + c1) / (0.2 ** 2 + 0.7 ** 2 + c1)  # contrast/structure term is 1
    assert float(per_image_ssim(a, b)) == pytest.approx(expected, rel=1e-5)
    x = torch.rand(3, 3, 20, 20)
    torch.testing.assert_close(per_image_ssim(x, x), torch.ones(3))


def test_ssim_matches_an_independent_scipy_implementation():
    from scipy.signal import correlate2d

    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 28, 28))
    y = np.clip(x + 0.15 * rng.normal(size=x.shape), 0, 1)
    coords = np.arange(11) - 5
    g = np.exp(-coords ** 2 / (2 * 1.5 ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = []
    for xi, yi in zip(x[:, 0], y[:, 0]):
        f = lambda t: correlate2d(t, win, mode="valid")  # noqa: E731
        mx, my = f(xi), f(yi)
        vx, vy, cxy = f(xi * xi) - mx ** 2, f(yi * yi) - my ** 2, f(xi * yi) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        expected.append(s.mean())
    got = per_image_ssim(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


# --------------------------------------------------------------------------- shipped checkpoints

def _shipped(name):
    path = CHECKPOINTS / name
    if not (path / "config.json").is_file():
        pytest.skip(f"shipped checkpoint '{path}' is not there (it is produced by `make checkpoints`)")
    return load_model(path, device="cpu")


@pytest.fixture(scope="module")
def shipped_type1():
    """Fit fmnist-vae-a -> fmnist-vae-b on 3,000 training images, evaluate on 1,000 test images."""
    a, b = _shipped("fmnist-vae-a"), _shipped("fmnist-vae-b")
    train = load_dataset("fashion-mnist", "train")
    m = fit_map(a, b, on_images(train.random_subset(3000, 0)), LinearMap(), batch_size=500)
    test = load_dataset("fashion-mnist", "test").subset(np.arange(0, 10000, 10))
    return a, b, m, test, evaluate_relocation(a, b, m, test, batch_size=500, lpips="off")


def test_shipped_vae_pair_relocates_far_better_than_unmapped(shipped_type1):
    from sklearn.metrics import r2_score

    a, b, m, test, r = shipped_type1
    assert r.type == 1 and r.n_images == 1000
    # every number recomputed by hand on the same 1,000 test images, in numpy float64
    x = test.all_images()
    xn = _np(x)
    z_a, z_b = _np(a.encode(x)), _np(b.encode(x))
    mapped = z_a @ m.coef_.T + m.intercept_
    relocated = float(((_np(b.decode(torch.from_numpy(mapped))) - xn) ** 2).mean())
    own = float(((_np(b.decode(b.encode(x))) - xn) ** 2).mean())
    assert r.relocated_mse == pytest.approx(relocated, rel=1e-4)
    assert r.target_mse == pytest.approx(own, rel=1e-4)
    assert r.ratio == pytest.approx(relocated / own, rel=1e-4)
    assert r.latent_r2 == pytest.approx(r2_score(z_b, mapped), rel=1e-4)
    # the Type 1 claim of docs/guide/relocation-results.md (ratio 1.50, latent R² 0.78 with a 60,000-image fit),
    # on the recomputed numbers
    assert 1.0 < relocated / own < 1.7 and r2_score(z_b, mapped) > 0.7
    # without the map, B decoding A's latents directly is much worse
    unmapped = float(((_np(b.decode(torch.from_numpy(z_a).float())) - xn) ** 2).mean())
    assert relocated < 0.25 * unmapped


@pytest.mark.xfail(reason="relocated MSE within 15% of B's own: the shipped Type 1 pair reaches 1.5x. One map per "
                          "garment class reaches 1.16x (experiments/per_label_maps.py), and in every training setting "
                          "tried the ratio passes 1.15 after 2-3 epochs (experiments/relocation_vs_training.py)",
                   strict=True)
def test_shipped_vae_pair_type1_relocation_within_15_percent(shipped_type1):
    r = shipped_type1[-1]
    assert r.relocated_mse <= 1.15 * r.target_mse, (r.relocated_mse, r.target_mse)


# --------------------------------------------------------------------------- demo section

def test_demo_section_builds_the_atlas(tiny_vae_checkpoint, tmp_path, monkeypatch):
    from latentmap.demo import relocation as relocation_demo
    from latentmap.demo.story import DemoContext
    from latentmap.support.build import SupportSet

    monkeypatch.setattr(relocation_demo, "DEMO_FIT_IMAGES", 300)
    monkeypatch.setattr(relocation_demo, "DEMO_ATLAS_TEST_IMAGES", 25)
    vae = load_model(tiny_vae_checkpoint, device="cpu")
    other = affine_model("syn-28", 8, seed=1, shape=(1, 28, 28))
    test = load_dataset("fashion-mnist", "test").subset(np.arange(40))
    ctx = DemoContext(tmp_path / "checkpoints", tmp_path / "report", [vae, other], test, None, "cpu")
    # an earlier section's support set in the report: the section adds a bias-free support-set atlas
    SupportSet("demo-support", test.batch(np.arange(8)), {}).save(ctx.out / "support_set")
    section = relocation_demo.relocation_atlas_section(ctx)
    html = section.render()
    assert "atlas/ratio_matrix.png" in html and "atlas_support_set/ratio_matrix.png" in html
    assert (ctx.out / "atlas" / "grids" / f"{vae.name}__syn-28.png").is_file()
    import pandas as pd

    by_label = pd.read_csv(ctx.out / "atlas" / "atlas_by_label.csv")  # Fashion-MNIST test images are labelled
    assert set(by_label["source"]) == {vae.name, "syn-28"} and by_label.groupby("source")["n_images"].sum().eq(25).all()
    pairs = ctx.summary["relocation_atlas"]["pairs"]
    assert len(pairs) == 2 and {p["type"] for p in pairs} == {3}
    assert ctx.summary["relocation_atlas_support_set"]["map"]["bias"] is False
    assert ctx.summary["relocation_atlas_support_set"]["map"]["alpha"] == "auto"
    # the atlas is judged on an evenly spaced subset of the test split, not all of it
    import pandas as pd

    assert "evaluated on 25 test images" in html
    assert set(pd.read_csv(ctx.out / "atlas" / "atlas.csv")["n_images"]) == {25}


def test_labelled_images_get_a_breakdown_by_label():
    from latentmap.data.datasets import TensorImageDataset

    a, b, _, _ = known_pair()
    images = make_images(45, seed=4, model=a)
    labels = torch.tensor([k % 4 for k in range(44)] + [7])  # label 7 alone in the last, uneven batch
    ds = TensorImageDataset("labelled", (images * 255).round().to(torch.uint8), labels)
    ds.label_names = ("zero", "one", "two", "three")
    m = fit_map(a, b, on_images(ds), LinearMap(bias=True))
    # a deliberately worse map makes per-label ratios differ from 1
    worse = LinearMap().fit(a.encode(ds.all_images()).double(), b.encode(ds.all_images()).double() * 0.9)
    for linear_map in (m, worse):
        r = evaluate_relocation(a, b, linear_map, ds, batch_size=16, lpips="off")
        rows = {row["label"]: row for row in r.by_label}
        assert sorted(rows) == [0, 1, 2, 3, 7] and rows[7]["n_images"] == 1 and rows[7]["name"] == "7"
        assert rows[1]["name"] == "one" and sum(row["n_images"] for row in r.by_label) == 45
        x = ds.all_images()
        per_image = ((b.decode(linear_map.transform(a.encode(x))) - x) ** 2).flatten(1).mean(1)
        for label, row in rows.items():
            assert row["relocated_mse"] == pytest.approx(float(per_image[labels == label].mean()), rel=1e-5)
        total = sum(row["n_images"] * row["relocated_mse"] for row in r.by_label) / 45
        assert total == pytest.approx(r.relocated_mse, rel=1e-9)
    assert evaluate_relocation(a, b, m, images, batch_size=16, lpips="off").by_label == []


def test_demo_shows_type1_ratios_by_label():
    import pandas as pd

    from latentmap.demo.relocation import _by_label_table
    from latentmap.report.html import Section

    rows = [{"source": s, "target": t, "type": k, "label": lab, "name": name, "ratio": r}
            for s, t, k, r0 in (("a", "b", 1, 1.2), ("b", "a", 1, 1.3), ("a", "g", 3, 4.0))
            for lab, name, r in ((0, "Trouser", r0), (1, "Bag", r0 + 0.5))]

    class Atlas:
        def by_label_frame(self):
            return pd.DataFrame(rows)

    section = Section("atlas")
    _by_label_table(section, Atlas())
    html = section.render()
    assert "a -&gt; b" in html or "a -> b" in html
    assert "a -> g" not in html and "a -&gt; g" not in html and "<td>1.70</td>" in html and "Trouser" in html
    empty = Section("atlas")
    _by_label_table(empty, type("NoLabels", (), {"by_label_frame": lambda self: pd.DataFrame()})())
    assert "ratio by label" not in empty.render()


# --------------------------------------------------------------------------- ratios against independent numpy

def _unrelated_pair_and_map(d_target=6):
    """Two affine models with unrelated latent geometry and a ridge map between them: ratios far from 1."""
    a = affine_model("syn-a", 6, seed=0)
    c = affine_model("syn-c", d_target, seed=5, tag="c")
    m = fit_map(a, c, on_images(make_images(40, seed=7, model=a)), LinearMap(alpha=0.5))
    return a, c, m


def _np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def test_by_label_ratio_is_relocated_over_target_per_label():
    from latentmap.data.datasets import TensorImageDataset

    a, c, m = _unrelated_pair_and_map()
    images = make_images(66, seed=11, model=a, noise=0.05)
    labels = np.arange(66) % 3
    ds = TensorImageDataset("labelled", (images * 255).round().to(torch.uint8), torch.from_numpy(labels))
    r = evaluate_relocation(a, c, m, ds, batch_size=16, lpips="off")
    x = ds.all_images()
    # by hand, in numpy float64: encode with A, map with coef_/intercept_, decode with B; per-pixel means
    z_a = _np(a.encode(x))
    mapped = _np(c.decode(torch.from_numpy(z_a @ m.coef_.T + m.intercept_)))
    own = _np(c.decode(c.encode(x)))
    xn = _np(x)
    rows = {row["label"]: row for row in r.by_label}
    assert sorted(rows) == [0, 1, 2]
    for label in (0, 1, 2):
        sel = labels == label
        target = float(((own[sel] - xn[sel]) ** 2).mean())
        relocated = float(((mapped[sel] - xn[sel]) ** 2).mean())
        assert abs(relocated / target - 1) > 0.05  # a ratio upside down would differ
        assert rows[label]["n_images"] == 22
        assert rows[label]["target_mse"] == pytest.approx(target, rel=1e-5)
        assert rows[label]["relocated_mse"] == pytest.approx(relocated, rel=1e-5)
        assert rows[label]["ratio"] == pytest.approx(relocated / target, rel=1e-5)
    total_ratio = ((mapped - xn) ** 2).mean() / ((own - xn) ** 2).mean()
    assert r.ratio == pytest.approx(total_ratio, rel=1e-5)


@pytest.mark.parametrize("fitted_reverse", [False, True])
def test_cycle_ratio_is_cycle_over_source_computed_by_hand(fitted_reverse):
    a, c, m = _unrelated_pair_and_map(d_target=3)  # 6 -> 3: the way back loses what B cannot hold
    data = make_images(50, seed=12, model=a, noise=0.02)
    fit_images = make_images(40, seed=8, model=a)
    reverse = fit_map(c, a, on_images(fit_images), LinearMap(alpha=0.5)) if fitted_reverse else None
    r = evaluate_relocation(a, c, m, data, reverse_map=reverse, batch_size=13, lpips="off")
    xn = _np(data)
    z_c = _np(a.encode(data)) @ m.coef_.T + m.intercept_  # A -> B
    x_b = c.decode(torch.from_numpy(z_c))
    z_c_again = _np(c.encode(x_b))
    if fitted_reverse:  # B -> A with the fitted reverse map's own coefficients
        z_back = z_c_again @ reverse.coef_.T + reverse.intercept_
    else:  # B -> A by the least-squares inverse in numpy: z_a = (z_b - b) @ pinv(coef_)^T
        z_back = (z_c_again - m.intercept_) @ np.linalg.pinv(m.coef_).T
    cycle = float(((_np(a.decode(torch.from_numpy(z_back))) - xn) ** 2).mean())
    source = float(((_np(a.decode(a.encode(data))) - xn) ** 2).mean())
    assert abs(cycle / source - 1) > 0.1  # a ratio upside down would differ
    assert r.cycle_mse == pytest.approx(cycle, rel=1e-5)
    assert r.source_mse == pytest.approx(source, rel=1e-5)
    assert r.cycle_ratio == pytest.approx(cycle / source, rel=1e-5)
    assert r.cycle_via == ("fitted reverse map" if fitted_reverse else "pseudo-inverse of the map")


def test_relocation_through_the_torch_distributed_path_in_a_world_of_one_is_the_single_process_result(monkeypatch):
    """With torch.distributed reported active for one rank (collectives that return their input), the sums packed
    for all_reduce (per-label counts included) and the per-image errors come back as one process has them."""
    from latentmap import distributed
    from latentmap.data.datasets import TensorImageDataset

    a, b, _, _ = known_pair()
    images = make_images(20, seed=4, model=a)
    labelled = TensorImageDataset("labelled", (images * 255).round().to(torch.uint8),
                                  torch.tensor([k % 3 for k in range(20)]))
    m = fit_map(a, b, on_images(images), LinearMap(bias=True))
    plain = [evaluate_relocation(a, b, m, d, batch_size=8, lpips="off") for d in (labelled, images)]
    for name, fake in (("active", lambda: True), ("rank", lambda: 0), ("world_size", lambda: 1),
                       ("all_reduce_sum", lambda t: t), ("all_reduce_named", dict), ("gather_rows", lambda r: r)):
        monkeypatch.setattr(distributed, name, fake)
    ranked = [evaluate_relocation(a, b, m, d, batch_size=8, lpips="off") for d in (labelled, images)]
    monkeypatch.undo()
    assert len(plain[0].by_label) == 3 and plain[1].by_label == []
    for one, world in zip(plain, ranked):
        assert world.by_label == one.by_label and world.worst_images == one.worst_images
        for field in ("ratio", "relocated_mse", "target_mse", "latent_mse", "latent_r2", "cycle_mse"):
            assert getattr(world, field) == pytest.approx(getattr(one, field), rel=1e-12), field


def test_models_of_other_images_are_refused_with_a_transform_to_propose():
    from latentmap.maps.fitting import check_same_images

    a, _, _, _ = known_pair()
    other = related_model(a, "syn-wide", np.eye(6), np.zeros(6), tag="w")
    other.image_shape = (1, 8, 16)
    with pytest.raises(ShapeMismatchError, match=r"^models 'syn-a' and 'syn-wide' work on different images: "
                                                 r"\(1, 8, 8\) and \(1, 8, 16\); give an image transform: "
                                                 r"--image-transform "):
        check_same_images(a, other)
    check_same_images(a, a)


def test_the_atlas_says_why_a_transform_cannot_serve_a_model():
    from latentmap.evaluation.atlas import _models_for

    a, _, _, _ = known_pair()
    four = related_model(a, "syn-4ch", np.eye(6), np.zeros(6), tag="4")
    four.image_shape = (4, 8, 8)
    with pytest.warns(UserWarning, match="skipping model 'syn-4ch'"):
        usable, skipped, _ = _models_for([a, four], make_images(4, seed=1, model=a), "resize")
    assert [m.name for m in usable] == ["syn-a"]
    assert skipped == [{"name": "syn-4ch", "reason": "works on images (4, 8, 8), the test images are (1, 8, 8), and "
                        "the test images: image transform 'resize' turns images [1, 8, 8] into [1, 8, 8], not "
                        "[4, 8, 8]: add rgb (e.g. 'rgb,resize'), or use --image-transform auto"}]


def test_relocation_and_the_atlas_show_their_passes_only_when_asked():
    a, b, _, _ = known_pair()
    data, fit = make_images(20, seed=3, model=a), on_images(make_images(10, seed=1, model=a))
    m = fit_map(a, b, fit, LinearMap())
    with recorded_bars() as bars:
        evaluate_relocation(a, b, m, data, batch_size=8, lpips="off", cycle=False, progress=True)
        assert labels(bars) == ["syn-a -> syn-b"] and bars[0].total == 3
        build_atlas([a, b], data, fit, LinearMap, batch_size=8, lpips="off", cycle=False, progress=True)
        assert labels(bars)[1:] == ["fit", "atlas"]
        evaluate_relocation(a, b, m, data, batch_size=8, lpips="off", cycle=False)
        build_atlas([a, b], data, fit, LinearMap, batch_size=8, lpips="off", cycle=False)
    assert len(bars) == 3
