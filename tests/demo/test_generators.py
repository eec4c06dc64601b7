import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from latentmap import load_dataset
from latentmap.demo import generators as generators_demo
from latentmap.demo.story import DemoContext
from latentmap.demo.generators import generators_section
from latentmap.models.gan import GANModel
from latentmap.models.wrapped import wrap


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def test_generator_section_reports_models_with_inverters(tmp_path, monkeypatch):
    monkeypatch.setattr(generators_demo, "SAMPLES", 200)  # fewer own samples: one batch, quicker
    torch.manual_seed(0)
    test = load_dataset("fashion-mnist", "test").subset(range(40))
    ae = wrap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)),
              torch.nn.Sequential(torch.nn.Linear(3, 784), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28))),
              image_shape=(1, 28, 28), name="ae")
    gan = GANModel("g", (1, 28, 28), 4, channels=[8, 8])
    ctx = DemoContext(tmp_path, tmp_path, [gan, ae], test, None, "cpu")
    html = generators_section(ctx).render()
    frame = pd.read_csv(tmp_path / "inverter_mse.csv")
    assert list(frame["model"]) == ["g"]  # the autoencoder has no inverter
    assert "generator_g.png" in html and ctx.summary["generators"][0]["model"] == "g"
    # the two MSEs recomputed by hand: own = 200 prior samples drawn with a generator seeded 0, real = the
    # 40 test images; each the mean per-pixel squared error of decode(encode(x)) against x
    with torch.no_grad():
        own_x = gan.decode(torch.randn(200, 4, generator=torch.Generator().manual_seed(0)))
        own = _mse(gan.decode(gan.encode(own_x)), own_x)
        real_x = test.all_images()
        real = _mse(gan.decode(gan.encode(real_x)), real_x)
    assert abs(own / real - 1) > 0.01  # the two columns are told apart
    assert frame.loc[0, "inverter_mse_own_samples"] == pytest.approx(own, rel=1e-5)
    assert frame.loc[0, "inverter_mse_real_test"] == pytest.approx(real, rel=1e-5)
    assert ctx.summary["generators"][0]["inverter_mse_own_samples"] == pytest.approx(own, rel=1e-5)
    # the grid: four rows (samples, their inversions, real images, their inversions) of 12 images;
    # 28-pixel cells, 2-pixel padding, scaled 2x, right of a margin that labels the rows
    grid = np.asarray(Image.open(tmp_path / "generator_g.png").convert("L"), dtype=np.float64)
    margin = grid.shape[1] - 2 * (12 * 30 + 2)
    assert grid.shape[0] == 2 * (4 * 30 + 2) and margin > 0 and (grid[:, :margin] < 128).sum() > 40
    columns = np.linspace(0, 39, 12).round().astype(int)
    with torch.no_grad():
        samples = gan.decode(gan.sample_prior(12, torch.Generator().manual_seed(0)))
        real_12 = test.batch(columns)
        rows = [samples, gan.reconstruct(samples), real_12, gan.reconstruct(real_12)]
    for i, images in enumerate(rows):
        for j in range(12):
            top, left = 2 * (2 + i * 30), margin + 2 * (2 + j * 30)
            np.testing.assert_allclose(grid[top:top + 56:2, left:left + 56:2], images[j, 0].double().numpy() * 255,
                                       atol=1.0)
