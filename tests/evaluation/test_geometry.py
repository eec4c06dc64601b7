"""Void fraction, density views and t-SNE maps of a model's codes (evaluation/geometry.py)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from latentmap.errors import ConfigError
from latentmap.evaluation.geometry import latent_geometry, nearest_distances, void_fraction


def _brute(samples, codes, quantile=0.99):
    own = cdist(codes, codes)
    np.fill_diagonal(own, np.inf)  # each code's nearest *other* code
    threshold = np.quantile(own.min(1), quantile)
    return float(np.mean(cdist(samples, codes).min(1) > threshold)), threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_void_fraction_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((120, 3)) * [1, 2, 0.5]
    codes[5] = codes[7]  # a duplicate: its nearest other code is at distance 0
    samples = rng.standard_normal((200, 3)) * 2
    result = void_fraction(samples, codes, quantile=0.9)
    fraction, threshold = _brute(samples, codes, 0.9)
    assert result.fraction == fraction
    assert result.threshold == pytest.approx(threshold, rel=1e-12)
    np.testing.assert_allclose(result.sample_distances, cdist(samples, codes).min(1), rtol=1e-10)
    assert result.code_distances[5] == 0.0 and result.code_distances[7] == 0.0


def test_void_fraction_of_a_fresh_draw_from_the_codes_distribution_is_about_one_percent():
    # 5,000 codes of N(0, I_8) probed by 5,000 fresh points of the same N(0, I_8): the probes' nearest-code
    # distances follow the codes' own nearest-neighbour distances, so about 1% exceed their 99th percentile
    rng = np.random.default_rng(0)
    codes, probes = rng.standard_normal((5000, 8)), rng.standard_normal((5000, 8))
    result = void_fraction(probes, codes)
    assert 0.005 <= result.fraction <= 0.015
    tree = cKDTree(codes)
    threshold = np.quantile(tree.query(codes, k=2)[0][:, 1], 0.99)
    assert result.fraction == float(np.mean(tree.query(probes, k=1)[0] > threshold))
    # the codes probed by themselves are never in a void: each is at distance 0 from a code
    assert void_fraction(codes, codes).fraction == 0.0


def test_two_clusters_probed_by_one_wide_gaussian_are_mostly_voids():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(-3, 0.3, (1000, 2)), rng.normal(3, 0.3, (1000, 2))])
    probes = rng.normal(0, 3, (2000, 2))
    result = void_fraction(probes, codes)
    tree = cKDTree(codes)
    threshold = np.quantile(tree.query(codes, k=2)[0][:, 1], 0.99)
    brute = float(np.mean(tree.query(probes, k=1)[0] > threshold))
    assert result.fraction == brute
    assert result.fraction > 0.5
    assert result.in_void.sum() == round(brute * len(probes))


def test_void_fraction_refuses_bad_input():
    with pytest.raises(ConfigError, match="same size"):
        void_fraction(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="quantile"):
        void_fraction(np.zeros((3, 2)), np.zeros((3, 2)), quantile=1.0)
    with pytest.raises(ConfigError, match="NaN"):
        void_fraction(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="at least 2"):
        nearest_distances(np.zeros((1, 2)), np.zeros((1, 2)), exclude_self=True)
    with pytest.raises(ConfigError, match=r"^points must have shape \[N, d\], got \(3,\) instead$"):
        nearest_distances(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ConfigError, match=r"^codes contain NaN or infinite values$"):
        nearest_distances(np.zeros((3, 2)), np.full((3, 2), np.inf))


def test_latent_geometry_of_a_tiny_vae(tiny_vae_checkpoint):
    from latentmap import load_dataset, load_model

    model = load_model(str(tiny_vae_checkpoint), device="cpu")
    data = load_dataset("fashion-mnist", "test").random_subset(150, 0)
    geo = latent_geometry(model, data, n=120, seed=0, tsne_points=60)
    assert geo.n == 120 and geo.sampler == "prior"
    assert geo.tsne_codes.shape == (60, 2) and geo.tsne_leading.shape == (60, 2)
    assert geo.leading_k == 4 and len(geo.tsne_labels) == 60
    assert geo.void_decodes.shape == (8, 1, 28, 28) and geo.near_decodes.shape == (8, 1, 28, 28)
    # the decodes are the samples farthest from and nearest to the codes
    d = geo.voids.sample_distances
    assert geo.fidelity["all"]["samples"] == 120
    n_void = int(geo.voids.in_void.sum())
    assert (geo.fidelity["void"] or {}).get("samples", n_void) == n_void
    assert geo.summary()["void_fraction"] == pytest.approx(n_void / 120)
    assert np.median(d) > 0 and geo.codes_on_axes.shape == (120, 4)
    # the same seed gives the same numbers
    again = latent_geometry(model, data, n=120, seed=0, tsne=False)
    assert again.voids.fraction == geo.voids.fraction and again.tsne_codes is None
    np.testing.assert_array_equal(again.voids.sample_distances, d)
    # the default seed is 0, and the t-SNE maps come from it too
    default = latent_geometry(model, data, n=120, tsne_points=60)
    np.testing.assert_array_equal(default.voids.sample_distances, d)
    np.testing.assert_array_equal(default.tsne_codes, geo.tsne_codes)
    np.testing.assert_array_equal(default.tsne_leading, geo.tsne_leading)


def test_cli_diagnose_shows_the_voids_density_views_and_tsne(tiny_vae_checkpoint, tmp_path):
    import json

    from click.testing import CliRunner

    from latentmap.cli.main import main

    out = tmp_path / "diag"
    result = CliRunner().invoke(main, ["diagnose", "--model", str(tiny_vae_checkpoint), "--images", "40",
                                       "--geometry-points", "100", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "geometry.json").read_text())
    assert summary["points"] == 100 and summary["sampler"] == "prior"
    from latentmap.report.tables import percent

    assert f"Void fraction {percent(summary['void_fraction'])} of 100 samples" in result.output
    for name in ("geometry_density.png", "geometry_voids.png", "geometry_decodes.png", "geometry_tsne.png"):
        assert (out / name).stat().st_size > 0, name
    page = (out / "index.html").read_text()
    assert "Fragments, filaments and voids" in page and 'src="geometry_tsne.png"' in page
    rows = (out / "geometry_fidelity.csv").read_text().splitlines()
    assert rows[0].startswith("group,reference") and rows[1].startswith("all,")


def test_the_void_fraction_of_fewer_than_two_images_is_refused_word_for_word():
    from latentmap.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        latent_geometry(None, None, n=1)
    assert str(caught.value) == "the void fraction needs at least 2 images, got 1"
