"""Outputs: default folders under runs/, only final paths inside them, and --overwrite of latentmap's own outputs."""

import shutil

from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.io.atomic import MARKER_NAME, read_output_marker

from tests.conftest import ROOT


def test_default_output_is_a_new_runs_folder_and_overwrite_replaces_only_own_output(tiny_vae_checkpoint, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["diagnose", "--model", str(tiny_vae_checkpoint), "--images", "40", "--no-progress"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("diagnose-") for r in runs)  # never over an earlier run
    assert read_output_marker(runs[0])["kind"] == "report"
    again = CliRunner().invoke(main, args + ["--out", str(runs[0])])
    assert again.exit_code == 2 and "--overwrite" in again.output
    replaced = CliRunner().invoke(main, args + ["--out", str(runs[0]), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert (runs[0] / "index.html").is_file() and (runs[0] / MARKER_NAME).is_file()


def test_demo_outputs_hold_final_paths_only(tiny_vae_checkpoint, tmp_path):
    checkpoints = tmp_path / "cks"
    shutil.copytree(tiny_vae_checkpoint, checkpoints / "tiny-vae")
    shutil.copytree(tiny_vae_checkpoint, checkpoints / "tiny-vae-b")
    config = checkpoints / "tiny-vae-b" / "config.json"
    config.write_text(config.read_text().replace('"name": "tiny-vae"', '"name": "tiny-vae-b"'))
    shutil.copytree(ROOT / "support_sets" / "fmnist-svae", tmp_path / "support_sets" / "fmnist-svae")
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["demo", "--checkpoints", str(checkpoints), "--out", str(out), "--images", "48",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    texts = {p: p.read_text() for p in out.rglob("*") if p.suffix in (".json", ".csv", ".html")}
    assert any(p.name == "map.json" for p in texts)
    leaked = [str(p) for p, text in texts.items() if ".tmp-" in text or ".old-" in text]
    assert not leaked, f"temporary paths in {leaked}"
    # the maps record their models relative to the map folder: they load from there
    map_json = next(p for p in texts if p.name == "map.json")
    import json

    info = json.loads(map_json.read_text())
    assert info["source"]["origin"] == "checkpoint"
    assert (map_json.parent / info["source"]["spec"]).resolve() == (checkpoints / info["source"]["name"]).resolve()
    assert len(info["source"]["fingerprint"]) == 64


NOT_READ = {  # parameters of output-writing commands that name no file or folder the command reads
    "out", "overwrite", "kind", "name", "latent_dim", "epochs", "seed", "batch_size", "lr", "device", "channels",
    "hidden", "train_images", "test_images", "trust_pickle", "inverter_steps", "inverter_batch_size", "inverter_lr",
    "inverter_image_weight", "inverter_channels", "inverter_eval_samples", "own_samples_only", "z_dim", "gamma_min",
    "r1_gamma", "progress", "latent_channels", "kl_weight",
    "split", "images", "size", "strategy", "top_k", "threshold", "gain_images", "pairs", "sizes", "strategies",
    "seeds", "alpha", "bias", "reference_images", "fit_images", "samples", "fit_split", "method", "estimator",
    "estimators", "image_transform", "grid_images", "cycle", "fit_kind", "quick", "own_samples", "steps", "init",
    "precision", "loss", "lpips_net", "sampler", "components", "refine_images", "bootstrap", "min_count", "k",
    "calibration", "track", "track_every", "geometry", "geometry_points", "tsne",
}


def _commands(group, path=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield path + (name,), command


def test_every_parameter_of_an_output_command_is_known_as_an_input_or_not():
    """A new option of a command that writes an output must say whether it names something the command reads:
    those in INPUT_PARAMS are protected from --out (cli/options.prepare_output) whatever their form."""
    from latentmap.cli.inputs import INPUT_PARAMS

    writing = {path: command for path, command in _commands(main) if any(p.name == "out" for p in command.params)}
    assert len(writing) >= 12
    unknown = {" ".join(path): sorted(p.name for p in command.params if p.name and p.name not in INPUT_PARAMS
                                      and p.name not in NOT_READ)
               for path, command in writing.items()}
    assert not {k: v for k, v in unknown.items() if v}, unknown
    import inspect

    unchecked = [" ".join(path) for path, command in writing.items()
                 if "prepare_output(" not in inspect.getsource(inspect.unwrap(command.callback))]
    assert not unchecked, f"commands that write without prepare_output's checks: {unchecked}"
