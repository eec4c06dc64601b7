import pandas as pd
import torch

from latentmap import load_dataset
from latentmap.demo.story import DemoContext
from latentmap.demo.generators import generators_section
from latentmap.models.gan import GANModel
from latentmap.models.wrapped import wrap


def test_generator_section_reports_models_with_inverters(tmp_path):
    torch.manual_seed(0)
    test = load_dataset("fashion-mnist", "test").subset(range(40))
    ae = wrap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)),
              torch.nn.Sequential(torch.nn.Linear(3, 784), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28))),
              image_shape=(1, 28, 28), name="ae")
    ctx = DemoContext(tmp_path, tmp_path, [GANModel("g", (1, 28, 28), 4, channels=[8, 8]), ae], test, None, "cpu")
    html = generators_section(ctx).render()
    frame = pd.read_csv(tmp_path / "inverter_mse.csv")
    assert list(frame["model"]) == ["g"]  # the autoencoder has no inverter
    assert (frame["inverter_mse_real_test"] > 0).all() and (tmp_path / "generator_g.png").is_file()
    assert "generator_g.png" in html and ctx.summary["generators"][0]["model"] == "g"
