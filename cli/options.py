"""Options shared by several commands, defined once, and the parameter types they use.

Nothing here imports torch: ``latentmap --help`` stays fast. Choices that live in heavy modules
are read lazily (:class:`LazyChoice`) when a command's own help or parser needs them.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click

from latentmap.io.schema import MAX_SEED, MAX_SIZE
from latentmap.constants import SPLITS

FC = TypeVar("FC", bound="Callable[..., Any] | click.Command")  # what a click decorator takes and gives back
Decorator = Callable[[FC], FC]


class LazyChoice(click.Choice):
    """A click.Choice whose values are read from ``module.attribute`` on first use."""

    def __init__(self, module: str, attribute: str, sort: bool = False) -> None:
        self._source, self._sort = (module, attribute), sort
        self._choices: tuple[Any, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values, read from ``module.attribute`` the first time they are needed."""
        if self._choices is None:
            values = getattr(importlib.import_module(self._source[0]), self._source[1])
            self._choices = tuple(sorted(values) if self._sort else values)
        return self._choices

    @choices.setter
    def choices(self, value: Iterable[Any]) -> None:  # click.Choice.__init__ assigns it
        self._choices = tuple(value)


class FiniteFloat(click.ParamType):
    """A finite float within [low, high] (open at ``low`` when ``low_open``); NaN and inf are refused."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """``value`` as a float within the bounds, or click's usage error naming the option."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number, got {value!r}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            self.fail(f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"must be <= {self.high:g}, got {value!r}", param, ctx)
        return number


