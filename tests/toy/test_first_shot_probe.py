"""benchmarks/toy_first_shot_probe.py and toy_world_variants.py: held-out prompts, a sampled run, the variants."""

from __future__ import annotations

import numpy as np
import pytest


def test_prompts_are_held_out_and_name_varied_looks(load_benchmark):
    probe = load_benchmark("toy_first_shot_probe")
    shots = probe.prompts(40)
    assert shots == probe.prompts(40)  # the same prompts for every model
    assert len({s.character.shape for s in shots}) == 5 and len({s.character.colour for s in shots}) == 8


def test_the_probe_samples_through_the_renderers_model_and_reports_shares(load_benchmark):
    probe = load_benchmark("toy_first_shot_probe")
    from storymem_cli.models.tiny import tiny_model_dir

    result = probe.probe(tiny_model_dir(), shots=2, frames=1, size=32)  # tiny makes 64x48 shots
    assert result["shots"] == 2
    for key in ("colour", "shape", "both", "setting"):
        assert result[key] in (0.0, 0.5, 1.0)
    assert sum(result["shapes_read"].values()) == pytest.approx(1.0)


def test_memory_shots_hold_six_true_frames_of_the_shots_character(load_benchmark):
    probe = load_benchmark("toy_first_shot_probe")
    from storymem_cli.toy.detect import detect_clip

    pairs = probe.memory_shots(3, size=32)
    for (shot, memory), (again, memory_again) in zip(pairs, probe.memory_shots(3, size=32), strict=True):
        assert shot == again and all(np.array_equal(a, b) for a, b in zip(memory, memory_again, strict=True))
    for shot, memory in pairs:
        assert len(memory) == 6 and memory[0].shape == (32, 32, 3)
        seen = detect_clip(np.stack(memory))
        assert (seen.colour, seen.shape) == (shot.character.colour, shot.character.shape)


@pytest.fixture
def requests(monkeypatch):
    """Every ShotRequest the model is asked, in order."""
    from storymem_cli.models.story_model import StoryModel

    asked = []
    generate = StoryModel.generate

    def recording(self, request, progress=None):
        asked.append(request)
        return generate(self, request, progress)

    monkeypatch.setattr(StoryModel, "generate", recording)
    return asked


def test_the_memory_probe_samples_m2v_shots_with_the_characters_frames(load_benchmark, requests):
    probe = load_benchmark("toy_first_shot_probe")
    from storymem_cli.models.tiny import tiny_model_dir

    result = probe.probe(tiny_model_dir(), shots=2, frames=1, size=32, memory=True)
    assert result["shots"] == 2 and sum(result["shapes_read"].values()) == pytest.approx(1.0)
    assert [(r.mode, len(r.memory), r.prompt.startswith("the hero")) for r in requests] == [("m2v", 6, True)] * 2


def test_m2v_text_sends_the_full_prompts_to_the_memory_model_with_no_memory(load_benchmark, requests):
    probe = load_benchmark("toy_first_shot_probe")
    from storymem_cli.models.tiny import tiny_model_dir
    from storymem_cli.toy.captions import caption

    probe.probe(tiny_model_dir(), shots=2, frames=1, size=32, m2v_text=True)
    assert [(r.mode, len(r.memory), r.prompt) for r in requests] == [("m2v", 0, caption(s)) for s in probe.prompts(2)]


def test_memory_and_m2v_text_are_refused_together(load_benchmark, monkeypatch, capsys):
    probe = load_benchmark("toy_first_shot_probe")
    monkeypatch.setattr("sys.argv", ["probe", "toy", "--memory", "--m2v-text"])
    with pytest.raises(SystemExit) as exit_info:
        probe.main()
    assert exit_info.value.code == 2 and "pass one" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["static", "static-snapped"])
def test_static_variants_hold_the_character_still_at_one_size(load_benchmark, monkeypatch, variant):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render
    from storymem_cli.toy.world import Character, Shot

    monkeypatch.setattr(render, "motion", variants.variant_motion(variant))
    for seed in range(6):
        m = render.motion("hop_left", np.random.default_rng(seed))
        assert np.all(m.cx == m.cx[0]) and np.all(m.sy == variants.HALF_HEIGHT) and np.all(m.sx == m.sy)
        if variant == "static-snapped":
            assert m.cx[0] in (16.0, 32.0, 48.0)
        clip = render.render_clip(Shot(Character("cross", "red", "none"), "walk_right", "meadow"), seed, size=32)
        assert all(np.array_equal(clip[0], frame) for frame in clip)  # nothing moves


def test_fixed_size_keeps_the_worlds_actions_and_draws_one_size(load_benchmark):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render

    fixed = variants.variant_motion("fixed-size")
    for seed, action in enumerate(["walk_right", "jump", "grow", "turn"]):
        ours, world = fixed(action, np.random.default_rng(seed)), render.motion(action, np.random.default_rng(seed))
        assert ours.sy[0] == variants.HALF_HEIGHT and world.sy[0] != variants.HALF_HEIGHT
        assert np.allclose(ours.sy / ours.sy[0], world.sy / world.sy[0])  # the same action, scaled
        assert np.array_equal(ours.facing, world.facing)


