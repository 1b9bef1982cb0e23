"""Toy stories: one or two characters travelling through settings, as storymem story scripts.

A story is a few scenes, one setting each, of one to three shots. The first
time a character appears its prompt names its look ("a red circle with a hat
hops to the left on the beach"); after that only its role does ("the hero
walks to the right in the snow"), so only memory can keep the character
consistent. The script is the ST-Bench JSON of SPEC 8; :func:`story_truth`
recovers what every shot should show from the prompts alone.

    python -m storymem_cli.toy.stories --seed 3 --characters 2 > story.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from storymem_cli.toy.captions import ROLES, caption, describe, parse_caption
from storymem_cli.toy.render import render_clip
from storymem_cli.toy.world import ACTIONS, SETTINGS, Character, Shot, random_character

STORY_STREAM = 1  # first word of every story's seed sequence; datasets use another, so they never collide


@dataclass(frozen=True)
class StoryShot:
    scene: int  # 1-based scene number
    role: str  # "hero" or "friend"
    shot: Shot
    cut: bool
    prompt: str


@dataclass(frozen=True)
class ToyStory:
    seed: int
    characters: dict[str, Character]  # role -> character
    shots: list[StoryShot]

    def script(self) -> dict:
        """The story as a storymem story script (ST-Bench JSON, SPEC 8)."""
        scenes: list[dict] = []
        for s in self.shots:
            if not scenes or scenes[-1]["scene_num"] != s.scene:
                scenes.append({"scene_num": s.scene, "video_prompts": [], "first_frame_prompt": [], "cut": []})
            scenes[-1]["video_prompts"].append(s.prompt)
            scenes[-1]["first_frame_prompt"].append(s.prompt)
            scenes[-1]["cut"].append(s.cut)
        return {"story_name": self.name(), "story_overview": self.overview(), "scenes": scenes}

    def name(self) -> str:
        hero = self.characters["hero"]
        title = f"The {hero.colour} {hero.shape}"
        if "friend" in self.characters:
            friend = self.characters["friend"]
            title += f" and the {friend.colour} {friend.shape}"
        return f"{title} (toy story {self.seed})"

    def overview(self) -> str:
        who = describe(self.characters["hero"]) + " travels"
        if "friend" in self.characters:
            who = f"{describe(self.characters['hero'])} and its friend, {describe(self.characters['friend'])}, travel"
        places: list[str] = []
        for s in self.shots:
            phrase = SETTINGS[s.shot.setting].phrase
            if not places or places[-1] != phrase:
                places.append(phrase)
        return f"A toy-world story: {who} {', then '.join(places)}."

    def render(self) -> list[np.ndarray]:
        """The clip every shot describes, drawn by the toy renderer: ground truth, not a model's output."""
        seeds = np.random.SeedSequence([STORY_STREAM, self.seed]).spawn(len(self.shots))
        return [render_clip(s.shot, np.random.default_rng(q)) for s, q in zip(self.shots, seeds)]


def make_story(
    seed: int,
    characters: int = 1,
    scenes: tuple[int, int] = (3, 5),
    shots_per_scene: tuple[int, int] = (1, 3),
) -> ToyStory:
    """A random story, a pure function of its arguments. ``scenes`` and ``shots_per_scene`` are
    inclusive ranges; settings do not repeat within a story."""
    if characters not in (1, 2):
        raise ValueError(f"characters must be 1 or 2, got {characters}")
    if not 1 <= scenes[0] <= scenes[1] <= len(SETTINGS):
        raise ValueError(f"scenes must be a range within 1..{len(SETTINGS)}, got {scenes}")
    if not 1 <= shots_per_scene[0] <= shots_per_scene[1]:
        raise ValueError(f"shots_per_scene must be a range of at least 1, got {shots_per_scene}")
    rng = np.random.default_rng([STORY_STREAM, seed])
    cast = {"hero": random_character(rng)}
    if characters == 2:
        cast["friend"] = random_character(rng, unlike=cast["hero"])
    n_scenes = int(rng.integers(scenes[0], scenes[1] + 1))
    settings = [str(s) for s in rng.choice(list(SETTINGS), n_scenes, replace=False)]

    plan: list[tuple[int, str, str, str]] = []  # (scene, role, action, setting)
    for scene, setting in enumerate(settings, start=1):
        for _ in range(int(rng.integers(shots_per_scene[0], shots_per_scene[1] + 1))):
            role = str(rng.choice(list(cast))) if plan else "hero"
            plan.append((scene, role, str(rng.choice(list(ACTIONS))), setting))
    if characters == 2 and all(role == "hero" for _, role, _, _ in plan):
        scene, _, action, setting = plan[-1]
        plan[-1] = (scene, "friend", action, setting)

    shots: list[StoryShot] = []
    introduced: set[str] = set()
    for scene, role, action, setting in plan:
        shot = Shot(cast[role], action, setting)
        prev = shots[-1] if shots else None
        # A new scene or a new character is a hard cut; the same character in the same place continues.
        cut = prev is None or prev.scene != scene or prev.role != role
        prompt = caption(shot, role=role if role in introduced else None)
        introduced.add(role)
        shots.append(StoryShot(scene, role, shot, cut, prompt))
    return ToyStory(seed, cast, shots)


def story_truth(script: dict) -> list[Shot]:
    """What each shot of a toy story script should show, read from its prompts: a full prompt
    introduces a character (the first one introduced is the hero, the next the friend); a role
    prompt ("the hero ...") means the character introduced for that role. ValueError if a prompt
    is not a toy caption or names a role before introducing it."""
    cast: dict[str, Character] = {}
    truth: list[Shot] = []
    for scene in script["scenes"]:
        for prompt in scene["video_prompts"]:
            parsed = parse_caption(prompt)
            if parsed.character is not None:
                character = parsed.character
                if character not in cast.values():
                    if len(cast) == len(ROLES):
                        raise ValueError(f"a third character is introduced: {prompt!r}")
                    cast[ROLES[len(cast)]] = character
            else:
                if parsed.role not in cast:
                    raise ValueError(f"{prompt!r} names the {parsed.role} before any prompt describes it")
                character = cast[parsed.role]
            truth.append(Shot(character, parsed.action, parsed.setting))
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storymem_cli.toy.stories",
        description="Print a random toy-world story script (storymem JSON) to stdout.",
    )
    parser.add_argument("--seed", type=int, required=True, help="story seed: the same seed gives the same story")
    parser.add_argument("--characters", type=int, choices=(1, 2), default=1, help="hero only, or hero and friend")
    parser.add_argument("--scenes", type=int, nargs=2, default=(3, 5), metavar=("MIN", "MAX"),
                        help="number of scenes (settings), inclusive range (default: 3 5)")
    parser.add_argument("--shots-per-scene", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"),
                        help="shots in each scene, inclusive range (default: 1 3)")
    args = parser.parse_args(argv)
    try:
        story = make_story(args.seed, args.characters, tuple(args.scenes), tuple(args.shots_per_scene))
    except ValueError as err:
        parser.error(str(err))
    json.dump(story.script(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
