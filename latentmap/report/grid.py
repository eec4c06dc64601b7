"""Image grids: rows of images (e.g. original / reconstruction / relocation) as one PNG.

``row_labels`` writes a label left of each row ("originals", "A's reconstruction", ...) and
``column_labels`` one above each column (t = 0.25 ...), in the PNG itself, so a grid explains
itself wherever it is opened.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageFont as PILImageFont

LABEL_FONT_SIZE = 13
LABEL_MARGIN = 8  # pixels between a label and the images


def label_font(size: int = LABEL_FONT_SIZE) -> PILImageFont.ImageFont | PILImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (the scalable one where FreeType is available)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _text_width(font: PILImageFont.ImageFont | PILImageFont.FreeTypeFont, text: str) -> int:
    return int(np.ceil(font.getlength(text))) if hasattr(font, "getlength") else 6 * len(text)


def grid_image(rows: Sequence[torch.Tensor], padding: int = 2, scale: int = 2, *,
               row_labels: Sequence[str] | None = None, column_labels: Sequence[str] | None = None) -> PILImage.Image:
    """Stack batches [N, C, H, W] as rows of a PIL image, upscaled ``scale`` times; rows may differ in length.

    With ``row_labels`` (one per row) a white margin on the left holds them; with ``column_labels``
    (one per column of the longest row) a margin on top.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("grid_image needs at least one row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"grid_image needs one label per row, got {len(rows)} rows and {len(row_labels)} labels")
    n = max(len(r) for r in rows)
    if column_labels is not None and len(column_labels) != n:
        raise ValueError(f"grid_image needs one label per column, got {n} columns and {len(column_labels)} labels")
    c, h, w = rows[0].shape[1:]
    canvas = np.ones((len(rows) * (h + padding) + padding, n * (w + padding) + padding, 3), dtype=np.float32)
    for i, row in enumerate(rows):
        row = row.detach().float().cpu().clamp(0, 1)
        if row.shape[1] == 1:
            row = row.expand(-1, 3, -1, -1)
        for j, img in enumerate(row):
            top, left = padding + i * (h + padding), padding + j * (w + padding)
            canvas[top:top + h, left:left + w] = img.permute(1, 2, 0).numpy()
    image = Image.fromarray((canvas * 255).round().astype(np.uint8))
    if scale != 1:
        # the ignore: Pillow sets NEAREST at import, out of its stub's sight (Image.Resampling needs Pillow 9.1)
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)  # type: ignore[attr-defined]
    if row_labels is None and column_labels is None:
        return image
    font = label_font()
    left = (max(_text_width(font, str(t)) for t in row_labels) + 2 * LABEL_MARGIN) if row_labels else 0
    top = (LABEL_FONT_SIZE + 2 * LABEL_MARGIN) if column_labels else 0
    labelled = Image.new("RGB", (image.width + left, image.height + top), "white")
    labelled.paste(image, (left, top))
    draw = ImageDraw.Draw(labelled)
    for i, text in enumerate(row_labels or []):
        middle = top + (padding + i * (h + padding) + h / 2) * scale
        draw.text((LABEL_MARGIN, middle), str(text), fill=(30, 30, 30), font=font, anchor="lm")
    for j, text in enumerate(column_labels or []):
        centre = left + (padding + j * (w + padding) + w / 2) * scale
        draw.text((centre, top - LABEL_MARGIN), str(text), fill=(30, 30, 30), font=font, anchor="md")
    return labelled


def grid_png(rows: Sequence[torch.Tensor], **kwargs: Any) -> bytes:
    """:func:`grid_image` as PNG bytes (``row_labels=[...]``, ``column_labels=[...]`` label it); a labelled
    grid records its labels' size in px (``TEXT_PX_KEY``, as :func:`latentmap.report.figures.figure_png` does)."""
    from PIL.PngImagePlugin import PngInfo

    from latentmap.report.figures import TEXT_PX_KEY

    info = PngInfo()
    if kwargs.get("row_labels") is not None or kwargs.get("column_labels") is not None:
        info.add_text(TEXT_PX_KEY, f"{LABEL_FONT_SIZE:.2f}")
    buffer = io.BytesIO()
    grid_image(rows, **kwargs).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def square_grid_png(images: torch.Tensor, per_row: int | None = None, **kwargs: Any) -> bytes:
    """A batch laid out as a near-square grid."""
    per_row = per_row or max(1, int(np.ceil(np.sqrt(len(images)))))
    rows = [images[i:i + per_row] for i in range(0, len(images), per_row)]
    return grid_png(rows, **kwargs)
