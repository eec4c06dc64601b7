"""The autoencoders of latent diffusion (diffusers' ``AutoencoderKL`` and ``VQModel``) as latentmap models.

``diffusers:PATH`` names a folder written by ``save_pretrained`` (config.json and the weights), or a pipeline
folder, whose ``vae/`` (or ``vqvae/``) subfolder is then read; a folder whose config.json names one of the two
classes loads without the prefix too. Nothing is downloaded (``local_files_only=True``). Needs the extra
``latentmap[diffusers]``.

Latents are spatial, C x h x w, and latentmap keeps them flat: ``encode`` returns [N, C*h*w] in C order and
``latent_shape`` says (C, h, w). They are the latents a diffusion model of that autoencoder sees: the
posterior mean (``sample_posterior=True``: a draw from the posterior) normalised as diffusers' pipelines do,
``(m - latents_mean) * scaling_factor / latents_std`` where the config has per-channel statistics, else
``(m - shift_factor) * scaling_factor``; ``decode`` inverts that. Images go in as latentmap's [0, 1] and the
networks see diffusers' [-1, 1]. With ``force_upcast`` in the config the networks run in float32 even where
latentmap's forward pass would use bfloat16. A VQModel encodes as its forward does: the unquantized latents,
which its decode quantizes (``quantize=True``: the quantized latents instead; both decode the same way).

Safetensors weights load freely; weights only in pickle form (``diffusion_pytorch_model.bin``) need the trust
flag, decided from the folder's listing before diffusers reads anything.

A checkpoint that latentmap trains (``latentmap train kl``) is a ``save_pretrained`` folder whose config.json
also carries latentmap's checkpoint fields (kind ``diffusers``, sizes, dataset, metrics, the sha256 of the
weights): diffusers reads it as its own folder, latentmap as a checkpoint, and both build the same model.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import torch

from latentmap.errors import CheckpointError, ConfigError, DependencyError, ShapeMismatchError, UnsafeLoadError
from latentmap.io.checkpoint import CONFIG_NAME, read_json_object
from latentmap.models.base import LatentModel
from latentmap.models.registry import register_adapter, register_model_source

KIND = "diffusers"
SPEC_PREFIX = "diffusers:"
KL, VQ = "AutoencoderKL", "VQModel"
CLASSES = (KL, VQ)
SUBFOLDERS = ("vae", "vqvae")  # where a pipeline folder keeps its autoencoder
WEIGHTS_STEM = "diffusion_pytorch_model"
SAFE_SUFFIX, PICKLE_SUFFIX = ".safetensors", ".bin"
INSTALL = "pip install 'latentmap[diffusers]'"
# keys latentmap adds to the config.json of a checkpoint it trained (diffusers ignores them)
LATENTMAP_KEYS = ("format", "format_version", "name", "kind", "image_shape", "latent_dim", "latent_shape",
                  "architecture", "latentmap_version", "weights", "dataset", "seed", "training", "metrics")


def import_diffusers():
    """The diffusers package, or a one-line DependencyError that says how to install it."""
    try:
        import diffusers
    except ImportError as exc:
        raise DependencyError(f"loading diffusers autoencoders needs diffusers: {INSTALL}") from exc
    return diffusers


# ---------------------------------------------------------------- the folder, read without loading anything


def folder_of(spec) -> Path:
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


def read_diffusers_config(folder) -> dict:
    """config.json of a diffusers autoencoder folder; CheckpointError unless it describes one latentmap reads."""
    file = Path(folder) / CONFIG_NAME
    config = read_json_object(file)
    name = config.get("_class_name")
    if name not in CLASSES:
        raise CheckpointError(f"{file} describes {f'a {name}' if name else 'no diffusers model'}; latentmap reads "
                              f"the autoencoders {' and '.join(CLASSES)}")
    return config


def is_diffusers_folder(spec) -> bool:
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


def weights_files(folder) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) of the weights in ``folder`` (plain, sharded or a variant's)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.startswith(WEIGHTS_STEM))
    safe = [p for p in files if p.name.endswith(SAFE_SUFFIX) or p.name.endswith(SAFE_SUFFIX + ".index.json")]
    pickled = [p for p in files if p.name.endswith(PICKLE_SUFFIX) or p.name.endswith(PICKLE_SUFFIX + ".index.json")]
    return safe, pickled


def check_diffusers_consent(folder, allow_pickle: bool = False) -> str:
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


def _variant(files: list[Path], suffix: str) -> str | None:
    """The variant (``fp16`` of diffusion_pytorch_model.fp16.safetensors) when the folder has only a variant's."""
    names = {p.name for p in files}
    if f"{WEIGHTS_STEM}{suffix}" in names or f"{WEIGHTS_STEM}{suffix}.index.json" in names:
        return None
    middle = files[0].name[len(WEIGHTS_STEM) + 1:].split(".")
    return middle[0] if len(middle) > 1 else None


