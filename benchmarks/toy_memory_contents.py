"""Where a toy model loses its hero's shape: in what memory held, or in what the memory model made of it.

    PYTHONPATH=src python benchmarks/toy_memory_contents.py OUT/runs/CONFIG [--json]

Reads the run folders that benchmarks/toy_consistency.py left under OUT/runs/CONFIG (one per
benchmark story) and, with the toy detector, asks three questions the benchmark's table cannot
answer:

- **Is a shot one shape?** The share of a shot's frames (every other one) whose shape, read from
  that frame alone, is the shape read from the whole clip. A shot that changes shape from frame to
  frame hands memory frames of several shapes.
- **Did memory hold shot 1's shape?** Every memory image a later shot was given (run.json's
  ``memory_ids``), read alone, against the shape read from shot 1's clip: the consistency the
  benchmark scores. Split by where the image came from (shot 1 or a later shot; a shot's first frame
  or another), since the toy VAE decodes a shot's first frame from a latent frame of its own and
  the others four to a latent frame.
- **What did the memory model make of it?** Later shots' shape agreement with shot 1, by the share
  of their memory images that show shot 1's shape.

Results go to stdout: a short report, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # the repository's code, not whatever storymem is installed
    sys.path.insert(0, str(SRC))

FRAME_STRIDE = 2  # as the detector's own shape votes (detect.SHAPE_FRAME_STRIDE)
PURITY_BANDS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.0))  # share of memory images showing shot 1's shape


def frame_stability(frames: np.ndarray, clip_shape: str | None) -> float | None:
    """Share of every FRAME_STRIDE-th frame whose own shape reading is ``clip_shape``; None if the
    clip shows no shape."""
    from storymem_cli.toy.detect import detect_clip

    if clip_shape is None:
        return None
    singles = [detect_clip(frames[j : j + 1]).shape for j in range(0, len(frames), FRAME_STRIDE)]
    return float(np.mean([s == clip_shape for s in singles]))


def read_run(run_dir: Path) -> dict:
    """One story's run folder: per shot its mode, clip shape and frame stability; per later shot
    the shape of each memory image it was given and where that image came from."""
    from storymem_cli.memory.bank import MemoryBank
    from storymem_cli.render.video import read_frames
    from storymem_cli.toy.detect import detect_clip

    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    bank = MemoryBank.open(run_dir)
    shots = []
    for shot in run["shots"]:
        frames = read_frames(run_dir / shot["path"])
        shape = detect_clip(frames).shape
        memory = []
        for entry in map(bank.get, shot.get("memory_ids", [])):
            from_shot = entry.source.kind == "shot"  # a reference image has no shot and no frame
            memory.append({"id": entry.id, "shape": detect_clip(bank.load_image(entry)[None]).shape,
                           "shot": entry.source.shot if from_shot else None,
                           "frame": entry.source.frame if from_shot else None})  # fmt: skip
        shots.append({"mode": shot["mode"], "shape": shape, "stability": frame_stability(frames, shape), "memory": memory})
    return {"run_dir": str(run_dir), "shots": shots}


def summarise(runs: list[dict]) -> dict:
    """The three answers over every story's run (see the module docstring)."""
    stability: dict[str, list[float]] = {}
    images: Counter = Counter()  # (source, frame kind) -> memory images
    matching: Counter = Counter()  # (source, frame kind) -> those showing shot 1's shape
    bands: dict[str, list[bool]] = {f"{lo:.1f}-{hi:.1f}": [] for lo, hi in PURITY_BANDS}
    for run in runs:
        first = run["shots"][0]["shape"]
        for k, shot in enumerate(run["shots"]):
            if shot["stability"] is not None:
                stability.setdefault(shot["mode"], []).append(shot["stability"])
            if k == 0 or not shot["memory"]:
                continue
            for image in shot["memory"]:
                where = ("shot 1" if image["shot"] == 0 else "later shots",
                         "first frame" if image["frame"] == 0 else "other frames")  # fmt: skip
                images[where] += 1
                matching[where] += image["shape"] == first
            purity = sum(image["shape"] == first for image in shot["memory"]) / len(shot["memory"])
            lo, hi = next(band for band in reversed(PURITY_BANDS) if purity >= band[0])  # the last band holds 1.0
            bands[f"{lo:.1f}-{hi:.1f}"].append(shot["shape"] == first)
    held = [{"source": src, "frames": kind, "images": n, "shot1_shape": matching[(src, kind)] / n}
            for (src, kind), n in sorted(images.items())]  # fmt: skip
    return {
        "frame_stability": {mode: {"shots": len(v), "share": float(np.mean(v))} for mode, v in stability.items()},
        "memory_images": held,
        "agreement_by_purity": {
            band: {"shots": len(v), "agreement": float(np.mean(v)) if v else None} for band, v in bands.items()
        },
    }


def report(summary: dict) -> str:
    lines = ["frames showing their own clip's shape:"]
    lines += [f"  {mode}: {s['share']:.3f} ({s['shots']} shots)" for mode, s in summary["frame_stability"].items()]
    lines.append("memory images showing shot 1's shape:")
    lines += [f"  {m['source']}, {m['frames']}: {m['shot1_shape']:.3f} of {m['images']}" for m in summary["memory_images"]]
    lines.append("later shots keeping shot 1's shape, by the share of their memory that shows it:")
    lines += [f"  {band}: {s['agreement']:.3f} ({s['shots']} shots)" if s["shots"] else f"  {band}: no shots"
              for band, s in summary["agreement_by_purity"].items()]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="OUT/runs/CONFIG of benchmarks/toy_consistency.py")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    folders = sorted(p.parent for p in args.runs.glob("*/run.json"))
    if not folders:
        print(f"{args.runs}: no run folders (*/run.json) here", file=sys.stderr)
        return 2
    summary = {"runs": str(args.runs), "stories": len(folders), **summarise([read_run(f) for f in folders])}
    print(json.dumps(summary, indent=1) if args.json else report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
