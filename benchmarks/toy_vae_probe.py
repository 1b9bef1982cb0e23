"""How well a toy VAE keeps what the detector reads: reconstruct held-out toy clips, detect, compare.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_vae_probe.py RUN_OR_VAE [--clips 20] [--size 32] [--stories 10]

RUN_OR_VAE is a `--stage vae` run folder (its latest checkpoint is probed) or an exported VAE folder.
Run it from the folder the training ran in: a run's `--vae` is recorded as it was typed.
The clips come from a seed the toy dataset never uses (held out). Prints one JSON line: the share of
reconstructions whose detected colour, shape and setting equal the truth, and the mean absolute
pixel error (0-255). Check this before spending the transformer stage on a VAE (docs/training.md).

With ``--stories N`` it also scores the first N benchmark stories (toy/bench.py) on the VAE's
reconstructions of their ground-truth clips, the same clips as the benchmark's ground-truth row:
the consistency a perfect transformer would reach through this VAE (``ceiling``; frames are read
directly, with no mp4 in between).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_vae(path: Path):
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    from storymem_cli.train.checkpoint import latest_checkpoint
    from storymem_cli.train.scratch import scratch_size

    if (path / "config.json").is_file():
        return AutoencoderKLWan.from_pretrained(path), "export"
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise SystemExit(f"{path}: neither a VAE folder nor a run with a checkpoint")
    settings = json.loads((path / "train.json").read_text())
    if settings.get("vae"):  # a run that continued from another VAE (or tuned only its decoder)
        vae = AutoencoderKLWan.from_pretrained(Path(settings["vae"]))
    else:
        vae = AutoencoderKLWan(**scratch_size(settings["model"]).vae)
    weights = {k.removeprefix("vae."): v for k, v in load_file(str(checkpoint / "weights.safetensors")).items()}
    missing, unexpected = vae.load_state_dict(weights, strict=False)
    if unexpected or (missing and not settings.get("vae")):
        raise SystemExit(f"{checkpoint}: weights do not fit the VAE (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return vae, checkpoint.name


def reconstruct(vae, clip):
    """(F, H, W, 3) uint8 clip -> the VAE's reconstruction (posterior mode), same shape and dtype."""
    import torch

    x = torch.from_numpy(clip).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return ((recon[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def ceiling(vae, stories: int, size: int) -> dict:
    """Benchmark rates of the first ``stories`` benchmark stories, read from the VAE's reconstructions
    of the clips the benchmark's ground-truth row renders (same seeds)."""
    from storymem_cli.toy import bench
    from storymem_cli.toy.detect import detect_clip
    from storymem_cli.toy.render import render_clip
    from storymem_cli.toy.stories import story_truth

    scores = []
    for index, script in enumerate(bench.bench_stories(stories)):
        truth = story_truth(script)
        detections = []
        for k, shot in enumerate(truth):
            clip = render_clip(shot, bench.truth_rng(bench.DEFAULT_SEED, index, k), size=size)
            detections.append(detect_clip(reconstruct(vae, clip)))
        scores.append(bench.story_scores(truth, detections))
    return {k: round(v, 3) for k, v in bench.aggregate(scores).rates().items() if v is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="frame side (default: the toy preset's)")
    parser.add_argument("--stories", type=int, default=0, help="also score N benchmark stories through the VAE")
    args = parser.parse_args()

    import numpy as np

    from storymem_cli.models.presets import TOY
    from storymem_cli.toy.bench import HELD_OUT_SEED
    from storymem_cli.toy.dataset import toy_group
    from storymem_cli.toy.detect import detect_clip

    size = args.size or TOY.video.width
    vae, source = load_vae(args.path)
    vae.eval()
    hits = {"colour": 0, "shape": 0, "setting": 0}
    errors = []
    for g in range(args.clips):
        shot, clip = toy_group(HELD_OUT_SEED, g, 1, size=size)[0]
        out = reconstruct(vae, clip)
        errors.append(float(np.abs(out.astype(np.int16) - clip.astype(np.int16)).mean()))
        d = detect_clip(out)
        hits["colour"] += d.colour == shot.character.colour
        hits["shape"] += d.shape == shot.character.shape
        hits["setting"] += d.setting == shot.setting
    report = {"source": source, "clips": args.clips, "size": size, **{k: v / args.clips for k, v in hits.items()},
              "mean_abs_error": round(float(np.mean(errors)), 2)}  # fmt: skip
    if args.stories:
        report["ceiling"] = {"stories": args.stories, **ceiling(vae, args.stories, size)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
