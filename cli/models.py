"""``latentmap models list`` and ``latentmap models info``: which models there are, from their files alone.

Without the trust flag nothing here unpickles or imports anything: checkpoints are described from
config.json (their weights checked against its sha256), pythae folders from model_config.json and
their file listing (which networks are pickled, so need --trust-pickle to load), generator pickles
by their name. ``models info --trust-pickle`` (or ``--trust-code``) loads a pickle or a ``py:`` spec to
show its latent size and image shape. Heavy modules are imported inside the commands, so
``latentmap --help`` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from latentmap.cli.options import trust_pickle_option
from latentmap.constants import PICKLE_SUFFIXES
from latentmap.errors import CheckpointError, LatentmapError
from latentmap.cli.model_lines import NO_PRIOR, _pythae_lines, _pythae_pickles, _shape
from latentmap.io.pythae_folder import is_pythae_folder, read_pythae_config

PICKLE_NOTE = "stylegan pickle (needs --trust-pickle to load)"
GENERATOR_KINDS = ("gan", "stylegan-w", "external-stylegan")
W_SPACE_KINDS = ("stylegan-w", "external-stylegan")
NOT_A_MODEL = ("no config.json (latentmap checkpoint), model_config.json + model.pt (pythae folder) "
               f"or {'/'.join(PICKLE_SUFFIXES)} file (StyleGAN-style generator)")


@click.group("models")
def command() -> None:
    """Inspect models: shipped checkpoints, checkpoint folders, pythae folders, generator pickles."""


# ---------------------------------------------------------------- identifying a path


def identify(path: Path) -> dict[str, Any] | None:
    """What ``path`` holds: a record with ``source`` (checkpoint, diffusers, pythae, pickle), ``name``, ``kind``,
    ``latent``, ``config``; None when it is no model. A broken config.json raises CheckpointError."""
    from latentmap.io.checkpoint import CONFIG_NAME, read_config

    path = Path(path)
    diffusers = _diffusers_folder(path)
    if diffusers is not None:
        return diffusers
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        config = read_config(path)
        return {"source": "checkpoint", "path": path, "config": config, "name": str(config.get("name") or path.name),
                "kind": str(config["kind"]), "latent": config["latent_dim"]}
    if path.is_dir() and is_pythae_folder(path):
        config = read_pythae_config(path)
        return {"source": "pythae", "path": path, "config": config, "name": path.name, "kind": "pythae",
                "latent": config.get("latent_dim")}
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        return {"source": "pickle", "path": path, "config": {}, "name": path.name, "kind": "pickle", "latent": None}
    return None


def _diffusers_folder(path: Path) -> dict[str, Any] | None:
    """The record of a diffusers autoencoder folder (or a pipeline folder's vae/), None for anything else; a
    checkpoint latentmap trained as one stays a checkpoint."""
    from latentmap.models import diffusers_folder as dm

    try:
        folder = dm.folder_of(path) if path.is_dir() else None
        config = dm.read_diffusers_config(folder) if folder is not None else {}
    except CheckpointError:
        return None
    if not config or config.get("kind") == dm.KIND:
        return None
    c, h, w = dm.latent_shape_of(config)
    return {"source": "diffusers", "path": folder, "config": config, "name": path.name,
            "kind": f"diffusers {config['_class_name']}", "latent": c * h * w}


def _inverter_trained(config: dict[str, Any]) -> bool:
    return isinstance((config.get("training") or {}).get("inverter"), dict)


def _dataset(config: dict[str, Any]) -> str | None:
    settings = (config.get("training") or {}).get("settings") or {}
    value = config.get("dataset") or (settings.get("dataset") if isinstance(settings, dict) else None)
    return str(value) if value else None


def _test_mse(config: dict[str, Any]) -> float | None:
    value = (config.get("metrics") or {}).get("test_mse")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _note(record: dict[str, Any]) -> str:
    config, kind = record["config"], record["kind"]
    if record["source"] == "pythae":
        pickled = _pythae_pickles(record)
        return f"pythae {config.get('name', '?')}" + (
            f" (pickled {', '.join(n for n, _ in pickled)}: needs --trust-pickle to load)" if pickled else "")
    if record["source"] == "pickle":
        return PICKLE_NOTE
    if record["source"] == "diffusers" or kind == "diffusers":
        from latentmap.models.diffusers_folder import latent_shape_of, weights_files

        safe, pickled = weights_files(record["path"])
        return _shape(list(latent_shape_of(config))) + (" (pickled weights: needs --trust-pickle)"
                                                        if pickled and not safe else "")
    if kind in GENERATOR_KINDS:
        return "inverter trained" if _inverter_trained(config) else "no trained inverter"
    if isinstance(config.get("external"), dict):
        return "wrapped modules (needs --trust-pickle to load)"
    return ""


# ---------------------------------------------------------------- models list


def _list_rows(paths: Iterable[Path]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for path in paths:
        try:
            record = identify(path)
        except LatentmapError as exc:  # one broken folder is a row of its own, never the end of the list
            rows.append((path.name, "?", "-", "-", "-", f"unreadable: {exc}"))
            continue
        if record is None:
            continue
        config, latent, mse = record["config"], record["latent"], _test_mse(record["config"])
        rows.append((record["name"], record["kind"], str(latent) if isinstance(latent, int) else "-",
                     _dataset(config) or "-", f"{mse:.5f}" if mse is not None else "-", _note(record)))
    return rows


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    header = ("name", "kind", "latent", "dataset", "test MSE", "notes")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    right = {2, 4}
    for row in [header, *rows]:
        cells = [str(cell).rjust(w) if i in right else str(cell).ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        click.echo("  ".join(cells).rstrip())


@command.command("list")
@click.argument("directory", required=False, type=click.Path())
def list_models(directory: str | None) -> None:
    """Name, kind, latent size, dataset and test MSE of every model in DIRECTORY.

    Without DIRECTORY: the models shipped with latentmap (load them by name, e.g.
    `--model fmnist-vae-a`). With it: its latentmap checkpoints, pythae model folders and
    StyleGAN-style pickles (listed, never unpickled)."""
    if directory is None:
        from latentmap.models.shipped import shipped_checkpoints, shipped_root

        shipped = shipped_checkpoints()
        if not shipped:
            shipped_root()  # says why (not installed), or:
            raise CheckpointError("no shipped checkpoints found; reinstall latentmap")
        _print_table(_list_rows(shipped.values()))
        return
    folder = Path(directory)
    if not folder.exists():
        raise CheckpointError(f"'{directory}' does not exist")
    if identify(folder) is not None:  # the folder (or file) is a model itself
        paths = [folder]
    elif folder.is_dir():
        paths = sorted(folder.iterdir())
    else:
        raise CheckpointError(f"'{directory}' is not a folder or a model: {NOT_A_MODEL}")
    rows = _list_rows(paths)
    if not rows:
        raise CheckpointError(f"no checkpoint folders, pythae folders or generator pickles in '{directory}'")
    _print_table(rows)


# ---------------------------------------------------------------- models info


def locate(spec: str) -> Path:
    """A path that exists, else the folder of the shipped model named ``spec``."""
    if spec.startswith("py:"):
        return Path(spec)
    path = Path(spec[len("diffusers:"):] if spec.startswith("diffusers:") else spec)
    if path.exists():
        return path
    from latentmap.models.shipped import shipped_checkpoints

    shipped = shipped_checkpoints()
    if spec in shipped:
        return shipped[spec]
    names = ", ".join(shipped) or "none installed"
    raise CheckpointError(f"no model '{spec}': no such file or folder, and no shipped model of that name ({names})")


def _prior(config: dict[str, Any]) -> str:
    declared = config.get("prior")
    if declared:
        return declared if isinstance(declared, str) else json.dumps(declared, sort_keys=True)
    if config.get("kind") in W_SPACE_KINDS:
        z_dim = (config.get("architecture") or {}).get("z_dim")
        return f"w = mapping(z), z ~ standard normal N(0, I){f' of size {z_dim}' if z_dim else ''}"
    return "standard normal N(0, I)"


def _inverter_line(config: dict[str, Any]) -> str:
    trained = (config.get("training") or {}).get("inverter")
    if not isinstance(trained, dict):
        return "not trained (encode runs an untrained network; see `latentmap train inverter`)"
    parts = [f"trained ({trained['inverter_steps']} steps)" if "inverter_steps" in trained else "trained"]
    metrics = (config.get("metrics") or {}).get("inverter") or {}
    if isinstance(metrics.get("own_samples_image_mse"), (int, float)):
        parts.append(f"image MSE {metrics['own_samples_image_mse']:.4f} on {metrics.get('own_samples', '?')} own samples")
    if isinstance(metrics.get("real_test_image_mse"), (int, float)):
        parts.append(f"{metrics['real_test_image_mse']:.4f} on {metrics.get('real_test_images', '?')} real test images")
    return ", ".join(parts)


def _training_line(config: dict[str, Any]) -> str | None:
    training = config.get("training") or {}
    settings = training.get("settings") or {}
    parts = []
    if settings.get("epochs"):
        parts.append(f"{settings['epochs']} epochs")
    seed = config.get("seed", settings.get("seed"))
    if seed is not None:
        parts.append(f"seed {seed}")
    if training.get("loss"):
        parts.append(f"loss: {training['loss']}")
    return ", ".join(parts) or None


def _checkpoint_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    config, kind = record["config"], record["kind"]
    external = config.get("external") if isinstance(config.get("external"), dict) else None
    if kind == "external-stylegan":
        source = (config.get("generator") or {}).get("source", "?")
        kind_text = f"{kind} (W inverter checkpoint; the generator stays in {source})"
    elif external:
        kind_text = f"{kind} (wrapped modules, rebuilt by {external.get('factory', '?')}: needs --trust-pickle)"
    else:
        kind_text = f"{kind} (latentmap checkpoint)"
    latent = str(config["latent_dim"])
    if kind in W_SPACE_KINDS:
        latent += " (W space)"
    lines = [("kind", kind_text), ("latent size", latent), ("image shape", _shape(config.get("image_shape"))),
             ("prior", _prior(config))]
    if kind == "diffusers":  # a save_pretrained folder latentmap trained: diffusers' lines, then latentmap's record
        lines = [(key, f"{value}; a latentmap checkpoint too" if key == "kind" else value)
                 for key, value in _diffusers_lines(record) if key not in ("weights", "dataset")]
    elif kind in GENERATOR_KINDS or _inverter_trained(config):
        lines.append(("inverter", _inverter_line(config)))
    elif external:
        lines.append(("encoder", "the wrapped encoder"))
    else:
        lines.append(("encoder", "trained with the decoder"))
    lines.append(("dataset", _dataset(config) or "-"))
    training = _training_line(config)
    if training:
        lines.append(("training", training))
    metrics = config.get("metrics") or {}
    mse = _test_mse(config)
    if mse is not None:
        images = metrics.get("test_images") or (metrics.get("inverter") or {}).get("real_test_images")
        lines.append(("test MSE", f"{mse:.5f}" + (f" on {images} test images" if images else "")))
    others = {k: v for k, v in metrics.items() if k not in ("test_mse", "test_images")
              and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if others:
        lines.append(("metrics", ", ".join(f"{k}={v:g}" for k, v in others.items())))
    weights = config.get("weights") if isinstance(config.get("weights"), dict) else {}
    lines.append(("weights", ", ".join(_weights_state(record["path"] / name, expected)
                                      for name, expected in weights.items()) or "-"))
    return lines


def _diffusers_lines(record: dict[str, Any], trust: bool = False) -> list[tuple[str, str]]:
    from latentmap.models.diffusers_folder import describe_folder

    lines = describe_folder(record["path"], record["config"])
    return [*lines[:3], ("prior", NO_PRIOR), *lines[3:], ("dataset", "- (diffusers folders do not record it)")]


def _weights_state(file: Path, expected: str) -> str:
    """"model.safetensors (1.2 MB, sha256 as recorded)", or what is wrong with the file."""
    from latentmap.io.checkpoint import sha256_file

    if not file.is_file():
        return f"{file.name} (BROKEN: missing)"
    size = f"{file.stat().st_size / 1e6:.1f} MB"
    if sha256_file(file) != expected:
        return f"{file.name} ({size}, BROKEN: its sha256 is not the one config.json records: truncated or changed)"
    return f"{file.name} ({size}, sha256 as recorded)"


def _loaded_lines(spec: str) -> list[tuple[str, str]]:
    """Latent size, image shape and prior of the model ``spec`` loads (the caller has the trust flag)."""
    from latentmap.models.registry import load_model

    model = load_model(spec, device="cpu", allow_pickle=True)
    latent = str(model.latent_dim) + (" (W space)" if model.kind in W_SPACE_KINDS else "")
    if not model.has_prior:
        prior = NO_PRIOR
    elif model.kind in W_SPACE_KINDS:
        prior = "w = mapping(z), z ~ standard normal N(0, I)"
    else:
        prior = "standard normal N(0, I)"
    lines = [("loaded as", f"{model.kind} '{model.name}'"), ("latent size", latent),
             ("image shape", _shape(list(model.image_shape))), ("prior", prior)]
    if model.kind in W_SPACE_KINDS:
        lines.append(("inverter", "trained" if model.has_trained_encoder else
                      f"none yet: train one with `latentmap train inverter --model {spec} --trust-pickle`"))
    return lines


def _pickle_lines(record: dict[str, Any], trust: bool = False) -> list[tuple[str, str]]:
    size = record["path"].stat().st_size / 1e6
    head = [("kind", PICKLE_NOTE), ("size", f"{size:.1f} MB")]
    if trust:
        return [*head, *_loaded_lines(str(record["path"])),
                ("warning", "unpickling ran code stored in the file (--trust-pickle)")]
    return [*head,
            ("latent size", "not read: pass --trust-pickle to load the pickle and show it (the generator's w_dim)"),
            ("inverter", "none yet: train one with `latentmap train inverter --model PATH --trust-pickle`"),
            ("warning", "unpickling runs code stored in the file: load it only if you trust its source")]


def _py_lines(record: dict[str, Any], trust: bool = False) -> list[tuple[str, str]]:
    head = [("kind", "py: factory (imports and runs the named code; the module is looked up on the Python path, "
                     "then in the working folder)")]
    if trust:
        return [*head, *_loaded_lines(record["spec"])]
    return [*head, ("latent size", "not read: pass --trust-code to import the factory, run it and show it")]


@command.command("info")
@click.argument("model")
@trust_pickle_option
def info(model: str, trust_pickle: bool) -> None:
    """Kind, latent size, image shape, prior, encoder or inverter, dataset and metrics of MODEL.

    MODEL is a shipped model's name (see `latentmap models list`), a path, a diffusers:PATH or a
    py:module:factory spec. Without --trust-pickle/--trust-code only the files that describe the model are read
    (a checkpoint's weights are checked against their sha256); with it a generator pickle or a
    py: spec is loaded to show its latent size and image shape."""
    path = locate(model)
    if model.startswith("py:"):
        record: dict[str, Any] = {"source": "py", "spec": model, "name": model, "path": None}
        lines = [("name", model), *_py_lines(record, trust_pickle)]
    else:
        found = identify(path)
        if found is None:
            raise CheckpointError(f"'{model}' is not a model: {NOT_A_MODEL}")
        record = found
        if record["source"] == "checkpoint":
            described = _checkpoint_lines(record)
        else:
            described = {"pythae": _pythae_lines, "pickle": _pickle_lines,
                         "diffusers": _diffusers_lines}[record["source"]](record, trust_pickle)
        lines = [("name", record["name"]), ("path", str(path.resolve())), *described]
    width = max(len(key) for key, _ in lines) + 2
    for key, value in lines:
        click.echo(f"{key + ':':{width}s}{value}")
