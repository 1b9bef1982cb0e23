"""MagCache's skip schedule at the paper's settings, from the published Wan2.2 curves alone (no weights).

    python benchmarks/magcache_schedule.py [--forward-s 5.27 --outside-s 8.6]

Prints the markdown table in docs/models.md: per threshold (K 2, the authors' retention), the steps
each shot kind skips and the story's minutes, COMPUTED from a forward time (default: the compiled A14B
expert forward measured on an H200, 5.27 s, and 8.6 s a shot outside the transformer; see
docs/models.md) and the story's real memory growth. What the skips cost in quality depends on the
trained weights: not measured.
"""

from __future__ import annotations

import argparse

from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING
from storymem_cli.models import magcache
from storymem_cli.render.story_cost import memory_growth, shot_tokens, story_factor

THRESHOLDS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15)
K = 2
SHOTS, STEPS, PASSES = 10, 40, 2


def skips(kind: str, threshold: float, experts: str) -> dict[str, int]:
    sampling = T2V_SAMPLING if kind == "t2v" else M2V_SAMPLING
    plan = magcache.shot_plan(magcache.published_curves()[kind], sampling, threshold, K, experts=experts)  # type: ignore[index]
    return magcache.skipped_steps(plan)


def minutes(forward_s: float, outside_s: float, skipped: float) -> float:
    work = story_factor([shot_tokens(832, 480, 81, m) for m in memory_growth(SHOTS)], shot_tokens(832, 480, 81, 10))
    return SHOTS * (STEPS * PASSES * forward_s * work * (1 - skipped) + outside_s) / 60


def table(forward_s: float, outside_s: float) -> str:
    high, low = magcache.split_steps(M2V_SAMPLING)
    t2v_high, t2v_low = magcache.split_steps(T2V_SAMPLING)
    lines = [
        f"| threshold | first shot (T2V, {t2v_high}+{t2v_low} steps): skipped high+low | memory shot (M2V, {high}+{low}): "
        "auto (low only) | memory shot: both experts | story work skipped: auto / both | story minutes (computed): "
        "auto / both |",
        "|---|---|---|---|---|---|",
        f"| off | 0 | 0 | 0 | 0 / 0 | {minutes(forward_s, outside_s, 0):.0f} |",
    ]
    for threshold in THRESHOLDS:
        t2v, auto, both = skips("t2v", threshold, "auto"), skips("m2v", threshold, "auto"), skips("m2v", threshold, "both")
        share = {e: magcache.story_skipped_work(threshold, K, e) for e in ("auto", "both")}
        mark = " (authors)" if threshold == 0.06 else ""
        lines.append(
            f"| {threshold:g}{mark} | {t2v['high']}+{t2v['low']} of 40 | {auto['low']} of 40 | {both['high']}+{both['low']} of 40 "
            f"| {share['auto']:.0%} / {share['both']:.0%} | {minutes(forward_s, outside_s, share['auto']):.0f} / "
            f"{minutes(forward_s, outside_s, share['both']):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forward-s", type=float, default=5.27, help="one 40-layer expert forward at 48,360 tokens")
    parser.add_argument("--outside-s", type=float, default=8.6, help="a shot's time outside the transformer")
    args = parser.parse_args(argv)
    text = table(args.forward_s, args.outside_s)
    print(text)
    return text


if __name__ == "__main__":
    main()
