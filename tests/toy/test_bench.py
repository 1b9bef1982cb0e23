"""The held-out toy benchmark: stories only memory can keep consistent, metrics over detections, the table."""

from __future__ import annotations

import json
import re
from itertools import pairwise

import pytest

from storymem_cli.render.video import read_frames
from storymem_cli.script import load_script
from storymem_cli.toy import bench
from storymem_cli.toy.bench import (
    BENCH_STREAM,
    Scores,
    aggregate,
    bench_stories,
    chance_consistency,
    format_shape_mix,
    format_table,
    shape_agreement_by_chance,
    shape_mix,
    story_scores,
)
from storymem_cli.toy.captions import caption, parse_caption
from storymem_cli.toy.dataset import DATASET_STREAM, toy_group
from storymem_cli.toy.detect import Detection
from storymem_cli.toy.stories import STORY_STREAM, story_truth
from storymem_cli.toy.world import Character, Shot

# --- stories -----------------------------------------------------------------------------------


def test_every_shot_is_a_hard_cut_in_its_own_scene_and_the_script_loads(tmp_path):
    for script in bench_stories(count=5, shots=8):
        assert [s["scene_num"] for s in script["scenes"]] == list(range(1, 9))
        assert all(s["cut"] == [True] and len(s["video_prompts"]) == 1 for s in script["scenes"])
        path = tmp_path / "story.json"
        path.write_text(json.dumps(script), encoding="utf-8")
        loaded, warnings = load_script(path)
        assert warnings == []
        assert [s.cut for s in loaded.shots] == [True] * 8


def test_only_shot_one_names_the_look_and_later_prompts_name_only_the_hero():
    for script in bench_stories(count=20, shots=8):
        truth = story_truth(script)
        prompts = [p for s in script["scenes"] for p in s["video_prompts"]]
        assert prompts[0] == caption(truth[0])
        assert parse_caption(prompts[0]).character == truth[0].character
        for prompt, shot in zip(prompts[1:], truth[1:]):
            parsed = parse_caption(prompt)
            assert parsed.character is None and parsed.role == "hero", prompt
            assert prompt == caption(shot, role="hero")
        assert len({t.character for t in truth}) == 1  # one hero, the same in every shot


def test_settings_never_repeat_back_to_back_even_beyond_seven_shots():
    seen_repeat_later = False
    for script in bench_stories(count=20, shots=12):
        settings = [t.setting for t in story_truth(script)]
        assert all(a != b for a, b in pairwise(settings)), settings
        seen_repeat_later |= len(set(settings)) < len(settings)
    assert seen_repeat_later  # 12 shots, 7 settings: settings do come back, just not twice in a row


def test_stories_are_deterministic_and_extend_by_count():
    assert bench_stories(4, 6, seed=1) == bench_stories(4, 6, seed=1)
    assert bench_stories(6, 6, seed=1)[:4] == bench_stories(4, 6, seed=1)
    assert bench_stories(4, 6, seed=1) != bench_stories(4, 6, seed=2)
    names = [s["story_name"] for s in bench_stories(20)]
    assert len(set(names)) == 20


def _hero(script: dict) -> Character:
    return story_truth(script)[0].character


def _dataset_character(seed: int, group: int) -> Character:
    return toy_group(seed, group, 1, frames=1, size=16)[0][0].character


def test_seed_stream_is_not_the_training_dataset_or_story_stream(monkeypatch):
    assert len({BENCH_STREAM, DATASET_STREAM, STORY_STREAM}) == 3
    same = sum(_hero(bench.bench_story(0, i, 2)) == _dataset_character(0, i) for i in range(20))
    assert same <= 2  # independent streams: a 1-in-160 coincidence at most now and then
    # The check has teeth: on the dataset's stream the benchmark would draw the dataset's characters.
    monkeypatch.setattr(bench, "BENCH_STREAM", DATASET_STREAM)
    assert all(_hero(bench.bench_story(0, i, 2)) == _dataset_character(0, i) for i in range(20))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="count"):
        bench_stories(count=0)
    with pytest.raises(ValueError, match="shots"):
        bench_stories(shots=0)


# --- metrics -----------------------------------------------------------------------------------

HERO = Character("circle", "red", "hat")


def _truth(n: int) -> list[Shot]:
    settings = ["beach", "forest", "desert", "snow", "cave"]
    return [Shot(HERO, "jump", settings[k % len(settings)]) for k in range(n)]


