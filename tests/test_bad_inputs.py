"""Every command against a table of bad inputs: exit code 2, one line, no traceback, nothing written or lost."""

import json
import pickle
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.io.atomic import write_output_marker


def _checkpoint_variant(src, dst, edit):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config, dst)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vae_checkpoint):
    """Inputs that exist outside the folder each case runs in: checkpoints good and broken, support sets, maps."""
    root = tmp_path_factory.mktemp("inputs")
    tiny = tiny_vae_checkpoint
    w = {"tiny": tiny, "root": root}
    w["latent_abc"] = _checkpoint_variant(tiny, root / "latent-abc", lambda c, d: c.update(latent_dim="abc"))
    w["neg_channels"] = _checkpoint_variant(tiny, root / "neg-channels",
                                            lambda c, d: c["architecture"].update(channels=[-4, 8]))
    w["shape_2d"] = _checkpoint_variant(tiny, root / "shape-2d", lambda c, d: c.update(image_shape=[28, 28]))
    w["no_weights"] = _checkpoint_variant(tiny, root / "no-weights", lambda c, d: (d / "model.safetensors").unlink())
    w["bad_sha"] = _checkpoint_variant(tiny, root / "bad-sha",
                                       lambda c, d: c.update(weights={"model.safetensors": "0" * 64}))
    w["config_array"] = shutil.copytree(tiny, root / "config-array")
    (w["config_array"] / "config.json").write_text("[1, 2]")
    w["tiny2"] = _checkpoint_variant(tiny, root / "tiny-vae-b", lambda c, d: c.update(name="tiny-vae-b"))
    w["bad_json"] = shutil.copytree(tiny, root / "bad-json")
    (w["bad_json"] / "config.json").write_text("{not json")
    w["unknown_kind"] = _checkpoint_variant(tiny, root / "unknown-kind", lambda c, d: c.update(kind="transformer"))
    # support sets: a manifest that is a JSON array, images with NaN
    images = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    for name, manifest, imgs in (("support-array", [1, 2], images),
                                 ("support-nan", {"name": "s", "size": 8}, np.where(images > 0.5, np.nan, images))):
        folder = root / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(manifest))
        np.save(folder / "images.npy", imgs.astype(np.float32))
        w[name.replace("-", "_")] = folder
    np.save(root / "bad.npy", np.full((4, 1, 28, 28), 3.0, dtype=np.float32))
    np.save(root / "strings.npy", np.array([["a", "b"]]))
    np.savez(root / "x.npz", a=images)
    (root / "g.pkl").write_bytes(pickle.dumps({"G_ema": _Evil()}))
    (root / "empty").mkdir()
    (root / "map-bad-json").mkdir()
    (root / "map-bad-json" / "map.json").write_text("[]")
    (root / "plain.txt").write_text("not a folder")
    _untrusted_json_inputs(root, tiny, w)
    imgs = root / "imgs"
    imgs.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(imgs / f"{i}.png")
    return w


DEEP = "[" * 100_000 + "]" * 100_000  # nested past Python's recursion limit


def _untrusted_json_inputs(root, tiny, w):
    """Checkpoints, support sets and maps whose JSON is nested too deeply or holds wrong types; a map whose
    coefficients are NaN with a checksum that matches them; a checkpoint of a future format version."""
    from safetensors.torch import load_file, save_file

    from latentmap.io.checkpoint import sha256_file
    from latentmap.maps.linear import LinearMap

    w["deep_json"] = shutil.copytree(tiny, root / "deep-json")
    (w["deep_json"] / "config.json").write_text(DEEP)
    w["format_99"] = _checkpoint_variant(tiny, root / "format-99", lambda c, d: c.update(format_version=99))
    images = np.random.default_rng(1).random((8, 1, 28, 28), dtype=np.float32)
    for name, manifest in (("support-deep", None), ("support-threshold-text", {"name": "s", "threshold": "abc",
                                                                              "top_k": 2, "variables": [0, 1]})):
        folder = root / name
        folder.mkdir()
        (folder / "manifest.json").write_text(DEEP if manifest is None else json.dumps(manifest))
        np.save(folder / "images.npy", images)
        w[name.replace("-", "_")] = folder
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    fitted = LinearMap().fit(x, x @ rng.normal(size=(8, 8)))
    for name in ("map-nan", "map-deep", "map-hyper-list"):
        fitted.save(root / name, source={"name": "tiny-vae", "latent_dim": 8, "path": str(tiny)},
                    target={"name": "tiny-vae", "latent_dim": 8, "path": str(tiny)})
        w[name.replace("-", "_")] = root / name
    tensors = load_file(str(root / "map-nan" / "map.safetensors"))
    tensors["coef"][0, 0] = float("nan")
    save_file(tensors, str(root / "map-nan" / "map.safetensors"))
    info = json.loads((root / "map-nan" / "map.json").read_text())
    info["weights"]["map.safetensors"] = sha256_file(root / "map-nan" / "map.safetensors")
    (root / "map-nan" / "map.json").write_text(json.dumps(info))
    (root / "map-deep" / "map.json").write_text(DEEP)
    info = json.loads((root / "map-hyper-list" / "map.json").read_text())
    (root / "map-hyper-list" / "map.json").write_text(json.dumps({**info, "hyperparameters": [1, 2]}))


