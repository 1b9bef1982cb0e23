"""Training throughput at the toy size: steps/s of `storymem train --from-scratch --model toy` per stage.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/train_toy.py [--groups 300] [--steps 40]

Writes a toy dataset to a temp folder, then times each stage (VAE at 5 and 17 frames, the transformer
stage with a cold and a warm latent cache) and prints one JSON line per stage, and the parameter
counts and fp32 sizes of the toy model's parts. Timings are of this machine under its current load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stages", default="vae5,vae17,transformer", help="comma-separated subset")
    args = parser.parse_args()

    from storymem_cli.toy.dataset import write_toy_dataset
    from storymem_cli.train.config import TrainConfig
    from storymem_cli.train.loop import Trainer
    from storymem_cli.train.scratch import SCRATCH_SIZES, build_scratch_components

    parts = build_scratch_components(SCRATCH_SIZES["toy"], 0)
    sizes = {name: parameters(parts[name]) for name in ("text_encoder", "vae", "i2v", "t2v")}
    print(json.dumps({"parameters": sizes, "fp32_mb": {k: round(v * 4 / 2**20, 2) for k, v in sizes.items()}}))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_toy_dataset(data, groups=args.groups, clips_per_group=4, seed=0)
        runs = {
            "vae5": ("vae, 5 frames, batch 4", {"stage": "vae", "frames": 5, "batch_size": 4}),
            "vae17": ("vae, 17 frames, batch 2", {"stage": "vae", "batch_size": 2}),
            "transformer": (f"transformer, batch {args.batch_size}", {"batch_size": args.batch_size}),
        }
        for name, fields in (runs[k] for k in args.stages.split(",")):
            cfg = TrainConfig(dataset=data, output=Path(tmp) / name.replace(" ", "_").replace(",", ""), mode="scratch",
                              model="toy", max_steps=args.steps, checkpoint_every=10**9, **fields)  # fmt: skip
            trainer = Trainer(cfg)
            start = time.perf_counter()
            half, cache_half = None, None
            for i in range(args.steps):
                trainer.train_step()
                if i + 1 == args.steps // 2:
                    half, cache_half = time.perf_counter(), (trainer.latents.hits, trainer.latents.misses)
            end = time.perf_counter()
            n = args.steps - args.steps // 2
            cache_end = (trainer.latents.hits - cache_half[0], trainer.latents.misses - cache_half[1])
            print(json.dumps({"stage": name, "steps_per_second_first_half": round(args.steps // 2 / (half - start), 3),
                              "steps_per_second_second_half": round(n / (end - half), 3),
                              "cache_hits_misses_first_half": cache_half,
                              "cache_hits_misses_second_half": cache_end}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
