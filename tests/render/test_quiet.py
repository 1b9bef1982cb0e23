"""Our progress is the only display: other libraries' bars and logs stay hidden unless --verbose (issue 23, item 4)."""

from __future__ import annotations

import json
import subprocess
import sys

from storymem_cli.quiet import VERBOSE_ENV

from .conftest import small_story, write_script


def test_a_render_shows_our_lines_only_and_json_stays_clean(tmp_path, child_env):
    script = write_script(tmp_path, "one.json", small_story("One", shots=1))
    env = child_env()
    env.pop(VERBOSE_ENV, None)
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        env.pop(key, None)  # the machine's own settings must not decide the outcome
    result = subprocess.run(
        [sys.executable, "-m", "storymem_cli", "render", str(script), "-o", str(tmp_path / "run"),
         "--model", "tiny", "--frames", "5", "--device", "cpu", "--json"],
        capture_output=True, text=True, env=env, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["video"].endswith("story.mp4")  # stdout is the JSON alone
    lines = result.stderr.splitlines()
    assert lines[0].startswith("model: tiny") and "shot 1/1 done" in result.stderr
    # The tiny model's text encoder and VAE load through transformers and diffusers, which draw
    # "Loading weights: 0%|...|" bars by default.
    assert "Loading weights" not in result.stderr and "%|" not in result.stderr, result.stderr
    ours = ("model:", "One:", "warning:", "note:")
    assert all(line.startswith(ours) for line in lines), result.stderr


def test_torch_compile_on_a_cpu_leaks_no_cuda_runtime_warning(tmp_path, child_env):
    """--compile imports torch.utils.cpp_extension, which logs "No CUDA runtime is found" when a CUDA
    toolkit is installed on a machine without a GPU (CUDA_HOME stands in for the toolkit here)."""
    code = (
        "from storymem_cli.quiet import set_verbose\n"
        "set_verbose(False)\n"
        "import torch.utils.cpp_extension\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=child_env(CUDA_HOME=str(tmp_path)))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "No CUDA runtime" not in result.stderr, result.stderr
