"""The authors' side of benchmarks/hpsv3_oracle.py: score images with the ``hpsv3`` package itself.

Runs in the oracle venv (transformers 4.45.2, hpsv3 1.0.0), never imports storymem:

    python hpsv3_oracle_package.py WORKDIR

WORKDIR holds the tiny base model files and HPSv3.safetensors (``base/``), the images
(``images.npz``, uint8 H x W x 3 arrays named "0", "1", ...) and ``requests.json``: a list of calls, each
``{"frames": [indices], "prompts": [...]}``. Writes ``package_scores.json``: per call the
reward rows (mu, sigma) as the package returns them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


def main(workdir: Path) -> None:
    import hpsv3
    from hpsv3 import HPSv3RewardInferencer

    # The package's own config, pointed at the tiny base model and run in float32 on the CPU
    # (its bf16 setting is for the GPU; float32 on both sides compares the code, not the rounding).
    package_yaml = Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml"
    config = yaml.safe_load(package_yaml.read_text())
    config.update(model_name_or_path=str(workdir / "base"), torch_dtype="float32", bf16=False,
                  output_dir=str(workdir / "package_out"), report_to="none")
    config_path = workdir / "HPSv3_tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))

    inferencer = HPSv3RewardInferencer(config_path=str(config_path),
                                       checkpoint_path=str(workdir / "base" / "HPSv3.safetensors"), device="cpu")
    images = np.load(workdir / "images.npz")
    calls = json.loads((workdir / "requests.json").read_text())
    out = []
    with torch.no_grad():
        for call in calls:
            pil = [Image.fromarray(images[str(i)]) for i in call["frames"]]
            rewards = inferencer.reward(image_paths=pil, prompts=call["prompts"])
            out.append(rewards.float().tolist())
    import transformers

    result = {"scores": out, "transformers": transformers.__version__, "torch": torch.__version__,
              "hpsv3": "1.0.0", "reward_token_id": inferencer.processor.tokenizer.convert_tokens_to_ids("<|Reward|>")}
    (workdir / "package_scores.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
