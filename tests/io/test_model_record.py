"""Model records: fingerprints of weights and config, shipped models found as shipped, changed models refused."""

import hashlib
import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from latentmap import load_model
from latentmap.cli.main import main
from latentmap.errors import CheckpointError
from latentmap.io.checkpoint import model_fingerprint, weights_digest
from latentmap.io.model_record import architecture_fingerprint, relative_record, resolve_model_record
from latentmap.models.registry import record_model

from tests.evaluation.test_relocation import affine_model, make_images


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in result.output, result.output
    return lines[0]


def test_fingerprint_is_the_sha256_of_the_config_and_every_tensor():
    model = affine_model("fp", 3, seed=0)
    digest = hashlib.sha256(json.dumps({"kind": "test-affine", "latent_dim": 3, "image_shape": [1, 8, 8],
                                        "objective": "test-affine", "architecture": {"tag": "a"},
                                        "source_sha256": None}, sort_keys=True).encode())
    for key in sorted(model.lin.state_dict()):
        t = model.lin.state_dict()[key]
        digest.update(f"\nlin.{key} {t.dtype} {list(t.shape)}\n".encode() + t.numpy().tobytes())
    assert model_fingerprint(model) == digest.hexdigest()


def test_fingerprint_follows_weights_and_config_architecture_only_the_networks():
    a, same = affine_model("a", 3, seed=0), affine_model("other-name", 3, seed=0)
    retrained, tagged = affine_model("a", 3, seed=1), affine_model("a", 3, seed=0, tag="b")
    assert model_fingerprint(a) == model_fingerprint(same)  # the name is not what the model computes
    assert len({model_fingerprint(m) for m in (a, retrained, tagged)}) == 3
    assert architecture_fingerprint(a) == architecture_fingerprint(retrained) == architecture_fingerprint(tagged)
    assert architecture_fingerprint(a) != architecture_fingerprint(affine_model("a", 4, seed=0))


def test_saved_and_reloaded_model_keeps_its_fingerprint_and_records_its_origin(tmp_path):
    model = affine_model("keep", 3, seed=2)
    model.save(tmp_path / "keep")
    loaded = load_model(tmp_path / "keep")
    record = record_model(loaded)
    assert record["origin"] == "checkpoint" and record["spec"] == str(tmp_path / "keep")
    assert record["fingerprint"] == model_fingerprint(model)
    moved = relative_record(record, tmp_path / "maps" / "m")
    assert moved["spec"] == os.path.join("..", "..", "keep")
    assert resolve_model_record(moved, tmp_path / "maps" / "m") == str(tmp_path / "keep")


def test_shipped_models_are_recorded_and_found_as_shipped(tmp_path, monkeypatch):
    from latentmap.models.shipped import shipped_checkpoints

    record = record_model(load_model("fmnist-vae-a"))
    assert (record["origin"], record["spec"]) == ("shipped", "fmnist-vae-a")
    # its folder given as a path is the shipped model too, so a map made from it works from an installed wheel
    assert record_model(load_model(shipped_checkpoints()["fmnist-vae-a"]))["origin"] == "shipped"
    monkeypatch.chdir(tmp_path)
    shutil.copytree(shipped_checkpoints()["fmnist-vae-b"], tmp_path / "fmnist-vae-a")
    assert resolve_model_record(record, tmp_path) == "shipped:fmnist-vae-a"
    assert model_fingerprint(load_model("shipped:fmnist-vae-a")) == record["fingerprint"]
    with pytest.raises(CheckpointError, match="no shipped model is called 'nope'"):
        load_model("shipped:nope")


# --------------------------------------------------------------------------- map eval through the CLI

EVAL = ("--images", 200, "--lpips", "off", "--no-cycle", "--grid-images", 2)


def ratio(folder) -> float:
    return json.loads((folder / "relocation.json").read_text())["ratio"]


def test_map_eval_beside_a_folder_named_like_a_shipped_model_uses_the_shipped_one(tmp_path, monkeypatch):
    from latentmap.models.shipped import shipped_checkpoints

    monkeypatch.chdir(tmp_path)
    res = invoke("map", "fit", "--source", "fmnist-vae-a", "--target", "fmnist-vae-b", "--dataset", "fashion-mnist",
                 "--fit-images", 300, "--out", "m")
    assert res.exit_code == 0, res.output
    res = invoke("map", "eval", "--map", "m", *EVAL, "--out", "clean")
    assert res.exit_code == 0, res.output
    shadow = tmp_path / "shadow"
    shutil.copytree(shipped_checkpoints()["fmnist-vae-b"], shadow / "fmnist-vae-a")  # another model, same name
    monkeypatch.chdir(shadow)
    res = invoke("map", "eval", "--map", tmp_path / "m", *EVAL, "--out", "r")
    assert res.exit_code == 0, res.output
    assert ratio(shadow / "r") == pytest.approx(ratio(tmp_path / "clean"), rel=1e-9)
    # a map written before model records named a shipped model by its bare name: still the shipped one
    info = json.loads((tmp_path / "m" / "map.json").read_text())
    for side in ("source", "target"):
        info[side] = {"name": info[side]["name"], "kind": "vae", "latent_dim": 32, "image_shape": [1, 28, 28],
                      "path": info[side]["name"]}
    (tmp_path / "m" / "map.json").write_text(json.dumps(info))
    res = invoke("map", "eval", "--map", tmp_path / "m", *EVAL, "--out", "legacy")
    assert res.exit_code == 0, res.output
    assert ratio(shadow / "legacy") == pytest.approx(ratio(tmp_path / "clean"), rel=1e-9)


