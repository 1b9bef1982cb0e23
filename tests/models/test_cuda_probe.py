"""models/cuda_probe.py: torch's answer about CUDA, without importing torch where it is certain."""

from __future__ import annotations

import subprocess
import sys

from storymem_cli.models import cuda_probe


def test_the_probe_agrees_with_torch_on_this_machine(child_env):
    code = (
        "import sys\n"
        "from storymem_cli.models.cuda_probe import cuda_available\n"
        "probed = cuda_available()\n"
        "imported = 'torch' in sys.modules\n"
        "import torch\n"
        "assert probed == torch.cuda.is_available(), (probed, torch.cuda.is_available())\n"
        "print(imported)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    if not (cuda_probe.NVIDIA_GPUS.is_dir() and any(cuda_probe.NVIDIA_GPUS.iterdir())) and sys.platform.startswith("linux"):
        assert result.stdout.strip() == "False"  # no GPU listed by the driver: answered without torch


def test_a_cpu_build_or_hidden_gpus_need_no_torch(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(cuda_probe, "_torch_cuda_build", lambda: False)
    assert cuda_probe.cuda_available() is False and "torch" not in sys.modules
    monkeypatch.setattr(cuda_probe, "_torch_cuda_build", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cuda_probe.cuda_available() is False and "torch" not in sys.modules


def test_the_version_file_of_the_installed_torch_is_read():
    import torch

    assert cuda_probe._torch_cuda_build() in (torch.version.cuda is not None, None)