def _det(colour, shape, setting="beach") -> Detection:
    return Detection(colour=colour, shape=shape, setting=setting, body_fraction=1.0 if colour else 0.0,
                     shape_scores={})


def test_story_scores_count_consistency_fidelity_and_setting():
    truth = _truth(5)  # settings: beach forest desert snow cave
    detections = [
        _det("blue", "square", "beach"),  # shot 1 wrong look, right setting
        _det("blue", "square", "forest"),  # consistent with shot 1, unfaithful
        _det("blue", "circle", "beach"),  # same colour only; wrong setting
        _det("red", "square", "snow"),  # same shape only
        _det("red", "circle", "cave"),  # faithful, inconsistent
    ]
    s = story_scores(truth, detections)
    assert s == Scores(consistent=1, same_colour=2, same_shape=2, later_shots=4, faithful=1, setting_right=4, shots=5)
    assert s.rates() == {"consistency": 0.25, "colour": 0.5, "shape": 0.5, "fidelity": 0.2, "setting": 0.8}


def test_undetected_shots_are_inconsistent_and_unfaithful():
    truth = _truth(3)
    s = story_scores(truth, [_det("red", "circle"), _det(None, None), _det("red", None)])
    assert (s.consistent, s.same_colour, s.same_shape, s.faithful) == (0, 1, 0, 1)
    # shot 1 undetected: nothing to be consistent with, even if later shots agree with each other
    s = story_scores(truth, [_det(None, None), _det("red", "circle"), _det("red", "circle")])
    assert (s.consistent, s.same_colour, s.same_shape, s.later_shots, s.faithful) == (0, 0, 0, 2, 2)
    s = story_scores(truth, [_det("red", None), _det("red", None), _det("red", "circle")])
    assert (s.consistent, s.same_colour, s.same_shape) == (0, 2, 0)


def test_scores_need_one_detection_per_shot():
    with pytest.raises(ValueError, match="3 shots in the truth but 2 detections"):
        story_scores(_truth(3), [_det("red", "circle")] * 2)


def test_aggregate_is_a_mean_over_shots_not_stories():
    long = story_scores(_truth(5), [_det("red", "circle")] * 5)  # 4 of 4 consistent
    short = story_scores(_truth(2), [_det("red", "circle"), _det("blue", "circle")])  # 0 of 1
    total = aggregate([long, short])
    assert total.later_shots == 5 and total.shots == 7
    assert total.rates()["consistency"] == pytest.approx(4 / 5)  # a mean over stories would say 0.5
    assert aggregate([]).rates()["consistency"] is None


def test_chance_level_comes_from_the_world_tables(monkeypatch):
    assert chance_consistency() == pytest.approx(1 / 40)  # 8 colours x 5 shapes
    monkeypatch.setattr(bench, "SHAPES", ("circle", "square"))
    assert chance_consistency() == pytest.approx(1 / 16)


# --- table -------------------------------------------------------------------------------------


def test_table_has_the_paper_layout_chance_beside_no_memory_and_failed_rows():
    good = story_scores(_truth(3), [_det("red", "circle", s) for s in ("beach", "forest", "desert")])
    bad = story_scores(_truth(3), [_det("red", "circle"), _det("blue", "square"), _det(None, None)])
    table = format_table(
        [("no memory", bad), ("first frame (w/o semantic selection)", "failed: no --keyframes"),
         ("StoryMem (memory)", good)],
        chance_row="no memory",
    )
    lines = table.splitlines()
    assert lines[0] == ("| configuration | character consistency | colour | shape | fidelity | setting accuracy "
                        "| shots |")
    assert all(line.count("|") == 8 for line in lines)
    assert lines[2] == "| no memory | 0.000 (chance 0.025) | 0.000 | 0.000 | 0.333 | 0.333 | 3 |"
    assert lines[3].startswith("| first frame (w/o semantic selection) | failed: no --keyframes |")
    assert lines[4] == "| StoryMem (memory) | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 3 |"


def test_shape_mix_and_the_agreement_one_default_shape_gets_by_chance():
    shapes = ["circle"] * 6 + ["square", "square", None, "triangle"]
    assert shape_mix(shapes) == {"circle": 0.6, "square": 0.2, "none": 0.1, "triangle": 0.1}
    assert list(shape_mix(shapes)) == ["circle", "square", "none", "triangle"]  # most drawn first, then by name
    assert shape_agreement_by_chance(shapes) == pytest.approx(0.36 + 0.04 + 0.01)  # "none" never agrees
    assert shape_agreement_by_chance(["diamond"] * 4) == 1.0  # one shape for everything: agreement is free
    uniform = [s for s in ("circle", "square", "triangle", "diamond", "cross") for _ in range(2)]
    assert shape_agreement_by_chance(uniform) == pytest.approx(1 / 5)
    assert shape_mix([]) == {} and shape_agreement_by_chance([]) is None


