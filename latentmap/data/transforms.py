"""Image transforms between models that work on images of different shapes (``--image-transform SPEC``).

A spec is a recipe, resolved against a pair of shapes [C, H, W] into an :class:`ImageTransform`
that maps a batch [N, C, H, W] in [0, 1] of the first shape to the second. Steps, applied in the
order given (comma-separated, e.g. ``grey,resize``):

- ``resize`` (bilinear, antialiased: ``torch.nn.functional.interpolate(..., antialias=True)``, which
  follows PIL's bilinear filter) or ``resize=area`` (mean over the covered pixels) to the target's H x W;
- ``pad`` / ``pad=V``: centred, constant V (default 0) on the sides where the target is larger, centre
  crop where it is smaller (Fashion-MNIST 28x28 <-> 32x32); ``center-crop`` is the same operation;
- ``grey`` (ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B, as PIL's ``convert("L")``) and ``rgb`` (the
  grey channel repeated three times);
- ``auto``: the channel conversion the target needs, then a resize of the shorter side to the target's
  (aspect kept: the image covers the target) and a centre crop to the target;
- ``identity`` (also ``none``): equal shapes only.

Between equal shapes any spec is the identity; otherwise a step that changes nothing (a resize to the
same size) is dropped, and a spec that cannot reach the target (``pad`` from 3 channels to 1) is a
``ShapeMismatchError`` that says what to add. Odd size differences put the extra row or column of
padding (or the extra cropped pixel) at the bottom / right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, SupportsInt

import torch
from numpy.typing import ArrayLike

from latentmap.data.images import ImageDataset
from latentmap.errors import ConfigError, ShapeMismatchError

STEP_NAMES = ("resize", "pad", "center-crop", "grey", "rgb")
WHOLE_SPECS = ("auto", "identity")
ALIASES = {"gray": "grey", "crop": "center-crop", "centre-crop": "center-crop", "none": "identity"}
RESIZE_MODES = ("bilinear", "area")
LUMA = (0.299, 0.587, 0.114)
SPEC_HELP = ("auto, identity, or comma-separated steps among resize, resize=area, pad, pad=V (V in [0, 1]), "
             "center-crop, grey, rgb (e.g. 'grey,resize')")


def parse_transform_spec(spec: str) -> tuple[tuple[str, object], ...]:
    """``"grey,pad=0.5"`` -> (("grey", None), ("pad", 0.5)); a bad spec is a one-line ConfigError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"image transform must be a non-empty spec ({SPEC_HELP}), got {spec!r} instead")
    steps: list[tuple[str, object]] = []
    for part in spec.split(","):
        name, sep, value = part.strip().lower().partition("=")
        name = ALIASES.get(name.strip(), name.strip())
        value = value.strip()
        if name in WHOLE_SPECS:
            if sep or len(spec.split(",")) > 1:
                raise ConfigError(f"image transform '{name}' stands alone, got {spec!r} instead")
            steps.append((name, None))
        elif name == "resize":
            mode = value or "bilinear"
            if mode not in RESIZE_MODES:
                raise ConfigError(f"image transform step 'resize' takes {' or '.join(RESIZE_MODES)}, got {value!r}")
            steps.append(("resize", mode))
        elif name in ("pad", "center-crop"):
            fill = 0.0
            if sep:
                if name != "pad":
                    raise ConfigError(f"image transform step '{name}' takes no value, got {part.strip()!r}")
                try:
                    fill = float(value)
                except ValueError:
                    fill = float("nan")
                if not 0.0 <= fill <= 1.0:
                    raise ConfigError(f"the pad value must be a number in [0, 1], got {value!r} instead")
            steps.append(("center", fill))
        elif name in ("grey", "rgb") and not sep:
            steps.append((name, None))
        else:
            raise ConfigError(f"unknown image transform step {part.strip()!r} in {spec!r}; use {SPEC_HELP}")
    return tuple(steps)


def canonical_spec(spec: str) -> str:
    """The spec checked and written the one way (lower case, aliases resolved)."""
    out = []
    for name, arg in parse_transform_spec(spec):
        if name == "resize":
            out.append("resize" if arg == "bilinear" else f"resize={arg}")
        elif name == "center":
            out.append("pad" if arg == 0.0 else f"pad={arg:g}")
        else:
            out.append(name)
    return ",".join(out)


def _shape(shape: Iterable[SupportsInt]) -> tuple[int, int, int]:
    sizes = tuple(int(s) for s in shape)
    if len(sizes) != 3 or min(sizes) < 1:
        raise ShapeMismatchError(f"an image shape must be [C, H, W] of positive sizes, got {list(sizes)} instead")
    return sizes[0], sizes[1], sizes[2]


