"""Dataset folders: toy writer, index model, clip formats, validation errors, CLI."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from storymem_cli.errors import InvalidInputError
from storymem_cli.toy.captions import parse_caption
from storymem_cli.toy.dataset import (
    INDEX_NAME,
    ClipEntry,
    ClipGroup,
    DatasetIndex,
    load_clip,
    load_index,
    main,
    toy_group,
    write_index,
    write_toy_dataset,
)


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "ds"
    return out, write_toy_dataset(out, groups=3, clips_per_group=4, seed=5)


def test_index_round_trip(toy_dataset):
    out, written = toy_dataset
    index, root = load_index(out)
    assert index == written and root == out
    assert index.clip_count() == 12 and [g.id for g in index.groups] == ["g000000", "g000001", "g000002"]
    assert load_index(out / INDEX_NAME)[0] == written


def test_clips_on_disk_are_lossless_and_deterministic(toy_dataset):
    out, index = toy_dataset
    for g, group in enumerate(index.groups):
        regenerated = toy_group(5, g, 4)
        for entry, (shot, clip) in zip(group.clips, regenerated):
            on_disk = load_clip(out / entry.path)
            assert on_disk.dtype == np.uint8 and on_disk.shape == (17, 64, 64, 3)
            assert np.array_equal(on_disk, clip)


def test_a_group_is_one_character_in_different_settings(toy_dataset):
    _, index = toy_dataset
    for group in index.groups:
        parsed = [parse_caption(c.caption) for c in group.clips]
        assert len({p.character for p in parsed}) == 1
        assert len({p.setting for p in parsed}) == len(parsed)
        for c, p in zip(group.clips, parsed):
            m = parse_caption(c.memory_caption)
            assert m.role == "hero" and (m.action, m.setting) == (p.action, p.setting)
            assert c.meta == {"shape": p.character.shape, "colour": p.character.colour,
                              "accessory": p.character.accessory, "action": p.action, "setting": p.setting}


def test_writing_over_a_dataset_is_refused(toy_dataset):
    out, _ = toy_dataset
    with pytest.raises(InvalidInputError, match="already holds a dataset"):
        write_toy_dataset(out, groups=1)


def test_user_footage_formats(tmp_path):
    clip = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(clip):
        imageio.imwrite(tmp_path / "frames" / f"{i:03d}.png", frame)
    assert np.array_equal(load_clip(tmp_path / "frames"), clip)
    imageio.mimwrite(tmp_path / "clip.mp4", list(clip), fps=16, macro_block_size=16)
    video = load_clip(tmp_path / "clip.mp4")
    assert video.shape == clip.shape and video.dtype == np.uint8  # lossy: only the geometry is exact
    index = DatasetIndex(groups=[ClipGroup(id="walk", clips=[
        ClipEntry(path="frames", caption="a person walks"), ClipEntry(path="clip.mp4", caption="a person runs"),
    ])])
    write_index(tmp_path, index)
    assert load_index(tmp_path)[0] == index


def test_unknown_clip_files_are_refused(tmp_path):
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(InvalidInputError, match="unknown clip type"):
        load_clip(tmp_path / "clip.gif")
    np.savez(tmp_path / "bad.npz", video=np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="'frames'"):
        load_clip(tmp_path / "bad.npz")


def _index_with(tmp_path, **clip) -> dict:
    entry = {"path": "a.npz", "caption": "x", **clip}
    np.savez(tmp_path / "a.npz", frames=np.zeros((1, 4, 4, 3), np.uint8))
    return {"format": "storymem-clips", "version": 1, "groups": [{"id": "g", "clips": [entry]}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["groups"][0]["clips"][0].update(path="/etc/passwd"), r"groups\.0\.clips\.0\.path"),
        (lambda d: d["groups"][0]["clips"][0].update(path="../a.npz"), r"groups\.0\.clips\.0\.path"),
        (lambda d: d["groups"][0]["clips"][0].update(path="b.npz"), r"groups\[0\]\.clips\[0\]\.path: 'b.npz' does not"),
        (lambda d: d["groups"][0]["clips"][0].pop("caption"), r"groups\.0\.clips\.0\.caption"),
        (lambda d: d["groups"].append(d["groups"][0]), "used by an earlier group"),
        (lambda d: d.update(format="webdataset"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["groups"][0].update(clips=[]), r"groups\.0\.clips"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_invalid_indexes_name_the_field(tmp_path, change, message):
    data = _index_with(tmp_path)
    change(data)
    (tmp_path / INDEX_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message) as exc:
        load_index(tmp_path)
    assert exc.value.exit_code == 2 and str(tmp_path / INDEX_NAME) in str(exc.value)


def test_missing_or_broken_index(tmp_path):
    with pytest.raises(InvalidInputError, match="no dataset index"):
        load_index(tmp_path)
    (tmp_path / INDEX_NAME).write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="is not valid JSON"):
        load_index(tmp_path)


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "ds"), "--clips", "5", "--seed", "1", "--clips-per-group", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["groups"], summary["clips"]) == (3, 6)
    assert load_index(tmp_path / "ds")[0].clip_count() == 6
    assert main(["--out", str(tmp_path / "ds"), "--clips", "5"]) == 2


def test_cli_help_and_bad_frames(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "index.json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--out", "x", "--clips", "1", "--frames", "16"])
    assert exc.value.code == 2 and "4k+1" in capsys.readouterr().err
