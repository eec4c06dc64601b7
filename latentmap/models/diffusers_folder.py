"""A diffusers autoencoder folder, read without loading anything: where its config.json and weights are, what the
config describes (image size, latent layout, normalisation) and whether loading it needs the trust flag. diffusers
need not be installed; :mod:`latentmap.models.diffusers_model` loads the models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from latentmap.errors import CheckpointError, UnsafeLoadError
from latentmap.io.checkpoint import CONFIG_NAME, read_json_object

KIND = "diffusers"
SPEC_PREFIX = "diffusers:"
KL, VQ = "AutoencoderKL", "VQModel"
CLASSES = (KL, VQ)
SUBFOLDERS = ("vae", "vqvae")  # where a pipeline folder keeps its autoencoder
WEIGHTS_STEM = "diffusion_pytorch_model"
SAFE_SUFFIX, PICKLE_SUFFIX = ".safetensors", ".bin"
INSTALL = "pip install 'latentmap[diffusers]'"


def folder_of(spec: str | os.PathLike[str]) -> Path:
    """The folder of the autoencoder ``spec`` names: PATH itself, or its ``vae/``/``vqvae/`` subfolder when PATH
    is a pipeline folder. CheckpointError when there is none."""
    text = str(spec)
    path = Path(text[len(SPEC_PREFIX):] if text.startswith(SPEC_PREFIX) else text)
    if not path.is_dir():
        raise CheckpointError(f"diffusers folder '{path}' does not exist" if not path.exists() else
                              f"'{path}' is a file; diffusers:PATH names a folder written by save_pretrained")
    if not (path / CONFIG_NAME).is_file():
        sub = next((path / name for name in SUBFOLDERS if (path / name / CONFIG_NAME).is_file()), None)
        if sub is None:
            raise CheckpointError(f"'{path}' has no {CONFIG_NAME} and no vae/ subfolder: diffusers:PATH names a "
                                  "folder written by save_pretrained or a pipeline folder")
        path = sub
    return path


def read_diffusers_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a diffusers autoencoder folder; CheckpointError unless it describes one latentmap reads."""
    file = Path(folder) / CONFIG_NAME
    config = read_json_object(file)
    name = config.get("_class_name")
    if name not in CLASSES:
        raise CheckpointError(f"{file} describes {f'a {name}' if name else 'no diffusers model'}; latentmap reads "
                              f"the autoencoders {' and '.join(CLASSES)}")
    return config


