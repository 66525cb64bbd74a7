"""Comparison grid PNG: one row per image, one column per method, labels drawn with PIL."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engan.eval.runner import GridRow

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
PAD = 6
LABEL_H = 22


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def compose_grid(rows: list["GridRow"], columns: list[str] | None = None):
    """Lay tiles out as a grid image (PIL ``Image``); missing tiles stay blank.

    Args:
        rows: grid rows, each mapping a column label to an HxWx3 uint8 tile.
        columns: column order; default = order of first appearance.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("no rows to draw")
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r.tiles))
    col_w = [max((r.tiles[c].shape[1] for r in rows if c in r.tiles), default=64) for c in columns]
    row_h = [max((t.shape[0] for t in r.tiles.values()), default=64) for r in rows]
    width = sum(col_w) + PAD * (len(columns) + 1)
    height = LABEL_H + sum(row_h) + (LABEL_H + PAD) * len(rows) + PAD
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = _font(14), _font(12)
    x = PAD
    for c, w in zip(columns, col_w):
        draw.text((x + 2, 4), c if len(c) <= w // 7 else c[: max(3, w // 7 - 1)] + "…", fill=TEXT, font=font)
        x += w + PAD
    y = LABEL_H
    for r, h in zip(rows, row_h):
        draw.text((PAD + 2, y + 4), r.name, fill=TEXT, font=small)
        y += LABEL_H
        x = PAD
        for c, w in zip(columns, col_w):
            t = r.tiles.get(c)
            if t is not None:
                canvas.paste(Image.fromarray(np.ascontiguousarray(t)), (x + (w - t.shape[1]) // 2, y + (h - t.shape[0]) // 2))
            x += w + PAD
        y += h + PAD
    return canvas


def save_grid(rows: list["GridRow"], path: str | os.PathLike, columns: list[str] | None = None) -> Path:
    """Compose and write the grid PNG atomically."""
    import io

    from engan.runtime.atomic import atomic_write_bytes

    buf = io.BytesIO()
    compose_grid(rows, columns).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