def image_size(config: dict) -> tuple[int, int]:
    size = config.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
    return int(h), int(w)


def latent_shape_of(config: dict) -> tuple[int, int, int]:
    """(C, h, w) of the latents: each down block but the last halves the image (diffusers' Downsample2D pads one
    pixel on the right and bottom, then a stride-2 3x3 convolution: h -> h // 2)."""
    h, w = image_size(config)
    for _ in range(len(config.get("block_out_channels") or [64]) - 1):
        h, w = h // 2, w // 2
    channels = config.get("vq_embed_dim") or config.get("latent_channels") or 4
    return int(channels), h, w


def normalisation_text(config: dict) -> str:
    """How latents are normalised, in words, from a config (``models info``)."""
    factor = config.get("scaling_factor") or 1.0
    if config.get("latents_mean") is not None and config.get("latents_std") is not None:
        text = f"z = (m - latents_mean) x {factor:g} / latents_std (per channel)"
    elif config.get("shift_factor"):
        text = f"z = (m - {config['shift_factor']:g}) x {factor:g}"
    else:
        text = f"z = m x {factor:g} (scaling_factor)"
    return text + ("; float32 throughout (force_upcast)" if config.get("force_upcast") else "")


def describe_folder(folder, config: dict | None = None) -> list[tuple[str, str]]:
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


# ---------------------------------------------------------------- the adapter


