"""Image grids: rows of images (e.g. original / reconstruction / relocation) as one PNG."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch


def grid_image(rows: Sequence[torch.Tensor], padding: int = 2, scale: int = 2):
    """Stack equally long batches [N, C, H, W] as rows of a PIL image, upscaled ``scale`` times."""
    from PIL import Image

    if not rows:
        raise ValueError("grid_image needs at least one row")
    n = max(len(r) for r in rows)
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
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def grid_png(rows: Sequence[torch.Tensor], **kwargs) -> bytes:
    buffer = io.BytesIO()
    grid_image(rows, **kwargs).save(buffer, format="PNG")
    return buffer.getvalue()


def square_grid_png(images: torch.Tensor, per_row: int | None = None, **kwargs) -> bytes:
    """A batch laid out as a near-square grid."""
    per_row = per_row or max(1, int(np.ceil(np.sqrt(len(images)))))
    rows = [images[i:i + per_row] for i in range(0, len(images), per_row)]
    return grid_png(rows, **kwargs)
