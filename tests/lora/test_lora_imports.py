"""The LoRA modules can be imported (by the CLI, by validate) without importing torch."""

from __future__ import annotations

import subprocess
import sys


def test_lora_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import storymem_cli.models.lora, storymem_cli.models.lora_keys, storymem_cli.models.lora_files\n"
        "import storymem_cli.models.lora_style, storymem_cli.models.lora_adapters, storymem_cli.models.wan_a14b\n"
        "heavy = [m for m in ('torch', 'diffusers', 'peft', 'safetensors') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