@register_adapter(KIND)
class DiffusersAutoencoder(LatentModel):
    """A diffusers ``AutoencoderKL`` or ``VQModel`` behind the LatentModel interface (flat C x h x w latents)."""

    def __init__(self, name, vae, *, source: str | None = None, sample_posterior: bool = False,
                 quantize: bool = False, seed: int = 0, metadata=None):
        self.class_name = type(vae).__name__
        if self.class_name not in CLASSES:
            raise ConfigError(f"vae must be a diffusers {' or '.join(CLASSES)}, got {self.class_name} instead")
        self.vae = vae.float()
        # the class's own arguments only: diffusers keeps unknown keys of a config.json (latentmap's) in its config
        accepted = inspect.signature(type(vae).__init__).parameters
        self.config = {k: v for k, v in dict(vae.config).items() if k in accepted and k != "self"}
        self.source = source
        self.sample_posterior = bool(sample_posterior)
        self.quantize = bool(quantize)
        self.generator = torch.Generator().manual_seed(int(seed))  # for sample_posterior only
        shape = latent_shape_of(self.config)
        super().__init__(name, (int(self.config.get("in_channels", 3)), *image_size(self.config)),
                         int(shape[0] * shape[1] * shape[2]), metadata=metadata, latent_shape=shape)
        self.vae_like = self.class_name == KL  # a Gaussian posterior: encode_stats
        self._set_normalisation()

    def _set_normalisation(self) -> None:
        """Per-channel offset and scale of z = (m - offset) * scale, as diffusers' pipelines normalise latents."""
        c = self.latent_shape[0]
        factor = float(self.config.get("scaling_factor") or 1.0)
        mean, std = self.config.get("latents_mean"), self.config.get("latents_std")
        if mean is not None and std is not None:
            if len(mean) != c or len(std) != c:
                raise CheckpointError(f"latents_mean and latents_std of '{self.name}' must have {c} values, one a "
                                      f"latent channel, got {len(mean)} and {len(std)}")
            offset, scale = torch.tensor(mean, dtype=torch.float32), factor / torch.tensor(std, dtype=torch.float32)
        else:
            offset = torch.full((c,), float(self.config.get("shift_factor") or 0.0))
            scale = torch.full((c,), factor)
        self.offset, self.scale = offset.view(1, c, 1, 1), scale.view(1, c, 1, 1)

    @property
    def encoding(self) -> str:
        """Which latents ``encode`` gives, in words (``models info`` shows it)."""
        if self.class_name == VQ:
            return ("quantized: through the codebook (quantize=True)" if self.quantize else
                    "unquantized: the encoder's latents, which decode quantizes, as VQModel's forward does")
        return "a draw from the posterior (sample_posterior=True)" if self.sample_posterior else "the posterior mean"

    @property
    def objective(self) -> str:
        return str(self.metadata.get("objective") or ("vae" if self.class_name == KL else "autoencoder"))

    @property
    def family(self) -> str:
        return f"diffusers-{self.class_name}"

    @property
    def has_prior(self) -> bool:
        # the KL term of a latent-diffusion autoencoder is weighted too lightly to make N(0, I) its prior, and a
        # VQModel has none: benchmarks sample a distribution fitted on encodings
        return False

    def modules(self):
        return {"vae": self.vae}

    def architecture(self) -> dict:
        return {"class": self.class_name, "config": self.config, "latent_shape": list(self.latent_shape),
                "encode": ("quantized" if self.quantize else "unquantized") if self.class_name == VQ else
                ("posterior sample" if self.sample_posterior else "posterior mean")}

    def _precision(self):
        """float32 throughout when the config asks for it (force_upcast), else latentmap's forward precision."""
        if self.config.get("force_upcast"):
            return torch.autocast(self.device.type, enabled=False)
        return contextlib.nullcontext()

    def _normalise(self, m: torch.Tensor) -> torch.Tensor:
        return (m.float() - self.offset.to(m.device)) * self.scale.to(m.device)

    def _check(self, m: torch.Tensor) -> torch.Tensor:
        if tuple(m.shape[1:]) != self.latent_shape:
            raise ShapeMismatchError(f"the encoder of '{self.name}' gives latents of shape {tuple(m.shape[1:])}, "
                                     f"its config says {self.latent_shape}")
        return m

    def _raw_posterior(self, x):
        """The networks' own latents for images in [0, 1]: (mean, logvar) for a KL autoencoder, (latents, None)
        for a VQModel (quantized when ``quantize``)."""
        with self._precision():
            out = self.vae.encode(x.float() * 2 - 1)
            if self.class_name == KL:
                return self._check(out.latent_dist.mean.float()), out.latent_dist.logvar.float()
            h = self._check(out.latents.float())
            return (self.vae.quantize(h)[0].float() if self.quantize else h), None

    def _encode(self, x):
        mean, logvar = self._raw_posterior(x)
        if self.sample_posterior and logvar is not None:
            noise = torch.randn(mean.shape, generator=self.generator).to(mean.device)
            mean = mean + torch.exp(0.5 * logvar) * noise
        return self._normalise(mean).reshape(len(x), -1)

    def encode_stats(self, x, *, grad: bool = False):
        """(mu, logvar) of the posterior in the normalised latent space, each [N, latent_dim]."""
        if not self.vae_like:
            raise ConfigError(f"model '{self.name}' is a VQModel: its encoder has no posterior variance")
        x = self.check_images(x)
        self.eval()
        with torch.set_grad_enabled(grad):
            mean, logvar = self._raw_posterior(x)
            logvar = logvar + 2 * torch.log(self.scale.to(logvar.device))
            return self._normalise(mean).reshape(len(x), -1), logvar.reshape(len(x), -1)

    def _decode(self, z):
        m = z.reshape(len(z), *self.latent_shape) / self.scale.to(z.device) + self.offset.to(z.device)
        with self._precision():
            images = self.vae.decode(m.float()).sample
        return ((images.float() + 1) / 2).clamp(0, 1)

    def save(self, path, *, overwrite: bool = True, extra_files: dict[str, bytes] | None = None) -> None:
        """``save_pretrained`` into ``path`` (safetensors), atomically, with latentmap's checkpoint fields added to
        its config.json: the folder loads in diffusers as it is, and in latentmap by name or path."""
        save_checkpoint_folder(self, path, overwrite=overwrite, extra_files=extra_files)

    @classmethod
    def from_checkpoint(cls, folder, config, tensors):
        """A checkpoint latentmap trained: the network built from config.json's diffusers keys, its verified
        weights loaded (the same model ``diffusers:FOLDER`` gives)."""
        diffusers = import_diffusers()
        name = config.get("_class_name")
        if name not in CLASSES:
            raise CheckpointError(f"checkpoint '{folder}' of kind '{KIND}' names no diffusers autoencoder "
                                  f"(_class_name {name!r})")
        own = {k: v for k, v in config.items() if k not in LATENTMAP_KEYS}
        vae = getattr(diffusers, name).from_config(own)
        try:
            vae.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights of '{folder}' do not fit its {name}: "
                                  f"{str(exc).strip().splitlines()[0]}") from exc
        metadata = {k: config[k] for k in ("dataset", "seed", "training", "metrics") if k in config}
        return cls(config.get("name") or Path(folder).name, vae, source=str(folder), metadata=metadata)


