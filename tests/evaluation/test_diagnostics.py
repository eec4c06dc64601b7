"""Latent diagnostics: streaming statistics against numpy, the variance law, Δ_var, the CLI and the demo section."""

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from latentmap import load_dataset, load_model
from latentmap.cli.main import main
from latentmap.data.datasets import TensorImageDataset
from latentmap.evaluation.diagnostics import PRIOR_CHUNK, latent_diagnostics
from latentmap.report.diagnostics import save_diagnostics
from latentmap.report.tables import sig
from latentmap.errors import ConfigError, NonFiniteError
from latentmap.evaluation.metrics import latent_statistics, reconstruction_mse
from latentmap.models.wrapped import wrap

SHAPE = (1, 4, 4)


class _Encoder(nn.Module):
    """mu = E (x - 0.5) + offset; with ``sigma2`` also a constant posterior variance per variable (VAE-like)."""

    def __init__(self, enc: torch.Tensor, sigma2: torch.Tensor | None, offset: float = 0.0):
        super().__init__()
        self.register_buffer("enc", enc)
        self.sigma2, self.offset = sigma2, offset

    def forward(self, x):
        mu = (x.flatten(1).double() - 0.5) @ self.enc.T + self.offset
        if self.sigma2 is None:
            return mu.float()
        return mu.float(), self.sigma2.log().float().expand(len(x), -1)


class _Decoder(nn.Module):
    def __init__(self, dec: torch.Tensor, shape):
        super().__init__()
        self.register_buffer("dec", dec)
        self.shape = shape

    def forward(self, z):
        return (0.5 + z.double() @ self.dec.T).float().reshape(len(z), *self.shape)


