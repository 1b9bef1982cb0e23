"""HPSv3 on storymem's stack versus the authors' ``hpsv3`` package: the same scores on the same frames.

Builds a tiny random HPSv3 in the authors' checkpoint layout with a tokenizer and processor made
here (scoring/hpsv3_tiny.py), scores deterministic frames with storymem's scorer (transformers 5)
and with the ``hpsv3`` 1.0.0 package in its own venv (transformers 4.45.2, float32 on the CPU, via
benchmarks/hpsv3_oracle_package.py), and requires equal scores within TOLERANCE.

    PYTHONPATH=src python benchmarks/hpsv3_oracle.py [--venv /tmp/hpsv3-oracle] [--out benchmarks/results]

What is compared:
- ``scorer``: storymem's HPSv3Scorer on raw frames of four sizes (it shrinks them the release's way
  and scores 8 per call with the empty prompt) against the package scoring the same shrunk copy one
  frame per call with the prompt "", as the release called it;
- ``prompts``: one call of four frames with four different prompts (so the batch is padded on the
  right), storymem's HPSv3Reward against the package's reward() on the same images and prompts.

The venv (about 5 minutes to build, 5.5 GB, which is why this is a benchmark and not a CI test):

    python -m venv /tmp/hpsv3-oracle
    /tmp/hpsv3-oracle/bin/pip install -r benchmarks/hpsv3_oracle_requirements.txt
    /tmp/hpsv3-oracle/bin/pip install --no-deps hpsv3==1.0.0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from storymem_cli.scoring.downsize import release_downsize
from storymem_cli.scoring.hpsv3 import PROMPT, HPSv3Reward, HPSv3Scorer
from storymem_cli.scoring.hpsv3_files import locate_hpsv3
from storymem_cli.scoring.hpsv3_tiny import write_tiny_hpsv3

# float32 on both sides, same torch: what differs is only how transformers 4.45 and 5 order the
# same operations (attention masks, rope, fused vs split kernels); that moves a score of this
# model by ~1e-6. 1e-4 is far below what any real difference in preprocessing or wiring does (a
# different resize moves these scores by > 1e-2: the ``sensitivity`` rows of the result re-score
# the frames with one deliberate deviation each).
TOLERANCE = 1e-4
SHAPES = ((8, 480, 832), (3, 720, 1280), (2, 512, 512), (2, 832, 480))  # (frames, height, width)
PROMPTS = ("", "a boat leaves the harbour at dawn", "two gulls over the pier, watercolour", "{braces} & ünïcode")


def make_frames(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour fields with shapes and grain: content the resizes and the vision tower react to."""
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = torch.from_numpy(g.uniform(0, 255, size=(1, 3, 6, 10)).astype(np.float32))
        field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        img = field[0].permute(1, 2, 0).numpy()
        y0, x0 = g.integers(0, height // 2), g.integers(0, width // 2)
        img[y0 : y0 + height // 4, x0 : x0 + width // 4] = g.uniform(0, 255, size=3)
        img += g.normal(0, 8, size=img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def write_base_weights(base: Path) -> None:
    """Random stand-ins for Qwen2-VL-7B-Instruct's own weights, which the package loads first (then
    overwrites every one of them with HPSv3.safetensors): the vocabulary at config.json's size, so
    the package's resize_token_embeddings shrinks it to the tokenizer as it does for the real model."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    vocab = json.loads((base / "config.json").read_text())["vocab_size"]
    g = torch.Generator().manual_seed(1234)
    tensors = {}
    with safe_open(str(base / "HPSv3.safetensors"), framework="pt") as f:
        for name in f.keys():
            if name.startswith("rm_head."):
                continue
            shape = list(f.get_slice(name).get_shape())
            if name in ("model.embed_tokens.weight", "lm_head.weight"):
                shape[0] = vocab
            tensors[name] = torch.randn(shape, generator=g)
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})


def sensitivity(scorer: HPSv3Scorer, shots: list[np.ndarray], package_mu: list[float]) -> dict[str, float]:
    """max |mu - package mu| when storymem's preprocessing deviates from the package's in one way."""
    from storymem_cli.scoring import hpsv3_inputs

    exact = hpsv3_inputs.resize_for_hpsv3
    variants = {
        "no 256-token resize (the Qwen2-VL processor's own limits only)": lambda im: im.convert("RGB"),
        "bilinear instead of bicubic for that resize": lambda im: im.convert("RGB").resize(
            exact(im).size, Image.BILINEAR
        ),
    }
    out = {}
    for name, resize in variants.items():
        hpsv3_inputs.resize_for_hpsv3 = resize
        try:
            mu = np.concatenate([scorer(frames) for frames in shots])
        finally:
            hpsv3_inputs.resize_for_hpsv3 = exact
        out[name] = float(np.abs(mu - np.asarray(package_mu)).max())
    return out


def run_package(venv: Path, workdir: Path) -> dict:
    script = Path(__file__).with_name("hpsv3_oracle_package.py")
    proc = subprocess.run([str(venv / "bin" / "python"), str(script), str(workdir)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the hpsv3 package run failed:\n{proc.stderr[-4000:]}")
    return json.loads((workdir / "package_scores.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/hpsv3-oracle"), help="venv with hpsv3 1.0.0")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="where to write")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_tiny_hpsv3(workdir / "base")
        files = locate_hpsv3(workdir / "base")
        reward = HPSv3Reward.load(files)  # float32, as the tiny file stores it
        scorer = HPSv3Scorer(reward, "cpu")

        images: list[np.ndarray] = []  # the shrunk copies the package sees
        calls: list[dict] = []
        ours_scorer: list[float] = []
        t0 = time.perf_counter()
        shots = [make_frames(n, h, w, seed) for seed, (n, h, w) in enumerate(SHAPES)]
        for frames in shots:
            ours_scorer.extend(scorer(frames).tolist())
            for small in release_downsize(frames).permute(0, 2, 3, 1).numpy():
                calls.append({"frames": [len(images)], "prompts": [PROMPT]})
                images.append(small)
        mixed = list(range(len(PROMPTS)))  # the first four shrunk frames, one prompt each
        calls.append({"frames": mixed, "prompts": list(PROMPTS)})
        ours_prompts = reward.reward([Image.fromarray(images[i]) for i in mixed], list(PROMPTS)).tolist()
        ours_s = time.perf_counter() - t0

        write_base_weights(workdir / "base")  # after our load: storymem never reads it
        np.savez(workdir / "images.npz", **{str(i): im for i, im in enumerate(images)})
        (workdir / "requests.json").write_text(json.dumps(calls))
        t0 = time.perf_counter()
        package = run_package(args.venv, workdir)
        package_s = time.perf_counter() - t0

        pkg_scorer = [rows[0][0] for rows in package["scores"][:-1]]
        deviations = sensitivity(scorer, shots, pkg_scorer)

    pkg_prompts = package["scores"][-1]
    d_scorer = np.abs(np.subtract(ours_scorer, pkg_scorer))
    d_prompts = np.abs(np.subtract(ours_prompts, pkg_prompts))  # mu and sigma
    worst = float(max(d_scorer.max(), d_prompts.max()))
    result = {
        "tolerance": TOLERANCE,
        "passed": worst <= TOLERANCE,
        "max_abs_diff": worst,
        "scorer": {"frames": len(ours_scorer), "shapes": SHAPES, "max_abs_diff_mu": float(d_scorer.max()),
                   "ours": ours_scorer, "package": pkg_scorer},
        "prompts": {"frames": len(mixed), "prompts": PROMPTS, "max_abs_diff_mu_sigma": float(d_prompts.max()),
                    "ours": ours_prompts, "package": pkg_prompts},
        "spread_of_scores": float(np.ptp(pkg_scorer)),
        "sensitivity": deviations,
        "versions": {"ours": {"transformers": transformers.__version__, "torch": torch.__version__},
                     "package": {k: package[k] for k in ("transformers", "torch", "hpsv3")}},
        "seconds": {"ours": round(ours_s, 1), "package_incl_start": round(package_s, 1)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hpsv3_oracle.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("passed", "max_abs_diff", "tolerance", "spread_of_scores")}))
    print(f"scorer: {len(ours_scorer)} frames, max |mu diff| {d_scorer.max():.3g}; "
          f"prompts: {len(mixed)} frames, max |mu,sigma diff| {d_prompts.max():.3g}")
    for name, diff in deviations.items():
        print(f"  deviation '{name}': max |mu diff| {diff:.3g}")
    if not result["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
