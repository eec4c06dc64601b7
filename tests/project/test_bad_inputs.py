"""Every command against a table of bad inputs: exit code 2, one line, no traceback, nothing written or lost."""

import json
import pickle
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers.planted import SLOTS, planted_pythae_folder
from latentmap.cli.main import main
from latentmap.io.atomic import write_output_marker

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


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
    w["evil"] = _checkpoint_variant(tiny, root / "evil-model", lambda c, d: c.update(name="../../evil"))
    _untrusted_json_inputs(root, tiny, w)
    imgs = root / "imgs"
    imgs.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(imgs / f"{i}.png")
    _planted(w, root, tmp_path_factory.mktemp("sentinel") / "planted-code-ran", images)
    return w


def _planted(w, root, sentinel, images):
    """pythae folders with a planted pickle in each slot pythae's loader reads, and outputs that record one."""
    import torch

    from latentmap.maps.linear import LinearMap

    w["sentinel"] = sentinel
    for slot in SLOTS:
        w["planted_" + slot.replace("-", "_")] = planted_pythae_folder(root, slot, sentinel)
    # a map whose recorded target is the planted folder: `map eval` follows the path
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    fitted = LinearMap(bias=True, alpha=0.0).fit(x, x[:, :4] * 2)
    fitted.save(root / "map-to-planted", source={"name": "tiny-vae", "latent_dim": 8, "path": str(w["tiny"])},
                target={"name": "planted", "latent_dim": 4, "path": str(w["planted_metric"])})
    # a support set whose recorded reference model is the planted folder: `bench coverage` follows it
    support = shutil.copytree(REPO / "support_sets" / "fmnist-svae", root / "support-planted")
    manifest = json.loads((support / "manifest.json").read_text())
    manifest["model"] = {**manifest["model"], "source": str(w["planted_discriminator_aae"])}
    (support / "manifest.json").write_text(json.dumps(manifest))
    np.save(root / "good.npy", images)


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
    # inputs in every form are never an output: npy:/folder: specs, --data-dir, --exclude files, LPIPS weights,
    # shipped names, and the paths outputs record (a map's models)
    (FIT + ["--support-set", "npy:own-map/imgs.npy", "--out", "own-map", "--overwrite"], "contains the input"),
    (FIT + ["--support-set", "folder:own-map/pngs?size=28", "--out", "own-map", "--overwrite"], "contains the input"),
    (FIT + ["--dataset", "npy:own-map/imgs.npy", "--out", "own-map", "--overwrite"], "contains the input"),
    (FIT + ["--samples", "5", "--data-dir", "own-map/data", "--out", "own-map", "--overwrite"], "contains the input"),
    (FIT + ["--dataset", "npy:own-map/imgs.npy", "--out", "own-map/imgs.npy"], "is also an input"),
    (["train", "vae", "--dataset", "npy:own-checkpoint/imgs.npy", "--out", "own-checkpoint", "--overwrite"],
     "contains the input"),
    (["train", "vae", "--data-dir", "own-checkpoint", "--out", "own-checkpoint", "--overwrite"], "is also an input"),
    (BUILD + ["--exclude", "own-support/skip.txt", "--out", "own-support", "--overwrite"], "contains the input"),
    (BUILD + ["--for-models", "{tiny},{tiny2}", "--out", "{tiny2}", "--overwrite"], "is also an input"),
    (["diagnose", "--model", "{tiny}", "--dataset", "folder:own-report/pngs", "--out", "own-report", "--overwrite"],
     "contains the input"),
    (["invert", "--model", "{tiny}", "--lpips", "own-inversion/alex.pth", "--out", "own-inversion", "--overwrite"],
     "contains the input"),
    (["map", "eval", "--map", "own-map-of-tiny", "--out", "{tiny_parent}", "--overwrite"], "contains the input"),
    (ATLAS + ["--fit", "support-set", "--support-set", "npy:own-report/imgs.npy", "--out", "own-report",
              "--overwrite"], "contains the input"),
    (["bench", "expressiveness", "{tiny}", "--support-set", "npy:own-report/imgs.npy", "--out", "own-report",
      "--overwrite"], "contains the input"),
    (["bench", "fidelity", "npy:own-report/imgs.npy", "--out", "own-report", "--overwrite"], "contains the input"),
    # the shipped models and support sets are never replaced, by name or by path
    (["train", "inverter", "--model", "fmnist-stylegan", "--out", "{shipped}/fmnist-stylegan", "--overwrite"],
     "shipped models"),
    (["train", "vae", "--out", "{shipped}/fmnist-vae-a", "--overwrite"], "shipped models"),
    (["diagnose", "--model", "fmnist-vae-a", "--out", "{shipped}", "--overwrite"], "shipped models"),
    (["support-set", "build", "--model", "fmnist-svae", "--out", "{shipped_support}/fmnist-svae", "--overwrite"],
     "shipped models"),
    # a user's folders named like latentmap's temporary ones survive a failed run beside them
    (["diagnose", "--model", "{tiny}", "--dataset", "digits", "--out", "own-report", "--overwrite"],
     "expects images of shape"),
    # a model whose name would climb out of --out (a whole atlas of such names: tests/cli/test_map.py): the run
    # fails once the models are loaded, nothing is written anywhere
    (["map", "atlas", "--models", "{tiny},{evil}", "--fit", "support-set", "--support-set", "{support_nan}", "--out",
      "atlas"], "finite pixel values"),
]
# pythae folders with a planted pickle: every slot its loader reads, every command and route that loads a model
TRUST = ("--trust-pickle", "runs code")
PLANTED_CASES = [
    (["diagnose", "--model", "{planted_encoder}"], ("(encoder.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_decoder}"], ("(decoder.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_discriminator_vaegan}"], ("(discriminator.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_discriminator_aae}"], ("(discriminator.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_metric_flag_text}"], ("(metric.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_discriminator_flag_zero}"], ("(discriminator.pkl)", *TRUST)),
    (["diagnose", "--model", "{planted_weights}"], ("model.pt", "tensors only")),
    (["diagnose", "--model", "{planted_weights}", "--trust-pickle"], ("model.pt", "tensors only")),
    (["invert", "--model", "{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (["train", "inverter", "--model", "{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (FIT + ["--samples", "50", "--target", "{planted_discriminator_vaegan}"], ("(discriminator.pkl)", *TRUST)),
    (["map", "atlas", "--models", "{tiny},{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (["map", "eval", "--map", "{root}/map-to-planted"], ("(metric.pkl)", *TRUST)),  # the path map.json records
    (BUILD[:3] + ["{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (BUILD + ["--for-models", "{planted_metric}"], ("(metric.pkl)", *TRUST)),
    (["support-set", "compare", "--models", "{tiny},{planted_discriminator_aae}"], ("(discriminator.pkl)", *TRUST)),
    (["bench", "expressiveness", "{root}/pythae-planted-metric*"], ("(metric.pkl)", *TRUST)),  # a glob
    (["bench", "fidelity", "npy:{root}/good.npy", "--reference", "{planted_metric}", "--dataset", "fashion-mnist"],
     ("(metric.pkl)", *TRUST)),
    (["bench", "coverage", "npy:{root}/good.npy", "--support-set", "{root}/support-planted", "--dataset",
      "fashion-mnist"], ("(discriminator.pkl)", *TRUST)),  # the reference model the support set records
]
CASES += PLANTED_CASES


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def test_the_table_is_large():
    assert len(CASES) >= 60 and len({tuple(argv) for argv, _ in CASES}) == len(CASES)
    planted = {a for argv, _ in PLANTED_CASES for a in argv if "planted" in a}
    assert {"{planted_" + slot.replace("-", "_") + "}" for slot in SLOTS} <= planted  # every slot has a case


@pytest.mark.parametrize("argv,fragment", CASES, ids=[" ".join(argv[:2]) + f"-{i}" for i, (argv, _) in
                                                       enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, argv, fragment, tmp_path, monkeypatch):
    from latentmap.models.shipped import shipped_root

    shipped = shipped_root()
    paths = {k: str(v) for k, v in world.items()} | {"tiny_parent": str(world["tiny"].parent),
                                                     "shipped": str(shipped / "checkpoints"),
                                                     "shipped_support": str(shipped / "support_sets")}
    argv = [a.format(**paths) for a in argv]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LATENTMAP_WRITE_SHIPPED", raising=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("years of work")
    (tmp_path / "own-report").mkdir()
    write_output_marker(tmp_path / "own-report", "report")
    (tmp_path / "own-checkpoint").mkdir()
    write_output_marker(tmp_path / "own-checkpoint", "checkpoint")
    _own_outputs_holding_inputs(tmp_path, world)
    before, inputs_before = _snapshot(tmp_path), _snapshot(world["root"])
    tiny_before, shipped_before = _snapshot(world["tiny"]), _snapshot(shipped)
    # torch's own tensors-only default turned off: only latentmap's care keeps a planted model.pt from running
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    result = CliRunner().invoke(main, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert not world["sentinel"].exists(), f"{argv} ran the planted pickle"
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), (argv, result.output)
    for part in (fragment if isinstance(fragment, tuple) else (fragment,)):
        assert part in lines[0], (argv, lines[0])
    assert _snapshot(tmp_path) == before, f"{argv} wrote or removed files"
    assert _snapshot(world["root"]) == inputs_before and _snapshot(world["tiny"]) == tiny_before
    assert _snapshot(shipped) == shipped_before
    assert not (tmp_path.parent / "evil").exists() and not (world["root"].parent / "evil").exists()


def _own_outputs_holding_inputs(folder, world):
    """latentmap outputs (which --overwrite may replace) that hold the inputs of the cases above, and a user's
    folders named like latentmap's temporary and backup folders of a process that is gone."""
    images = np.random.default_rng(1).random((6, 1, 28, 28), dtype=np.float32)
    for name, kind in (("own-map", "map"), ("own-support", "support-set"), ("own-inversion", "inversion")):
        (folder / name).mkdir()
        write_output_marker(folder / name, kind)
    for name in ("own-map", "own-checkpoint", "own-report"):
        np.save(folder / name / "imgs.npy", images)
    from PIL import Image

    for name in ("own-map", "own-report"):
        (folder / name / "pngs").mkdir()
        for i in range(3):
            Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(folder / name / "pngs" / f"{i}.png")
    (folder / "own-map" / "data").mkdir()
    (folder / "own-support" / "skip.txt").write_text("1 2 3\n")
    (folder / "own-inversion" / "alex.pth").write_bytes(b"weights")
    map_folder = folder / "own-map-of-tiny"  # a map that records its models by path
    map_folder.mkdir()
    (map_folder / "map.json").write_text(json.dumps({"source": {"path": str(world["tiny"])},
                                                     "target": {"path": str(world["tiny"])}}))
    dead = _dead_pid()  # a user's folders named like an older version's temporary and backup folders, or like
    for name in (f".own-report.tmp-{dead}-abc123", f".own-report.old-{dead}", f".atlas.tmp-{dead}-x1y2z3",
                 ".own-report.tmp-0123456789abcdef"):  # today's but without latentmap's ownership file
        (folder / name).mkdir()
        (folder / name / "mine.txt").write_text("a user's folder, named by chance like a temporary one")


def _dead_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


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
