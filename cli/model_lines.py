"""The lines ``latentmap models info`` prints for the kinds of folders described from their files alone: pythae
folders (model_config.json and the listing) and the shapes every kind shows."""

from __future__ import annotations

from pathlib import Path

from latentmap.io.pythae_folder import DEFAULT_FLAG, PYTHAE_CONFIG, PYTHAE_WEIGHTS, pickled_networks

# pythae models trained as deterministic autoencoders: no prior to sample (latentmap.models.pythae_model)
PYTHAE_WITHOUT_PRIOR = ("AE", "WAE_MMD", "RAE_L2", "RAE_GP", "VQVAE")
NO_PRIOR = "no prior: a sampler is fitted on encodings of training images (`latentmap bench --sampler`)"


def _shape(value: object) -> str:
    if isinstance(value, (list, tuple)) and value:
        return " x ".join(str(v) for v in value)
    return "-" if value is None else str(value)


def _pythae_installed() -> str | None:
    """pythae's version when it can be imported, else None."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("pythae") is None:
        return None
    try:
        return importlib.metadata.version("pythae")
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def _pythae_model_name(config: dict) -> str:
    name = str(config.get("name") or "?")
    return name[:-len("Config")].rstrip("_") if name.endswith("Config") else name


def _pythae_weights(folder: Path) -> str:
    """model.pt's size, or BROKEN when it is no readable torch file (torch.save writes a zip archive)."""
    import zipfile

    file = folder / PYTHAE_WEIGHTS
    size = file.stat().st_size if file.is_file() else 0
    if size == 0 or not zipfile.is_zipfile(file):
        return (f"{PYTHAE_WEIGHTS} ({size / 1e6:.1f} MB, BROKEN: not a readable torch file: truncated or "
                "damaged)")
    return f"{PYTHAE_WEIGHTS} ({size / 1e6:.1f} MB; read as tensors only: torch.load with weights_only, flag or not)"


def _pythae_pickles(record: dict) -> list[tuple[str, str]]:
    return pickled_networks(record["path"], record["config"])


def _pythae_networks(record: dict) -> list[tuple[str, str]]:
    """Which networks loading the folder rebuilds from pythae's defaults and which it unpickles (with the flag)."""
    pickled = _pythae_pickles(record)
    custom = [name for name, _ in pickled]
    flagged = [key[len(DEFAULT_FLAG):] for key in record["config"] if str(key).startswith(DEFAULT_FLAG)]
    default = [name for name in dict.fromkeys(["encoder", "decoder", *flagged]) if name not in custom]
    lines = []
    if default:
        lines.append(("networks", f"{', '.join(default)}: pythae defaults, rebuilt from {PYTHAE_CONFIG}"))
    if pickled:
        lines.append(("pickled", f"custom {', '.join(custom)} in {', '.join(file for _, file in pickled)}: "
                                 "unpickled on loading, which runs code stored there: needs --trust-pickle"))
    lines.append(("weights", _pythae_weights(record["path"])))
    if pickled:
        lines.append(("warning", "load it with --trust-pickle only if you trust where the folder comes from"))
    return lines


def _pythae_lines(record: dict, trust: bool = False) -> list[tuple[str, str]]:
    config = record["config"]
    name, version = _pythae_model_name(config), _pythae_installed()
    needs = f"pythae {version}" if version else "loading needs pythae: pip install 'latentmap[pythae]'"
    lines = [("kind", f"pythae (model {name}; {needs})"),
             ("latent size", str(config.get("latent_dim", "-"))),
             ("image shape", _shape(config.get("input_dim"))),
             ("prior", NO_PRIOR if name in PYTHAE_WITHOUT_PRIOR else "standard normal N(0, I)")]
    if name == "VQVAE":
        lines.append(("encode", "quantized: through the quantizer, as pythae's forward does before decoding "
                                "(PythaeModel.quantize = False for the unquantized embedding)"))
    return [*lines, *_pythae_networks(record), ("dataset", "- (pythae folders do not record it)")]
