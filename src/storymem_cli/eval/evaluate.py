"""Scoring one story: its script, one clip per shot, the metric models -> five numbers.

One pass over the clips: each shot is decoded once; its frames feed the aesthetic
predictor (every frame), ViCLIP (8 frames of the shot), and the 8 frames of the whole
story video that fall inside it (the global prompt-following input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from storymem_cli.errors import InvalidInputError
from storymem_cli.eval import metrics as M
from storymem_cli.eval.clips import count_frames, read_clip
from storymem_cli.eval.models import VICLIP_METRICS
from storymem_cli.eval.sampling import locate, vbench_frame_indices, viclip_input

if TYPE_CHECKING:
    from storymem_cli.eval.models import MetricModels

@dataclass
class StoryResult:
    """One story's scores; a metric not computed (not selected, or undefined) is None."""

    story: str
    system: str
    shots: int
    scores: dict[str, float | None]
    top_pairs: list[tuple[int, int]] = field(default_factory=list)  # 0-based shot indices
    pairs_available: int = 0
    frames_per_shot: list[int] = field(default_factory=list)
    truncated_prompts: int = 0  # shot prompts longer than ViCLIP's context
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "story": self.story,
            "system": self.system,
            **{m: self.scores.get(m) for m in M.METRICS},
            "shots": self.shots,
            "pairs": self.pairs_available,
            "top10_pairs": [[i + 1, j + 1] for i, j in self.top_pairs],  # 1-based, as shots are named
            "frames_per_shot": self.frames_per_shot,
            "truncated_prompts": self.truncated_prompts,
            "notes": self.notes,
        }


def check_inputs(script, clip_paths: list[Path], source: str) -> None:
    """One clip per shot, or refuse (exit 2) saying both counts."""
    if len(clip_paths) != len(script.shots):
        raise InvalidInputError(
            f"{source}: {len(clip_paths)} clip(s) but the script '{script.story_name}' has {len(script.shots)} shot(s)",
            hint="give exactly one clip per shot, in story order (names that sort naturally: shot_1, shot_2, ... shot_10)",
        )


def evaluate_story(
    script,
    clip_paths: list[Path],
    models: MetricModels,
    metrics: set[str],
    *,
    system: str,
    source: str,
    progress: Callable[[str], None] | None = None,
) -> StoryResult:
    """The selected metrics of one story (see metrics.py for each definition)."""
    from storymem_cli.eval.tokenizer import token_count

    # 1. Check inputs.
    check_inputs(script, clip_paths, source)
    shots = script.shots
    use_viclip = bool(metrics & VICLIP_METRICS)
    notes: list[str] = []

    # 2. Where the whole story video's 8 frames fall (the story video = the shots joined in order).
    lengths = [count_frames(p) for p in clip_paths] if "prompt_global" in metrics else []
    n_frames = models.num_frames if use_viclip else 0
    wanted: dict[int, list[tuple[int, int]]] = {}  # shot -> [(slot in the 8, frame in shot)]
    if lengths:
        for slot, (shot, frame) in enumerate(locate(vbench_frame_indices(sum(lengths), n_frames), lengths)):
            wanted.setdefault(shot, []).append((slot, frame))

    # 3. One pass over the clips.
    aesthetic_scores: list[np.ndarray] = []
    shot_inputs = []
    story_frames: list[np.ndarray | None] = [None] * n_frames
    frames_per_shot = []
    for i, path in enumerate(clip_paths):
        if progress:
            progress(f"{script.story_name}: shot {i + 1}/{len(clip_paths)} ({Path(path).name})")
        frames = read_clip(path)
        frames_per_shot.append(len(frames))
        if "aesthetic" in metrics:
            aesthetic_scores.append(models.aesthetic.score(frames))
        if use_viclip:
            shot_inputs.append(viclip_input(frames[vbench_frame_indices(len(frames), n_frames)], models.image_size))
        for slot, frame in wanted.get(i, []):
            # ffmpeg's count and the decoded frames can disagree by a frame at the very end
            story_frames[slot] = frames[min(frame, len(frames) - 1)]
        del frames

    # 4. Embed prompts and videos.
    scores: dict[str, float | None] = {m: None for m in M.METRICS}
    top = M.TopPairs(None)
    truncated = 0
    if use_viclip:
        truncated = sum(token_count(s.prompt) > models.context_length - 2 for s in shots)
        shot_video = models.embed_videos(shot_inputs)
        shot_text = models.embed_texts([s.prompt for s in shots])
        if truncated:
            notes.append(
                f"{truncated} of {len(shots)} shot prompts exceed ViCLIP's {models.context_length - 2} text tokens "
                "and are read truncated, as in the paper's metric"
            )

    # 5. The metrics.
    if "aesthetic" in metrics:
        scores["aesthetic"] = M.aesthetic_quality(aesthetic_scores)
    if "prompt_single" in metrics:
        scores["prompt_single"] = M.prompt_following_single(shot_video, shot_text)
    if "prompt_global" in metrics:
        if script.story_overview.strip():
            story_video = models.embed_videos([viclip_input(np.stack(story_frames), models.image_size)])
            scores["prompt_global"] = M.prompt_following_global(story_video, models.embed_texts([script.story_overview]))
            if token_count(script.story_overview) > models.context_length - 2:
                notes.append(f"the story overview exceeds ViCLIP's {models.context_length - 2} text tokens and is read truncated")
        else:
            notes.append("the script has no story_overview, so there is no global prompt-following score")
    if "consistency_all" in metrics:
        scores["consistency_all"] = M.consistency_all(shot_video)
    if "consistency_top10" in metrics:
        top = M.consistency_top_pairs(shot_video, shot_text)
        scores["consistency_top10"] = top.value
    if metrics & {"consistency_all", "consistency_top10"}:
        if len(shots) < 2:
            notes.append("one shot only: no shot pairs, so no consistency score")
        elif top.short and "consistency_top10" in metrics:
            notes.append(f"only {top.available} shot pairs (fewer than {M.TOP_PAIRS}): top-10 consistency uses all of them")

    return StoryResult(
        story=script.story_name,
        system=system,
        shots=len(shots),
        scores={m: scores[m] for m in M.METRICS if m in metrics},
        top_pairs=list(top.pairs),
        pairs_available=len(M.all_pairs(len(shots))),
        frames_per_shot=frames_per_shot,
        truncated_prompts=int(truncated),
        notes=notes,
    )
