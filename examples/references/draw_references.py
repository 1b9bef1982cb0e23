"""Redraw the reference images of examples/clockmaker_robot.json (procedural, no assets).

python examples/references/draw_references.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
HERE = Path(__file__).resolve().parent
BACKGROUND = (236, 228, 212)  # plain warm paper, so the subject is all the memory sees
BRASS = (196, 150, 60)
DARK = (40, 34, 30)


def draw_tock() -> Image.Image:
    """Tock: a small red tin robot, round head, two round white eyes, brass antenna."""
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(image)
    red, dark_red = (200, 40, 35), (140, 25, 22)
    d.line([(128, 36), (128, 62)], fill=BRASS, width=5)  # antenna
    d.ellipse([119, 24, 137, 42], fill=BRASS, outline=DARK, width=2)
    d.ellipse([84, 58, 172, 134], fill=red, outline=DARK, width=3)  # head
    for cx in (110, 146):  # eyes
        d.ellipse([cx - 13, 82, cx + 13, 108], fill=(250, 250, 245), outline=DARK, width=2)
        d.ellipse([cx - 5, 90, cx + 5, 100], fill=DARK)
    d.rounded_rectangle([78, 136, 178, 212], radius=14, fill=red, outline=DARK, width=3)  # body
    for y in (152, 170, 188):  # rivets and a dial on the chest
        d.ellipse([88, y - 4, 96, y + 4], fill=BRASS)
        d.ellipse([160, y - 4, 168, y + 4], fill=BRASS)
    d.ellipse([112, 154, 144, 186], fill=(250, 250, 245), outline=DARK, width=2)
    d.line([(128, 170), (128, 158)], fill=DARK, width=2)
    d.line([(128, 170), (138, 174)], fill=DARK, width=2)
    d.rectangle([56, 146, 76, 196], fill=dark_red, outline=DARK, width=2)  # arms
    d.rectangle([180, 146, 200, 196], fill=dark_red, outline=DARK, width=2)
    d.rectangle([94, 214, 118, 240], fill=dark_red, outline=DARK, width=2)  # legs
    d.rectangle([138, 214, 162, 240], fill=dark_red, outline=DARK, width=2)
    return image


def draw_pocket_watch() -> Image.Image:
    """The clockmaker's brass pocket watch: white dial, black numerals as ticks, chain ring."""
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(image)
    cx, cy, r = 128, 140, 92
    d.ellipse([cx - 14, 22, cx + 14, 50], outline=BRASS, width=6)  # bow ring
    d.rectangle([cx - 10, 44, cx + 10, 56], fill=BRASS, outline=DARK, width=2)  # crown
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=BRASS, outline=DARK, width=3)  # case
    d.ellipse([cx - r + 14, cy - r + 14, cx + r - 14, cy + r - 14], fill=(250, 248, 240), outline=DARK, width=2)
    for hour in range(12):
        angle = math.radians(hour * 30)
        inner = r - 34 if hour % 3 == 0 else r - 28
        x0, y0 = cx + inner * math.sin(angle), cy - inner * math.cos(angle)
        x1, y1 = cx + (r - 20) * math.sin(angle), cy - (r - 20) * math.cos(angle)
        d.line([(x0, y0), (x1, y1)], fill=DARK, width=4 if hour % 3 == 0 else 2)
    d.line([(cx, cy), (cx + 30, cy - 26)], fill=DARK, width=5)  # hands at ten to two
    d.line([(cx, cy), (cx - 46, cy - 24)], fill=DARK, width=3)
    d.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], fill=DARK)
    return image


def main() -> None:
    draw_tock().save(HERE / "tock.png", optimize=True)
    draw_pocket_watch().save(HERE / "pocket_watch.png", optimize=True)


if __name__ == "__main__":
    main()