FIT = ["map", "fit", "--source", "{tiny}", "--target", "{tiny}"]
ATLAS = ["map", "atlas", "--models", "{tiny},{tiny2}"]
BUILD = ["support-set", "build", "--model", "{tiny}"]
# (argv with {placeholders} for the inputs of the `world` fixture, a fragment the one-line error must hold)
CASES = [
    # train
    (["train", "vae", "--lr", "nan"], "finite number"),
    (["train", "vae", "--lr", "-1"], "must be > 0"),
    (["train", "vae", "--lr", "inf"], "finite number"),
    (["train", "vae", "--channels=-4,8"], "positive integers"),
    (["train", "vae", "--channels", "a,b"], "comma-separated integers"),
    (["train", "vae", "--latent-dim", "0"], "--latent-dim"),
    (["train", "vae", "--epochs", "0"], "--epochs"),
    (["train", "vae", "--gamma-min", "nan"], "finite number"),
    (["train", "vae", "--dataset", "nosuch"], "unknown dataset"),
    (["train", "vae", "--dataset", "folder:/no/such/folder"], "does not exist"),
    (["train", "vae", "--dataset", "folder:{root}/imgs?size=0"], "size"),
    (["train", "vae", "--dataset", "folder:{root}/imgs?channels=2"], "channels"),
    (["train", "vae", "--dataset", "folder:{root}/imgs?crop=1,2"], "crop"),
    (["train", "vae", "--dataset", "folder:{root}/imgs?colour=red"], "colour"),
    (["train", "vae", "--device", "mps"], "device must be"),
    (["train", "vae", "--device", "meta"], "device must be"),
    (["train", "vae", "--device", "cuda:7"], "cuda:7"),
    (["train", "nosuchkind"], "nosuchkind"),
    (["train", "vae", "--out", ""], "empty path"),
    (["train", "vae", "--out", "."], "names no folder"),
    (["train", "vae", "--out", "{root}/plain.txt"], "not a folder"),
    (["train", "vae", "--out", "{root}/plain.txt/sub"], "is not a folder"),
    (["train", "vae", "--out", "foreign"], "was not written by latentmap"),
    (["train", "vae", "--out", "own-report"], "holds a latentmap report, not a checkpoint"),
    (["train", "vae", "--out", "own-checkpoint"], "pass --overwrite"),
    (["train", "inverter"], "needs --model"),
    (["train", "vae", "--model", "{tiny}"], "only used with"),
    # models
    (["models", "info", "nowhere"], "nowhere"),
    (["models", "list", "{root}/no-such-folder"], "no-such-folder"),
    # diagnose: broken checkpoints and specs
    (["diagnose", "--model", "{latent_abc}"], "latent_dim"),
    (["diagnose", "--model", "{neg_channels}"], "architecture.channels"),
    (["diagnose", "--model", "{shape_2d}"], "image_shape"),
    (["diagnose", "--model", "{no_weights}"], "missing its weights file"),
    (["diagnose", "--model", "{bad_sha}"], "sha256"),
    (["diagnose", "--model", "{config_array}"], "must hold a JSON object"),
    (["diagnose", "--model", "{bad_json}"], "not valid JSON"),
    (["diagnose", "--model", "{unknown_kind}"], "unknown model kind"),
    (["diagnose", "--model", "nowhere"], "does not exist"),
    (["diagnose", "--model", "py:os:getcwd"], "--trust-code"),
    (["diagnose", "--model", "{root}/g.pkl"], "--trust-pickle"),
    (["diagnose", "--model", "{tiny}", "--dataset", "digits"], "expects images of shape"),
    (["diagnose", "--model", "{tiny}", "--images", "0"], "--images"),
    (["diagnose", "--model", "{tiny}", "--split", "nope"], "--split"),
    (["diagnose", "--model", "{tiny}", "--device", "meta"], "device must be"),
    (["diagnose", "--model", "{tiny}", "--out", "{tiny}"], "is also an input"),
    (["diagnose", "--model", "{tiny}", "--out", "{tiny_parent}"], "contains the input"),
    # invert
    (["invert", "--model", "{tiny}", "--lr", "nan"], "finite number"),
    (["invert", "--model", "{tiny}", "--steps", "-1"], "--steps"),
    (["invert", "--model", "{tiny}", "--init", "nope"], "--init"),
    (["invert", "--model", "{tiny}", "--lpips", "{root}/no.pth"], "not a file"),
    (["invert", "--model", "{tiny}", "--loss", "mse+lpips", "--lpips", "off"], "needs LPIPS"),
    (["invert", "--model", "{tiny}", "--images", "0"], "--images"),
    # map fit
    (FIT, "exactly one of"),
    (FIT + ["--samples", "5", "--dataset", "digits"], "exactly one of"),
    (FIT + ["--support-set", "{support_array}"], "must hold a JSON object"),
    (FIT + ["--support-set", "{support_nan}"], "finite pixel values"),
    (FIT + ["--support-set", "npy:{root}/bad.npy"], "[0, 1]"),
    (FIT + ["--support-set", "npy:{root}/x.npz"], "npz"),
    (FIT + ["--support-set", "npy:{root}/strings.npy"], "strings.npy"),
    (FIT + ["--samples", "50", "--alpha", "-1"], "'auto'"),
    (FIT + ["--samples", "50", "--alpha", "sometimes"], "'auto'"),
    (FIT + ["--samples", "50", "--method", "svd"], "--method"),
    (FIT + ["--dataset", "fashion-mnist", "--fit-images", "0"], "--fit-images"),
    (FIT + ["--samples", "50", "--out", "{tiny}"], "is also an input"),
    (FIT + ["--samples", "50", "--method", "procrustes", "--alpha", "1"], "applies to method 'lstsq' only"),
    # map eval
    (["map", "eval", "--map", "nowhere"], "does not exist"),
    (["map", "eval", "--map", "{root}/map-bad-json"], "must hold a JSON object"),
    (["map", "eval", "--map", "{tiny}"], "has no map.json"),
    # atlas
    (["map", "atlas", "--models", "{tiny}"], "at least 2 models"),
    (["map", "atlas", "--models", "{root}/nomatch*"], "no model matches"),
    (ATLAS + ["--fit", "support-set"], "needs --support-set"),
    (ATLAS + ["--support-set", "{support_nan}"], "applies to --fit support-set only"),
    (ATLAS + ["--fit-split", "nope"], "--fit-split"),
    (ATLAS + ["--fit", "dataset", "--samples", "10"], "--samples applies"),
    # support sets
    (BUILD + ["--size", "0"], "--size"),
    (BUILD + ["--top-k", "99", "--split", "test"], "top-k must be at most"),
    (BUILD + ["--threshold", "nan"], "finite number"),
    (BUILD + ["--exclude", "abc", "--split", "test"], "integer image indices"),
    (BUILD + ["--strategy", "nope"], "--strategy"),
    (["support-set", "show", "{support_array}"], "must hold a JSON object"),
    (["support-set", "show", "{root}/empty"], "has no manifest.json"),
    (["support-set", "compare", "--models", "{tiny}"], "at least two models"),
    (["support-set", "compare", "--models", "{tiny},{tiny2}", "--sizes", "0"], "--sizes"),
    # unbounded numbers: ranges, and memory estimated before a size drives an allocation
    (["train", "vae", "--seed", str(2**63)], "--seed"),
    (FIT + ["--samples", "50", "--seed", "-1"], "--seed"),
    (["train", "vae", "--hidden", str(10**9)], "--hidden"),
    (["train", "vae", "--channels", str(10**9)], "65,536"),
    (["train", "vae", "--latent-dim", "70000"], "--latent-dim"),
    (["train", "vae", "--channels", "65536,65536", "--train-images", "10"], "needs about"),
    (BUILD + ["--pairs", str(10**12)], "--pairs 1,000,000,000,000"),
    (["train", "vae", "--dataset", "fashion-mnist?pad=100000"], "pad must be at most"),
    (["train", "vae", "--dataset", "fashion-mnist?pad=60000"], "needs about"),
    (["train", "vae", "--dataset", "synthetic:100x28x28x1?seed=-1"], "seed of a synthetic dataset"),
    (["bench", "expressiveness", "{tiny}", "--bootstrap", str(10**9)], "--bootstrap"),
    (["support-set", "compare", "--models", "{tiny},{tiny2}", "--seeds", "100000"], "--seeds"),
    # untrusted JSON: nested too deeply, wrong-typed fields; numbers a checksum cannot vouch for
    (["diagnose", "--model", "{deep_json}"], "nested too deeply"),
    (["models", "info", "{deep_json}"], "nested too deeply"),
    (FIT + ["--support-set", "{support_deep}"], "nested too deeply"),
    (["support-set", "show", "{support_threshold_text}"], "field 'threshold' must be a number"),
    (["map", "eval", "--map", "{map_deep}"], "nested too deeply"),
    (["map", "eval", "--map", "{map_hyper_list}"], "field 'hyperparameters' must be a dict"),
    (["map", "eval", "--map", "{map_nan}"], "non-finite values"),
    (["diagnose", "--model", "{format_99}"], "format version 99"),
    # a data folder that holds nothing is an error, never the system's copy instead
    (["train", "vae", "--data-dir", "{root}/empty"], "is empty"),
    (["train", "vae", "--data-dir", "{root}/no-such-data"], "does not exist"),
    (["train", "vae", "--data-dir", "{root}/plain.txt"], "is not a folder"),
    # demo
    (["demo", "--checkpoints", "{root}/empty"], "no checkpoints"),
    (["demo", "--images", "0"], "--images"),
    (["demo", "--out", "foreign"], "was not written by latentmap"),
]


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def test_the_table_is_large():
    assert len(CASES) >= 60 and len({tuple(argv) for argv, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,fragment", CASES, ids=[" ".join(argv[:2]) + f"-{i}" for i, (argv, _) in
                                                       enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, argv, fragment, tmp_path, monkeypatch):
    paths = {k: str(v) for k, v in world.items()} | {"tiny_parent": str(world["tiny"].parent)}
    argv = [a.format(**paths) for a in argv]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("years of work")
    (tmp_path / "own-report").mkdir()
    write_output_marker(tmp_path / "own-report", "report")
    (tmp_path / "own-checkpoint").mkdir()
    write_output_marker(tmp_path / "own-checkpoint", "checkpoint")
    before, inputs_before = _snapshot(tmp_path), _snapshot(world["root"])
    tiny_before = _snapshot(world["tiny"])
    result = CliRunner().invoke(main, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), (argv, result.output)
    assert fragment in lines[0], (argv, lines[0])
    assert _snapshot(tmp_path) == before, f"{argv} wrote or removed files"
    assert _snapshot(world["root"]) == inputs_before and _snapshot(world["tiny"]) == tiny_before


def _one_line(result, fragment):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- torchrun's variables

LAUNCHED = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}


