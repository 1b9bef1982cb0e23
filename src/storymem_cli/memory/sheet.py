"""Contact sheet: one captioned thumbnail tile per memory entry, in a grid, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 192  # thumbnail box, px (images keep their aspect ratio inside it)
CAPTION = 44  # caption strip under each thumbnail: three lines of Pillow's default font
PAD = 8  # gap around tiles
COLUMNS = 5
BACKGROUND = (24, 24, 24)
TILE_BACKGROUND = (48, 48, 48)


def sheet_layout(n: int, columns: int = COLUMNS) -> tuple[int, int, int, int]:
    """(columns, rows, width, height) of a sheet with ``n`` tiles."""
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    return cols, rows, PAD + cols * (TILE + PAD), PAD + rows * (TILE + CAPTION + PAD)


def tile_origin(i: int, columns: int) -> tuple[int, int]:
    """Top-left corner of tile ``i``."""
    return PAD + (i % columns) * (TILE + PAD), PAD + (i // columns) * (TILE + CAPTION + PAD)


def render_contact_sheet(images: list[np.ndarray], captions: list[list[str]], columns: int = COLUMNS) -> np.ndarray:
    """Grid of thumbnails with caption lines under each; returns (H, W, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    if len(images) != len(captions):
        raise ValueError("one caption list per image")
    cols, _, width, height = sheet_layout(len(images), columns)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (image, lines) in enumerate(zip(images, captions)):
        x, y = tile_origin(i, cols)
        draw.rectangle([x, y, x + TILE - 1, y + TILE + CAPTION - 1], fill=TILE_BACKGROUND)
        thumb = Image.fromarray(image)
        factor = min(TILE // thumb.width, TILE // thumb.height)
        if factor > 1:  # small frames (toy: 32 px) as crisp blocks filling the tile, not a speck in it
            thumb = thumb.resize((thumb.width * factor, thumb.height * factor), Image.Resampling.NEAREST)
        thumb.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + (TILE - thumb.width) // 2, y + (TILE - thumb.height) // 2))
        for j, line in enumerate(lines[:3]):
            draw.text((x + 4, y + TILE + 2 + 14 * j), _fit(draw, line, font), fill=(230, 230, 230), font=font)
    return np.asarray(sheet)


MAX_CAPTION_CHARS = 200  # a tile shows ~30 characters; Pillow refuses to measure over 1,000,000


def _fit(draw, text: str, font) -> str:  # type: ignore[no-untyped-def]
    text = text[:MAX_CAPTION_CHARS]
    if draw.textlength(text, font=font) <= TILE - 8:
        return text
    while text and draw.textlength(text + "...", font=font) > TILE - 8:
        text = text[:-1]
    return text + "..."


def write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
