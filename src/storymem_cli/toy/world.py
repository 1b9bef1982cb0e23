"""The toy world as data: characters (shape x colour x accessory), actions, settings.

Everything the renderer draws, the caption grammar names and the detector reads
comes from the tables below, so the three can never disagree. Colour rules that
keep the detector reliable:

* character colours are saturated: chroma (max channel - min channel) >= 190;
* every setting colour (sky, ground, props) is muted: chroma <= 95, so a
  chroma threshold in between separates character pixels from any setting;
* accessories and eyes are neutral (black / white): they never look like a body.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

RGB = tuple[int, int, int]

FRAME_SIZE = 64  # 64x64 frames: 8x8 latent pixels with the Wan VAE's 8x spatial stride
CLIP_FRAMES = 17  # 4k+1 frames for the Wan VAE's 4x temporal stride -> 5 latent frames
FPS = 16  # same frame rate semantics as Wan2.2 A14B

GROUND_ROW = 54  # feet of a standing character; the ground band starts above this row
CHARACTER_CHROMA_MIN = 190  # every body colour is at least this saturated (max - min channel)
SETTING_CHROMA_MAX = 95  # every sky / ground / prop colour is at most this saturated

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")

# Saturated colours with hues at least 30 degrees apart (red 0, orange 30, yellow 60,
# green 125, cyan 185, blue 230, purple 275, pink 320), so a slight colour shift keeps
# the nearest hue right.
COLOURS: dict[str, RGB] = {
    "red": (230, 30, 30),
    "orange": (250, 125, 0),
    "yellow": (230, 230, 0),
    "green": (20, 210, 40),
    "cyan": (0, 200, 230),
    "blue": (30, 60, 240),
    "purple": (150, 30, 230),
    "pink": (240, 40, 170),
}

# "none" draws only the eye; the others are drawn in neutral colours.
ACCESSORIES: tuple[str, ...] = ("none", "hat", "bow", "glasses")
HAT_RGB: RGB = (25, 25, 25)
BOW_RGB: RGB = (245, 245, 245)
GLASSES_RGB: RGB = (15, 15, 15)
EYE_RGB: RGB = (10, 10, 10)

# Each action is a motion the renderer animates; the phrase is what captions say.
ACTIONS: dict[str, str] = {
    "walk_left": "walks to the left",
    "walk_right": "walks to the right",
    "hop_left": "hops to the left",
    "hop_right": "hops to the right",
    "jump": "jumps up",
    "turn": "turns around",
    "grow": "grows bigger",
    "shrink": "shrinks",
}


@dataclass(frozen=True)
class Setting:
    """A place: a two-colour sky gradient, a ground band from ``horizon`` down, and props."""

    name: str
    phrase: str  # how captions say it: "on the beach", "in the forest"
    sky_top: RGB
    sky_bottom: RGB
    ground: RGB
    horizon: int  # first ground row
    props: tuple[str, ...]  # prop kinds the renderer knows how to draw (render._PROPS)
    prop_rgb: RGB
    accent_rgb: RGB  # second prop colour: trunks, windows, sun / moon


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("beach", "on the beach", (120, 175, 215), (175, 210, 230), (225, 205, 150), 40,
                ("sea", "sun"), (70, 130, 165), (240, 225, 160)),
        Setting("forest", "in the forest", (150, 180, 150), (185, 205, 175), (70, 105, 65), 36,
                ("trees",), (40, 80, 45), (100, 75, 55)),
        Setting("desert", "in the desert", (235, 195, 150), (245, 220, 185), (200, 155, 110), 42,
                ("cacti", "sun"), (95, 135, 85), (250, 235, 190)),
        Setting("snow", "in the snow", (165, 175, 195), (205, 210, 220), (245, 245, 248), 38,
                ("pines", "flakes"), (55, 80, 75), (255, 255, 255)),
        Setting("night_city", "in the night city", (15, 20, 45), (45, 45, 80), (55, 55, 62), 44,
                ("buildings", "moon"), (35, 35, 50), (215, 205, 135)),
        Setting("meadow", "in the meadow", (110, 160, 200), (150, 190, 215), (120, 170, 90), 44,
                ("flowers", "sun"), (230, 225, 215), (245, 240, 185)),
        Setting("cave", "in the cave", (60, 50, 45), (85, 72, 62), (120, 105, 90), 46,
                ("rocks",), (85, 75, 70), (150, 140, 125)),
    )
}


@dataclass(frozen=True)
class Character:
    shape: str
    colour: str
    accessory: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} is not one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour {self.colour!r} is not one of {tuple(COLOURS)}")
        if self.accessory not in ACCESSORIES:
            raise ValueError(f"accessory {self.accessory!r} is not one of {ACCESSORIES}")


@dataclass(frozen=True)
class Shot:
    """What one clip shows: who, doing what, where."""

    character: Character
    action: str
    setting: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {tuple(ACTIONS)}")
        if self.setting not in SETTINGS:
            raise ValueError(f"setting {self.setting!r} is not one of {tuple(SETTINGS)}")


def all_characters() -> list[Character]:
    return [Character(s, c, a) for s, c, a in product(SHAPES, COLOURS, ACCESSORIES)]


def all_shots() -> list[Shot]:
    return [Shot(ch, a, s) for ch, a, s in product(all_characters(), ACTIONS, SETTINGS)]


def chroma(rgb: RGB) -> int:
    return max(rgb) - min(rgb)


def random_character(rng: np.random.Generator, unlike: Character | None = None) -> Character:
    """A uniformly random character; with ``unlike``, one that differs from it in both shape and
    colour, so the two are told apart by either."""
    while True:
        c = Character(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(ACCESSORIES)))
        if unlike is None or (c.shape != unlike.shape and c.colour != unlike.colour):
            return c