@pytest.mark.parametrize("env,fragment", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE must be an integer, got 'abc'"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR, MASTER_PORT are not set"),
    ({"WORLD_SIZE": "2"}, "RANK, MASTER_ADDR, MASTER_PORT are not set"),
    ({**LAUNCHED, "RANK": "x1"}, "RANK must be an integer"),
    ({**LAUNCHED, "RANK": "2"}, "RANK must be between 0 and 1"),
    ({**LAUNCHED, "LOCAL_RANK": "-1"}, "LOCAL_RANK must be between 0 and 1"),
    ({**LAUNCHED, "MASTER_PORT": "http"}, "MASTER_PORT must be an integer"),
    ({**LAUNCHED, "LATENTMAP_DIST_BACKEND": "carrier-pigeon"}, "LATENTMAP_DIST_BACKEND must be one of gloo, nccl"),
])
def test_a_broken_launch_environment_is_one_line_at_once(world, env, fragment, tmp_path, monkeypatch):
    import time

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LATENTMAP_DIST_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["map", "fit", "--source", str(world["tiny"]), "--target", str(world["tiny"]),
                                       "--samples", "50", "--out", "out"])
    assert time.monotonic() - start < 20  # refused before any wait for ranks (the gloo rendezvous waits minutes)
    _one_line(result, fragment)
    assert not list(tmp_path.iterdir())


