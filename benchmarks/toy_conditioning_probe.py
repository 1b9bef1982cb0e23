"""Does a toy model draw what its text and its memory say? One-step predictions under swapped conditioning.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/toy_conditioning_probe.py [MODEL] [--groups 20] [--frames 1]

MODEL is ``toy`` (the shipped weights, the default), a model folder (``OUT/model`` of
`storymem train --from-scratch`), or a from-scratch run folder, whose latest checkpoint is probed.

For each of ``--groups`` held-out toy groups (``toy.bench.HELD_OUT_SEED``, as toy_vae_probe.py), clip 0
is noised to each ``--sigmas`` level and the model predicts it in one step (x0 = x_t - sigma * v); the VAE decodes the
prediction and the detector reads it. The conditioning names another look than the clip's:

- first-shot model (T2V): the caption names another colour (``text colour``) or shape (``text shape``);
- memory model (M2V): the caption says "the hero", and the memory holds six frames of another group's
  character, one that differs in both colour and shape (``memory colour``, ``memory shape``).

Each of those cells is the share of predictions whose colour or shape is the conditioning's instead
of the clip's. ``own shape`` is the share whose shape is the clip's own, with its own caption: how
much of the shape the noisy clip still gives away. At low sigma the noisy clip decides and the
swapped cells are near 0; a model that takes a look from its conditioning reaches 1 at high sigma,
one that ignores it stays at the share it draws that look by chance (about 1/8 for a colour, 1/5
for a shape). Memory sits at the paper's negative RoPE positions (S = 5), as the toy model was
trained. Prints a Markdown table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("own shape", "text colour", "text shape", "memory colour", "memory shape")


def model_folder(name: str, scratch_dir: Path) -> Path:
    """A model folder for ``name``: the toy weights, a model folder, or a run's latest checkpoint
    exported into ``scratch_dir``."""
    from storymem_cli.models.tiny import MODEL_FILE

    if name == "toy":
        from storymem_cli.models.toy import toy_model_dir

        return toy_model_dir()
    path = Path(name)
    if (path / MODEL_FILE).is_file():
        return path
    return export_checkpoint(path, scratch_dir)


def export_checkpoint(run: Path, dest: Path) -> Path:
    """The latest checkpoint of a from-scratch transformer run, exported into ``dest`` as the run's
    own final export would be (train.setup builds the model, the checkpoint's weights fill it)."""
    from safetensors.torch import load_file

    from storymem_cli.train.checkpoint import latest_checkpoint
    from storymem_cli.train.config import TrainConfig
    from storymem_cli.train.setup import build_trainee

    checkpoint = latest_checkpoint(run)
    if checkpoint is None or not (run / "train.json").is_file():
        raise SystemExit(f"{run}: not a model folder, nor a training run with a checkpoint")
    cfg = TrainConfig.model_validate_json((run / "train.json").read_text())
    if cfg.mode != "scratch" or cfg.stage != "transformer":
        raise SystemExit(f"{run}: not a from-scratch transformer run")
    trainee = build_trainee(cfg.model_copy(update={"device": "cpu"}))
    trainee.load_state(load_file(str(checkpoint / "weights.safetensors")))  # every trained tensor, nothing else
    return Path(trainee.export(dest, None)["model"])


def swapped(options: tuple[str, ...], truth: str, k: int) -> str:
    """Another option than ``truth``, chosen by ``k`` (so the swaps spread over all the others)."""
    others = [o for o in options if o != truth]
    return others[k % len(others)]


def foreign_group(group: int, character, size: int):
    """The first held-out group after the probe's own range whose character differs in colour and shape."""
    from storymem_cli.toy.bench import HELD_OUT_SEED
    from storymem_cli.toy.dataset import toy_group

    other = 10_000 + group
    while True:
        clips = toy_group(HELD_OUT_SEED, other, 4, size=size)
        look = clips[0][0].character
        if look.colour != character.colour and look.shape != character.shape:
            return clips
        other += 1


def probe(
    folder: Path, groups: int, sigmas: list[float], size: int | None = None, frames: int | None = None
) -> dict[float, dict[str, float]]:
    """The table's rows by sigma. ``size``: the side the clips are drawn and encoded at (default the
    model's own, which must be square: the detector reads square toy frames). ``frames``: how many
    of each clip's frames to predict (default the model's; 1 for a model trained on single frames)."""
    from dataclasses import replace

    import torch
    from diffusers import WanTransformer3DModel
    from diffusers.utils import logging as diffusers_logging

    from storymem_cli.config import RopeConfig
    from storymem_cli.models.story_model import to_uint8
    from storymem_cli.models.tiny import MODEL_FILE
    from storymem_cli.pipeline.m2v import StoryMemM2VPipeline
    from storymem_cli.toy.bench import HELD_OUT_SEED, probe_memory
    from storymem_cli.toy.captions import caption
    from storymem_cli.toy.dataset import toy_group
    from storymem_cli.toy.detect import detect_clip
    from storymem_cli.toy.world import COLOURS, SHAPES
    from storymem_cli.train.data import Sample
    from storymem_cli.train.step import (
        TextCache,
        encode_batch,
        flow_pair,
        predict_velocity,
    )

    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" would fill stderr
    preset = json.loads((folder / MODEL_FILE).read_text())["preset"]
    pipe = StoryMemM2VPipeline.from_pretrained(folder / preset["i2v_source"]).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    t2v = WanTransformer3DModel.from_pretrained(folder / preset["t2v_source"], subfolder="transformer").eval()
    m2v = pipe.transformer.eval()
    video = preset["video"]
    if size is None and video["width"] != video["height"]:
        raise SystemExit(f"{folder}: the model makes {video['width']}x{video['height']} shots; the toy detector "
                         "reads square frames: pass --size")
    height = width = size or video["width"]
    frames = frames or video["frames"]
    device, text, rope = torch.device("cpu"), TextCache(), RopeConfig()
    hits = {s: dict.fromkeys(COLUMNS, 0) for s in sigmas}

    def one_step(transformer, batch, sigma: float, seed: int):
        noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(seed))
        s = torch.tensor([sigma])
        x_t, _ = flow_pair(batch.x0, noise, s)
        with torch.no_grad():
            x0 = x_t - sigma * predict_velocity(transformer, batch, x_t, s, rope)
            video = pipe.decode(x0[:, :, batch.memory_frames :], output_type="np")[0]
        return detect_clip(to_uint8(video))

    for g in range(groups):
        clips = toy_group(HELD_OUT_SEED, g, 4, size=width)
        shot, clip = clips[0]
        look = shot.character
        colour, shape = swapped(tuple(COLOURS), look.colour, g), swapped(SHAPES, look.shape, g)
        by_colour = caption(replace(shot, character=replace(look, colour=colour)))
        by_shape = caption(replace(shot, character=replace(look, shape=shape)))
        other = foreign_group(g, look, width)
        memory = probe_memory(other)
        memory_look = other[0][0].character
        video = clip[:frames]
        own = encode_batch(pipe, [Sample(video, [], [], caption(shot), "t2v")], height, width, device, text)
        batches = {  # one clip, encoded once, under three captions
            "own shape": (t2v, own),
            "text colour": (t2v, replace(own, prompt_embeds=text.encode(pipe, [by_colour], device, frozen=True))),
            "text shape": (t2v, replace(own, prompt_embeds=text.encode(pipe, [by_shape], device, frozen=True))),
        }
        hero = Sample(video, memory, [], caption(shot, role="hero"), "m2v")
        role = encode_batch(pipe, [hero], height, width, device, text)
        for i, sigma in enumerate(sigmas):
            seed = g * 100 + i
            hits[sigma]["own shape"] += one_step(*batches["own shape"], sigma, seed).shape == look.shape
            hits[sigma]["text colour"] += one_step(*batches["text colour"], sigma, seed).colour == colour
            hits[sigma]["text shape"] += one_step(*batches["text shape"], sigma, seed).shape == shape
            seen = one_step(m2v, role, sigma, seed)
            hits[sigma]["memory colour"] += seen.colour == memory_look.colour
            hits[sigma]["memory shape"] += seen.shape == memory_look.shape
    return {s: {k: v / groups for k, v in row.items()} for s, row in hits.items()}


def format_table(rows: dict[float, dict[str, float]]) -> str:
    lines = ["| sigma | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for sigma, row in rows.items():
        lines.append(f"| {sigma:.2f} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="toy")
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--sigmas", default="0.1,0.3,0.5,0.7,0.85,0.95")
    parser.add_argument("--size", type=int, help="frame side to probe at (default: the model's, if square)")
    parser.add_argument("--frames", type=int, help="frames of each clip to predict, 4k+1 (default: the model's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        rows = probe(model_folder(args.model, Path(scratch)), args.groups, sigmas, args.size, args.frames)
    if args.json:
        print(json.dumps({"model": args.model, "groups": args.groups, "rows": {str(k): v for k, v in rows.items()}}))
    else:
        print(format_table(rows))


if __name__ == "__main__":
    main()
