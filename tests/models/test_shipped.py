"""The shipped checkpoints and support sets: found by name from any folder, listed, described, packaged."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from latentmap.cli.main import main
from latentmap.models import shipped
from latentmap.models.shipped import resolve_model_spec, shipped_checkpoints, shipped_root, shipped_support_sets

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("fmnist-gan", "fmnist-kl-a", "fmnist-kl-b", "fmnist-stylegan", "fmnist-svae", "fmnist-vae-32",
           "fmnist-vae-a", "fmnist-vae-b")
# the weights file of each shipped model: diffusers' save_pretrained names its own
WEIGHTS = {name: "diffusion_pytorch_model.safetensors" if name.startswith("fmnist-kl") else "model.safetensors"
           for name in SHIPPED}
PICKLE_NOTE = "stylegan pickle (needs --trust-pickle to load)"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a folder that has no checkpoints/ of its own."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_shipped_folders_from_a_clone(elsewhere):
    assert shipped_root() == ROOT
    checkpoints = shipped_checkpoints()
    assert tuple(checkpoints) == SHIPPED
    assert all((folder / "config.json").is_file() for folder in checkpoints.values())
    assert shipped_support_sets() == {"fmnist-svae": ROOT / "support_sets" / "fmnist-svae"}


def test_resolve_model_spec(elsewhere):
    assert resolve_model_spec("fmnist-vae-a") == str(ROOT / "checkpoints" / "fmnist-vae-a")
    for spec in ("nowhere", "py:mod:factory", "g.pkl", "checkpoints/fmnist-vae-a", ""):
        assert resolve_model_spec(spec) == spec
    marker = object()
    assert resolve_model_spec(marker) is marker
    (elsewhere / "fmnist-vae-a").mkdir()  # an existing path wins over a shipped name
    assert resolve_model_spec("fmnist-vae-a") == "fmnist-vae-a"


def test_installed_layout_is_found(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "latentmap_data" / "checkpoints" / "m").mkdir(parents=True)
    (site / "latentmap_data" / "checkpoints" / "m" / "config.json").write_text("{}")
    (site / "latentmap_data" / "support_sets" / "s").mkdir(parents=True)
    (site / "latentmap_data" / "support_sets" / "s" / "manifest.json").write_text("{}")
    monkeypatch.setattr(shipped, "_package_parent", lambda: site)
    assert shipped_root() == site / "latentmap_data"
    assert shipped_checkpoints() == {"m": site / "latentmap_data" / "checkpoints" / "m"}
    assert list(shipped_support_sets()) == ["s"]


def test_no_shipped_data_is_a_checkpoint_error(tmp_path, monkeypatch):
    from latentmap.errors import CheckpointError

    monkeypatch.setattr(shipped, "_package_parent", lambda: tmp_path)
    monkeypatch.setattr(shipped, "DATA_PACKAGE", "latentmap_no_such_data")
    with pytest.raises(CheckpointError, match="not installed"):
        shipped_root()
    assert shipped_checkpoints() == {} and resolve_model_spec("fmnist-vae-a") == "fmnist-vae-a"


def test_load_model_by_shipped_name_from_anywhere(elsewhere):
    from latentmap import load_model

    model = load_model("fmnist-vae-a")
    assert model.latent_dim == 32 and model.name == "fmnist-vae-a"


def test_models_list_without_argument_lists_the_shipped_models(elsewhere):
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "kind", "latent"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == list(SHIPPED)
    gan = [line for line in lines if line.startswith("fmnist-gan")][0]
    assert " gan " in gan and " 64 " in gan and "fashion-mnist" in gan and "0.03174" in gan


def test_models_info_of_a_shipped_generator(elsewhere):
    result = invoke("models", "info", "fmnist-gan")
    assert result.exit_code == 0, result.output
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in result.output.splitlines()}
    assert fields["kind"].startswith("gan")
    assert fields["latent size"] == "64"
    assert fields["image shape"] == "1 x 28 x 28"
    assert fields["prior"].startswith("standard normal")
    assert fields["inverter"].startswith("trained (3000 steps)") and "0.0317" in fields["inverter"]
    assert fields["dataset"] == "fashion-mnist"
    assert fields["test MSE"].startswith("0.03174")
    assert Path(fields["path"]) == ROOT / "checkpoints" / "fmnist-gan"


def test_models_info_of_a_vae_and_a_stylegan(elsewhere):
    vae = invoke("models", "info", "fmnist-vae-a")
    assert vae.exit_code == 0 and "latent size: 32" in vae.output and "encoder:" in vae.output
    style = invoke("models", "info", str(ROOT / "checkpoints" / "fmnist-stylegan"))
    assert style.exit_code == 0, style.output
    assert "W space" in style.output and "mapping(z)" in style.output and "inverter:    trained" in style.output


@pytest.mark.parametrize("args", [("models", "info", "nowhere"), ("models", "list", "nowhere"),
                                  ("models", "info", ".")])
def test_models_bad_input_exit_2_one_line(elsewhere, args):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.strip().count("\n") == 0


def _model_zoo(folder: Path) -> Path:
    folder.mkdir()
    shutil.copytree(ROOT / "checkpoints" / "fmnist-vae-b", folder / "copied-vae",
                    ignore=shutil.ignore_patterns("*.png"))
    (folder / "my-pythae").mkdir()
    (folder / "my-pythae" / "model_config.json").write_text(
        json.dumps({"name": "VAE", "latent_dim": 16, "input_dim": [1, 28, 28]}))
    (folder / "my-pythae" / "model.pt").write_bytes(b"")
    (folder / "g.pkl").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    (folder / "empty").mkdir()
    return folder


def test_models_list_directory_identifies_every_kind(elsewhere):
    zoo = _model_zoo(elsewhere / "zoo")
    result = invoke("models", "list", str(zoo))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(rows) == {"fmnist-vae-b", "my-pythae", "g.pkl"}
    assert " vae " in rows["fmnist-vae-b"] and " 32 " in rows["fmnist-vae-b"]
    assert " pythae " in rows["my-pythae"] and "VAE" in rows["my-pythae"] and " 16 " in rows["my-pythae"]
    assert PICKLE_NOTE in rows["g.pkl"]


def test_models_info_of_pythae_folder_and_pickle_reads_nothing_heavy(elsewhere):
    zoo = _model_zoo(elsewhere / "zoo")
    pythae = invoke("models", "info", str(zoo / "my-pythae"))
    assert pythae.exit_code == 0, pythae.output
    assert "kind:        pythae (model VAE" in pythae.output and "latent size: 16" in pythae.output
    pickle = invoke("models", "info", str(zoo / "g.pkl"))  # an empty file: unpickling would fail
    assert pickle.exit_code == 0, pickle.output
    assert PICKLE_NOTE in pickle.output


def test_models_list_reports_a_broken_config_in_its_row(elsewhere):
    zoo = _model_zoo(elsewhere / "zoo")
    (zoo / "broken").mkdir()
    (zoo / "broken" / "config.json").write_text("{")
    result = invoke("models", "list", str(zoo))
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("broken")][0].count("unreadable") == 1


@pytest.mark.slow
def test_wheel_ships_checkpoints_and_support_sets(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    wheel = next(out.glob("latentmap-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in SHIPPED:
        for file in ("config.json", WEIGHTS[model]):
            assert f"latentmap_data/checkpoints/{model}/{file}" in names
    assert "latentmap_data/support_sets/fmnist-svae/manifest.json" in names
    assert "latentmap_data/support_sets/fmnist-svae/images.npy" in names
    assert "latentmap/models/shipped.py" in names

    # installed (not editable), run from another folder: the names resolve into the package data
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    code = ("import latentmap; from latentmap.models.shipped import shipped_root, resolve_model_spec, "
            "shipped_support_sets; print(latentmap.__file__); print(shipped_root()); "
            "print(resolve_model_spec('fmnist-vae-a')); print(sorted(shipped_support_sets()))")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    lines = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                           text=True).stdout.splitlines()
    assert lines[0].startswith(str(target))
    assert lines[1] == str(target / "latentmap_data")
    assert lines[2] == str(target / "latentmap_data" / "checkpoints" / "fmnist-vae-a")
    assert lines[3] == "['fmnist-svae']"


def test_models_info_reports_a_truncated_weights_file_as_broken(elsewhere):
    zoo = _model_zoo(elsewhere / "zoo")
    weights = zoo / "copied-vae" / "model.safetensors"
    healthy = invoke("models", "info", str(zoo / "copied-vae"))
    assert healthy.exit_code == 0 and "sha256 as recorded" in healthy.output and "BROKEN" not in healthy.output
    weights.write_bytes(weights.read_bytes()[:100])
    broken = invoke("models", "info", str(zoo / "copied-vae"))
    assert broken.exit_code == 0 and "BROKEN" in broken.output and "truncated" in broken.output
    pythae = invoke("models", "info", str(zoo / "my-pythae"))  # an empty model.pt
    assert "BROKEN" in pythae.output


def test_the_shipped_kl_autoencoders_load_by_name_as_diffusers_folders(elsewhere):
    pytest.importorskip("diffusers")
    from latentmap import load_model
    from latentmap.io.checkpoint import model_fingerprint

    for name in ("fmnist-kl-a", "fmnist-kl-b"):
        model = load_model(name)
        assert model.kind == "diffusers" and model.latent_shape == (4, 7, 7) and model.latent_dim == 196
        same = load_model(f"diffusers:{ROOT / 'checkpoints' / name}")  # diffusers' own from_pretrained
        assert model_fingerprint(same) == model_fingerprint(model)
        info = invoke("models", "info", name)
        assert info.exit_code == 0 and "196 = 4 x 7 x 7" in info.output and "sha256 as recorded" in info.output
        assert "test MSE:    0.00" in info.output

