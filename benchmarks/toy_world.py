"""Toy world: generation throughput and detector accuracy, measured.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_world.py [--per-corruption 400] [--all-clean]

Prints clips per minute for rendering and for writing a dataset (one core), the
detector's time per clip, and its accuracy (colour, shape, setting) on clean
clips and on each corruption at the strength tests/toy uses and at twice it.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

import numpy as np

from storymem_cli.toy import corrupt
from storymem_cli.toy.dataset import write_toy_dataset
from storymem_cli.toy.detect import detect_clip
from storymem_cli.toy.render import render_clip
from storymem_cli.toy.world import all_shots

STRONG = {
    "noise x2 (sigma 30)": functools.partial(corrupt.gaussian_noise, sigma=30.0),
    "blur x2 (sigma 2)": functools.partial(corrupt.blur, sigma=2.0),
    "colour_shift x2 (+-24)": functools.partial(corrupt.colour_shift, amount=24.0),
    "downscale x4": functools.partial(corrupt.downscale_upscale, factor=4),
}


def accuracy(shots, seeds, fn=None) -> tuple[np.ndarray, float]:
    hits, spent = [], 0.0
    for shot, seed in zip(shots, seeds):
        clip = render_clip(shot, int(seed))
        if fn is not None:
            clip = fn(clip, np.random.default_rng(int(seed)))
        t = time.perf_counter()
        d = detect_clip(clip)
        spent += time.perf_counter() - t
        hits.append((d.colour == shot.character.colour, d.shape == shot.character.shape, d.setting == shot.setting))
    return np.mean(hits, axis=0), spent / len(shots)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-corruption", type=int, default=400, help="clips per corruption (default 400)")
    parser.add_argument("--all-clean", action="store_true", help="clean accuracy on all 8960 shot combinations")
    args = parser.parse_args()
    shots = all_shots()

    t = time.perf_counter()
    n = 2000
    for k in range(n):
        render_clip(shots[(k * 7919) % len(shots)], k)
    print(f"render: {n / (time.perf_counter() - t) * 60:,.0f} clips/minute (17x64x64, one core)")

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index = write_toy_dataset(f"{tmp}/ds", groups=250, clips_per_group=4)
        print(f"dataset write (.npz compressed + index): "
              f"{index.clip_count() / (time.perf_counter() - t) * 60:,.0f} clips/minute")

    rng = np.random.default_rng(0)
    if args.all_clean:
        sel = np.arange(len(shots))
    else:
        sel = rng.choice(len(shots), args.per_corruption, replace=False)
    acc, per_clip = accuracy([shots[i] for i in sel], sel)
    print(f"detector: {per_clip * 1000:.1f} ms/clip")
    print(f"{'condition':28s} {'clips':>6s} {'colour':>7s} {'shape':>7s} {'setting':>7s}")
    print(f"{'clean':28s} {len(sel):6d} " + " ".join(f"{a:7.4f}" for a in acc))
    sel = rng.choice(len(shots), args.per_corruption, replace=False)
    conditions = {**corrupt.CORRUPTIONS, **STRONG}
    for name, fn in conditions.items():
        acc, _ = accuracy([shots[i] for i in sel], sel, fn)
        print(f"{name:28s} {len(sel):6d} " + " ".join(f"{a:7.4f}" for a in acc))


if __name__ == "__main__":
    main()
