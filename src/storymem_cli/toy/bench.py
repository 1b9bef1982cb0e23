"""The held-out toy benchmark: stories only memory can keep consistent, and their metrics.

Every shot of a benchmark story is a hard cut (one shot per scene), so no shot
can take the character over from the previous shot's last frame: the first
prompt names the hero's look ("a red circle with a hat hops to the left on the
beach"), every later one only its role ("the hero walks to the right in the
snow"). A model that keeps the hero from shot 2 on does so through memory.

The stories draw from their own seed stream (:data:`BENCH_STREAM`), distinct
from the toy dataset's (``dataset.DATASET_STREAM``) and from
``stories.STORY_STREAM``, so a model trained on the toy dataset never saw them.

The metrics are pure functions of the truth (``stories.story_truth``) and the
detector's readings (``detect.Detection``), one per shot. The benchmark command
that renders and detects is ``benchmarks/toy_consistency.py``; see
docs/toy-world.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storymem_cli.toy.captions import caption
from storymem_cli.toy.detect import Detection
from storymem_cli.toy.stories import StoryShot, ToyStory
from storymem_cli.toy.world import (
    ACTIONS,
    COLOURS,
    SETTINGS,
    SHAPES,
    Shot,
    random_character,
)

BENCH_STREAM = 3  # first word of every benchmark story's seed sequence (stories use 1, the dataset 2)
DEFAULT_SEED = 0  # the published benchmark: bench_stories(20, 8, seed=0)
HELD_OUT_SEED = 999_983  # toy_group seed of the clips benchmarks/toy_*_probe.py read: the dataset uses 0
PROBE_MEMORY_FRAMES = (0, 8)  # frames of each of a held-out group's clips 1-3: the probes' six memory frames


def probe_memory(group: list) -> list[np.ndarray]:
    """The memory the probes give a held-out group's character (``toy_group`` pairs): frames
    PROBE_MEMORY_FRAMES of each of its clips but the first, which is the shot being made."""
    return [clip[f] for _, clip in group[1:] for f in PROBE_MEMORY_FRAMES]


def bench_story(seed: int, index: int, shots: int = 8) -> dict:
    """Benchmark story ``index`` of benchmark ``seed`` as a storymem story script: one hero, one
    shot per scene (all hard cuts), settings never the same twice in a row."""
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    rng = np.random.default_rng([BENCH_STREAM, seed, index])
    hero = random_character(rng)
    story_shots: list[StoryShot] = []
    setting: str | None = None
    for k in range(shots):
        setting = str(rng.choice([s for s in SETTINGS if s != setting]))
        shot = Shot(hero, str(rng.choice(list(ACTIONS))), setting)
        prompt = caption(shot, role=None if k == 0 else "hero")
        story_shots.append(StoryShot(scene=k + 1, role="hero", shot=shot, cut=True, prompt=prompt))
    script = ToyStory(seed=index, characters={"hero": hero}, shots=story_shots).script()
    script["story_name"] = f"The {hero.colour} {hero.shape} (toy benchmark {seed}, story {index})"
    return script


def truth_rng(seed: int, index: int, shot: int) -> np.random.Generator:
    """The generator the ground-truth clip of shot ``shot`` (0-based) of story ``index`` is drawn with:
    ``[stream, seed, story, shot + 1]``, a sequence the stories' own ``[stream, seed, story]`` never is."""
    return np.random.default_rng([BENCH_STREAM, seed, index, shot + 1])


def bench_stories(count: int = 20, shots: int = 8, seed: int = DEFAULT_SEED) -> list[dict]:
    """The benchmark: ``count`` story scripts of ``shots`` shots, a pure function of the arguments
    (story i does not depend on ``count``, so a longer benchmark extends a shorter one)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [bench_story(seed, i, shots) for i in range(count)]


def chance_consistency() -> float:
    """Consistency of a model that draws a uniformly random (colour, shape) for every shot."""
    return 1.0 / (len(COLOURS) * len(SHAPES))


def _look(d: Detection) -> tuple[str, str] | None:
    return (d.colour, d.shape) if d.colour is not None and d.shape is not None else None


@dataclass(frozen=True)
class Scores:
    """Hit counts over shots. Consistency counts shots 2..N of each story (each compared with its
    story's shot 1); fidelity and setting count every shot."""

    consistent: int = 0
    same_colour: int = 0
    same_shape: int = 0
    later_shots: int = 0  # shots 2..N: the denominator of the three consistency rates
    faithful: int = 0
    setting_right: int = 0
    shots: int = 0  # all shots: the denominator of fidelity and setting accuracy

    def __add__(self, other: Scores) -> Scores:
        return Scores(*(a + b for a, b in zip(self.counts(), other.counts())))

    def counts(self) -> tuple[int, ...]:
        return (self.consistent, self.same_colour, self.same_shape, self.later_shots,
                self.faithful, self.setting_right, self.shots)

    def rates(self) -> dict[str, float | None]:
        """The table's columns; None where nothing was counted."""

        def rate(hits: int, total: int) -> float | None:
            return hits / total if total else None

        return {
            "consistency": rate(self.consistent, self.later_shots),
            "colour": rate(self.same_colour, self.later_shots),
            "shape": rate(self.same_shape, self.later_shots),
            "fidelity": rate(self.faithful, self.shots),
            "setting": rate(self.setting_right, self.shots),
        }


def story_scores(truth: Sequence[Shot], detections: Sequence[Detection]) -> Scores:
    """Score one story: ``truth`` from ``story_truth(script)``, one detection per shot, in order.
    A shot with no character detected is inconsistent and unfaithful; if shot 1 has none, every
    later shot is inconsistent (there is nothing to be consistent with)."""
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} shots in the truth but {len(detections)} detections")
    if not truth:
        return Scores()
    first = detections[0]
    first_look = _look(first)
    later = detections[1:]
    return Scores(
        consistent=sum(first_look is not None and _look(d) == first_look for d in later),
        same_colour=sum(first.colour is not None and d.colour == first.colour for d in later),
        same_shape=sum(first.shape is not None and d.shape == first.shape for d in later),
        later_shots=len(later),
        faithful=sum(_look(d) == (t.character.colour, t.character.shape) for t, d in zip(truth, detections)),
        setting_right=sum(d.setting == t.setting for t, d in zip(truth, detections)),
        shots=len(truth),
    )


