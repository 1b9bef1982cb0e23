"""benchmarks/toy_conditioning_probe.py: the swaps it makes and a run on the tiny model."""

from __future__ import annotations

from storymem_cli.toy.bench import HELD_OUT_SEED
from storymem_cli.toy.world import COLOURS, SHAPES


def test_a_swap_never_names_the_truth_and_reaches_every_other_option(load_benchmark):
    probe = load_benchmark("toy_conditioning_probe")
    for truth in SHAPES:
        picks = {probe.swapped(SHAPES, truth, k) for k in range(20)}
        assert truth not in picks and picks == set(SHAPES) - {truth}
    assert probe.swapped(tuple(COLOURS), "red", 3) != "red"


def test_the_foreign_memory_differs_from_the_hero_in_colour_and_shape(load_benchmark):
    probe = load_benchmark("toy_conditioning_probe")
    from storymem_cli.toy.dataset import toy_group

    for group in range(6):
        hero = toy_group(HELD_OUT_SEED, group, 1, size=32)[0][0].character
        other = probe.foreign_group(group, hero, 32)
        assert len(other) == 4 and len({shot.character for shot, _ in other}) == 1
        look = other[0][0].character
        assert look.colour != hero.colour and look.shape != hero.shape


def test_the_probe_runs_on_a_model_folder_and_reports_shares(load_benchmark):
    probe = load_benchmark("toy_conditioning_probe")
    from storymem_cli.models.tiny import tiny_model_dir

    rows = probe.probe(tiny_model_dir(), groups=1, sigmas=[0.5, 0.9], size=32)  # tiny makes 64x48 shots
    assert list(rows) == [0.5, 0.9]
    for row in rows.values():
        assert set(row) == set(probe.COLUMNS) and all(v in (0.0, 1.0) for v in row.values())
    table = probe.format_table(rows).splitlines()
    assert table[0].startswith("| sigma | own shape |") and len(table) == 4 and table[2].startswith("| 0.50 |")


def test_frames_1_predicts_single_frames_for_models_trained_on_them(load_benchmark, monkeypatch):
    probe = load_benchmark("toy_conditioning_probe")
    from storymem_cli.models.tiny import tiny_model_dir
    from storymem_cli.toy import detect

    lengths = []

    def recording(video):
        lengths.append(len(video))
        return detect_clip(video)

    detect_clip = detect.detect_clip
    monkeypatch.setattr(detect, "detect_clip", recording)
    rows = probe.probe(tiny_model_dir(), groups=1, sigmas=[0.9], size=32, frames=1)
    assert set(rows[0.9]) == set(probe.COLUMNS)
    assert lengths == [1] * 4  # own shape, text colour, text shape, memory: every prediction is one frame


def test_a_run_folder_is_probed_at_its_latest_checkpoint(load_benchmark, tmp_path):
    probe = load_benchmark("toy_conditioning_probe")
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file

    from storymem_cli.toy.dataset import write_toy_dataset
    from storymem_cli.train.checkpoint import latest_checkpoint
    from storymem_cli.train.config import TrainConfig
    from storymem_cli.train.loop import train

    data = tmp_path / "data"
    write_toy_dataset(data, groups=1, clips_per_group=2, seed=0)
    run = tmp_path / "run"
    train(TrainConfig(dataset=data, output=run, mode="scratch", model="tiny", max_steps=2, warmup_steps=0,
                      checkpoint_every=1, t2v_share=0.5))  # fmt: skip
    trained = load_file(str(latest_checkpoint(run) / "weights.safetensors"))
    assert any(k.startswith("i2v.") for k in trained)
    folder = probe.model_folder(str(run), tmp_path / "probe")
    assert folder.parent == tmp_path / "probe"
    exported = WanTransformer3DModel.from_pretrained(folder / "i2v", subfolder="transformer").state_dict()
    assert all(torch.equal(exported[k.removeprefix("i2v.")], v) for k, v in trained.items() if k.startswith("i2v."))
