"""The rules that span several fields, and the warnings, as functions over plain JSON data.

They tolerate malformed input (a scene that is not an object, a ``cut`` that is not a
list, ...) by skipping what they cannot read, so the loader can report these problems in
the same round as type errors, which pydantic reports separately.
"""

from __future__ import annotations

from typing import Any

from storymem_cli.config import TEXT_ENCODER_MAX_TOKENS
from storymem_cli.script.characters import character_problems, character_warnings
from storymem_cli.script.problems import ScriptProblem
from storymem_cli.script.tokens import estimate_tokens

LONG_STORY_SHOTS = 30  # ST-Bench stories have 7-12 shots; far past that is untested ground
PARALLEL_LISTS = ("cut", "first_frame_prompt", "seeds")  # one entry per video prompt


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _scenes(data: Any) -> list[tuple[int, dict]]:
    scenes = data.get("scenes") if isinstance(data, dict) else None
    if not isinstance(scenes, list):
        return []
    return [(i, scene) for i, scene in enumerate(scenes) if isinstance(scene, dict)]


def story_problems(data: Any) -> list[ScriptProblem]:
    """Errors that no single field shows: list lengths, the first cut, scene order, reference names."""
    problems: list[ScriptProblem] = []
    scenes = _scenes(data)

    for i, scene in scenes:
        prompts = scene.get("video_prompts")
        if not isinstance(prompts, list):
            continue
        for key in PARALLEL_LISTS:
            values = scene.get(key)
            if isinstance(values, list) and len(values) != len(prompts):
                problems.append(
                    ScriptProblem(
                        f"scenes[{i}].{key}",
                        f"has {_entries(len(values))} but video_prompts has {_entries(len(prompts))}: "
                        f"give exactly one {key} entry per prompt, in the same order",
                    )
                )

    if scenes and scenes[0][0] == 0:
        cut = scenes[0][1].get("cut")
        if isinstance(cut, list) and cut and cut[0] is False:
            problems.append(
                ScriptProblem(
                    "scenes[0].cut[0]",
                    "the story's first shot must be a cut (true): there is no earlier shot to continue from",
                )
            )

    seen: dict[int, int] = {}
    previous: tuple[int, int] | None = None  # (scene index, scene_num)
    for i, scene in scenes:
        num = scene.get("scene_num")
        if not isinstance(num, int) or isinstance(num, bool):
            continue
        if num in seen:
            problems.append(
                ScriptProblem(
                    f"scenes[{i}].scene_num",
                    f"scene_num {num} is used twice (also scenes[{seen[num]}]): give each scene its own number",
                )
            )
        elif previous is not None and num < previous[1]:
            problems.append(
                ScriptProblem(
                    f"scenes[{i}].scene_num",
                    f"scene_num {num} comes after scene_num {previous[1]} (scenes[{previous[0]}]): "
                    "number scenes in increasing order, as they play",
                )
            )
        seen.setdefault(num, i)
        previous = (i, num)

    references = data.get("references") if isinstance(data, dict) else None
    names: dict[str, int] = {}
    for i, ref in enumerate(references if isinstance(references, list) else []):
        name = ref.get("name") if isinstance(ref, dict) else None
        if not isinstance(name, str):
            continue
        if name in names:
            problems.append(
                ScriptProblem(
                    f"references[{i}].name",
                    f'name "{name}" is used twice (also references[{names[name]}]): give each reference its own name',
                )
            )
        names.setdefault(name, i)
    return problems + character_problems(data)


def _is_true_false_string(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("true", "false")


def normalize_cuts(data: Any) -> tuple[Any, list[ScriptProblem]]:
    """Read the strings "true"/"false" (any case) in ``cut`` lists as booleans, with a warning
    each; warn about scenes without ``cut``. Returns new data (the input is not changed)."""
    warnings: list[ScriptProblem] = []
    if not _scenes(data):
        return data, warnings
    scenes = list(data["scenes"])
    for i, scene in _scenes(data):
        cut = scene.get("cut")
        if "cut" not in scene:
            warnings.append(
                ScriptProblem(
                    f"scenes[{i}].cut",
                    'missing: every shot of this scene is treated as a cut; add "cut": [true, false, ...] '
                    "to continue shots from the previous one",
                )
            )
        elif isinstance(cut, list) and any(_is_true_false_string(v) for v in cut):
            fixed = list(cut)
            for j, value in enumerate(cut):
                if _is_true_false_string(value):
                    flag = value.strip().lower() == "true"
                    fixed[j] = flag
                    warnings.append(
                        ScriptProblem(
                            f"scenes[{i}].cut[{j}]",
                            f'the string "{value}" is read as {str(flag).lower()}; write JSON '
                            f"{str(flag).lower()} without quotes (other tools read any non-empty string as true)",
                        )
                    )
            scenes[i] = {**scene, "cut": fixed}
    return {**data, "scenes": scenes}, warnings


def story_warnings(data: Any) -> list[ScriptProblem]:
    """Things that are allowed but probably not what the author wants."""
    warnings: list[ScriptProblem] = []
    total = 0
    for i, scene in _scenes(data):
        for key in ("video_prompts", "first_frame_prompt"):
            prompts = scene.get(key)
            if not isinstance(prompts, list):
                continue
            if key == "video_prompts":
                total += len(prompts)
            for j, prompt in enumerate(prompts):
                if isinstance(prompt, str) and (n := estimate_tokens(prompt)) > TEXT_ENCODER_MAX_TOKENS:
                    warnings.append(
                        ScriptProblem(
                            f"scenes[{i}].{key}[{j}]",
                            f"about {n} tokens, likely past the text encoder's {TEXT_ENCODER_MAX_TOKENS}: "
                            "the end of the prompt would be cut off; shorten it to one or two sentences",
                        )
                    )
    prompts = [p for _, scene in _scenes(data) if isinstance(scene.get("video_prompts"), list)
               for p in scene["video_prompts"]]  # fmt: skip
    warnings += character_warnings(data, prompts)
    if total > LONG_STORY_SHOTS:
        warnings.append(
            ScriptProblem(
                "scenes",
                f"{total} shots, more than {LONG_STORY_SHOTS}: StoryMem was evaluated on stories of 7-12 shots; "
                "characters may drift as the memory bank turns over, and rendering takes long; "
                "consider splitting the story",
            )
        )
    return warnings