def test_shape_mix_table_puts_measured_agreement_beside_its_chance_level():
    scores = story_scores(_truth(3), [_det("red", "circle"), _det("red", "circle"), _det("red", "square")])
    table = format_shape_mix([("StoryMem (memory)", scores, ["circle", "circle", "square"])])
    lines = table.splitlines()
    assert lines[0] == "| configuration | shape agreement | by chance (own shape mix) | shapes read, share of shots |"
    assert lines[2] == "| StoryMem (memory) | 0.500 | 0.556 | circle 0.67, square 0.33 |"


# --- the runner --------------------------------------------------------------------------------


def test_runner_lists_every_table_2_configuration_with_its_flags(load_benchmark):
    configs = {c.key: (c.name, c.flags) for c in load_benchmark("toy_consistency").CONFIGS}
    assert configs == {
        "memory": ("StoryMem (memory)", ()),
        "no-memory": ("no memory", ("--no-memory",)),
        "first-frame": ("first frame (w/o semantic selection)", ("--keyframes", "first-frame")),
        "no-sink": ("sliding window only (w/o sink)", ("--sink-size", "0")),
        "sequential-rope": ("sequential RoPE", ("--rope", "sequential")),
    }


def test_runner_stops_before_rendering_on_a_flag_storymem_does_not_know(load_benchmark, tmp_path, capsys):
    runner = load_benchmark("toy_consistency")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(bench_stories(1, 2)[0]), encoding="utf-8")
    bogus = runner.Config("bogus", "bogus ablation", ("--no-such-flag",))
    with pytest.raises(SystemExit) as exc:
        runner.preflight([bogus], script, ["--model", "tiny"], tmp_path / "pre")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "configuration 'bogus ablation' needs --no-such-flag" in err
    # storymem's own message, passed on; click words it "No such option: --x" (the click that Typer
    # bundles from 0.26 on) or "No such option '--x'." (click 8.5, which Typer 0.16-0.25 imports)
    assert re.search(r"No such option:? '?--no-such-flag", err)
    assert not (tmp_path / "pre").exists()  # a dry run writes nothing


def test_runner_names_the_shared_options_when_they_fail_for_every_configuration(load_benchmark, tmp_path, capsys):
    runner = load_benchmark("toy_consistency")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(bench_stories(1, 2)[0]), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        runner.preflight(list(runner.CONFIGS), script, ["--model", "no-such-model"], tmp_path / "pre")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "check --model no-such-model" in err


@pytest.mark.parametrize("size, upscale", [(32, 4), (64, 1)])
def test_the_renderers_own_clips_through_mp4_score_perfectly(load_benchmark, tmp_path, size, upscale):
    """The ceiling row: ground-truth clips, encoded and decoded like a render's shots, are read
    right, so what a model loses in the table is the model's, not the detector's or the codec's."""
    script = bench_stories(2, 4, seed=5)[1]
    runner = load_benchmark("toy_consistency")
    scores, story = runner.truth_story(tmp_path / "truth", script, seed=5, index=1, size=size, upscale=upscale)
    assert scores == Scores(consistent=3, same_colour=3, same_shape=3, later_shots=3, faithful=4,
                            setting_right=4, shots=4)
    assert [s["path"] for s in story["shots"]] == [f"shot_{k:03d}.mp4" for k in range(1, 5)]
    assert all((tmp_path / "truth" / s["path"]).is_file() for s in story["shots"])
    assert read_frames(tmp_path / "truth" / story["shots"][0]["path"]).shape[1:3] == (size * upscale,) * 2