def linear_model(d=6, seed=0, shape=SHAPE, sigma2=None, dead=(), name="lin", offset=0.0):
    """decode(z) = 0.5 + W z with orthogonal columns (scale 0.02); encode is its pseudo-inverse.

    Encoder rows listed in ``dead`` are zero: those variables are constant (collapsed).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(int(np.prod(shape)), d)))
    dec = torch.from_numpy(0.02 * q)
    enc = torch.linalg.pinv(dec)
    enc[list(dead)] = 0
    s2 = None if sigma2 is None else torch.as_tensor(sigma2, dtype=torch.float64)
    return wrap(_Encoder(enc, s2, offset), _Decoder(dec, shape), image_shape=shape, name=name)


def gaussian_images(model, n=300, seed=0, scales=(7.0, 5.5, 4.0, 1.6, 1.4, 0.2), shift=0.0, noise=0.01):
    """Images whose encodings are a rotated Gaussian with the given spreads, plus off-model pixel noise."""
    rng = np.random.default_rng(seed)
    d = model.latent_dim
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    z = (rng.normal(size=(n, d)) * np.asarray(scales)[:d]) @ rot.T + shift
    x = model.decode(torch.from_numpy(z).float())
    return (x + torch.from_numpy(noise * rng.normal(size=x.shape)).float()).clamp(0, 1)


def as_float64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# --------------------------------------------------------------------------- statistics against numpy

def test_moments_spectrum_and_radii_match_numpy():
    model = linear_model()
    x = gaussian_images(model, shift=2.0)  # a mean far from 0: the streaming variance must not cancel
    z = as_float64(model.encode(x))
    diag = latent_diagnostics(model, x, batch_size=37)  # uneven batches
    assert diag.n_images == len(x) and diag.latent_dim == 6 and not diag.vae_like
    np.testing.assert_allclose(diag.mean, z.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(diag.variance, z.var(0), rtol=1e-9)
    eig = np.linalg.eigvalsh(np.cov(z, rowvar=False, bias=True))[::-1]
    np.testing.assert_allclose(diag.eigenvalues, eig, rtol=1e-8, atol=1e-10)
    cum = np.cumsum(eig) / eig.sum()
    for q in (0.9, 0.99):
        assert diag.components_for(q) == int(np.argmax(cum >= q)) + 1
    # variances 49, 30, 16, 2.6, 2, 0.04: 2 components give 79%, 3 give 95%, 4 give 98%, 5 give 99.96%
    assert (diag.components_for(0.9), diag.components_for(0.99)) == (3, 5)
    np.testing.assert_allclose(diag.radii, np.linalg.norm(z, axis=1), rtol=1e-10)
    s = diag.summary()
    assert s["mean_radius"] == pytest.approx(np.linalg.norm(z, axis=1).mean(), rel=1e-10)
    assert s["inactive_variables"] is None and s["variance_law_mean"] is None


def test_variance_survives_a_large_mean():
    model = linear_model(offset=1e5)  # float32 encodings near 1e5 still spread by about 1 to 7
    z = as_float64(model.encode(gaussian_images(model)))
    diag = latent_diagnostics(model, gaussian_images(model), batch_size=64)
    np.testing.assert_allclose(diag.variance, z.var(0), rtol=1e-9)  # E[z²] - E[z]² would lose ~5 digits


def test_prior_radii_are_seeded_samples_of_the_same_count():
    model = linear_model(d=16)
    x = gaussian_images(model, n=PRIOR_CHUNK + 200, scales=np.ones(16), noise=0.0)
    a = latent_diagnostics(model, x, batch_size=500, seed=3)
    b = latent_diagnostics(model, x, batch_size=128, seed=3)  # independent of the batch size
    c = latent_diagnostics(model, x, batch_size=500, seed=4)
    gen = torch.Generator().manual_seed(3)
    samples = torch.cat([torch.randn(PRIOR_CHUNK, 16, generator=gen), torch.randn(200, 16, generator=gen)]).double()
    assert len(a.prior_radii) == len(x)
    np.testing.assert_allclose(a.prior_radii, samples.norm(dim=1).numpy())
    for i in range(16):  # the prior's axis histograms count the same samples on the encodings' grid
        np.testing.assert_array_equal(a.prior_axis_counts[i], np.histogram(samples[:, i].numpy(), a.axis_edges)[0])
    np.testing.assert_array_equal(a.prior_radii, b.prior_radii)
    assert not np.array_equal(a.prior_radii, c.prior_radii)
    # N(0, I_16) lives near the shell of radius sqrt(d - 1/2); so do these encodings (unit spreads)
    assert a.prior_radii.mean() == pytest.approx(np.sqrt(15.5), abs=0.1)
    assert a.radii.mean() == pytest.approx(np.sqrt(15.5), abs=0.15)


def test_axis_histograms_count_every_encoding():
    model = linear_model()
    calm = gaussian_images(model, n=64, seed=1, scales=np.full(6, 0.5))
    wild = gaussian_images(model, n=200, seed=2, scales=np.full(6, 5.0))
    x = torch.cat([calm, wild])  # the first batch fixes the range; the wild ones partly fall outside
    z = as_float64(model.encode(x))
    diag = latent_diagnostics(model, x, batch_size=64)
    edges = diag.axis_edges
    assert edges[-1] == -edges[0] == 4.0  # the minimum half-width: the first batch stays within ±2
    for i in range(6):
        inside = np.histogram(z[:, i], edges)[0]
        np.testing.assert_array_equal(diag.axis_counts[i], inside)
        assert diag.axis_outside[i] == np.sum(np.abs(z[:, i]) >= 4.0)
    assert diag.axis_outside.sum() > 0
    np.testing.assert_array_equal(diag.axis_counts.sum(1) + diag.axis_outside, np.full(6, len(x)))
    assert list(diag.top_axes(2)) == list(np.argsort(-z.var(0))[:2])
    # the record holds the same counts under its documented keys
    record = diag.to_dict()["axis_histograms"]
    np.testing.assert_array_equal(record["edges"], edges)
    for row in record["variables"]:
        i = row["variable"]
        assert row["counts"] == list(diag.axis_counts[i]) and row["outside"] == diag.axis_outside[i]


def test_variance_loss_and_mse_match_numpy():
    model = linear_model()
    x = gaussian_images(model, noise=0.05)
    x_hat = model.reconstruct(x)
    xs, xh = as_float64(x).reshape(len(x), -1), as_float64(x_hat).reshape(len(x), -1)
    diag = latent_diagnostics(model, x, batch_size=50)
    assert diag.mse == pytest.approx(np.mean((xs - xh) ** 2), rel=1e-6)
    expected = np.mean(np.var(xs, axis=0)) - np.mean(np.var(xh, axis=0))
    assert diag.variance_loss == pytest.approx(expected, rel=1e-8)
    assert diag.image_variance == pytest.approx(np.mean(np.var(xs, axis=0)), rel=1e-10)
    # an orthogonal projection loses exactly the residual's variance: Δ_var = MSE - |mean residual|² / pixels
    residual_mean = (xs - xh).mean(0)
    assert diag.variance_loss == pytest.approx(diag.mse - np.mean(residual_mean ** 2), rel=1e-5)
    assert 0 < diag.variance_loss <= diag.mse


# --------------------------------------------------------------------------- VAE-like models

def test_variance_law_and_inactive_variables_of_a_known_posterior():
    sigma2 = [0.1, 0.2, 1.0, 0.05, 0.3, 1.0]
    model = linear_model(sigma2=sigma2, dead=(2, 5))
    x = gaussian_images(model)
    mu = as_float64(model.encode_stats(x)[0])
    diag = latent_diagnostics(model, x, batch_size=64)
    assert diag.vae_like
    np.testing.assert_allclose(diag.var_mu, mu.var(0), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(diag.mean_sigma2, sigma2, rtol=1e-6)
    np.testing.assert_allclose(diag.variance_law, mu.var(0) + np.asarray(sigma2), rtol=1e-6)
    assert list(diag.inactive) == [2, 5]
    s = diag.summary()
    assert s["inactive_variables"] == 2
    assert s["variance_law_mean"] == pytest.approx(np.mean(mu.var(0) + np.asarray(sigma2)), rel=1e-6)
    # and latent_statistics, which the checkpoints record, says the same
    stats = latent_statistics(model, TensorImageDataset("syn", x), batch_size=64)
    np.testing.assert_allclose(diag.var_mu, stats["var_mu"], atol=1e-6)
    assert stats["inactive_variables"] == 2


def test_vae_checkpoint_agrees_with_latent_statistics(tiny_vae_checkpoint):
    vae = load_model(tiny_vae_checkpoint, device="cpu")
    test = load_dataset("fashion-mnist", "test").subset(np.arange(200))
    diag = latent_diagnostics(vae, test, batch_size=64)
    stats = latent_statistics(vae, test, batch_size=64)
    np.testing.assert_allclose(diag.var_mu, stats["var_mu"], atol=1e-6)  # latent_statistics rounds to 6 places
    np.testing.assert_allclose(diag.mean_sigma2, stats["mean_sigma2"], atol=1e-6)
    assert diag.summary()["inactive_variables"] == stats["inactive_variables"]
    np.testing.assert_allclose(diag.variance, diag.var_mu, rtol=1e-12)  # encode(x) is the posterior mean
    assert diag.mse == pytest.approx(reconstruction_mse(vae, test, batch_size=64), rel=1e-5)


# --------------------------------------------------------------------------- bad input and files

class _NaNEncoder(nn.Module):
    def forward(self, x):
        z = torch.zeros(len(x), 3)
        z[-1, 0] = float("nan")
        return z


def test_bad_input_is_an_error():
    model = wrap(_NaNEncoder(), nn.Sequential(nn.Linear(3, 16), nn.Unflatten(1, SHAPE)), image_shape=SHAPE)
    with pytest.raises(NonFiniteError, match="NaN or infinite encodings"):
        latent_diagnostics(model, torch.rand(10, *SHAPE), batch_size=4)
    with pytest.raises(ConfigError, match="at least one image"):
        latent_diagnostics(linear_model(), torch.rand(0, *SHAPE))


def test_report_files(tmp_path):
    model = linear_model(sigma2=[0.1, 0.2, 1.0, 0.05, 0.3, 1.0], dead=(2,))
    diag = latent_diagnostics(model, gaussian_images(model), batch_size=100)
    out = save_diagnostics(diag, tmp_path / "diag")
    names = {p.name for p in out.iterdir()}
    assert names == {"variables.csv", "diagnostics.json", "variances.png", "radius.png", "pca.png", "axes.png",
                     "index.html", ".latentmap-output.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["diag"]  # no temporary sibling left behind
    lines = (out / "variables.csv").read_text().splitlines()
    assert len(lines) == 1 + 6 and "var_mu_plus_mean_sigma2" in lines[0]
    assert lines[3].split(",")[-2] == "True"  # variable 2 is the inactive one
    data = json.loads((out / "diagnostics.json").read_text())
    assert data["summary"]["inactive_variables"] == 1 and data["inactive"] == [2]
    assert sum(data["radius_histogram"]["encodings"]) == diag.n_images
    assert (out / "pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert 'src="variances.png"' in page
    # the verdict: the variables ranked by the encodings' variance, largest first, before the contents
    verdict = page[page.index('<section class="verdict">'):page.index('class="toc"')]
    assert 'data-headline="variance of the encodings" data-order="desc"' in verdict
    shown = [int(v) for v in re.findall(r"<tr>\s*<td>(\d+)</td>", verdict)]
    assert shown == list(np.argsort(-diag.variance, kind="stable")[:len(shown)]) and len(shown) == 6
    assert "<details><summary>Every latent variable: 6 rows" in page  # the full table folded, behind its CSV
    from PIL import Image

    from latentmap.report.figures import MIN_TEXT_PX, TEXT_PX_KEY

    for name in ("variances.png", "radius.png", "pca.png", "axes.png"):  # every figure legible at 100%
        assert float(Image.open(out / name).text[TEXT_PX_KEY]) >= MIN_TEXT_PX, name


# --------------------------------------------------------------------------- CLI

def test_cli_writes_the_report(tiny_vae_checkpoint, tmp_path):
    out = tmp_path / "diag"
    result = CliRunner().invoke(main, ["diagnose", "--model", str(tiny_vae_checkpoint), "--images", "120", "--out",
                                       str(out), "--batch-size", "50", "--no-geometry", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "120 images" in result.output and "Inactive variables" in result.output and "Δ_var" in result.output
    saved = json.loads((out / "diagnostics.json").read_text())
    summary = saved["summary"]
    assert summary["n_images"] == 120 and summary["latent_dim"] == 8
    from latentmap import load_model
    from latentmap.io.checkpoint import model_fingerprint

    assert saved["record"]["fingerprint"] == model_fingerprint(load_model(tiny_vae_checkpoint))
    assert summary["fingerprint"] == saved["record"]["fingerprint"][:12] in (out / "index.html").read_text()
    assert f"Reconstruction MSE {sig(summary['mse'])}" in result.output  # three significant digits
    assert len((out / "variables.csv").read_text().splitlines()) == 9


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-checkpoint"], "does not exist"),
    (["--dataset", "no-such-dataset"], "unknown dataset"),
    (["--dataset", "digits"], "expects images of shape"),  # 8x8 digits for a 28x28 model
])
def test_cli_errors_exit_2_and_write_nothing(tiny_vae_checkpoint, tmp_path, args, message):
    base = {"--model": str(tiny_vae_checkpoint), "--dataset": "fashion-mnist"}
    base.update(dict(zip(args[::2], args[1::2])))
    out = tmp_path / "diag"
    argv = ["diagnose", *[v for kv in base.items() for v in kv], "--images", "20", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- demo section

def test_demo_section_diagnoses_every_model(tiny_vae_checkpoint, tmp_path, monkeypatch):
    from latentmap.demo import diagnostics as diagnostics_demo
    from latentmap.demo.story import _SECTIONS, DemoContext

    assert diagnostics_demo.diagnostics_section in [fn for _order, _name, fn in _SECTIONS]
    monkeypatch.setattr(diagnostics_demo, "DEMO_DIAGNOSTICS_TEST_IMAGES", 25)
    vae = load_model(tiny_vae_checkpoint, device="cpu")
    other = linear_model(name="syn-28", shape=(1, 28, 28))
    test = load_dataset("fashion-mnist", "test").subset(np.arange(40))
    ctx = DemoContext(tmp_path / "checkpoints", tmp_path / "report", [vae, other], test, None, "cpu")
    html = diagnostics_demo.diagnostics_section(ctx).render()
    rows = ctx.summary["diagnostics"]
    assert [r["model"] for r in rows] == [vae.name, "syn-28"]
    assert {r["n_images"] for r in rows} == {25}  # evenly spaced subset of the test split
    assert rows[0]["inactive_variables"] is not None and rows[1]["inactive_variables"] is None
    json.dumps(ctx.summary)  # summary.json must be able to hold it
    assert "Latent diagnostics (25 test images)" in html
    assert html.count("<tr>") >= 2 and f"<td>{vae.name}</td>" in html and "<td>syn-28</td>" in html
    cells = {r[0]: r for r in (re.findall(r"<td>(.*?)</td>", row) for row in html.split("</table>")[0].split("<tr"))
             if r}
    assert cells[vae.name][4] == str(rows[0]["inactive_variables"])  # a count, not "4.00000"
    assert cells["syn-28"][4] == cells["syn-28"][5] == "-"  # VAE-only columns
    assert cells[vae.name][3] == "N(0, I)"  # what the encodings are compared with
    for name, partner in ((vae.name, "syn-28"), ("syn-28", vae.name)):
        assert f'href="diagnostics/{name}/index.html"' in html  # each model's figures on a page of its own
        folder = ctx.out / "diagnostics" / name
        assert (folder / "variables.csv").is_file() and (folder / "interpolation.csv").is_file()
        page = (folder / "index.html").read_text()
        assert 'src="radius.png"' in page and 'src="interpolation.png"' in page and 'href="../../index.html"' in page
        assert f"carried into {partner}" in page or f"into {partner} through" in page
    assert rows[0]["interpolation"]["partner"] == "syn-28"  # with one other model, the paths go there


def test_diagnostics_summary_holds_every_number_by_name():
    """Hand-built: variance law = var(μ) + mean σ² = [1.375, 0.875]; one inactive variable (var(μ) = 0 under the
    0.01 threshold); mean variance (1.5 + 0.001) / 2; variance loss 0.1 − 0.09."""
    from latentmap.evaluation.diagnostics import LatentDiagnostics

    d = LatentDiagnostics("m", "vae", 2, 10, 0, np.array([0.5, -0.25]), np.array([1.5, 0.001]),
                          np.array([1.5, 0.001]), np.ones(10), np.ones(10), np.linspace(-1, 1, 3),
                          np.zeros((2, 2)), np.zeros(2), 0.01, 0.1, 0.09, var_mu=np.array([1.25, 0.0]),
                          mean_sigma2=np.array([0.125, 0.875]))
    expected = {
        "model": "m", "kind": "vae", "latent_dim": 2, "n_images": 10, "fingerprint": "",
        "inactive_variables": 1, "inactive_threshold": 0.01,
        "variance_law_mean": 1.125, "variance_law_min": 0.875, "variance_law_max": 1.375,
        "mean_variance": 0.7505, "mean_radius": 1.0, "prior_mean_radius": 1.0, "sqrt_d": 2 ** 0.5,
        "prior": "N(0, I)", "radius_measure": "", "radius_typical": None, "radius_limit": None,
        "outside_prior_99": None, "components_90": 1, "components_99": 1, "mse": 0.01, "variance_loss": 0.01,
        "image_variance": 0.1, "reconstruction_variance": 0.09, "seed": 0}
    summary = d.summary()
    assert list(summary) == list(expected)
    for key, value in expected.items():
        assert summary[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
