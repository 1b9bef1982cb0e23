"""Run by test_context_parallel.py under torchrun (2 processes, gloo): not a test module itself.

For both tiny M2V experts, every memory size M from 0 to 10 and both rope layouts, one forward with
diffusers' context parallelism (Ulysses, degree 2) against the same forward in this process without it.
Rank 0 writes {case: max abs difference} as JSON to argv[1]; argv[2] names the mode (ulysses or ring).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from storymem_cli.config import RopeConfig
from storymem_cli.errors import InvalidInputError
from storymem_cli.models import parallel
from storymem_cli.models.tiny import build_tiny_components
from storymem_cli.pipeline.layout import frame_positions
from storymem_cli.pipeline.rope import install_story_rope, rope_positions

SHOT_FRAMES = 3  # the tiny preset's 9 frames -> 3 latent frames
LATENT_HW = (6, 8)  # 48x64 pixels: 3x4 tokens per latent frame


def forwards(transformer, cases):
    outputs = {}
    torch.manual_seed(1)
    for name, memory, rope in cases:
        x = torch.randn(1, transformer.config.in_channels, memory + SHOT_FRAMES, *LATENT_HW)
        text = torch.randn(1, 7, transformer.config.text_dim)
        with torch.no_grad(), rope_positions([transformer], frame_positions(memory, SHOT_FRAMES, rope)):
            outputs[name] = transformer(x, torch.tensor([700]), text, return_dict=False)[0]
    return outputs


def main() -> None:
    out_path, mode = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    parts = build_tiny_components()
    layouts = {"negative": RopeConfig(), "sequential": RopeConfig(mode="sequential")}
    results: dict[str, float | str] = {}
    parallel.activate(dist.get_world_size(), mode, "cpu")
    for expert in ("i2v_transformer", "i2v_transformer_2"):
        transformer = parts[expert]
        install_story_rope(transformer)  # as StoryMemM2VPipeline does before the model is made parallel
        cases = [(f"{expert}/{layout}/M={m}", m, rope) for layout, rope in layouts.items() for m in range(11)]
        single = forwards(transformer, cases)
        try:
            parallel.enable_context_parallel(transformer)
        except InvalidInputError as err:
            results[expert] = f"refused: {err}"
            continue
        split = forwards(transformer, cases)
        results.update({name: (split[name] - single[name]).abs().max().item() for name, _, _ in cases})
    results["degrees"] = str(parallel.active_degrees())
    parallel.deactivate()
    if dist.get_rank() == 0:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
