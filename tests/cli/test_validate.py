"""`storymem validate`: summaries, exit codes, `FILE: PATH: message` errors, --json, --schema,
and no torch on its import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
runner = CliRunner()


def valid_story() -> dict[str, Any]:
    return {
        "story_name": "Night Train",
        "story_overview": "A conductor walks the length of a night train.",
        "scenes": [
            {
                "scene_num": 1,
                "video_prompts": [
                    "A night train crosses a snowy plain under the moon. Aerial wide shot.",
                    "Inside, a conductor in a red cap walks down the dim corridor. Tracking shot.",
                ],
                "first_frame_prompt": ["Train on a snowy plain at night.", "Conductor in a corridor."],
                "cut": [True, False],
            },
            {
                "scene_num": 2,
                "video_prompts": ["The conductor punches a sleepy girl's ticket. Close-up."],
                "first_frame_prompt": ["Ticket being punched."],
                "cut": [True],
            },
        ],
    }


def invoke(*args: str):
    return runner.invoke(app, ["validate", *args])


def no_traceback(result) -> None:
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_examples_are_valid():
    result = invoke(*map(str, EXAMPLES))
    no_traceback(result)
    assert result.exit_code == 0, result.stderr
    assert len(EXAMPLES) >= 3
    assert f"{len(EXAMPLES)} of {len(EXAMPLES)} scripts valid" in result.stdout


def test_summary_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(valid_story()))
    result = invoke(str(path))
    assert result.exit_code == 0
    assert result.stdout == f'{path}: ok: "Night Train", 2 scenes, 3 shots (1 continuation)\n'
    assert result.stderr == ""


def test_warnings_go_to_stderr_with_file_and_path(tmp_path):
    data = valid_story()
    data["scenes"][0]["cut"] = ["true", "False"]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    result = invoke(str(path))
    assert result.exit_code == 0
    assert f'{path}: scenes[0].cut[1]: warning: the string "False" is read as false' in result.stderr
    assert "1 continuation" in result.stdout


def _mutate(change: Callable[[dict], Any]) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        data = valid_story()
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write


def _raw(content: str | bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return write


def _set(data: dict, keys: list, value: Any) -> None:
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def _rename(data: dict, keys: list, new: str) -> None:
    for key in keys[:-1]:
        data = data[key]
    data[new] = data.pop(keys[-1])


def _missing_reference_image(data: dict) -> None:
    data["references"] = [{"image": "people/conductor.png", "name": "conductor"}]


def _unreadable_reference_image(path: Path) -> Path:
    (path.parent / "conductor.png").write_text("this is not a PNG")
    data = valid_story()
    data["references"] = [{"image": "conductor.png", "name": "conductor"}]
    path.write_text(json.dumps(data))
    return path


# (kind, write the script, JSON path the error names, words the message contains)
MALFORMED = [
    ("cut length", _mutate(lambda d: _set(d, ["scenes", 0, "cut"], [True])), "scenes[0].cut", "video_prompts has 2"),
    (
        "first_frame_prompt length",
        _mutate(lambda d: _set(d, ["scenes", 1, "first_frame_prompt"], ["a", "b"])),
        "scenes[1].first_frame_prompt",
        "one first_frame_prompt entry per prompt",
    ),
    (
        "first shot not a cut",
        _mutate(lambda d: _set(d, ["scenes", 0, "cut"], [False, False])),
        "scenes[0].cut[0]",
        "first shot must be a cut",
    ),
    (
        "empty prompt",
        _mutate(lambda d: _set(d, ["scenes", 0, "video_prompts", 1], "")),
        "scenes[0].video_prompts[1]",
        "is empty",
    ),
    (
        "non-string prompt",
        _mutate(lambda d: _set(d, ["scenes", 1, "video_prompts", 0], {"text": "hi"})),
        "scenes[1].video_prompts[0]",
        "must be a string",
    ),
    ("no scenes", _mutate(lambda d: _set(d, ["scenes"], [])), "scenes", "no scenes"),
    (
        "scene without shots",
        _mutate(lambda d: _set(d, ["scenes", 1, "video_prompts"], [])),
        "scenes[1].video_prompts",
        "no shots",
    ),
    (
        "duplicate scene_num",
        _mutate(lambda d: _set(d, ["scenes", 1, "scene_num"], 1)),
        "scenes[1].scene_num",
        "used twice",
    ),
    (
        "decreasing scene_num",
        _mutate(lambda d: _set(d, ["scenes", 0, "scene_num"], 4)),
        "scenes[1].scene_num",
        "increasing order",
    ),
    (
        "unknown key",
        _mutate(lambda d: _rename(d, ["scenes", 0, "video_prompts"], "vidoe_prompts")),
        "scenes[0].vidoe_prompts",
        'did you mean "video_prompts"',
    ),
    (
        "scene_num as string",
        _mutate(lambda d: _set(d, ["scenes", 1, "scene_num"], "2")),
        "scenes[1].scene_num",
        "whole number",
    ),
    (
        "cut not a boolean",
        _mutate(lambda d: _set(d, ["scenes", 0, "cut", 1], "no")),
        "scenes[0].cut[1]",
        "true or false",
    ),
    ("cut not a list", _mutate(lambda d: _set(d, ["scenes", 0, "cut"], True)), "scenes[0].cut", "must be a list"),
    ("missing story_name", _mutate(lambda d: d.pop("story_name")), "story_name", 'missing required key "story_name"'),
    ("seed out of range", _mutate(lambda d: _set(d, ["scenes", 1, "seeds"], [-5])), "scenes[1].seeds[0]", "from 0 to"),
    ("missing reference image", _mutate(_missing_reference_image), "references[0].image", "relative to the script"),
    ("unreadable reference image", _unreadable_reference_image, "references[0].image", "not a readable image file"),
    ("scene not an object", _mutate(lambda d: d["scenes"].append("scene 3")), "scenes[2]", "must be an object"),
    ("syntax error", _raw('{"story_name": "x",\n "scenes": [\n}'), "", "syntax error at line 3, column 1"),
    ("not UTF-8", _raw(b'{"story_name": "Caf\xe9"}'), "", "not UTF-8 text"),
    ("binary file", _raw(b"\x00\x01\x02\xff"), "", "binary file"),
]


@pytest.mark.parametrize(("kind", "write", "json_path", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_script(tmp_path, kind, write, json_path, words):
    path = write(tmp_path / "story.json")
    result = invoke(str(path))
    no_traceback(result)
    assert result.exit_code == 2
    prefix = f"{path}: {json_path}: " if json_path else f"{path}: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix) and words in line]
    assert lines, f"{kind}: no line starting {prefix!r} containing {words!r} in:\n{result.stderr}"
    assert result.stdout.startswith(f"{path}: invalid")


def test_malformed_kinds_are_distinct():
    assert len({(m[2], m[3]) for m in MALFORMED}) == len(MALFORMED) >= 12


def test_missing_file_argument(tmp_path):
    result = invoke(str(tmp_path / "nope.json"))
    no_traceback(result)
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.json'}: file not found" in result.stderr


def test_no_argument():
    result = invoke()
    assert result.exit_code == 2
    assert "no script given" in result.stderr


def test_one_invalid_file_makes_the_exit_code_2(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid_story()))
    result = invoke(str(good), str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert "1 of 2 scripts valid" in result.stdout


def test_json_output(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid_story()))
    bad_data = valid_story()
    bad_data["scenes"][0]["cut"] = ["false", True]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_data))
    result = invoke("--json", str(good), str(bad))
    assert result.exit_code == 2
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report[0] == {
        "path": str(good),
        "valid": True,
        "story_name": "Night Train",
        "scenes": 2,
        "shots": 3,
        "continuations": 1,
        "errors": [],
        "warnings": [],
    }
    assert report[1]["valid"] is False
    assert report[1]["story_name"] is None and report[1]["shots"] is None
    assert report[1]["errors"] == [{"path": "scenes[0].cut[0]", "message": report[1]["errors"][0]["message"]}]
    assert report[1]["warnings"][0]["path"] == "scenes[0].cut[0]"


def test_schema():
    result = invoke("--schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"story_name", "scenes"}
    scene = schema["$defs"]["Scene"]
    assert set(scene["properties"]) == {"scene_num", "video_prompts", "first_frame_prompt", "cut", "seeds"}
    assert scene["additionalProperties"] is False


CHECK_IMPORTS = """
import sys
from storymem_cli.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "open_clip", "torchvision") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), "EXIT=" + str(code))
"""


@pytest.mark.parametrize("args", [["validate", *map(str, EXAMPLES)], ["--help"], ["validate", "--schema"]])
def test_validate_and_help_do_not_import_torch(args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS, *args], capture_output=True, text=True, env=env, timeout=120
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last == "HEAVY= EXIT=0", done.stdout + done.stderr
