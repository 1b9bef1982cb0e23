"""Cost of keyframe extraction for one 81-frame shot, as a ratio to one batched embedding pass.

Extraction = embed every frame once (batched) + quality scores (scorer "none") +
selection with all its threshold rescans + dedupe against a full bank. The goal
is a ratio of at most 1.2: the rescans must be free. The release instead ran two
single-frame CLIP calls per frame for every 0.01 threshold step; the script prints
that cost too, estimated from a measured single-frame call.

Architectures (random weights: the cost does not depend on their values):
  tiny      the test embedder (32 px, 2 layers)
  vit-b-32  the real ViT-B/32 (open_clip ViT-B-32-quickgelu), the honest measure

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_keyframes.py [--arch both] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from storymem_cli.config import MemoryConfig
from storymem_cli.memory.embed import FrameEmbedder
from storymem_cli.memory.quality import load_scorer
from storymem_cli.memory.select import select_with_record
from storymem_cli.scoring.clip import build_clip_visual

ARCHS = {"tiny": "tiny-clip", "vit-b-32": "ViT-B-32-quickgelu"}


def synthetic_shot(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A shot of three slowly drifting scenes: smooth colour fields plus a little noise."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        scene = i * 3 // n
        phase = 0.05 * i + 2.0 * scene
        base = np.stack([np.sin(xx / (40 + 20 * scene) + phase + c) for c in range(3)], axis=-1)
        img = 127 + 100 * base + g.normal(0, 8, size=(height, width, 3))
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(arch: str, frames: np.ndarray, repeat: int, device: str) -> None:
    cfg = MemoryConfig()
    embedder = FrameEmbedder(build_clip_visual(ARCHS[arch], None, device=device), f"{arch}-random")
    scorer = load_scorer("none")
    g = np.random.default_rng(1)
    bank = g.normal(size=(cfg.capacity, embedder.dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    embedder.embed(frames)  # warm-up at full size: allocator, page faults, kernels

    def extract() -> None:
        emb = embedder.embed(frames)
        usable = scorer.usable(scorer.score(frames))
        select_with_record(emb, usable, bank, cfg)

    # Interleaved, so drift in machine load hits both sides alike.
    embed_times, extract_times = [], []
    for _ in range(repeat):
        embed_times.append(median_time(lambda: embedder.embed(frames), 1))
        extract_times.append(median_time(extract, 1))
    t_embed, t_extract = statistics.median(embed_times), statistics.median(extract_times)
    emb = embedder.embed(frames)
    rec = select_with_record(emb, np.ones(len(frames), bool), bank, cfg)
    t_select = median_time(lambda: select_with_record(emb, np.ones(len(frames), bool), bank, cfg), 20)

    # Worst case for the rescans: unrelated frames (random unit embeddings) make the
    # threshold fall a long way.
    worst = g.normal(size=(len(frames), embedder.dim)).astype(np.float32)
    worst /= np.linalg.norm(worst, axis=1, keepdims=True)
    rec_worst = select_with_record(worst, np.ones(len(frames), bool), bank, cfg)
    t_worst = median_time(lambda: select_with_record(worst, np.ones(len(frames), bool), bank, cfg), 5)

    t_single = median_time(lambda: embedder.embed(frames[:1]), max(3, repeat))
    scans = len(frames) - 2  # the release starts at frame 2
    release = 2 * scans * t_single * (rec.rescans + 1)
    release_worst = 2 * scans * t_single * (rec_worst.rescans + 1)

    n, h, w, _ = frames.shape
    print(f"[{arch}] {n} frames {w}x{h}, device {device}, median of {repeat}")
    print(f"  one batched embedding pass      {t_embed * 1e3:9.1f} ms")
    print(f"  keyframe extraction             {t_extract * 1e3:9.1f} ms   ratio {t_extract / t_embed:.3f} (goal <= 1.2)")
    print(f"  selection only                  {t_select * 1e3:9.3f} ms   rescans {rec.rescans}, "
          f"threshold {rec.threshold:.2f}, keyframes {rec.indices}")
    print(f"  selection, worst case           {t_worst * 1e3:9.3f} ms   rescans {rec_worst.rescans}, "
          f"threshold {rec_worst.threshold:.2f}")
    # Noise-free view: what extraction adds to the embedding pass is scoring ("none") plus
    # selection; on a busy machine the two end-to-end timings above can differ by more.
    t_score = median_time(lambda: scorer.usable(scorer.score(frames)), 5)
    added = t_score + max(t_select, t_worst)
    print(f"  added to the pass (worst case)  {added * 1e3:9.3f} ms   ratio {(t_embed + added) / t_embed:.4f}")
    print(f"  release-style estimate          {release * 1e3:9.1f} ms   ratio {release / t_embed:.1f} "
          f"(2 single-frame calls x {scans} frames x {rec.rescans + 1} scans)")
    print(f"  release-style, worst case       {release_worst * 1e3:9.1f} ms   ratio {release_worst / t_embed:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=[*ARCHS, "both"], default="both")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    frames = synthetic_shot(args.frames, args.height, args.width)
    for arch in ARCHS if args.arch == "both" else [args.arch]:
        bench(arch, frames, args.repeat, args.device)


if __name__ == "__main__":
    main()