@pytest.mark.slow
def test_runner_end_to_end_on_tiny(load_benchmark, tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    runner = load_benchmark("toy_consistency")
    code = runner.main(["--model", "tiny", "--size", "64x64", "--stories", "1", "--shots", "2",
                           "--configs", "memory", "--jobs", "1", "--out", str(out), "--results", str(results)])
    assert code == 0
    report = json.loads((results / "toy_consistency.json").read_text())
    truth, config = report["configs"]
    assert truth["name"] == "toy renderer (ground truth)" and truth["scores"]["consistency"] == 1.0
    assert config["name"] == "StoryMem (memory)" and config["commands"][0]["exit_code"] == 0
    assert "--model tiny" in config["commands"][0]["command"]
    (story,) = config["stories"]
    assert [s["truth"]["shape"] for s in story["shots"]] == [story_truth(bench_stories(1, 2)[0])[0].character.shape] * 2
    assert all(set(s["detection"]) >= {"colour", "shape", "setting"} for s in story["shots"])
    assert config["counts"]["shots"] == 2 and config["counts"]["later_shots"] == 1
    assert "| StoryMem (memory) |" in (results / "toy_consistency.md").read_text()


def test_every_fast_configuration_passes_the_preflight(load_benchmark, tmp_path):
    """`--configs fast`: each fast mode's flags are ones this storymem accepts (a dry run each)."""
    runner = load_benchmark("toy_consistency")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(bench_stories(1, 2)[0]), encoding="utf-8")
    assert {c.key for c in runner.CONFIG_GROUPS["fast"]} >= {"memory", "fast-compile", "fast-fp8", "fast-first-block"}
    runner.preflight(list(runner.CONFIG_GROUPS["fast"]), script, ["--model", "toy"], tmp_path / "pre")


# 38 s on 2 cores (four renders in child processes): a benchmark's timing loop, run on purpose
# (python -m pytest -m slow); kept out of CI for the suite's 6-minute budget (issue 33).
@pytest.mark.slow
def test_speed_rounds_time_each_configuration_against_the_full_method(load_benchmark, tmp_path):
    runner = load_benchmark("toy_consistency")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(bench_stories(1, 2)[0]), encoding="utf-8")
    configs = [runner.CONFIGS[-1], runner.Config("g1", "guidance 1", ("--guidance", "1"))]
    speed = runner.time_configs(configs, script, ["--model", "tiny", "--device", "cpu", "--steps", "2"], tmp_path, 2)
    assert speed["memory"]["ratio"] == 1.0 and speed["g1"]["against"] == "memory"
    assert all(len(row["rounds"]) == 2 and row["generate_s_per_shot"] > 0 for row in speed.values())
    assert runner.format_speed(configs, speed).splitlines()[2].startswith("| StoryMem (memory) | ")


# --- two characters --------------------------------------------------------------------------


def test_pair_stories_introduce_both_roles_by_look_then_name_them_by_role(tmp_path):
    from storymem_cli.script.characters import named_characters

    for i, script in enumerate(bench.pair_stories(count=5, shots=8)):
        prompts = [p for scene in script["scenes"] for p in scene["video_prompts"]]
        parsed = [parse_caption(p) for p in prompts]
        assert parsed[0].character is not None and parsed[1].character is not None
        assert all(p.role is not None for p in parsed[2:])
        roles = [p.role for p in parsed[2:]]
        assert roles.count("hero") >= 2 and roles.count("friend") >= 2
        assert all(s["cut"] == [True] for s in script["scenes"])
        # The declared characters name every shot: by look first, then by role.
        assert [named_characters(p, script["characters"]) for p in prompts] == [["hero"], ["friend"]] + [[r] for r in roles]
        path = tmp_path / f"pair{i}.json"
        path.write_text(json.dumps(script), encoding="utf-8")
        loaded, warnings = load_script(path)
        assert bench.story_roles(story_truth(script)) == ["hero", "friend", *roles] and not warnings
    assert bench.pair_story(0, 3) == bench.pair_stories(count=4)[3]  # a pure function of (seed, index)


def test_role_scores_count_each_roles_colour_and_confusions():
    friend = Character("square", "blue", "none")
    truth = [Shot(HERO, "jump", "beach"), Shot(friend, "jump", "snow"), Shot(HERO, "jump", "cave"),
             Shot(friend, "jump", "cave"), Shot(friend, "jump", "forest")]  # fmt: skip
    colour = HERO.colour
    detections = [_det(colour, "circle"), _det("blue", "square"), _det(colour, "circle"), _det(colour, "square"),
                  _det(None, None)]  # fmt: skip
    scores = bench.role_scores(truth, detections)
    assert scores == bench.RoleScores(same_colour=(1, 0), confused=(0, 1), later_shots=(1, 2))
    rates = (scores + scores).rates()
    assert rates["hero colour"] == 1.0 and rates["friend colour"] == 0.0
    assert rates["both roles"] == pytest.approx(1 / 3) and rates["confused"] == pytest.approx(1 / 3)
    table = bench.format_role_table([("memory", scores), ("broken", "failed: boom")])
    assert "| memory | 1.000 | 0.000 | 0.333 | 0.333 | 3 |" in table and "failed: boom" in table