def test_old_map_records_load_and_their_sha256_is_still_checked(tmp_path):
    a, b = affine_model("old-a", 4, seed=0), affine_model("old-b", 4, seed=1)
    for m in (a, b):
        m.save(tmp_path / m.name)
    spec = f"npy:{tmp_path}/x.npy"
    import numpy as np

    np.save(tmp_path / "x.npy", make_images(60, seed=3, model=a).numpy())
    res = invoke("map", "fit", "--source", tmp_path / "old-a", "--target", tmp_path / "old-b", "--dataset", spec,
                 "--fit-split", "all", "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    args = ("map", "eval", "--map", tmp_path / "m", "--dataset", spec, "--split", "all", *EVAL)
    assert invoke(*args, "--out", tmp_path / "new").exit_code == 0
    info = json.loads((tmp_path / "m" / "map.json").read_text())
    for side, m in (("source", a), ("target", b)):  # as maps recorded their models before fingerprints
        info[side] = {"name": m.name, "kind": m.kind, "latent_dim": 4, "image_shape": [1, 8, 8],
                      "path": os.path.join("..", m.name), "sha256": weights_digest(tmp_path / m.name)}
    (tmp_path / "m" / "map.json").write_text(json.dumps(info))
    res = invoke(*args, "--out", tmp_path / "old")
    assert res.exit_code == 0, res.output
    assert ratio(tmp_path / "old") == pytest.approx(ratio(tmp_path / "new"), rel=1e-12)
    shutil.rmtree(tmp_path / "old-b")
    affine_model("old-b", 4, seed=5).save(tmp_path / "old-b")  # another model where the map's target was
    line = one_line_error(invoke(*args, "--out", tmp_path / "changed"))
    assert "model 'old-b'" in line and "is not the one" in line and "sha256" in line


@pytest.fixture(scope="module")
def pythae_folders(tmp_path_factory):
    """Three untrained pythae VAEs of one config (seeds 0, 1, 2), each in its folder."""
    models = pytest.importorskip("pythae.models")
    root = tmp_path_factory.mktemp("pythae-folders")
    for seed in range(3):
        torch.manual_seed(seed)
        models.VAE(models.VAEConfig(input_dim=(1, 28, 28), latent_dim=4)).save(str(root / f"vae-{seed}"))
    return root


def test_pythae_folder_whose_weights_changed_after_the_fit_is_refused(pythae_folders, tmp_path):
    source = shutil.copytree(pythae_folders / "vae-0", tmp_path / "vae-src")
    res = invoke("map", "fit", "--source", source, "--target", pythae_folders / "vae-1", "--samples", 100,
                 "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "m" / "map.json").read_text())
    assert info["source"]["origin"] == "pythae" and info["source"]["spec"] == os.path.join("..", "vae-src")
    args = ("map", "eval", "--map", tmp_path / "m", *EVAL)
    res = invoke(*args, "--out", tmp_path / "before")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "before" / "relocation.json").read_text())
    assert report["models"]["source"]["fingerprint"] == info["source"]["fingerprint"]
    assert info["source"]["fingerprint"][:12] in (tmp_path / "before" / "index.html").read_text()
    shutil.copy(pythae_folders / "vae-2" / "model.pt", source / "model.pt")  # new weights, same config
    line = one_line_error(invoke(*args, "--out", tmp_path / "after"))
    assert "model 'vae-src'" in line and "is not the one" in line and "fingerprint" in line
    assert not (tmp_path / "after").exists()


def test_a_py_spec_is_fingerprinted_with_its_code_file(tmp_path, monkeypatch):
    from latentmap.io.model_record import check_model_record

    code = tmp_path / "fp_factory.py"
    code.write_text("from tests.helpers.external import make_autoencoder as build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("py:fp_factory:build", allow_pickle=True)
    record = record_model(model)
    assert record["origin"] == "py" and record["spec"] == "py:fp_factory:build"
    assert model.provenance["source_sha256"] == hashlib.sha256(code.read_bytes()).hexdigest()
    check_model_record(record, load_model("py:fp_factory:build", allow_pickle=True), "py:fp_factory:build", tmp_path)
    code.write_text(code.read_text() + "# the factory's code changed: the same weights may compute something else\n")
    with pytest.raises(CheckpointError, match="is not the one"):
        check_model_record(record, load_model("py:fp_factory:build", allow_pickle=True), "py:fp_factory:build",
                           tmp_path)
