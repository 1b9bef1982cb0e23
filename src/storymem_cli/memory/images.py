"""Checks for user-supplied reference images: readable, RGB, sensible size.

All images of one command are checked before anything is written, and every bad
file is reported with its name and reason (all-or-nothing).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from storymem_cli.errors import InvalidInputError

MIN_SIDE = 32  # the toy model's own frames (32x32); smaller is an icon, not a character to remember
MAX_SIDE = 8192  # larger is not a photo of a character but a mistake (or an attack)
MAX_PIXELS = 40_000_000  # decompression-bomb guard, checked from the header before decoding


def load_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode one image to (H, W, 3) uint8 RGB, or raise InvalidInputError naming the file.

    EXIF orientation is applied (phone photos); transparency is flattened onto white.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
                    raise InvalidInputError(
                        f"{path}: image is {w}x{h}; at most {MAX_SIDE} px a side and {MAX_PIXELS:,} pixels",
                        hint="downscale it (the model sees it at video resolution anyway)",
                    )
                if min(w, h) < MIN_SIDE:
                    raise InvalidInputError(
                        f"{path}: image is {w}x{h}; at least {MIN_SIDE} px a side is needed",
                        hint="use a larger crop or a frame of a rendered shot",
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(background, rgba)
                return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise InvalidInputError(f"{path}: not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError(f"{path}: refused as a decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise InvalidInputError(f"{path}: corrupt image data ({err})") from None


def load_images_all_or_nothing(paths: list[Path]) -> list[np.ndarray]:
    """Load every image or none: one InvalidInputError listing each bad file and its reason."""
    images: list[np.ndarray] = []
    problems: list[str] = []
    for p in paths:
        try:
            images.append(load_image_rgb(p))
        except InvalidInputError as err:
            problems.append(err.message)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} images refused:\n  " + "\n  ".join(problems)
        raise InvalidInputError(head, hint="nothing was added; fix or drop these files and run again")
    return images