def aggregate(stories: Sequence[Scores]) -> Scores:
    """Pool stories: every counted shot weighs the same (a mean over shots, not over stories)."""
    return sum(stories, Scores())


TABLE_COLUMNS = ("character consistency", "colour", "shape", "fidelity", "setting accuracy", "shots")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(rows: Sequence[tuple[str, Scores | str]], chance_row: str | None = None) -> str:
    """A Markdown table in the layout of the paper's Table 2: one row per configuration, a column
    per metric. A row whose value is a string (a failed configuration) shows it instead of numbers.
    The row named ``chance_row`` (the no-memory run) shows the chance level beside its consistency."""
    lines = [
        "| configuration | " + " | ".join(TABLE_COLUMNS) + " |",
        "|---|" + "---:|" * len(TABLE_COLUMNS),
    ]
    for name, scores in rows:
        if isinstance(scores, str):
            lines.append(f"| {name} | {scores} |" + " |" * (len(TABLE_COLUMNS) - 1))
            continue
        r = scores.rates()
        consistency = _cell(r["consistency"])
        if name == chance_row:
            consistency += f" (chance {chance_consistency():.3f})"
        cells = [consistency, _cell(r["colour"]), _cell(r["shape"]), _cell(r["fidelity"]), _cell(r["setting"])]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {scores.shots} |")
    return "\n".join(lines) + "\n"


