"""The held-out toy benchmark: character consistency with memory, without it, and the paper's Table 2 ablations.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_consistency.py --model toy --jobs 2

Writes the benchmark's story scripts (storymem_cli.toy.bench: every shot a hard
cut, only shot 1 names the hero's look) to OUT/stories/, renders them under each
configuration with the real CLI (`storymem render ... --shard K/N`, N = --jobs
processes at a time, each with OMP_NUM_THREADS=1), reads every shot clip back
with the toy detector and writes RESULTS/toy_consistency.json (model, commands,
per-shot truths and detections, timings) and RESULTS/toy_consistency.md (the
table). Run folders stay in OUT/runs/<config>/, so running the same command
again resumes where it stopped. Progress goes to stderr, render logs to OUT/logs/.
Exit code 2 if the shared options (--model, --steps, --size) or a configuration's flags are refused
by this storymem (dry runs, before anything renders), 1 if a render failed (the table shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # the repository's code, not whatever storymem is installed
    sys.path.insert(0, str(SRC))

from storymem_cli.toy import bench


@dataclass(frozen=True)
class Config:
    key: str  # --configs name and run folder name
    name: str  # the table's row
    flags: tuple[str, ...]  # extra `storymem render` flags


# Paper Table 2 order: the ablations, then the full method last; no memory is the floor.
CONFIGS: tuple[Config, ...] = (
    Config("no-memory", "no memory", ("--no-memory",)),
    Config("first-frame", "first frame (w/o semantic selection)", ("--keyframes", "first-frame")),
    Config("no-sink", "sliding window only (w/o sink)", ("--sink-size", "0")),
    Config("sequential-rope", "sequential RoPE", ("--rope", "sequential")),
    Config("memory", "StoryMem (memory)", ()),
)
# The fast modes of `storymem render` against the full method (not run by default: --configs fast).
FAST_CONFIGS: tuple[Config, ...] = (
    Config("fast-first-block", "memory + --cache first-block (threshold 0.05)", ("--cache", "first-block")),
    Config("fast-first-block-0.2", "memory + --cache first-block --cache-threshold 0.2",
           ("--cache", "first-block", "--cache-threshold", "0.2")),
    Config("fast-taylorseer", "memory + --cache taylorseer (interval 5)", ("--cache", "taylorseer")),
    Config("fast-magcache", "memory + --cache magcache (the authors' Wan2.2 curves, threshold 0.06)", ("--cache", "magcache")),
    Config("fast-fp8", "memory + --quantize fp8", ("--quantize", "fp8")),
    Config("fast-compile", "memory + --compile", ("--compile",)),
    Config("fast-half-steps", "memory + half the steps", ("--steps", "10")),  # the toy model's 20 halved
    Config("fast-guidance-1", "memory + --guidance 1 (no distilled LoRA)", ("--guidance", "1")),
)
# Two characters (--characters 2): who the memory keeps apart. The stories declare both roles as characters.
CHARACTER_CONFIGS: tuple[Config, ...] = (
    Config("paper-memory", "StoryMem (paper's memory, --retrieval paper)", ("--retrieval", "paper")),
    Config("characters", "character retrieval (--retrieval characters)", ("--retrieval", "characters")),
)
CONFIG_GROUPS = {
    "paper": CONFIGS,
    "fast": (*FAST_CONFIGS, CONFIGS[-1]),  # fast: beside the full method
    "characters": (CONFIGS[0], *CHARACTER_CONFIGS),  # beside no memory
}
NO_MEMORY = "no-memory"
TRUTH_ROW = "toy renderer (ground truth)"  # the detector's ceiling on these stories, through mp4
# H.264 clips are yuv420: colour at half the resolution. At the toy model's 32x32 that blurs a sprite
# for the detector (the renderer's own clips read 0.80 consistent, 5 stories x 5 shots); written 4x
# larger, as a person watches them, they read 1.000.
DEFAULT_UPSCALE = 4
PROGRESS_EVERY_S = 60  # how often stderr hears how many shots are done


ALL_CONFIGS = CONFIGS + FAST_CONFIGS + CHARACTER_CONFIGS


def _pooled_roles(stories: list[dict]) -> bench.RoleScores:
    """Per-role colour counts of every story of a configuration, pooled (a mean over shots)."""
    return sum((bench.RoleScores(**{k: tuple(v) for k, v in s["roles"].items()}) for s in stories), bench.RoleScores())


def storymem() -> list[str]:
    return [sys.executable, "-m", "storymem_cli"]


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


def render_args(scripts: list[Path], run_root: Path, config: Config, passthrough: list[str]) -> list[str]:
    """``storymem render`` arguments; ``passthrough`` holds --model and the optional --steps / --size."""
    return ["render", *map(str, scripts), "-o", str(run_root), *passthrough, "--json", *config.flags]


def shown(args: list[str]) -> str:
    return shlex.join(["storymem", *args])


def preflight(configs: list[Config], script: Path, passthrough: list[str], scratch: Path) -> None:
    """Dry-run one story with the shared options, then under every configuration: options or a
    flag this storymem does not know stop the benchmark here, naming the culprit, instead of after
    hours of rendering. A dry run loads no model and writes nothing."""
    shared = Config("shared", "shared options", ())
    for config in [shared, *(c for c in configs if c.flags)]:
        args = render_args([script], scratch / config.key, config, passthrough) + ["--dry-run"]
        done = subprocess.run([*storymem(), *args], env=child_env(), capture_output=True, text=True, check=False)
        if done.returncode == 0:
            continue
        detail = (done.stderr or done.stdout).strip()
        if config is shared:
            advice = f"check {' '.join(passthrough)}"
        else:
            others = ",".join(c.key for c in configs if c is not config) or "..."
            advice = (f"configuration {config.name!r} needs {' '.join(config.flags)}, which this storymem "
                      f"refuses; leave it out with --configs {others}")
        print(f"error: `{shown(args)}` exited {done.returncode}:\n{detail}\n{advice}", file=sys.stderr)
        raise SystemExit(2)


def render_all(tasks: list[tuple[Config, list[str]]], out: Path, jobs: int, planned_shots: int) -> dict[str, list[dict]]:
    """Run every render command, ``jobs`` at a time; per configuration, what each command did."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    total = len(tasks)
    finished = 0

    def run(task: tuple[int, Config, list[str]]) -> tuple[Config, dict]:
        nonlocal finished
        i, config, args = task
        log = logs / f"{config.key}_{i}.log"
        print(f"[start] {config.name}: {shown(args)}  (log {log})", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with log.open("w", encoding="utf-8") as err:
            done = subprocess.run([*storymem(), *args], env=child_env(), stdout=subprocess.PIPE, stderr=err, text=True, check=False)
        seconds = time.perf_counter() - t0
        finished += 1
        print(f"[{finished}/{total}] {config.name}: exit {done.returncode} after {seconds:.0f} s",
              file=sys.stderr, flush=True)
        return config, {"command": shown(args), "exit_code": done.returncode, "seconds": round(seconds, 2),
                        "log": str(log)}

    records: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run, (i, c, a)) for i, (c, a) in enumerate(tasks)]
        while wait(futures, timeout=PROGRESS_EVERY_S).not_done:
            print(f"[progress] {rendered_shots(out / 'runs')}/{planned_shots} shots rendered "
                  f"after {(time.perf_counter() - t0) / 60:.1f} min", file=sys.stderr, flush=True)
        for future in futures:
            config, record = future.result()
            records.setdefault(config.key, []).append(record)
    return records


