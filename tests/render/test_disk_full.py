"""A full disk is named as such, with the way on, and never ends in a traceback (issue 22)."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.errors import StorymemError
from storymem_cli.memory import bank as bank_module
from storymem_cli.render.runfolder import raise_os_error

from .conftest import small_story, write_script

Usage = namedtuple("Usage", "total used free")


def test_disk_full_while_writing_a_keyframe_png(tmp_path, generate_log, monkeypatch):
    def full(path, image):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(bank_module, "_write_png", full)
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny"])
    assert result.exit_code == 1, result.output
    assert "the disk is full" in result.stderr and "memory" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ffmpegs_broken_pipe_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    broken = OSError(errno.EPIPE, "ffmpeg stopped while writing clip.mp4")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(100, 100, 0))
    with pytest.raises(StorymemError, match="the disk is full"):
        raise_os_error(broken, tmp_path / "clip.mp4")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, 10**12))
    with pytest.raises(StorymemError, match="cannot write") as err:
        raise_os_error(broken, tmp_path / "clip.mp4")
    assert "disk is full" not in str(err.value)