def test_moves_only_and_sizes_only_split_the_worlds_motion(load_benchmark):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render

    moves, sizes = variants.variant_motion("moves-only"), variants.variant_motion("sizes-only")
    fixed = variants.variant_motion("fixed-size")
    for seed in range(4):
        walk, grow = moves("walk_right", np.random.default_rng(seed)), moves("grow", np.random.default_rng(seed))
        assert np.all(walk.sy == variants.HALF_HEIGHT) and np.all(walk.sx == walk.sy) and np.ptp(walk.cx) > 10
        assert np.array_equal(walk.cx, fixed("walk_right", np.random.default_rng(seed)).cx)  # the world's walk
        assert np.all(grow.sy == variants.HALF_HEIGHT) and np.ptp(grow.cx) == 0
        hop, turn = sizes("hop_left", np.random.default_rng(seed)), sizes("turn", np.random.default_rng(seed))
        assert np.ptp(hop.cx) == 0 and np.allclose(hop.cy + hop.sy, render.GROUND_ROW)  # standing, feet down
        assert np.ptp(turn.cx) == 0 and turn.sx.min() < 0.5 * turn.sy.min()  # but it still turns


def test_stepped_moves_like_moves_only_but_a_whole_token_at_a_time(load_benchmark):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render

    stepped, moves = variants.variant_motion("stepped"), variants.variant_motion("moves-only")
    moved = lifted = 0
    for seed in range(6):
        for action in ("walk_right", "walk_left", "hop_left", "jump"):
            ours, smooth = stepped(action, np.random.default_rng(seed)), moves(action, np.random.default_rng(seed))
            lift = render.GROUND_ROW - ours.sy - ours.cy
            assert set(np.unique(ours.cx)) <= {16.0, 32.0, 48.0} and np.all(lift % variants.TOKEN == 0)
            assert np.all(np.abs(ours.cx - smooth.cx) <= variants.TOKEN)  # the smooth move, snapped
            assert np.all(ours.sy == variants.HALF_HEIGHT) and np.array_equal(ours.facing, smooth.facing)
            moved, lifted = moved + (np.ptp(ours.cx) > 0), lifted + (lift.max() > 0)
    assert moved and lifted  # walks still walk and hops still leave the ground


def test_grounded_keeps_the_worlds_moves_and_sizes_on_the_ground(load_benchmark):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render

    grounded = variants.variant_motion("grounded")
    for seed, action in enumerate(["hop_left", "jump", "walk_right", "grow"]):
        ours, world = grounded(action, np.random.default_rng(seed)), render.motion(action, np.random.default_rng(seed))
        assert np.array_equal(ours.cx, world.cx) and np.array_equal(ours.sy, world.sy)
        assert np.allclose(ours.cy + ours.sy, render.GROUND_ROW)  # feet on the ground in every frame
        if action in ("hop_left", "jump"):
            assert not np.allclose(world.cy + world.sy, render.GROUND_ROW)  # where the world lifts them


def test_an_unknown_variant_is_refused(load_benchmark):
    with pytest.raises(ValueError, match="unknown variant 'hovering'"):
        load_benchmark("toy_world_variants").variant_motion("hovering")


def test_stretch_keeps_feet_down_and_bodies_recognisable_while_hops_stretch(load_benchmark):
    variants = load_benchmark("toy_world_variants")
    from storymem_cli.toy import render
    from storymem_cli.toy.world import ACTIONS

    stretch = variants.variant_motion("stretch")
    for seed in range(20):
        for action in ACTIONS:
            m = stretch(action, np.random.default_rng(seed))
            assert np.allclose(m.cy + m.sy, render.GROUND_ROW), action  # never off the ground
            assert m.sy.min() >= 0.74 * 13.5 and m.sy.max() <= 1.33 * 16.5, action  # a narrow range of sizes
            assert (m.sx / m.sy).min() >= 0.3, action  # never a sliver
            assert m.cx.min() - m.sx.max() >= 0 and m.cx.max() + m.sx.max() <= render.WORLD, action  # in frame
    hop, jump = stretch("hop_right", np.random.default_rng(0)), stretch("jump", np.random.default_rng(0))
    assert hop.sy.max() > 1.14 * hop.sy[0] and hop.sx.min() < hop.sx[0] / 1.14 and np.ptp(hop.cx) > 15
    assert jump.sy[8] > 1.24 * jump.sy[0] and np.ptp(jump.cx) == 0
    world = render.motion("jump", np.random.default_rng(0))
    assert world.cy.min() < world.cy[0] - 10  # the world's jump leaves the ground; stretch's does not
    walk, world_walk = stretch("walk_left", np.random.default_rng(1)), render.motion("walk_left", np.random.default_rng(1))
    assert np.array_equal(walk.cx, world_walk.cx) and np.array_equal(walk.sy, world_walk.sy)  # same random stream


def test_world_draws_the_memory_shots_in_a_variant(load_benchmark, monkeypatch, capsys):
    probe = load_benchmark("toy_first_shot_probe")
    from storymem_cli.models.tiny import tiny_model_dir
    from storymem_cli.toy import render

    monkeypatch.setattr(render, "motion", render.motion)  # restored after the test
    argv = ["probe", str(tiny_model_dir()), "--shots", "1", "--frames", "1", "--size", "32", "--memory", "--world", "static"]
    monkeypatch.setattr("sys.argv", argv)
    probe.main()
    assert "1 memory shots" in capsys.readouterr().out
    m = render.motion("hop_left", np.random.default_rng(0))
    assert np.ptp(m.cx) == 0 and np.ptp(m.cy) == 0  # the static world's motion, not the toy world's hop
