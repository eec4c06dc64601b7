"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

from latentmap.data.datasets import SPLITS


def dataset_option(default="fashion-mnist", required=False):
    return click.option("--dataset", "dataset", default=None if required else default, required=required,
                        show_default=not required,
                        help="fashion-mnist | mnist | digits | folder:PATH[?crop=L,T,R,B&size=S&channels=1|3] | npy:PATH")


class RidgeAlpha(click.ParamType):
    """A ridge penalty: a number >= 0, or "auto" (chosen by generalized cross-validation)."""

    name = "alpha"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, float):
            return value
        try:
            alpha = float(value)
        except ValueError:
            self.fail(f"expected a number >= 0 or 'auto', got {value!r}", param, ctx)
        if not alpha >= 0 or alpha == float("inf"):
            self.fail(f"expected a finite number >= 0 or 'auto', got {value!r}", param, ctx)
        return alpha


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="LATENTMAP_DATA_DIR",
                               help="Folder with dataset files (also LATENTMAP_DATA_DIR).")
split_option = click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
device_option = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
batch_size_option = click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
model_spec_option = click.option("--model", "model_spec", required=True,
                                 help="Checkpoint folder, StyleGAN-style pickle (with --trust-pickle) or "
                                      "py:module:factory.")
trust_pickle_option = click.option("--trust-pickle", is_flag=True, default=False,
                                   help="Allow loading StyleGAN-style pickles (this runs code stored in the file).")
