"""Issue 34 cases that are not one command line: the model cache on a read-only or full disk, the
safe weight loader on the files train writes, preview captions, permissions as a non-root user."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.models import cache
from storymem_cli.models.safe_load import PickleRefusedError, safetensors_load, torch_load


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def _build(folder: Path) -> None:
    (folder / "done").write_text("x")


def test_a_cache_root_that_cannot_be_written_falls_back_to_the_temp_folder(tmp_path, monkeypatch):
    # Root ignores permission bits, so the read-only folder is a path under a file: no mkdir works.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("STORYMEM_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(cache.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = cache.cached_model_dir("m", "done", _build)
    assert folder == tmp_path / "tmp" / "storymem" / "m" and (folder / "done").is_file()


def test_a_full_disk_while_the_cache_writes_safetensors_is_named(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    monkeypatch.setenv("STORYMEM_CACHE", str(tmp_path / "cache"))

    def full(folder: Path) -> None:
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, message: "No space left on device" })')

    with pytest.raises(StorymemError, match="the disk is full while writing the model cache"):
        cache.cached_model_dir("m", "done", full)
    assert not any((tmp_path / "cache").iterdir())  # the half-built folder is gone


def test_pickled_checkpoint_and_latent_cache_are_refused_in_our_words(tmp_path):
    from storymem_cli.train.step import LatentCache  # noqa: F401  the loader under test is its load()

    evil = tmp_path / "trainer.pt"
    evil.write_bytes(pickle.dumps({"x": _Payload()}))
    with pytest.raises(PickleRefusedError) as info:
        torch_load(evil, what="checkpoint optimiser state")
    assert "trainer.pt is a pickled file" in str(info.value) and "weights_only=False" not in str(info.value)
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02")  # cut short: not even a pickle
    with pytest.raises(InvalidInputError, match="junk.pt is not a readable PyTorch file"):
        torch_load(tmp_path / "junk.pt", what="latent cache")
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(InvalidInputError, match="broken.safetensors is not a readable .safetensors file"):
        safetensors_load(tmp_path / "broken.safetensors", what="checkpoint weights")


def test_the_latent_cache_file_goes_through_the_safe_loader(tmp_path):
    import inspect

    from storymem_cli.train import checkpoint, step

    # Both train files that torch.load reads are read through models/safe_load.py.
    assert "torch.load" not in inspect.getsource(step) and "torch.load" not in inspect.getsource(checkpoint)


def test_a_prompt_over_pillows_limit_still_gets_a_preview_caption():
    from storymem_cli.memory.sheet import render_contact_sheet

    sheet = render_contact_sheet([np.zeros((32, 32, 3), np.uint8)], [["shot 1", "scene 1", "x" * 1_100_000]])
    assert sheet.ndim == 3


def _nobody() -> tuple[int, int] | None:
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    return entry.pw_uid, entry.pw_gid


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0 or _nobody() is None,
                    reason="needs root to switch to the 'nobody' user (as non-root the test user itself is used by CI)")  # fmt: skip
def test_permission_errors_as_a_non_root_user_are_named(tmp_path):
    """A clip without read permission and an unwritable cache, as the 'nobody' user: messages, no traceback."""
    uid, gid = _nobody()
    script = tmp_path / "s.json"
    script.write_text('{"story_name": "S", "scenes": [{"scene_num": 1, "video_prompts": ["a"], "cut": [true]}]}')
    locked = tmp_path / "locked"
    locked.mkdir()
    cache_dir = tmp_path / "ro-cache"
    cache_dir.mkdir(mode=0o555)
    for path in (tmp_path, script):
        path.chmod(0o755 if path.is_dir() else 0o644)
    locked.chmod(0o000)
    code = (
        "import os, sys; os.setgid(%d); os.setuid(%d); "
        "from storymem_cli.cli.app import main; main(sys.argv[1:])" % (gid, uid)
    )
    probe = subprocess.run([sys.executable, "-c", "import os; os.setgid(%d); os.setuid(%d); import storymem_cli.cli.app" % (gid, uid)],
                           capture_output=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("this Python installation cannot be read by the 'nobody' user (e.g. it lives under /root)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "STORYMEM_CACHE": str(cache_dir),
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "nowhere-writable")}  # fmt: skip
    for args in (["render", str(script), "--model", "tiny", "-o", str(locked / "run"), "--dry-run"],
                 ["inspect-memory", str(locked)],
                 ["render", str(script), "--model", "tiny", "--device", "cpu", "-o", str(tmp_path / "run")]):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode != 0, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "error:" in result.stderr, (args, result.stderr)
