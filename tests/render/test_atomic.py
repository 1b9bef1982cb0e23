"""Atomic writes: the final name only ever holds a complete file."""

from __future__ import annotations

import json
import os

import pytest

from storymem_cli.render.atomic import (
    atomic_path,
    atomic_write_json,
    remove_stale_temps,
    temp_path_for,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["run.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_temp_name_keeps_suffix_and_stale_temps_are_removed(tmp_path):
    target = tmp_path / "shot_001.mp4"
    tmp = temp_path_for(target)
    assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp != target
    tmp.write_bytes(b"left by a kill")
    target.write_bytes(b"done")
    (tmp_path / "notes.txt").write_text("user file")
    assert remove_stale_temps(tmp_path, lambda name: name == "shot_001.mp4") == [tmp]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "shot_001.mp4"]


def test_stale_temp_sweep_leaves_names_it_did_not_make(tmp_path):
    # The user's files with ".tmp-" in their names, and temps of files storymem does not write.
    user = ["report.tmp-final.txt", "notes.tmp-1.txt", "shot_001.tmp-x.mp4", "a.tmp-"]
    for name in user:
        (tmp_path / name).write_text("user file")
    ours = temp_path_for(tmp_path / "shot_001.tail.npz")
    ours.write_bytes(b"left by a kill")
    assert remove_stale_temps(tmp_path, lambda name: name.startswith("shot_")) == [ours]
    assert sorted(os.listdir(tmp_path)) == sorted(user)
