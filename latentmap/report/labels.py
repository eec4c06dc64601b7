"""Image grids whose rows carry a label on the left (target / encoder / refined ...), as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch

from latentmap.report.grid import grid_image

LABEL_WIDTH = 150


def labelled_grid_png(rows: Sequence[torch.Tensor | None], labels: Sequence[str], *, scale: int = 2,
                      padding: int = 2, image_shape: Sequence[int] | None = None) -> bytes:
    """Rows of images with ``labels[i]`` written left of row i; an empty or None row is left blank.

    Rows may differ in length; every cell has the size of the first non-empty row's images.
    """
    from PIL import Image, ImageDraw

    if len(rows) != len(labels):
        raise ValueError(f"labelled_grid_png needs one label per row, got {len(rows)} rows and {len(labels)} labels")
    filled = [r for r in rows if r is not None and len(r)]
    shape = tuple(filled[0].shape[1:]) if filled else tuple(image_shape or (1, 8, 8))
    blank = torch.ones(1, *shape)
    # a blank row still takes its place; a white cell is drawn where nothing is given
    grid = grid_image([r if r is not None and len(r) else blank for r in rows], padding=padding, scale=scale)
    canvas = Image.new("RGB", (grid.width + LABEL_WIDTH, grid.height), "white")
    canvas.paste(grid, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    cell = (shape[1] + padding) * scale
    for i, label in enumerate(labels):
        top = padding * scale + i * cell
        draw.text((6, top + cell // 2 - 6), str(label)[:24], fill=(40, 40, 40))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