def time_configs(configs: list[Config], script: Path, passthrough: list[str], out: Path, rounds: int) -> dict[str, dict]:
    """Speed per configuration in paired rounds: each round renders ``script`` once under every
    configuration back to back (one process each, one thread), so load from other processes that
    drifts over minutes hits every configuration alike; per round, each configuration's mean
    seconds per shot in the model's generate call over the full method's (or the first's)."""
    base = next((c for c in configs if c.key == "memory"), configs[0])
    per_round: dict[str, list[float]] = {c.key: [] for c in configs}
    for k in range(rounds):
        for config in configs:
            run_dir = out / "speed" / config.key
            args = render_args([script], run_dir, config, passthrough) + ["--restart"]
            done = subprocess.run([*storymem(), *args], env=child_env(), capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"speed round {k + 1}, {config.name}: exit {done.returncode}: {done.stderr[-500:]}")
            shots = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["shots"]
            per_round[config.key].append(sum(s["timings"]["generate_s"] for s in shots) / len(shots))
        print(f"[speed] round {k + 1}/{rounds} done", file=sys.stderr, flush=True)
    result = {}
    for config in configs:
        ratios = [a / b for a, b in zip(per_round[config.key], per_round[base.key])]
        result[config.key] = {"generate_s_per_shot": round(statistics.median(per_round[config.key]), 3),
                              "ratio": round(statistics.median(ratios), 3), "against": base.key,
                              "rounds": per_round[config.key]}  # fmt: skip
    return result