def shape_mix(shapes: Sequence[str | None]) -> dict[str, float]:
    """Share of shots in which the detector read each shape (``"none"``: no shape read), most drawn
    first. A model that draws one blob for every character shows here as one dominant shape."""
    if not shapes:
        return {}
    counts = Counter(shape or "none" for shape in shapes)
    return {k: n / len(shapes) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def shape_agreement_by_chance(shapes: Sequence[str | None]) -> float | None:
    """The shape column a model would score if it drew every shot's shape at random from its own
    ``shape_mix``: the sum of the squared shares of real shapes. When the measured shape agreement is
    no higher, the shapes agree because the model draws one shape, not because memory carries it."""
    if not shapes:
        return None
    return sum(share * share for key, share in shape_mix(shapes).items() if key != "none")


def format_shape_mix(rows: Sequence[tuple[str, Scores, Sequence[str | None]]]) -> str:
    """A Markdown table per configuration: measured shape agreement, the agreement expected from the
    configuration's own shape mix by chance, and that mix (``rows``: name, scores, every shot's shape)."""
    lines = ["| configuration | shape agreement | by chance (own shape mix) | shapes read, share of shots |",
             "|---|---:|---:|---|"]  # fmt: skip
    for name, scores, shapes in rows:
        mix = ", ".join(f"{k} {v:.2f}" for k, v in shape_mix(shapes).items())
        lines.append(f"| {name} | {_cell(scores.rates()['shape'])} | {_cell(shape_agreement_by_chance(shapes))} | {mix} |")
    return "\n".join(lines) + "\n"


# --- two characters: who memory keeps apart -----------------------------------------------------

PAIR_STREAM = 4  # first word of every two-character benchmark story's seed sequence (1-3 are taken)


def pair_story(seed: int, index: int, shots: int = 8) -> dict:
    """Two-character benchmark story ``index``: the hero (shot 1) and the friend (shot 2) named by
    look the first time, then only by role ("the hero ...", "the friend ..."), each at least twice
    more (once in stories under 6 shots); one shot per scene (all hard cuts), so only memory can keep either consistent. The
    script declares both roles as characters, with their looks as aliases (``--retrieval paper``
    renders it as if it did not)."""
    if shots < 4:
        raise ValueError(f"shots must be at least 4 (two appearances of each role), got {shots}")
    rng = np.random.default_rng([PAIR_STREAM, seed, index])
    cast = {"hero": random_character(rng)}
    cast["friend"] = random_character(rng, unlike=cast["hero"])
    least = min(2, (shots - 2) // 2)
    while True:  # each role appears again, twice where the story is long enough
        later = [str(r) for r in rng.choice(list(cast), shots - 2)]
        if min(later.count(role) for role in cast) >= least:
            break
    story_shots: list[StoryShot] = []
    setting: str | None = None
    for k, role in enumerate(["hero", "friend", *later]):
        setting = str(rng.choice([s for s in SETTINGS if s != setting]))
        shot = Shot(cast[role], str(rng.choice(list(ACTIONS))), setting)
        prompt = caption(shot, role=None if k < 2 else role)
        story_shots.append(StoryShot(scene=k + 1, role=role, shot=shot, cut=True, prompt=prompt))
    script = ToyStory(seed=index, characters=cast, shots=story_shots).script()
    hero, friend = cast["hero"], cast["friend"]
    script["story_name"] = (f"The {hero.colour} {hero.shape} and the {friend.colour} {friend.shape} "
                            f"(two-character toy benchmark {seed}, story {index})")  # fmt: skip
    # Colour and shape differ between the two (random_character(unlike=...)), so the aliases never overlap.
    script["characters"] = [{"name": role, "aliases": [f"{c.colour} {c.shape}"]} for role, c in cast.items()]
    return script


def pair_stories(count: int = 20, shots: int = 8, seed: int = DEFAULT_SEED) -> list[dict]:
    """The two-character benchmark: ``count`` scripts of ``shots`` shots (story i does not depend on ``count``)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [pair_story(seed, i, shots) for i in range(count)]


def story_roles(truth: Sequence[Shot]) -> list[str]:
    """The role of every shot: the first character to appear is the hero, the next the friend."""
    order: list = []
    for shot in truth:
        if shot.character not in order:
            order.append(shot.character)
    return [("hero", "friend")[order.index(shot.character)] for shot in truth]


@dataclass(frozen=True)
class RoleScores:
    """Per role, over each role's shots after its first: the colour of its first shot kept, and the
    other role's first colour taken instead (the two roles confused)."""

    same_colour: tuple[int, int] = (0, 0)  # (hero, friend)
    confused: tuple[int, int] = (0, 0)
    later_shots: tuple[int, int] = (0, 0)

    def __add__(self, other: RoleScores) -> RoleScores:
        def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
            return (a[0] + b[0], a[1] + b[1])

        return RoleScores(add(self.same_colour, other.same_colour), add(self.confused, other.confused),
                          add(self.later_shots, other.later_shots))  # fmt: skip

    def rates(self) -> dict[str, float | None]:
        def rate(hits: int, total: int) -> float | None:
            return hits / total if total else None

        return {
            "hero colour": rate(self.same_colour[0], self.later_shots[0]),
            "friend colour": rate(self.same_colour[1], self.later_shots[1]),
            "both roles": rate(sum(self.same_colour), sum(self.later_shots)),
            "confused": rate(sum(self.confused), sum(self.later_shots)),
        }


def role_scores(truth: Sequence[Shot], detections: Sequence[Detection]) -> RoleScores:
    """Per-role colour consistency of one story (``truth`` from ``story_truth``, one detection per
    shot). A role whose first shot shows no colour counts every later shot as inconsistent. A later
    shot is confused when it shows the other role's first colour (and the two first colours differ)."""
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} shots in the truth but {len(detections)} detections")
    roles = story_roles(truth)
    first: dict[str, str | None] = {}
    same, confused, later = [0, 0], [0, 0], [0, 0]
    for role, detection in zip(roles, detections):
        if role not in first:
            first[role] = detection.colour
            continue
        k = 0 if role == "hero" else 1
        other = first.get("friend" if k == 0 else "hero")
        later[k] += 1
        same[k] += first[role] is not None and detection.colour == first[role]
        confused[k] += other is not None and other != first[role] and detection.colour == other
    return RoleScores(tuple(same), tuple(confused), tuple(later))  # type: ignore[arg-type]


ROLE_COLUMNS = ("hero colour", "friend colour", "both roles", "confused with the other role", "later shots")


def format_role_table(rows: Sequence[tuple[str, RoleScores | str]]) -> str:
    """A Markdown table: per configuration, each role's colour consistency, both pooled, and how
    often a shot took the other role's colour."""
    lines = ["| configuration | " + " | ".join(ROLE_COLUMNS) + " |", "|---|" + "---:|" * len(ROLE_COLUMNS)]
    for name, scores in rows:
        if isinstance(scores, str):
            lines.append(f"| {name} | {scores} |" + " |" * (len(ROLE_COLUMNS) - 1))
            continue
        r = scores.rates()
        cells = [_cell(r["hero colour"]), _cell(r["friend colour"]), _cell(r["both roles"]), _cell(r["confused"])]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(scores.later_shots)} |")
    return "\n".join(lines) + "\n"
