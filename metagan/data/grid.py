"""Sample grids: rows of image tensors written as one PNG (shots set apart, class labels)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from metagan.data.images import _check_images, to_pil
from metagan.io import atomic_write


def save_grid(
    rows: list[torch.Tensor],
    path: str | os.PathLike,
    *,
    invert: bool,
    pad: int = 2,
    split: int = 0,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write a PNG grid with one row per ``(N, C, H, W)`` tensor, atomically (RGB for C = 3).

    Rows may hold different numbers of images (shorter rows are left blank); all images must
    share one C x H x W. The padding is mid-grey so that cells stay visible with and without
    ``invert``.

    :param split: the first ``split`` images of every row (the shots) are set apart from the
        rest (the samples) by a wider gap with a black line down its middle; 0: no gap.
    :param labels: one text per row (which class it is), written in a white column on the left.
    """
    if not rows:
        raise ValueError("save_grid needs at least one row of images")
    rows = [_check_images(r, f"row {i} of save_grid") for i, r in enumerate(rows)]
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"save_grid got {len(labels)} labels for {len(rows)} rows")
    c, h, w = rows[0].shape[-3:]
    for i, r in enumerate(rows):
        if r.shape[-3:] != (c, h, w):
            raise ValueError(
                f"save_grid rows must share one image shape: row 0 is {c}x{h}x{w}, "
                f"row {i} is {r.shape[-3]}x{r.shape[-2]}x{r.shape[-1]}"
            )
    cols = max(1, max(r.shape[0] for r in rows))
    gap = 4 * pad + 1 if 0 < split < cols else 0  # extra width between shots and samples
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left = 0
    if labels is not None:
        left = max(int(draw.textlength(str(t), font=font)) for t in labels) + 2 * pad + 2
    width = left + pad + cols * (w + pad) + gap
    colour = (3,) if c == 3 else ()  # an RGB grid for colour rows, mode "L" otherwise
    grid = np.full((pad + len(rows) * (h + pad), width, *colour), 128, dtype=np.uint8)
    if left:
        grid[:, :left] = 255
    if gap:
        x_line = left + pad + split * (w + pad) + gap // 2 - 1
        grid[:, x_line] = 0
    for i, r in enumerate(rows):
        for j, img in enumerate(to_pil(r, invert=invert)):
            y = pad + i * (h + pad)
            x = left + pad + j * (w + pad) + (gap if gap and j >= split else 0)
            grid[y : y + h, x : x + w] = np.asarray(img)
    out = Image.fromarray(grid, mode="RGB" if colour else "L")
    if labels is not None:
        pen = ImageDraw.Draw(out)
        for i, text in enumerate(labels):
            y = pad + i * (h + pad) + max(0, (h - 11) // 2)
            pen.text((pad, y), str(text), fill=(0, 0, 0) if colour else 0, font=font)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        out.save(f, format="PNG")
    return path