@dataclass(frozen=True)
class ImageTransform:
    """A resolved transform: images of ``from_shape`` -> ``to_shape``; ``ops`` the concrete steps."""

    spec: str
    from_shape: tuple[int, int, int]
    to_shape: tuple[int, int, int]
    ops: tuple[tuple[Any, ...], ...] = ()  # ("grey",), ("rgb",), ("resize", (H, W), mode), ("center", (H, W), fill)

    @property
    def identity(self) -> bool:
        """Whether the transform changes nothing (no step)."""
        return not self.ops

    def record(self) -> dict[str, Any]:
        """What a map.json or an atlas.json records: {"spec", "from", "to"}."""
        return {"spec": self.spec, "from": list(self.from_shape), "to": list(self.to_shape)}

    def describe(self) -> str:
        """The spec and the two shapes, for messages: ``'auto' [3, 64, 64] -> [1, 28, 28]``."""
        return f"'{self.spec}' {list(self.from_shape)} -> {list(self.to_shape)}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.from_shape:
            raise ShapeMismatchError(f"image transform {self.describe()} got images of shape {tuple(x.shape[1:])}")
        for op, *args in self.ops:
            x = _apply(op, x, *args)
        return x


def _apply(op: str, x: torch.Tensor, *args: Any) -> torch.Tensor:
    if op == "grey":
        if x.shape[1] == 1:
            return x
        luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * luma).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    if op == "rgb":
        return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x
    if op == "resize":
        size, mode = args
        if mode == "area":
            out = torch.nn.functional.interpolate(x, size=size, mode="area")
        else:
            out = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return out.clamp_(0.0, 1.0)
    if op == "center":
        (th, tw), fill = args
        h, w = x.shape[2:]
        top, left = (h - th) // 2, (w - tw) // 2  # a crop where positive, a pad (negated) where negative
        x = x[:, :, max(top, 0):max(top, 0) + min(h, th), max(left, 0):max(left, 0) + min(w, tw)]
        ph, pw = max(th - h, 0), max(tw - w, 0)
        if ph or pw:
            x = torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float(fill))
        return x
    raise AssertionError(op)  # pragma: no cover


def image_transform(spec: str | None, from_shape: Iterable[SupportsInt],
                    to_shape: Iterable[SupportsInt]) -> ImageTransform:
    """Resolve ``spec`` (None: the identity) for images of ``from_shape`` -> ``to_shape``."""
    src, dst = _shape(from_shape), _shape(to_shape)
    spec = "identity" if spec is None else canonical_spec(spec)
    steps = parse_transform_spec(spec)
    if src == dst:  # between equal shapes every spec is the identity
        return ImageTransform(spec, src, dst)
    ops: list[tuple[Any, ...]] = []
    if steps[0][0] == "auto":
        if src[0] != dst[0]:
            if src[0] not in (1, 3) or dst[0] not in (1, 3):
                raise ShapeMismatchError(f"image transform 'auto' converts between 1 and 3 channels, not "
                                         f"{src[0]} -> {dst[0]}")
            ops.append(("grey",) if dst[0] == 1 else ("rgb",))
        scale = max(dst[1] / src[1], dst[2] / src[2])
        cover = (max(dst[1], round(src[1] * scale)), max(dst[2], round(src[2] * scale)))
        if cover != src[1:]:
            ops.append(("resize", cover, "bilinear"))
        if cover != dst[1:]:
            ops.append(("center", dst[1:], 0.0))
        return ImageTransform("auto", src, dst, tuple(ops))
    shape = src
    for name, arg in steps:
        if name == "identity":
            continue
        if name in ("grey", "rgb"):
            want = 1 if name == "grey" else 3
            if shape[0] not in (1, 3):
                raise ShapeMismatchError(f"image transform '{spec}': '{name}' converts 1 or 3 channels, "
                                         f"the images have {shape[0]}")
            if shape[0] != want:
                ops.append((name,))
                shape = (want, *shape[1:])
        elif shape[1:] != dst[1:]:
            ops.append(("resize", dst[1:], arg) if name == "resize" else ("center", dst[1:], arg))
            shape = (shape[0], *dst[1:])
    if shape != dst:
        hint = (f"add {'grey' if dst[0] == 1 else 'rgb'} (e.g. '{'grey' if dst[0] == 1 else 'rgb'},{spec}')"
                if shape[0] != dst[0] else "add resize, pad or center-crop")
        raise ShapeMismatchError(f"image transform '{spec}' turns images {list(src)} into {list(shape)}, not "
                                 f"{list(dst)}: {hint}, or use --image-transform auto")
    return ImageTransform(spec, src, dst, tuple(ops))