def test_nccl_on_a_machine_without_cuda_is_one_line(world, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for name, value in {**LAUNCHED, "LATENTMAP_DIST_BACKEND": "nccl"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["models", "list", str(world["tiny"])])
    _one_line(result, "needs CUDA devices")


# --------------------------------------------------------------------------- one broken folder, the others listed

def test_models_list_shows_a_broken_folder_as_unreadable_and_lists_the_others(world, tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copytree(world["tiny"], zoo / "good")
    shutil.copytree(world["deep_json"], zoo / "deep")
    _checkpoint_variant(world["tiny"], zoo / "settings-list", lambda c, d: (c.pop("dataset"), c["training"].update(settings=[1, 2])))
    _checkpoint_variant(world["tiny"], zoo / "name-number", lambda c, d: c.update(name=7))
    pythae = zoo / "pythae-deep"
    pythae.mkdir()
    (pythae / "model_config.json").write_text(DEEP)
    (pythae / "model.pt").write_bytes(b"")
    result = CliRunner().invoke(main, ["models", "list", str(zoo)])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = result.output.splitlines()[1:]
    assert sorted(line.split()[0] for line in rows) == ["deep", "name-number", "pythae-deep", "tiny-vae",
                                                        "tiny-vae"], result.output  # good, and settings-list
    readable = [line for line in rows if line.startswith("tiny-vae")]
    assert all("unreadable" not in line for line in readable)
    by_name = {line.split()[0]: line for line in rows}
    assert "nested too deeply" in by_name["deep"] and "nested too deeply" in by_name["pythae-deep"]
    assert "field 'name' must be a str" in by_name["name-number"]


def test_reports_index_lists_a_report_with_a_broken_summary_as_unreadable(tmp_path):
    reports = tmp_path / "reports"
    for name, summary in (("deep", DEEP), ("wrong", json.dumps({"reconstruction": [{"test_mse": "low"}, 3]}))):
        (reports / name).mkdir(parents=True)
        (reports / name / "index.html").write_text(f"<html><title>{name}</title><h1>x</h1><p>lead</p></html>")
        (reports / name / "summary.json").write_text(summary)
    write_output_marker(reports / "wrong", "report")
    (reports / "wrong" / ".latentmap-output.json").write_text(json.dumps({"kind": "report", "created": 5}))
    result = CliRunner().invoke(main, ["report", "index", str(reports)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "index of 2 reports" in result.output and "summary.json is unreadable" in result.output


# --------------------------------------------------------------------------- the machine refuses a write

def _contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def fitted_map(world, tmp_path, monkeypatch):
    """A map written at tmp_path/out by `map fit`; returns the arguments that write it again, with --overwrite."""
    monkeypatch.chdir(tmp_path)
    argv = ["map", "fit", "--source", str(world["tiny"]), "--target", str(world["tiny"]), "--samples", "50",
            "--out", "out"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    return argv + ["--overwrite", "--seed", "1"]


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EROFS", "EACCES"])
def test_a_write_the_machine_refuses_is_one_line_and_the_old_output_stays(fitted_map, tmp_path, monkeypatch, code):
    import errno
    import os
    import pathlib

    before = _contents(tmp_path / "out")
    real_write_text = pathlib.Path.write_text

    def refuse(self, *args, **kwargs):
        if self.name == "map.json":
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    line = _one_line(CliRunner().invoke(main, fitted_map), os.strerror(getattr(errno, code)))
    assert "'out'" in line and code in line
    assert _contents(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left beside it


def test_a_file_size_limit_is_one_line_and_the_old_output_stays(fitted_map, tmp_path):
    """A real limit (ulimit -f): the write fails with EFBIG, not a SIGXFSZ that kills the process mid-write."""
    import os
    import resource
    import subprocess
    import sys

    before = _contents(tmp_path / "out")
    limit = max(len(data) for data in before.values()) // 2  # the largest file of the map can no longer be written

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-m", "latentmap", *fitted_map], cwd=tmp_path, env=env, capture_output=True,
                         text=True, preexec_fn=limited, timeout=300)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write 'out': File too large (EFBIG)"), lines
    assert _contents(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("state,fragment", [("missing", "(LATENTMAP_DATA_DIR) does not exist"), ("empty", "is empty")])
def test_latentmap_data_dir_naming_nothing_is_one_line_naming_the_variable(world, tmp_path, monkeypatch, state,
                                                                            fragment):
    folder = tmp_path / "data"
    if state == "empty":
        folder.mkdir()
    monkeypatch.setenv("LATENTMAP_DATA_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    line = _one_line(CliRunner().invoke(main, ["train", "vae", "--epochs", "1"]), fragment)
    assert "LATENTMAP_DATA_DIR" in line
    assert _snapshot(tmp_path) == before
