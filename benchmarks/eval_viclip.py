"""Real-size ViCLIP with random weights: strict save/load round trip and CPU timings.

Not a test (it writes a 1.7 GB checkpoint and runs a 427.6M-parameter model); run by hand:

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/eval_viclip.py [--keep-file]

Prints the key count, parameter count, whether the loaded model reproduces the saved
one's embeddings, and seconds per video / per text batch, with the ratio to the tiny
config that the tests use.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from storymem_cli.eval.tokenizer import tokenize
from storymem_cli.eval.viclip import ViCLIP, ViCLIPConfig
from storymem_cli.eval.viclip_loader import load_viclip, save_viclip

PROMPTS = [f"A lighthouse keeper climbs the stairs, shot {i}" for i in range(10)]


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(model: ViCLIP) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    cfg = model.config
    video = torch.randn(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    tokens = tokenize(PROMPTS, cfg.context_length)
    t_video = timed(lambda: model.encode_video(video))
    t_text = timed(lambda: model.encode_text(tokens))
    return t_video, t_text, model.encode_video(video), model.encode_text(tokens)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep-file", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    tiny = ViCLIP(ViCLIPConfig.tiny()).eval()
    tv_tiny, tt_tiny, _, _ = measure(tiny)

    torch.manual_seed(0)
    real = ViCLIP().eval()
    print(f"keys: {len(real.state_dict())}, parameters: {sum(p.numel() for p in real.parameters()) / 1e6:.1f}M")
    tv, tt, video_emb, text_emb = measure(real)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "viclip-random.pth"
        start = time.perf_counter()
        save_viclip(real, path)
        t_save = time.perf_counter() - start
        del real
        start = time.perf_counter()
        loaded = load_viclip(path)
        t_load = time.perf_counter() - start
        _, _, video_emb2, text_emb2 = measure(loaded)
        if args.keep_file:
            kept = Path("viclip-random.pth")
            path.replace(kept)
            print(f"kept {kept}")
    same = torch.allclose(video_emb, video_emb2, atol=1e-5) and torch.allclose(text_emb, text_emb2, atol=1e-5)
    print(f"strict round trip reproduces embeddings: {same} (save {t_save:.1f}s, load {t_load:.1f}s)")
    print(f"video [1,8,3,224,224]: {tv:.2f}s real, {tv_tiny * 1e3:.1f}ms tiny, ratio {tv / tv_tiny:.0f}x")
    print(f"text x{len(PROMPTS)} (32 tokens): {tt:.2f}s real, {tt_tiny * 1e3:.1f}ms tiny, ratio {tt / tt_tiny:.0f}x")


if __name__ == "__main__":
    main()
