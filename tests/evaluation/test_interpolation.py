"""Interpolation paths (linear, spherical, carried through a map) and diagnostics against a model's own prior."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from latentmap.errors import ConfigError
from latentmap.evaluation.diagnostics import latent_diagnostics
from latentmap.evaluation.interpolation import interpolate, latent_paths, pair_positions, slerp
from latentmap.evaluation.samplers import TypicalRegion
from latentmap.maps.linear import LinearMap
from latentmap.models.wrapped import WrappedModel
from latentmap.report.diagnostics import save_diagnostics
from latentmap.report.interpolation import interpolation_rows, write_interpolation

SHAPE = (1, 2, 2)  # four pixels, four latent variables


class _Affine(nn.Module):
    def __init__(self, scale, shift, shape=None):
        super().__init__()
        self.scale, self.shift, self.shape = scale, shift, shape

    def forward(self, v):
        out = v.flatten(1) * self.scale + self.shift
        return out if self.shape is None else out.reshape(len(v), *self.shape)


def pixel_model(name="pix", prior_mean=None, prior_scale=None):
    """encode(x) = 10 x - 5, decode(z) = (z + 5) / 10 on 2x2 images; with ``prior_mean``/``prior_scale`` the
    prior is N(prior_mean, prior_scale²) per variable instead of N(0, I) (as StyleGAN's W differs from N(0, I))."""
    cls = WrappedModel
    if prior_mean is not None:
        class Shifted(WrappedModel):
            def sample_prior(self, n, generator=None):
                return prior_mean + prior_scale * torch.randn(n, 4, generator=generator)
        cls = Shifted
    return cls(name, _Affine(10.0, -5.0), _Affine(0.1, 0.5, SHAPE), SHAPE)


def images_from(z: torch.Tensor) -> torch.Tensor:
    return ((z + 5) / 10).reshape(len(z), *SHAPE)


# --------------------------------------------------------------------------- paths

def test_slerp_keeps_the_radius_and_linear_paths_cut_inside():
    u0 = torch.tensor([[3.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    u1 = torch.tensor([[0.0, 3.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    path = slerp(u0, u1, t)[0]
    torch.testing.assert_close(path[0], u0[0])
    torch.testing.assert_close(path[-1], u1[0])
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(path[2], torch.tensor([3 / 2 ** 0.5, 3 / 2 ** 0.5, 0, 0], dtype=torch.float64))
    same = slerp(u0, u0 * 2, t)[0]  # parallel directions: the great circle is undefined, the path is the line
    torch.testing.assert_close(same[2], u0[0] * 1.5)


def test_spherical_paths_run_in_the_priors_own_units():
    # a prior N(c, diag(s²)): around c, in units of s, the path keeps the Mahalanobis radius of its ends
    c = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    s = torch.tensor([0.5, 2.0, 1.0, 0.1], dtype=torch.float64)
    region = TypicalRegion("test", c, torch.diag(1 / s), 2.0, 3.0)
    z0 = (c + s * torch.tensor([2.0, 0, 0, 0], dtype=torch.float64))[None]
    z1 = (c + s * torch.tensor([0, 0, 0, 2.0], dtype=torch.float64))[None]
    paths = latent_paths(z0, z1, torch.linspace(0, 1, 7, dtype=torch.float64), region)
    spherical = region.distance(paths["spherical"][0])
    linear = region.distance(paths["linear"][0])
    torch.testing.assert_close(spherical, torch.full((7,), 2.0, dtype=torch.float64))
    assert linear[3] == pytest.approx(2 / 2 ** 0.5) and linear[0] == pytest.approx(2.0)
    torch.testing.assert_close(paths["spherical"][0, 0], z0[0])
    torch.testing.assert_close(paths["spherical"][0, -1], z1[0])


def test_interpolate_decodes_both_paths_and_carries_them_through_the_map():
    a, b = pixel_model("a"), pixel_model("b")
    gen = torch.Generator().manual_seed(0)
    x = images_from(0.8 * torch.randn(6, 4, generator=gen))
    # B decodes as A does, and the map fitted on pairs (z, z) is the identity: the carried path is A's own
    z = torch.randn(50, 4, generator=gen)
    identity = LinearMap(bias=True).fit(z, z)
    result = interpolate(a, x[:3], x[3:], steps=5, partner=b, linear_map=identity, map_description="identity",
                         pair_ids=["0-3", "1-4", "2-5"])
    assert result.images["linear"].shape == (3, 5, *SHAPE)
    torch.testing.assert_close(result.images["linear"][:, 0], x[:3], atol=1e-5, rtol=0)  # ends are the images
    torch.testing.assert_close(result.images["spherical"][:, -1], x[3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(result.images["linear"][:, 2], (x[:3] + x[3:]) / 2, atol=1e-5, rtol=0)
    assert np.abs(result.carried_mse["linear"]).max() < 1e-10  # B decodes like A: the carried path is A's
    s = result.summary()
    assert s["partner"] == "b" and s["linear_carried_mse"] < 1e-10
    assert s["linear_midpoint_radius"] < s["spherical_midpoint_radius"]
    frame = result.frame()
    assert len(frame) == 2 * 3 * 5 and set(frame["pair"]) == {"0-3", "1-4", "2-5"}
    rows, labels, columns = interpolation_rows(result)
    assert len(rows) == len(labels) == 3 * 4 and labels[2] == "pair 1: b via map, linear"
    assert columns[0] == columns[-1] == "original" and columns[1] == "t=0" and len(rows[0]) == len(columns)


def test_interpolate_rejects_bad_requests():
    a = pixel_model()
    x = images_from(torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="as many start as end"):
        interpolate(a, x, x[:1])
    with pytest.raises(ConfigError, match="both the partner model and the fitted map"):
        interpolate(a, x, x, partner=a)
    with pytest.raises(ConfigError, match="at least 2"):
        interpolate(a, x, x, steps=1)
    assert pair_positions(10, 2) == [(0, 6), (3, 9)]


# --------------------------------------------------------------------------- diagnostics against the own prior

def test_diagnostics_compare_encodings_with_the_models_own_prior(tmp_path):
    mean, scale = torch.tensor([1.0, -0.5, 0.3, 0.8]), torch.tensor([0.5, 0.3, 0.6, 0.2])
    model = pixel_model("shifted", prior_mean=mean, prior_scale=scale)
    gen = torch.Generator().manual_seed(1)
    x = images_from(mean + scale * torch.randn(3000, 4, generator=gen))  # encodings drawn from the prior itself
    diag = latent_diagnostics(model, x, batch_size=500, seed=0)
    assert not diag.standard_prior and "covariance" in diag.prior
    np.testing.assert_allclose(diag.prior_variance, scale.double().numpy() ** 2, rtol=0.1)
    np.testing.assert_allclose(diag.prior_mean, mean.double().numpy(), atol=0.05)
    # in the prior's own units the encodings sit where the prior samples do, on the sqrt(d) shell ...
    assert diag.radii.mean() == pytest.approx(diag.prior_radii.mean(), rel=0.05)
    assert diag.radii.mean() == pytest.approx(np.sqrt(3.5), rel=0.1)
    assert diag.outside_prior == pytest.approx(0.01, abs=0.01)
    # ... where N(0, I) would have put them far off (plain norms of about 1.6 against sqrt(4) = 2)
    plain = pixel_model("plain")
    off = latent_diagnostics(plain, x, batch_size=500, seed=0)
    assert off.standard_prior and off.prior == "N(0, I)"
    assert off.outside_prior < 0.005 and abs(off.radii.mean() - off.prior_radii.mean()) > 0.2
    out = save_diagnostics(diag, tmp_path / "d")
    data = json.loads((out / "diagnostics.json").read_text())
    assert data["summary"]["outside_prior_99"] == pytest.approx(diag.outside_prior)
    assert len(data["prior_variance"]) == 4 and "Mahalanobis" in data["summary"]["radius_measure"]
    assert "prior_variance" in (out / "variables.csv").read_text().splitlines()[0]


def test_shipped_stylegan_is_judged_against_its_w_statistics():
    from latentmap import load_dataset, load_model

    try:
        model = load_model("fmnist-stylegan", device="cpu")
    except Exception as exc:  # pragma: no cover - shipped checkpoints missing
        pytest.skip(f"shipped StyleGAN not available: {exc}")
    test = load_dataset("fashion-mnist", "test").evenly_spaced_subset(200)
    diag = latent_diagnostics(model, test, batch_size=100)
    assert not diag.standard_prior
    w = model.sample_prior(200, torch.Generator().manual_seed(0)).double().numpy()  # the same seeded W draws
    np.testing.assert_allclose(diag.prior_variance, w.var(0), rtol=1e-6)  # W's own variances, not N(0, 1)'s
    np.testing.assert_allclose(diag.prior_mean, w.mean(0), rtol=1e-6, atol=1e-9)
    assert abs(float(np.median(diag.prior_variance)) - 1.0) > 0.2


def test_interpolation_files(tmp_path):
    a = pixel_model("a")
    x = images_from(torch.randn(4, 4, generator=torch.Generator().manual_seed(2)))
    result = interpolate(a, x[:2], x[2:], steps=4)
    section = write_interpolation(result, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"interpolation.csv", "interpolation.json", "interpolation.png",
                                                    "interpolation_radius.png"}
    assert "interpolation.png" in section.render() and "carried" not in result.summary()
    assert len((tmp_path / "interpolation.csv").read_text().splitlines()) == 1 + 2 * 2 * 4


def test_radius_plot_gives_each_pair_its_colour_and_each_path_its_line_style():
    from latentmap.report.interpolation import radius_figure

    a = pixel_model("a")
    x = images_from(torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))
    result = interpolate(a, x[:3], x[3:], steps=4)
    ax = radius_figure(result).axes[0]
    lines = [line for line in ax.get_lines() if line.get_label().startswith("pair")]
    assert len(lines) == 3 * 2
    colours = {line.get_label(): line.get_color() for line in lines}
    assert colours["pair 1, linear"] == colours["pair 1, spherical"] != colours["pair 2, linear"] \
        != colours["pair 3, linear"] != colours["pair 1, linear"]
    styles = {line.get_label().split(", ")[1]: line.get_linestyle() for line in lines}
    assert styles["linear"] != styles["spherical"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # beside the data


def test_interpolation_frame_rows_carry_the_partners_path_error_by_hand():
    from latentmap.evaluation.interpolation import InterpolationResult

    t = np.array([0.0, 1.0])
    radius = {"linear": np.array([[2.0, 4.0]]), "spherical": np.array([[2.0, 3.0]])}
    carried = {"linear": np.array([[0.1, 0.2]]), "spherical": np.array([[0.3, 0.4]])}
    r = InterpolationResult("vae", "vae", t, torch.zeros(1, 2, 1, 2, 2), {}, radius, 2.0, "N(0, I)",
                            partner="vae-b", map_description="linear", carried_mse=carried)
    rows = r.frame().to_dict("records")
    assert [(row["path"], row["t"], row["radius_ratio"], row["carried_path_mse"]) for row in rows] == [
        ("linear", 0.0, 1.0, 0.1), ("linear", 1.0, 2.0, 0.2), ("spherical", 0.0, 1.0, 0.3), ("spherical", 1.0, 1.5, 0.4)]
    assert set(rows[0]) == {"model", "pair", "path", "t", "radius", "radius_ratio", "partner", "carried_path_mse"}


def test_interpolation_of_two_steps_is_its_end_points():
    a = pixel_model()
    x0, x1 = images_from(torch.zeros(1, 4)), images_from(torch.ones(1, 4) * 0.5)
    r = interpolate(a, x0, x1, steps=2)
    assert r.t.tolist() == [0.0, 1.0] and r.frame()["t"].tolist() == [0.0, 1.0, 0.0, 1.0]
