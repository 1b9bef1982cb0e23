"""Does a toy model's first-shot (T2V) model draw the look its caption names? Sampled, as `render` samples.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/toy_first_shot_probe.py [MODEL] [--shots 40] [--frames 1]
        [--memory [--world VARIANT] | --m2v-text]

MODEL is ``toy`` (the shipped weights, the default), a model folder (``OUT/model`` of `storymem train
--from-scratch`), or a from-scratch run folder, whose latest checkpoint is exported and probed (as in
toy_conditioning_probe.py).

Each of ``--shots`` prompts names a held-out character (``toy.bench.HELD_OUT_SEED``), an action and a
setting in the caption grammar's full form ("a red diamond hops to the left on the beach"). The model
samples it through ``StoryModel.generate`` with the preset's own T2V sampling (steps, guidance, flow
shift), seed = the prompt's index, and the detector reads the result. ``--frames 1`` samples one
image: the quick read of a model trained with ``--frames 1`` (the first-shot experiments in
docs/training.md); the model's own clip length is the default.

``--memory`` asks the memory (M2V) model instead: shot k is clip 0 of held-out group k
(``toy_group(HELD_OUT_SEED, k)``), its prompt says "the hero" instead of the look, and its memory
holds six ground-truth frames of the same character in the group's other three clips (frames 0 and
8 of each: ``toy.bench.probe_memory``, as in toy_conditioning_probe.py), at the paper's negative
RoPE positions, sampled with the preset's M2V sampling. A match is then the memory's look: how well memory carries a character when
the memory itself is perfect, apart from the first shot the benchmark starts from.

``--m2v-text`` asks the memory (M2V) model too, with the first shots' full-form prompts and an empty
memory: how well the memory model draws a look from text alone. A memory model can only copy a shape
from its memory if it can draw one; this reads whether it can (docs/training.md, "A memory model that
can draw first").

``--world VARIANT`` draws the memory shots' clips in a world of benchmarks/toy_world_variants.py (the
world the model trained on) instead of the toy world; the first shots are prompts, so it changes
nothing for them.

Prints the share of shots whose colour, shape, both, and setting are the prompt's (chance: 1/8 for a
colour, about 1/5 for a shape), and the shapes read; JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def prompts(count: int) -> list:
    """``count`` held-out shots: characters, actions and settings drawn from HELD_OUT_SEED."""
    import numpy as np

    from storymem_cli.toy.bench import HELD_OUT_SEED
    from storymem_cli.toy.world import ACTIONS, SETTINGS, Shot, random_character

    rng = np.random.default_rng(HELD_OUT_SEED)
    return [Shot(random_character(rng), str(rng.choice(list(ACTIONS))), str(rng.choice(list(SETTINGS))))
            for _ in range(count)]  # fmt: skip


def memory_shots(count: int, size: int) -> list:
    """``count`` (shot, memory) pairs: clip 0 of held-out group k and six frames of its clips 1-3."""
    from storymem_cli.toy.bench import HELD_OUT_SEED, probe_memory
    from storymem_cli.toy.dataset import toy_group

    groups = [toy_group(HELD_OUT_SEED, group, 4, size=size) for group in range(count)]
    return [(clips[0][0], probe_memory(clips)) for clips in groups]


def probe(folder: Path, shots: int, frames: int | None = None, size: int | None = None, memory: bool = False,
          m2v_text: bool = False) -> dict:  # fmt: skip
    """Shares of ``shots`` sampled shots that match their prompt (``memory``: their memory), and the
    shapes read. ``m2v_text``: the prompts go to the memory model, with an empty memory."""
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.pipeline.request import ShotRequest
    from storymem_cli.toy.captions import caption
    from storymem_cli.toy.detect import detect_clip

    preset = resolve_preset(str(folder))
    video = preset.video
    if size is None and video.width != video.height:
        raise SystemExit(f"{folder}: the model makes {video.width}x{video.height} shots; the toy detector "
                         "reads square frames: pass --size")
    side = size or video.width
    model = load_story_model(preset)
    hits, read = Counter(), Counter()
    cases = memory_shots(shots, side) if memory else [(shot, []) for shot in prompts(shots)]
    for seed, (shot, frames_of_character) in enumerate(cases):
        common = {"width": side, "height": side, "frames": frames or video.frames, "seed": seed}
        if memory:
            request = ShotRequest(mode="m2v", prompt=caption(shot, role="hero"), memory=frames_of_character,
                                  steps=preset.m2v.steps, **common)  # fmt: skip
        elif m2v_text:
            request = ShotRequest(mode="m2v", prompt=caption(shot), memory=[], steps=preset.m2v.steps, **common)
        else:
            request = ShotRequest(mode="t2v", prompt=caption(shot), steps=preset.t2v.steps, **common)
        found = detect_clip(model.generate(request))
        truth = shot.character
        hits["colour"] += found.colour == truth.colour
        hits["shape"] += found.shape == truth.shape
        hits["both"] += found.colour == truth.colour and found.shape == truth.shape
        hits["setting"] += found.setting == shot.setting
        read[found.shape or "none"] += 1
    shares = {k: hits[k] / shots for k in ("colour", "shape", "both", "setting")}
    return {"shots": shots, **shares, "shapes_read": {k: v / shots for k, v in read.most_common()}}


def main() -> None:
    import importlib.util
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="toy", help="toy, a model folder, or a from-scratch run folder")
    parser.add_argument("--shots", type=int, default=40)
    parser.add_argument("--frames", type=int, default=None, help="frames per shot (4k+1); default the model's")
    parser.add_argument("--size", type=int, default=None, help="square side to sample at; default the model's")
    parser.add_argument("--memory", action="store_true", help="probe the memory model: memory holds the character")
    parser.add_argument("--m2v-text", action="store_true",
                        help="ask the memory model with the full prompt and an empty memory: does it draw from text")
    parser.add_argument("--world", help="draw the memory shots in this world of toy_world_variants.py")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.memory and args.m2v_text:
        parser.error("--memory and --m2v-text ask different questions: pass one")

    def sibling(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    conditioning = sibling("toy_conditioning_probe")  # one way to turn MODEL into a folder, shared with that probe
    if args.world:
        from storymem_cli.toy import render

        try:
            render.motion = sibling("toy_world_variants").variant_motion(args.world)  # render_clip looks it up per call
        except ValueError as err:
            parser.error(str(err))
    with tempfile.TemporaryDirectory() as scratch:
        result = probe(conditioning.model_folder(args.model, Path(scratch)), args.shots, args.frames, args.size,
                       args.memory, args.m2v_text)  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    frames = args.frames or "the model's own"
    kind = ("memory shots (memory: the character)" if args.memory else
            "first-shot prompts to the memory model (empty memory)" if args.m2v_text else "first shots")  # fmt: skip
    print(f"{args.model}: {result['shots']} {kind}, frames: {frames}")
    print("| colour | shape | both | setting | shapes read |")
    print("|---|---|---|---|---|")
    mix = ", ".join(f"{k} {v:.2f}" for k, v in result["shapes_read"].items())
    print(f"| {result['colour']:.2f} | {result['shape']:.2f} | {result['both']:.2f} | {result['setting']:.2f} | {mix} |")


if __name__ == "__main__":
    main()