def is_diffusers_folder(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` is ``diffusers:...``, or a folder whose config.json is a diffusers autoencoder's own (a
    checkpoint latentmap trained loads as a checkpoint unless named with the prefix)."""
    text = str(spec)
    if text.startswith(SPEC_PREFIX):
        return True
    file = Path(text) / CONFIG_NAME
    if not file.is_file():
        return False
    try:
        config = read_json_object(file)
    except CheckpointError:
        return False
    return config.get("_class_name") in CLASSES and config.get("kind") != KIND


def weights_files(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) of the weights in ``folder`` (plain, sharded or a variant's)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.startswith(WEIGHTS_STEM))
    safe = [p for p in files if p.name.endswith(SAFE_SUFFIX) or p.name.endswith(SAFE_SUFFIX + ".index.json")]
    pickled = [p for p in files if p.name.endswith(PICKLE_SUFFIX) or p.name.endswith(PICKLE_SUFFIX + ".index.json")]
    return safe, pickled


def check_diffusers_consent(folder: str | os.PathLike[str], allow_pickle: bool = False) -> str:
    """"safetensors" or "pickle": the form of the weights loading ``folder`` reads. UnsafeLoadError when only
    pickled weights are there and the caller did not allow them; CheckpointError when there are none."""
    safe, pickled = weights_files(folder)
    if safe:
        return "safetensors"  # loaded with use_safetensors=True: a .bin beside them is never read
    if not pickled:
        raise CheckpointError(f"diffusers folder '{folder}' holds no weights ({WEIGHTS_STEM}{SAFE_SUFFIX} or "
                              f"{WEIGHTS_STEM}{PICKLE_SUFFIX})")
    if not allow_pickle:
        raise UnsafeLoadError(f"diffusers folder '{folder}' holds its weights as a pickle ({pickled[0].name}), and "
                              "loading a pickle can run code stored in it; pass allow_pickle=True (CLI: "
                              "--trust-pickle) only if you trust its source, or save it again as safetensors")
    return "pickle"


def weights_variant(files: list[Path], suffix: str) -> str | None:
    """The variant (``fp16`` of diffusion_pytorch_model.fp16.safetensors) when the folder has only a variant's."""
    names = {p.name for p in files}
    if f"{WEIGHTS_STEM}{suffix}" in names or f"{WEIGHTS_STEM}{suffix}.index.json" in names:
        return None
    middle = files[0].name[len(WEIGHTS_STEM) + 1:].split(".")
    return middle[0] if len(middle) > 1 else None


def image_size(config: dict[str, Any]) -> tuple[int, int]:
    """(H, W) of the images, from ``sample_size`` (one side or two; 32 when absent)."""
    size = config.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
    return int(h), int(w)


def latent_shape_of(config: dict[str, Any]) -> tuple[int, int, int]:
    """(C, h, w) of the latents: each down block but the last halves the image (diffusers' Downsample2D pads one
    pixel on the right and bottom, then a stride-2 3x3 convolution: h -> h // 2)."""
    h, w = image_size(config)
    for _ in range(len(config.get("block_out_channels") or [64]) - 1):
        h, w = h // 2, w // 2
    channels = config.get("vq_embed_dim") or config.get("latent_channels") or 4
    return int(channels), h, w


def normalisation_text(config: dict[str, Any]) -> str:
    """How latents are normalised, in words, from a config (``models info``)."""
    factor = config.get("scaling_factor") or 1.0
    if config.get("latents_mean") is not None and config.get("latents_std") is not None:
        text = f"z = (m - latents_mean) x {factor:g} / latents_std (per channel)"
    elif config.get("shift_factor"):
        text = f"z = (m - {config['shift_factor']:g}) x {factor:g}"
    else:
        text = f"z = m x {factor:g} (scaling_factor)"
    return text + ("; float32 throughout (force_upcast)" if config.get("force_upcast") else "")


def describe_folder(folder: str | os.PathLike[str], config: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``models info`` lines of a diffusers autoencoder folder, from its config.json and listing alone (nothing is
    loaded, diffusers need not be installed): class, latent layout, image shape, encoding, normalisation, weights
    and the memory a flattened linear map of its latents takes."""
    from latentmap.resources import flattened_map_bytes, format_bytes

    folder = Path(folder)
    config = config or read_diffusers_config(folder)
    c, h, w = latent_shape_of(config)
    name, d = config["_class_name"], c * h * w
    try:
        import importlib.metadata

        needs = f"diffusers {importlib.metadata.version('diffusers')}"
    except importlib.metadata.PackageNotFoundError:
        needs = f"loading needs diffusers: {INSTALL}"
    safe, pickled = weights_files(folder)
    files = safe or pickled
    weights = ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in files) or "none found"
    if not safe and pickled:
        weights += ": a pickle, loading it runs code stored there: needs --trust-pickle"
    encode = ("unquantized: the encoder's latents, which decode quantizes, as VQModel's forward does "
              "(quantize=True for the quantized ones)" if name == VQ else
              "the posterior mean (sample_posterior=True for a draw)")
    return [("kind", f"diffusers {name} ({needs}; images in [-1, 1] to the networks, [0, 1] to latentmap)"),
            ("latent size", f"{d} = {c} x {h} x {w} (spatial latents C x h x w, flattened in C order)"),
            ("image shape", f"{config.get('in_channels', 3)} x {image_size(config)[0]} x {image_size(config)[1]}"),
            ("encode", encode), ("latents", normalisation_text(config)), ("weights", weights),
            ("memory", f"a linear map between two such latents, flattened, takes about "
                       f"{format_bytes(flattened_map_bytes(d, d))} to fit "
                       f"({d + 1} x {d + 1} float64 normal equations)")]