class PositiveInts(click.ParamType):
    """Comma-separated positive integers such as ``32,64``, each at most ``high``."""

    name = "ints"

    def __init__(self, high: int | None = None) -> None:
        self.high = high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        """``value`` (``32,64``) as a list of positive integers, or click's usage error."""
        if isinstance(value, list):
            return value
        try:
            numbers = [int(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"must be comma-separated integers such as 32,64, got '{value}'", param, ctx)
        if not numbers or min(numbers) < 1:
            self.fail(f"must be positive integers such as 32,64, got '{value}'", param, ctx)
        if self.high is not None and max(numbers) > self.high:
            self.fail(f"must be integers from 1 to {self.high:,}, got '{value}'", param, ctx)
        return numbers


SIZE_RANGE = click.IntRange(1, MAX_SIZE)
"""A network size (latent size, channels, width): at most the MAX_SIZE every checkpoint loader accepts."""
SEED_RANGE = click.IntRange(0, MAX_SEED)


def dataset_option(default: str | None = None, required: bool = False) -> Decorator[Any]:
    """``--dataset``; with no default, commands use the dataset the models were trained on."""
    hint = "" if default or required else " Default: the dataset the model was trained on."
    return click.option("--dataset", "dataset", default=default, required=required, show_default=default is not None,
                        help="fashion-mnist | mnist | digits | folder:PATH[?crop=L,T,R,B&size=S&channels=1|3] | "
                             "npy:PATH (a folder's subfolders are its classes)." + hint)


def choose_dataset(models: Iterable[Any], spec: str | None) -> str:
    """The dataset spec to evaluate ``models`` on (see latentmap.data.choice); notes go to stderr."""
    from latentmap.data.choice import dataset_for

    spec, notes = dataset_for(models, spec)
    for note in notes:
        warn_later(note)
    return spec


class RidgeAlpha(click.ParamType):
    """A ridge penalty: a number >= 0, or "auto" (chosen by generalized cross-validation)."""

    name = "alpha"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | str:
        """``value`` as a float >= 0, or the text ``auto``; click's usage error otherwise."""
        if value == "auto" or isinstance(value, float):
            return value
        try:
            alpha = float(value)
        except ValueError:
            self.fail(f"expected a number >= 0 or 'auto', got {value!r}", param, ctx)
        if not alpha >= 0 or alpha == float("inf"):
            self.fail(f"expected a finite number >= 0 or 'auto', got {value!r}", param, ctx)
        return alpha


class ImageTransformSpec(click.ParamType):
    """``--image-transform``: a spec of latentmap.data.transforms (auto, pad, resize, grey,resize, ...)."""

    name = "spec"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` checked and written the one way (latentmap.data.transforms.canonical_spec)."""
        from latentmap.data.transforms import canonical_spec
        from latentmap.errors import ConfigError

        try:
            return canonical_spec(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def image_transform_option(default_text: str) -> Decorator[Any]:
    """``--image-transform SPEC``: how images of one model's shape are turned into another's."""
    return click.option("--image-transform", "image_transform", type=ImageTransformSpec(), default=None,
                        help="How images are turned into a model's shape when the models (or the data) work on "
                             "images of different shapes: auto (channels, resize the shorter side, centre crop), "
                             "resize, resize=area, pad, pad=V, center-crop, grey, rgb, or steps such as "
                             f"'grey,resize'. Default: {default_text}.")


input_transform_option = image_transform_option(
    "none: images of another shape than the model's are refused, and the error names the spec that would work")


def _check_data_dir(ctx: click.Context | None, param: click.Parameter, value: str | None) -> str | None:
    """A data folder the user named must exist: never silently replaced by the system's copy of the data."""
    if value is None or not str(value).strip():
        return None
    from pathlib import Path

    source = ctx.get_parameter_source(param.name) if ctx is not None else None
    named = ("LATENTMAP_DATA_DIR" if source is click.core.ParameterSource.ENVIRONMENT else "--data-dir")
    if not Path(value).exists():
        raise click.BadParameter(f"the data folder '{value}' ({named}) does not exist", ctx, param)
    if not Path(value).is_dir():
        raise click.BadParameter(f"the data folder '{value}' ({named}) is not a folder", ctx, param)
    return value


data_dir_option = click.option("--data-dir", type=click.Path(), default=None, envvar="LATENTMAP_DATA_DIR",
                               callback=_check_data_dir,
                               help="Folder with dataset files (also LATENTMAP_DATA_DIR); when given, Fashion-MNIST "
                                    "is read from it alone.")
split_option = click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
_device_only = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


def _apply_precision(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Set the process's forward-pass precision (latentmap.device); fp32 needs no torch import when never changed."""
    import sys

    if value != "fp32" or "latentmap.device" in sys.modules:
        from latentmap.device import set_precision

        set_precision(value)
    return value


_precision_only = click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                               expose_value=False, callback=_apply_precision,
                               help="Model forward passes in bf16 (autocast, CUDA only; a CPU keeps fp32). "
                                    "Statistics are float64 either way.")


def device_option(command: FC) -> FC:
    """``--device`` and ``--precision``: every command that runs models takes both."""
    return _device_only(_precision_only(command))


cycle_option = click.option("--cycle/--no-cycle", default=True, show_default=True,
                            help="Also relocate back A -> B -> A (an encode and a decode more per image).")
seed_option = click.option("--seed", type=SEED_RANGE, default=0, show_default=True,
                           help=f"Random seed, 0 to {MAX_SEED}.")
batch_size_option = click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
model_spec_option = click.option("--model", "model_spec", required=True,
                                 help="Checkpoint folder, StyleGAN-style pickle (with --trust-pickle) or "
                                      "py:module:factory.")
trust_pickle_option = click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, default=False,
                                   help="Allow loading models that run code: StyleGAN-style pickles, pythae folders "
                                        "with pickled networks (encoder, decoder, metric or discriminator .pkl), "
                                        "py:module:factory specs and checkpoints rebuilt by one, for every model "
                                        "the command loads (paths recorded in maps and support sets included). "
                                        "A pythae model.pt is read as tensors only, with or without it. "
                                        "See docs/consent.md.")
split_choice = click.Choice(SPLITS)


def fit_split_option(default: str = "train") -> Decorator[Any]:
    """``--fit-split``: the dataset split the maps are fitted on."""
    return click.option("--fit-split", type=split_choice, default=default, show_default=True,
                        help="Dataset split the maps are fitted on.")


def images_option(default: int | None = None, what: str = "evaluated") -> Decorator[Any]:
    """``--images N``: how many images of the split are used (a seeded random subset)."""
    return click.option("--images", "images", type=click.IntRange(min=1), default=default,
                        show_default=default is not None,
                        help=f"Number of {what} images: a seeded random subset of the split"
                             + ("." if default is not None else " (default all)."))


fit_images_option = click.option("--fit-images", "fit_images", type=click.IntRange(min=1), default=None,
                                 help="Fit on a seeded random N images of the fit split (default all).")
samples_option = click.option("--samples", type=click.IntRange(min=1), default=None,
                              help="Fit on N prior samples of the source, decoded by it and encoded by the target.")
bias_option = click.option("--bias/--no-bias", default=None,
                           help="Fit an intercept. Default: no bias for a support-set or image-set fit (the paper's "
                                "map), bias otherwise.")
alpha_option = click.option("--alpha", type=RidgeAlpha(), default=None,
                            help="Ridge penalty on the matrix (the intercept is not penalized), or 'auto': chosen by "
                                 "generalized cross-validation. Default: auto for support-set and image-set fits "
                                 "(few anchors), 0 for dataset and sample fits.")
method_option = click.option("--method", type=click.Choice(["lstsq", "procrustes"]), default="lstsq",
                             show_default=True, help="Least squares / ridge, or the orthogonal map (equal sizes).")
estimator_option = click.option(
    "--estimator", "estimator", default="linear", show_default=True,
    help="The map: linear | piecewise[:CELLS] | soft-piecewise[:CELLS] | mlp[:AxB] | ortho | l-ortho | adam, "
         "with KEY=VALUE parameters after colons (piecewise:16:alpha=0.1). --bias/--method apply to linear only, "
         "--alpha to the estimators that take it.")
estimators_option = click.option(
    "--estimators", "estimators", default=None,
    help="Comma-separated estimators, one map per pair and estimator (e.g. linear,piecewise:16,mlp,ortho,l-ortho,"
         "adam); the first is the one the ratio matrix and grids show. Default: one linear map.")


class LpipsSetting(click.ParamType):
    """``off``, ``auto`` (pretrained backbone from the torch hub cache, else reported unavailable) or a weights file."""

    name = "off|auto|PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``off``, ``auto`` or the path of an existing weights file; click's usage error otherwise."""
        text = str(value)
        if text in ("off", "auto"):
            return text
        from pathlib import Path

        if not Path(text).is_file():
            self.fail(f"expected off, auto or the path of torchvision's ImageNet backbone weights; '{text}' is "
                      "not a file", param, ctx)
        return text


lpips_option = click.option("--lpips", "lpips", type=LpipsSetting(), default="auto", show_default=True,
                            help="LPIPS: off, auto (pretrained backbone weights from the torch hub cache; without "
                                 "them LPIPS is reported unavailable, never faked) or PATH to the weights file.")


WARNINGS_KEY = "latentmap.warnings"
REPORT_KEY = "latentmap.report"  # the report folder a command writes


def warn_later(message: str) -> None:
    """Queue a warning for the end of the command: printed once if it succeeds, so an error stays one line."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        click.echo(f"Warning: {message}", err=True)
        return
    queued = ctx.meta.setdefault(WARNINGS_KEY, [])
    if message not in queued:
        queued.append(message)


NOTE_AFTER_S = 30.0  # a step expected to take longer is announced before it starts


def note_expected_time(seconds: float, what: str) -> None:
    """Say on stderr, before the work, how long a long step is expected to take (nothing for a short one)."""
    if seconds >= NOTE_AFTER_S:
        from latentmap.resources import format_seconds

        click.echo(f"Note: {what} is expected to take about {format_seconds(seconds)}", err=True)


@contextlib.contextmanager
def reported_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Run the block collecting Python warnings; each is queued with :func:`warn_later`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        if not issubclass(w.category, ResourceWarning):  # the interpreter's housekeeping, not the user's business
            warn_later(str(w.message))


def output_options(kind: str, stem: str) -> Decorator[Any]:
    """``--out`` (default: a new folder under runs/) and ``--overwrite``, for a command writing one ``kind`` of folder."""

    def decorator(command: FC) -> FC:
        command = click.option("--overwrite", is_flag=True, default=False,
                               help=f"Replace an existing {kind} that latentmap wrote at --out (never anything else)."
                               )(command)
        return click.option("--out", type=click.Path(), default=None,
                            help=f"Folder to write, atomically (default: a new runs/{stem}-DATE-TIME).")(command)

    return decorator


def prepare_output(out: str | os.PathLike[str] | None, kind: str, stem: str, overwrite: bool,
                   inputs: object = ()) -> str:
    """The output folder, checked before any work: writable, not someone else's, never an input of the command.

    The inputs are ``inputs`` (what the command computed: expanded model lists, default folders) and the
    value of every parameter of the running command named in :data:`latentmap.cli.inputs.INPUT_PARAMS`,
    each resolved to the real paths it reads (:func:`latentmap.cli.inputs.input_paths`) before the check.
    An output inside the shipped checkpoints or support sets is refused too.
    """
    from latentmap.cli.inputs import INPUT_PARAMS, check_not_shipped, input_paths
    from latentmap.io.atomic import check_output_path, new_run_folder

    ctx = click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    given = [value for name, value in params.items() if name in INPUT_PARAMS]
    target = new_run_folder(stem) if out is None else out
    resolved = input_paths([*_listed(inputs), *given], data_dir=params.get("data_dir"))
    if str(target).strip():
        check_not_shipped(target)
    check_output_path(target, kind, overwrite, inputs=resolved)
    if ctx is not None and kind == "report":  # the group refreshes a reports index beside it when done
        ctx.meta[REPORT_KEY] = str(target)
    return str(target)


def _listed(inputs: Any) -> list[Any]:
    if inputs is None or isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
        return [inputs]
    return list(inputs)