def save_checkpoint_folder(model: DiffusersAutoencoder, path, *, overwrite: bool = True,
                           extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``model`` as a save_pretrained folder whose config.json is also a latentmap checkpoint config."""
    import json

    from latentmap.io.atomic import atomic_directory
    from latentmap.io.checkpoint import build_config, json_default, sha256_file

    path = Path(path)
    with atomic_directory(path, overwrite=overwrite, kind="checkpoint") as tmp:
        model.vae.save_pretrained(str(tmp), safe_serialization=True)
        weights = tmp / f"{WEIGHTS_STEM}{SAFE_SUFFIX}"
        if not weights.is_file():
            raise CheckpointError(f"save_pretrained wrote no single {weights.name} for '{model.name}' (sharded?)")
        config = {**read_json_object(tmp / CONFIG_NAME), **build_config(model),
                  "latent_shape": list(model.latent_shape), "weights": {weights.name: sha256_file(weights)}}
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=json_default) + "\n")
    return path


@register_model_source(KIND, is_diffusers_folder, spec_path=lambda spec: str(folder_of(spec)))
def load_diffusers_folder(spec: str, device=None, allow_pickle: bool = False) -> DiffusersAutoencoder:
    """``diffusers:PATH`` (or a diffusers autoencoder folder): read with diffusers' own ``from_pretrained``,
    offline, once consent covers the weights it reads."""
    folder = folder_of(spec)
    config = read_diffusers_config(folder)
    form = check_diffusers_consent(folder, allow_pickle)
    diffusers = import_diffusers()
    safe, pickled = weights_files(folder)
    files, suffix = (safe, SAFE_SUFFIX) if form == "safetensors" else (pickled, PICKLE_SUFFIX)
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # latentmap's own keys in a checkpoint's config.json are not news
    try:
        vae = getattr(diffusers, config["_class_name"]).from_pretrained(
            str(folder), local_files_only=True, use_safetensors=form == "safetensors",
            variant=_variant(files, suffix), torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"diffusers cannot load '{folder}': {detail}") from exc
    finally:
        diffusers_logging.set_verbosity(level)
    metadata = {k: config[k] for k in ("dataset", "seed", "training", "metrics") if k in config}
    name = str(config.get("name") or (folder.parent.name if folder.name in SUBFOLDERS else folder.name))
    model = DiffusersAutoencoder(name, vae, source=str(folder), metadata=metadata)
    return model.to(device).eval()