def from_record(record: dict[str, Any] | None) -> ImageTransform | None:
    """The transform a map.json records (None for an old map without one, which means the identity)."""
    if not record:
        return None
    if not isinstance(record, dict) or not {"spec", "from", "to"} <= set(record):
        raise ConfigError(f"an image transform record needs spec, from and to, got {record!r} instead")
    return image_transform(record["spec"], record["from"], record["to"])


def _auto_steps(transform: ImageTransform) -> str:
    """What ``auto`` does between two shapes, in words: "rgb, resize to 32x32"."""
    words = []
    for op, *args in transform.ops:
        if op == "resize":
            words.append(f"resize to {args[0][0]}x{args[0][1]}")
        elif op == "center":
            words.append(f"centre crop to {args[0][0]}x{args[0][1]}")
        else:
            words.append(op)
    return ", ".join(words) or "nothing"


def propose_transform(from_shape: Iterable[SupportsInt], to_shape: Iterable[SupportsInt]) -> str | None:
    """The ``--image-transform`` value that turns images of ``from_shape`` into ``to_shape``, in words for an
    error: "--image-transform auto (rgb, resize to 32x32)"; None when no spec can (4 channels into 3)."""
    try:
        transform = image_transform("auto", from_shape, to_shape)
    except ShapeMismatchError:
        return None
    return f"--image-transform auto ({_auto_steps(transform)})"


def resolve_input(spec: str | None, data_shape: Iterable[SupportsInt], model: Any,
                  what: str = "the images") -> ImageTransform:
    """The transform that turns ``what`` (images of ``data_shape``) into the images ``model`` takes: the one
    rule every command follows. No spec (or ``identity``) between different shapes is a ShapeMismatchError
    that proposes the exact ``--image-transform`` value that would work; a spec that cannot reach the
    model's shape says what to add. ``model`` is a LatentModel or a shape [C, H, W]."""
    name = getattr(model, "name", None)
    to_shape = _shape(getattr(model, "image_shape", model))
    src = _shape(data_shape)
    if spec is not None and canonical_spec(spec) == "identity":
        spec = None
    if spec is None and src != to_shape:
        who = f"model '{name}'" if name else "the model"
        proposal = propose_transform(src, to_shape)
        hint = (f"pass {proposal}, or another spec ({SPEC_HELP})" if proposal else
                f"no image transform turns {src[0]} channels into {to_shape[0]}; give images of the model's shape")
        raise ShapeMismatchError(f"{who} expects images of shape {tuple(to_shape)}, {what} are {tuple(src)}: {hint}")
    try:
        return image_transform(spec, src, to_shape)
    except ShapeMismatchError as exc:
        proposal = propose_transform(src, to_shape)
        extra = f" ({proposal} would work)" if proposal and "auto" not in str(exc) else ""
        raise ShapeMismatchError(f"{what}: {exc}{extra}") from None


def resolve_images(spec: str | None, images: torch.Tensor, model: object, what: str = "the images") -> torch.Tensor:
    """``images`` [N, C, H, W] as ``model`` takes them (:func:`resolve_input`)."""
    return resolve_input(spec, tuple(images.shape[1:]), model, what)(images)


def resolve_dataset(spec: str | None, dataset: ImageDataset, model: object, what: str | None = None) -> ImageDataset:
    """``dataset`` as ``model`` takes it (:func:`resolve_input`); the dataset itself when nothing changes."""
    what = what or f"the images of {getattr(dataset, 'name', 'the dataset')}"
    return transformed_dataset(dataset, resolve_input(spec, dataset.image_shape, model, what))


def model_inputs(spec: str | None, data_shape: Sequence[SupportsInt], models: Iterable[object]) -> list[ImageTransform]:
    """For each model, the transform from images of ``data_shape`` to the model's own shape (None: identity only),
    by :func:`resolve_input`."""
    return [resolve_input(spec, data_shape, m) for m in models]



class TransformedImageDataset(ImageDataset):
    """A view of an image dataset whose batches come through an :class:`ImageTransform` (the same labels)."""

    def __init__(self, dataset: ImageDataset, transform: ImageTransform) -> None:
        self.parent, self.transform = dataset, transform
        self.name, self.image_shape = dataset.name, transform.to_shape
        self.source = getattr(dataset, "source", "")
        self.labels, self.label_names, self.lazy = dataset.labels, dataset.label_names, dataset.lazy

    def __len__(self) -> int:
        return len(self.parent)

    def batch(self, indices: ArrayLike) -> torch.Tensor:
        """The parent's images at ``indices``, transformed."""
        return self.transform(self.parent.batch(indices))


def transformed_dataset(dataset: ImageDataset, transform: ImageTransform) -> ImageDataset:
    """``dataset`` as a model of ``transform.to_shape`` takes it; the dataset itself when the identity."""
    return dataset if transform.identity else TransformedImageDataset(dataset, transform)