def format_speed(configs: list[Config], speed: dict[str, dict]) -> str:
    lines = ["| configuration | s per shot (generate) | ratio |", "|---|---:|---:|"]
    for config in configs:
        row = speed[config.key]
        lines.append(f"| {config.name} | {row['generate_s_per_shot']:.3f} | {row['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def rendered_shots(runs: Path) -> int:
    """Finished shots in every run folder under ``runs`` (run.json lists only finished ones)."""
    count = 0
    for path in runs.glob("*/*/run.json"):
        try:
            count += len(json.loads(path.read_text(encoding="utf-8")).get("shots", []))
        except (OSError, ValueError):  # being replaced right now: the next report counts it
            continue
    return count


def score_story(script: dict, clips: list[Path], records: list[dict], run_dir: Path) -> tuple[bench.Scores, dict]:
    """Detect every shot clip of a story and score it against the script's truth; ``records`` adds
    what is known about each shot (prompt, mode, timings) to its entry in the results."""
    from storymem_cli.render.video import read_frames
    from storymem_cli.toy.detect import detect_clip
    from storymem_cli.toy.stories import story_truth

    truth = story_truth(script)
    if len(clips) != len(truth):
        raise RuntimeError(f"{run_dir}: {len(clips)} shots rendered, the script has {len(truth)}")
    detections, shots = [], []
    for clip, record, t in zip(clips, records, truth):
        detection = detect_clip(read_frames(clip))
        detections.append(detection)
        shots.append({**record, "truth": {**asdict(t.character), "action": t.action, "setting": t.setting},
                      "detection": asdict(detection)})
    scores = bench.story_scores(truth, detections)
    roles = bench.role_scores(truth, detections)
    for shot, role in zip(shots, bench.story_roles(truth)):
        shot["role"] = role
    return scores, {"story_name": script["story_name"], "run_dir": str(run_dir), "scores": scores.rates(),
                    "counts": asdict(scores), "roles": asdict(roles), "shots": shots}


def read_story(run_dir: Path, script: dict) -> tuple[bench.Scores, dict]:
    """Score a finished run folder of ``storymem render``."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    if run.get("status") != "done":
        raise RuntimeError(f"{run_dir}: the render did not finish (run.json status {run.get('status')!r})")
    keep = ("index", "prompt", "mode", "seed", "path", "memory_ids", "timings")
    records = [{k: shot[k] for k in keep} for shot in run["shots"]]
    return score_story(script, [run_dir / shot["path"] for shot in run["shots"]], records, run_dir)


def truth_story(folder: Path, script: dict, seed: int, index: int, size: int, upscale: int = 1) -> tuple[bench.Scores, dict]:
    """The ceiling: the toy renderer's own clips of the script at the renders' frame size, blown up
    and through the same mp4 encode and decode as a render's shots, scored the same way."""
    from storymem_cli.render.video import upscale_nearest, write_clip
    from storymem_cli.toy.render import render_clip
    from storymem_cli.toy.stories import story_truth
    from storymem_cli.toy.world import FPS

    folder.mkdir(parents=True, exist_ok=True)
    clips, records = [], []
    for k, shot in enumerate(story_truth(script)):
        path = folder / f"shot_{k + 1:03d}.mp4"
        clip = render_clip(shot, bench.truth_rng(seed, index, k), size=size)
        write_clip(upscale_nearest(clip, upscale), path, FPS)
        clips.append(path)
        records.append({"index": k, "path": path.name})
    return score_story(script, clips, records, folder)


def frame_size(model: str, size: str | None) -> int:
    """The side of the square frames the renders have: --size, else the model's own video size."""
    from storymem_cli.cli.render import parse_size

    width, _ = parse_size(size)  # the preflight's dry run has already refused a malformed --size
    if width is not None:
        return width
    from storymem_cli.models.registry import resolve_preset

    return resolve_preset(model).video.width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", help="storymem --model (default toy; tiny only for smoke tests: its video is noise)")
    parser.add_argument("--stories", type=int, default=20, help="number of benchmark stories (default 20)")
    parser.add_argument("--shots", type=int, default=8, help="shots per story, all hard cuts (default 8)")
    parser.add_argument("--seed", type=int, default=bench.DEFAULT_SEED, help=f"benchmark seed (default {bench.DEFAULT_SEED})")
    parser.add_argument("--characters", type=int, choices=(1, 2), default=1,
                        help="1: the hero alone (the default); 2: the hero and the friend, declared as characters, "
                        "scored per role (results toy_characters.*, configurations 'characters' by default)")
    parser.add_argument("--configs", default=None,
                        help="'paper' (Table 2's rows, the default), 'fast' (the fast modes beside the full method), "
                        "'characters' (no memory, the paper's memory, character retrieval), or a comma-separated "
                        "subset of: " + ", ".join(f"{c.key} ({c.name})" for c in ALL_CONFIGS))
    parser.add_argument("--jobs", type=int, default=2, help="render processes at a time, one thread each (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="storymem --steps (default: the model's)")
    parser.add_argument("--upscale", type=int, default=DEFAULT_UPSCALE,
                        help=f"storymem --upscale for the shot clips the detector reads (default {DEFAULT_UPSCALE})")
    parser.add_argument("--size", default=None, help="storymem --size WxH (default: the model's; the detector needs square frames)")
    parser.add_argument("--out", type=Path, default=None,
                        help="stories, run folders and logs; keep it to resume (default runs/toy_consistency, "
                        "runs/toy_characters with --characters 2)")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="also time every configuration on the first story in this many paired rounds (default 0: no)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where toy_consistency.json and .md go (default benchmarks/results)")
    args = parser.parse_args(argv)
    pairs = args.characters == 2
    name = "toy_characters" if pairs else "toy_consistency"
    args.out = args.out or ROOT / "runs" / name
    args.configs = args.configs or ("characters" if pairs else "paper")

    by_key = {c.key: c for c in ALL_CONFIGS}
    keys = [k.strip() for part in args.configs.split(",") for k in
            ([c.key for c in CONFIG_GROUPS[part.strip()]] if part.strip() in CONFIG_GROUPS else [part])]  # fmt: skip
    keys = [k.strip() for k in keys if k.strip()]
    unknown = [k for k in keys if k not in by_key]
    if unknown or not keys:
        parser.error(f"--configs {args.configs!r}: unknown {unknown}; choose from {', '.join(by_key)}")
    configs = [c for c in ALL_CONFIGS if c.key in keys]
    if args.stories < 1 or args.shots < (4 if pairs else 1) or args.jobs < 1:
        parser.error("--stories and --jobs must be at least 1, --shots at least 1 (4 with --characters 2)")

    started = time.time()
    stories_dir = args.out / "stories"
    stories_dir.mkdir(parents=True, exist_ok=True)
    scripts = (bench.pair_stories if pairs else bench.bench_stories)(args.stories, args.shots, args.seed)
    paths = []
    for i, script in enumerate(scripts):
        path = stories_dir / f"{'pair' if pairs else 'bench'}_{i:03d}.json"
        path.write_text(json.dumps(script, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    print(f"{len(paths)} stories of {args.shots} shots in {stories_dir}; configurations: "
          + ", ".join(c.name for c in configs), file=sys.stderr, flush=True)

    passthrough = ["--model", args.model]
    passthrough += ["--steps", str(args.steps)] if args.steps is not None else []
    passthrough += ["--size", args.size] if args.size is not None else []
    passthrough += ["--upscale", str(args.upscale)]
    preflight(configs, paths[0], passthrough, args.out / "preflight")

    shards = min(args.jobs, len(paths))
    tasks = [
        (config, render_args(paths, args.out / "runs" / config.key, config, passthrough) + ["--shard", f"{k}/{shards}"])
        for config in configs for k in range(1, shards + 1)
    ]
    commands = render_all(tasks, args.out, args.jobs, len(configs) * args.stories * args.shots)

    print("detecting the renderer's own clips (the ceiling) ...", file=sys.stderr, flush=True)
    size = frame_size(args.model, args.size)
    per_story = [truth_story(args.out / "truth" / f"{p.stem}_{size}x{args.upscale}", s, args.seed, i, size, args.upscale)
                 for i, (p, s) in enumerate(zip(paths, scripts))]  # fmt: skip
    ceiling = bench.aggregate([s for s, _ in per_story])
    rows: list[tuple[str, bench.Scores | str]] = [(TRUTH_ROW, ceiling)]
    results = [{"key": "truth", "name": TRUTH_ROW, "flags": [], "commands": [], "scores": ceiling.rates(),
                "counts": asdict(ceiling), "stories": [r for _, r in per_story]}]
    failed = False
    mixes: list[tuple[str, bench.Scores, list[str | None]]] = []
    role_rows: list[tuple[str, bench.RoleScores | str]] = [(TRUTH_ROW, _pooled_roles(results[0]["stories"]))]
    for config in configs:
        entry: dict = {"key": config.key, "name": config.name, "flags": list(config.flags),
                       "commands": commands[config.key],
                       "render_seconds": round(sum(c["seconds"] for c in commands[config.key]), 2)}
        print(f"detecting {config.name} ...", file=sys.stderr, flush=True)
        try:
            per_story = [read_story(args.out / "runs" / config.key / p.stem, s) for p, s in zip(paths, scripts)]
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            logs = ", ".join(c["log"] for c in commands[config.key])
            print(f"error: {config.name}: {err} (render logs: {logs})", file=sys.stderr, flush=True)
            entry["error"] = str(err)
            rows.append((config.name, f"failed: {err}"))
            role_rows.append((config.name, f"failed: {err}"))
            failed = True
        else:
            total = bench.aggregate([s for s, _ in per_story])
            shapes = [shot["detection"]["shape"] for _, r in per_story for shot in r["shots"]]
            entry.update(scores=total.rates(), counts=asdict(total), shape_mix=bench.shape_mix(shapes),
                         shape_agreement_by_chance=bench.shape_agreement_by_chance(shapes),
                         stories=[r for _, r in per_story])  # fmt: skip
            rows.append((config.name, total))
            mixes.append((config.name, total, shapes))
            roles = _pooled_roles(entry["stories"])
            entry["roles"] = {**asdict(roles), "rates": roles.rates()}
            role_rows.append((config.name, roles))
        results.append(entry)

    table = bench.format_table(rows, chance_row=by_key[NO_MEMORY].name)
    role_table = bench.format_role_table(role_rows) if pairs else None
    mix_table = bench.format_shape_mix(mixes)
    speed = time_configs(configs, paths[0], passthrough, args.out, args.speed_rounds) if args.speed_rounds else None
    report = {
        "benchmark": name,
        "characters": args.characters,
        "model": args.model,
        "seed": args.seed,
        "stories": args.stories,
        "shots_per_story": args.shots,
        "steps": args.steps,
        "size": args.size,
        "upscale": args.upscale,
        "jobs": args.jobs,
        "chance_consistency": bench.chance_consistency(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 2),
        "command": shlex.join(["python", "benchmarks/toy_consistency.py", *(argv if argv is not None else sys.argv[1:])]),
        "configs": results,
        "table": table,
        "shape_mix_table": mix_table,
        "role_table": role_table,
        "speed": speed,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    role_section = ""
    if role_table:
        role_section = (f"\nPer role: each role's shots after its first, with the colour of that role's first shot; "
                        f"confused: the other role's first colour instead. {report['seconds'] / 60:.0f} min on "
                        f"{args.jobs} processes.\n\n" + role_table)  # fmt: skip
    heading = (("Two-character toy benchmark (hero and friend, both declared as characters with their looks as "
                "aliases): " if pairs else "Toy benchmark: ") + f"{args.stories} held-out stories x {args.shots} shots (all hard cuts), "
               f"model `{args.model}`, seed {args.seed}. Consistency: shots 2..N with shot 1's detected "
               f"(colour, shape); chance {bench.chance_consistency():.3f}."
               + (" With two characters that compares every shot with the hero's first (the ground truth "
                  "row is its ceiling); the per-role table below is the measure." if pairs else "") + "\n\n")
    mix_heading = ("\nShapes: does memory carry them, or does the model draw one shape for everyone? Shape "
                   "agreement by chance is what drawing each shot's shape at random from the configuration's own "
                   "mix of shapes would score.\n\n")
    speed_section = ""
    if speed:
        speed_section = (f"\nSpeed: seconds per shot in the model's generate call, story 1 rendered under every "
                         f"configuration back to back in {args.speed_rounds} paired rounds (one thread each); ratio: "
                         f"median over rounds of each configuration over the full method in the same round.\n\n"
                         + format_speed(configs, speed))  # fmt: skip
    (args.results / f"{name}.md").write_text(heading + table + role_section + mix_heading + mix_table + speed_section,
                                            encoding="utf-8")  # fmt: skip
    print(table + role_section, end="")
    print(mix_heading.lstrip("\n") + mix_table + speed_section, end="")
    print(f"wrote {args.results / name}.json and .md", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
