"""Render one story into a run folder, shot by shot, resumable.

The algorithm, top to bottom (``StoryRenderer.render``):

1. Check the inputs and plan every shot (mode, seed) before loading anything.
2. Open the run folder: refuse another story's folder, keep the finished shots
   whose inputs did not change, roll the memory bank back to that point and
   restore the continuation frames exactly.
3. Load the model and the memory parts (once per process, see components.py).
4. For each remaining shot: memory view -> ``model.generate`` -> trim ->
   clip + lossless tail frames -> keyframes into the bank -> mark it done.
5. Join the clips into story.mp4.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from storymem_cli import __version__
from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.models.identity import weights_identity
from storymem_cli.models.presets import TOY
from storymem_cli.render.atomic import atomic_write_text
from storymem_cli.render.integrity import (
    Untrusted,
    count_frames,
    file_sha256,
    first_untrusted_shot,
)
from storymem_cli.render.plan import (
    TAIL_FRAMES,
    ShotPlan,
    first_frames_for,
    min_frames_for,
    plan_story,
    trim_frames,
)
from storymem_cli.render.preview import write_preview
from storymem_cli.render.progress import NullProgress, RenderProgress
from storymem_cli.render.resume import (
    check_same_story,
    kept_prefix,
    shot_fingerprint,
)
from storymem_cli.render.runfolder import PREVIEW_NAME, RunFolder, raise_os_error
from storymem_cli.render.settings import RenderSettings
from storymem_cli.render.story_cost import time_summary
from storymem_cli.render.video import MAX_SIDE, join_clips, upscale_nearest, write_clip


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StoryInputs:
    """A validated script and where it came from."""

    script: Any  # storymem_cli.script model (load_script)
    path: Path


def plan_for(
    script: Any, settings: RenderSettings, user_references: Sequence[str] = (), *, series: bool = False
) -> list[ShotPlan]:
    plans = plan_story(
        script.shots,
        has_references=bool(script.reference_images()) or bool(user_references) or series,
        continuation=settings.continuation,
        use_memory=settings.use_memory,
        base_seed=settings.seed,
    )
    if settings.describe_characters and script.characters:
        # The prompt actually used: the plan carries it into the request and run.json.
        plans = [replace(plan, prompt=described_prompt(plan.prompt, script)) for plan in plans]
    return plans


def described_prompt(prompt: str, script: Any) -> str:
    """``prompt`` with the description of each character it names appended (the authors' mitigation,
    paper Appendix C): "Mia waves. Mia: a girl of ten in a red coat." """
    named = set(script.named_characters(prompt))
    notes = [f"{c.name}: {c.description.strip().rstrip('.')}." for c in script.characters
             if c.name in named and c.description]  # fmt: skip
    if not notes:
        return prompt
    text = prompt.rstrip()
    return " ".join([text if text.endswith((".", "!", "?")) else text + ".", *notes])


def resolve_retrieval(settings: RenderSettings, script: Any) -> RenderSettings:
    """The settings with ``retrieval`` decided for this script: by characters where it declares
    them (unless --retrieval paper); None without characters: the paper's memory, and the settings
    (run.json, fingerprint) exactly as before characters existed."""
    wanted = (settings.retrieval or "characters") if script.characters else None
    return settings.model_copy(update={"retrieval": wanted})


def toy_prompt_warning(plans: Sequence[ShotPlan]) -> str | None:
    """The toy model knows only the toy world's caption grammar: say so when prompts leave it."""
    from storymem_cli.toy.captions import parse_caption

    outside = []
    for plan in plans:
        try:
            parse_caption(plan.prompt)
        except ValueError:
            outside.append(plan)
    if not outside:
        return None
    first = outside[0]
    return (
        f"warning: {len(outside)} of {len(plans)} prompts are not toy-world captions, and the toy model knows "
        f"only that grammar (e.g. shot {first.index + 1}: {first.prompt[:60]!r}); write prompts like "
        "'a red circle with a hat hops to the left on the beach', then 'the hero walks to the right in the snow' "
        "(docs/toy-world.md)"
    )


ROPE_MAX_POSITIONS = 1024  # Wan's rope_max_seq_len: positions per axis (latent frames, height, width)


def check_video(video: Any) -> None:
    """A size and frame count the Wan VAE and patching can take (a VideoConfig, or one with the user's values)."""
    from storymem_cli.config import VAE_TEMPORAL_STRIDE
    from storymem_cli.pipeline.request import SIZE_MULTIPLE

    if video.width % SIZE_MULTIPLE or video.height % SIZE_MULTIPLE:
        raise InvalidInputError(
            f"--size {video.width}x{video.height}: width and height must be multiples of {SIZE_MULTIPLE}",
            hint=f"e.g. --size {video.width // SIZE_MULTIPLE * SIZE_MULTIPLE or SIZE_MULTIPLE}x"
            f"{video.height // SIZE_MULTIPLE * SIZE_MULTIPLE or SIZE_MULTIPLE}",
        )
    if video.frames % VAE_TEMPORAL_STRIDE != 1:
        nearest = video.frames // VAE_TEMPORAL_STRIDE * VAE_TEMPORAL_STRIDE + 1
        raise InvalidInputError(
            f"--frames {video.frames}: the Wan VAE needs 4k+1 frames per shot", hint=f"e.g. --frames {nearest}"
        )
    latent_frames = (video.frames - 1) // VAE_TEMPORAL_STRIDE + 1
    if latent_frames > ROPE_MAX_POSITIONS:  # the transformer's RoPE table: a reshape error past it
        most = (ROPE_MAX_POSITIONS - 1) * VAE_TEMPORAL_STRIDE + 1
        raise InvalidInputError(f"--frames {video.frames}: at most {most} frames per shot", hint=f"e.g. --frames {most}")


def check_inputs(script_path: Path, settings: RenderSettings, plans: Sequence[ShotPlan]) -> None:
    """Errors that name the bad setting, before any model loads."""
    if not plans:
        raise InvalidInputError(f"{script_path}: the script has no shots")
    video = settings.video
    check_video(video)
    largest = MAX_SIDE // max(video.width, video.height)
    if settings.upscale > largest:
        raise InvalidInputError(
            f"--upscale {settings.upscale}: the clips would be {video.width * settings.upscale}x"
            f"{video.height * settings.upscale}, and H.264 encodes at most {MAX_SIDE} pixels a side",
            hint=f"use --upscale {largest} or less" if largest else "use a smaller --size",
        )
    memory = settings.memory
    if memory.sink_size > memory.capacity:
        raise InvalidInputError(
            f"--sink-size {memory.sink_size} is larger than --memory-size {memory.capacity}: the sink is part of "
            "the memory, so it cannot hold more entries than the memory does",
            hint=f"use --sink-size {memory.capacity} or less, or a larger --memory-size",
        )
    need = min_frames_for(plans)
    if settings.video.frames < need:
        raise InvalidInputError(
            f"--frames {settings.video.frames} is too few: continuation shots drop their first "
            f"{need - 1} frame(s), so shots need at least {need}",
            hint="raise --frames (Wan needs 4k+1 frames: 9, 17, ...) or pass --continuation none",
        )


def _plan_summary(plan: ShotPlan) -> dict[str, Any]:
    return {
        "scene": plan.scene,
        "shot": plan.number,
        "shot_in_scene": plan.shot_in_scene,
        "mode": plan.mode,
        "seed": plan.seed,
        "prompt": plan.prompt,
    }


def _summary_shot(folder: RunFolder, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "scene": record["scene"],
        "shot": record["index"] + 1,
        "shot_in_scene": record["shot_in_scene"],
        "mode": record["mode"],
        "seed": record["seed"],
        "frames": record["trimmed_frames"],
        "path": str(folder.root / record["path"]),
        "memory_ids": record["memory_ids"],
    }


def summary(folder: RunFolder, record: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` result of one story."""
    return {
        "story": record["story_name"],
        "run_dir": str(folder.root),
        "video": str(folder.story_mp4),
        "preview": str(folder.root / record["preview"]) if record.get("preview") else None,  # older runs: none
        "model": record["settings"]["model"],
        "kept_shots": record.get("kept_shots", 0),
        "shots": [_summary_shot(folder, shot) for shot in record["shots"]],
    }


class StoryRenderer:
    """One story into one run folder. ``components`` is a ComponentCache shared across a batch."""

    def __init__(
        self,
        inputs: StoryInputs,
        settings: RenderSettings,
        preset: Any,
        run_dir: Path,
        *,
        components: Any,
        progress: RenderProgress | None = None,
        restart: bool = False,
    ):
        self.script = inputs.script
        self.script_path = inputs.path
        self.settings = resolve_retrieval(settings, inputs.script)
        self.preset = preset
        self.folder = RunFolder(run_dir)
        self.components = components
        self.progress = progress or NullProgress()
        self.restart = restart
        # References pinned with `storymem add-reference` before this render: memory from shot 1 on.
        self.user_references = user_reference_ids(self.folder.root, settings)
        self._weights_id: str | None = None
        if settings.retrieval == "characters" and not inputs.script.characters:
            self.progress.note(f"warning: {inputs.path}: --retrieval characters, but the script declares no "
                               "characters: every shot sees the paper's memory")  # fmt: skip
        self.series = None  # the earlier run this story continues (--memory-from), checked
        if settings.memory_from is not None:
            from storymem_cli.render.series import open_source

            self.series = open_source(
                Path(settings.memory_from), model=settings.model, weights=self._weights_identity(), output=run_dir
            )

    def _plans(self) -> list[ShotPlan]:
        return plan_for(self.script, self.settings, self.user_references, series=self.series is not None)

    # --- 1. plan ---------------------------------------------------------------------------

    def _weights_identity(self) -> str:
        """The weights behind the settings' model name: changed weights must not keep old shots."""
        if self._weights_id is None:
            styles = [style.path for style in self.settings.style_loras]
            self._weights_id = weights_identity(self.preset, self.settings.lora, styles)
        return self._weights_id

    def _fingerprints(self, plans: Sequence[ShotPlan]) -> list[str]:
        settings_fp, weights = self.settings.fingerprint(), self._weights_identity()
        script_fps = self.script.shot_fingerprints()
        series = None if self.series is None else self.series.identity
        return [
            shot_fingerprint(settings_fp, script_fps[p.index], p, self.user_references, weights, series) for p in plans
        ]

    # --- 2. the run folder -----------------------------------------------------------------

    def _open_folder(self) -> dict[str, Any] | None:
        """The previous run's record, or None to start fresh; refuses what must not be touched."""
        self.folder.remove_stale_temps()
        if self.restart:
            # User references are not render output: --restart keeps the bank (rolled back to
            # before shot 1 when it is opened) so they survive.
            self.folder.clear(keep=MEMORY_NAMES if self.user_references else ())
            self.folder.prepare()
            return None
        previous = self.folder.read_record()
        if previous is None:
            foreign = self.folder.foreign_content()
            if only_references(self.folder.root, self.settings):  # a folder made by add-reference
                foreign = [name for name in foreign if name not in MEMORY_NAMES]
            if foreign:
                raise InvalidInputError(
                    f"{self.folder.root} already holds {', '.join(foreign)} but no run.json",
                    hint="choose an empty or new output folder with -o, or pass --restart to replace them",
                )
            return None
        check_same_story(previous, self.script.story_name, self.folder.root)
        return previous

    def _keepable(self, previous: dict[str, Any] | None, fingerprints: Sequence[str]) -> int:
        """How many leading shots of the previous run can be kept: unchanged inputs, and files and
        memory still as they were written (render.integrity); says why when damage cuts it short."""
        if previous is None:
            return 0
        # Missing clips or tails are not checked here but below, so that the warning names them.
        damaged = previous.get("damaged_shot")  # a shot record of the wrong shape (render/run_record.py)
        records = previous.get("shots", [])[: damaged[0]] if damaged else previous.get("shots", [])
        kept = kept_prefix(records, fingerprints, lambda _index: True)
        bank = _existing_bank(self.folder.root, self.settings)
        untrusted = first_untrusted_shot(self.folder.root, previous["shots"][:kept], bank)
        if untrusted is None and damaged and damaged[0] == kept < len(fingerprints):
            untrusted = Untrusted(kept, damaged[1])
        if untrusted is None:
            return kept
        self.progress.note(
            f"warning: {self.folder.root}: shot {untrusted.shot + 1} cannot be kept: {untrusted.reason}; "
            f"rendering again from shot {untrusted.shot + 1} (the shots before it are kept)"
        )
        return untrusted.shot

    def _video_intact(self, previous: dict[str, Any]) -> bool:
        """story.mp4 is the file the previous run joined (or, for older runs, has its frame count)."""
        video = self.folder.story_mp4
        if not video.is_file():
            return False
        if previous.get("video_sha256"):
            return file_sha256(video) == previous["video_sha256"]
        return count_frames(video) == previous.get("total_frames")

    def _base_record(self, plans: Sequence[ShotPlan], previous: dict[str, Any] | None) -> dict:
        return {
            "storymem_version": __version__,
            "story_name": self.script.story_name,
            "script_path": str(self.script_path.resolve()),
            "script_sha256": self.script.sha256,
            "created": previous.get("created", _now()) if previous else _now(),
            "updated": _now(),
            "status": "rendering",
            "settings": self.settings.model_dump(mode="json"),
            "settings_fingerprint": self.settings.fingerprint(),
            "weights_identity": self._weights_identity(),
            "references": [
                {"name": ref.name, "image": str(ref.image)} for ref in self.script.references
            ],
            **({"memory_from": self.series.describe()} if self.series is not None else {}),
            "model": previous.get("model") if previous else None,
            "planned_shots": [plan.as_dict() for plan in plans],
            "video": None,
            "shots": [],
        }

    def _save(self, record: dict[str, Any]) -> None:
        record["updated"] = _now()
        try:
            self.folder.write_record(record)
        except OSError as err:
            raise_os_error(err, self.folder.run_json)

    def dry_run(self) -> dict[str, Any]:
        """The plan, and which shots a render would keep from the folder's last run; writes nothing."""
        plans = self._plans()
        check_inputs(self.script_path, self.settings, plans)
        fingerprints = self._fingerprints(plans)
        previous = None if self.restart else self.folder.read_record()
        if previous is not None:
            check_same_story(previous, self.script.story_name, self.folder.root)
        kept = self._keepable(previous, fingerprints)
        return {
            "story": self.script.story_name,
            "script": str(self.script_path),
            "run_dir": str(self.folder.root),
            "model": self.settings.model,
            "settings": self.settings.model_dump(mode="json"),
            "shots": [
                {
                    **_plan_summary(plan),
                    "frames": self.settings.video.frames - plan.conditioning_frames,
                    "action": "keep" if plan.index < kept else "render",
                }
                for plan in plans
            ],
        }

    # --- the algorithm ---------------------------------------------------------------------

    def render(self) -> dict[str, Any]:
        # 1. Check inputs and plan.
        plans = self._plans()
        check_inputs(self.script_path, self.settings, plans)
        self.folder.prepare()
        with self.folder.locked():
            # add-reference may have changed the references between __init__ and the lock.
            references = user_reference_ids(self.folder.root, self.settings)
            if references != self.user_references:
                self.user_references = references
                plans = self._plans()
            return self._render(plans, self._fingerprints(plans))

    def _render(self, plans: Sequence[ShotPlan], fingerprints: Sequence[str]) -> dict[str, Any]:
        # 2. The run folder: what can be kept.
        previous = self._open_folder()
        kept = self._keepable(previous, fingerprints)
        record = self._base_record(plans, previous)
        record["shots"] = list(previous["shots"][:kept]) if previous else []
        record["kept_shots"] = kept

        finished = (
            previous is not None
            and kept == len(plans)
            and previous.get("status") == "done"
            and previous.get("script_sha256") == self.script.sha256  # else refresh script.json + run.json
            and "upgraded_from" not in previous  # an older run.json format: written again in this one
            and self._video_intact(previous)
        )
        if finished:
            self.progress.note(f"{self.script.story_name}: all {len(plans)} shots already rendered in {self.folder.root}")
            return summary(self.folder, {**previous, "kept_shots": kept})

        try:
            atomic_write_text(self.folder.script_json, self.script.canonical_json() + "\n")
        except OSError as err:
            raise_os_error(err, self.folder.script_json)
        self._save(record)
        self.progress.story_start(self.script.story_name, len(plans), kept, self.settings.steps, self._work(plans))
        if self.preset.name == TOY.name:
            warning = toy_prompt_warning(plans)
            if warning:
                self.progress.note(warning)

        if kept < len(plans):
            # 3. Load the model and memory parts (cached across a batch).
            parts = self.components.get(self.preset, self.settings)
            record["model"] = parts.model.describe()
            bank = self._open_bank(kept)
            previous_tail = self.folder.load_tail(kept - 1) if kept > 0 else None

            # 4. Shot by shot.
            for plan in plans[kept:]:
                shot_record, previous_tail = self._render_shot(
                    plan, parts, bank, previous_tail, fingerprints[plan.index]
                )
                record["shots"].append(shot_record)
                record["model"] = parts.model.describe()  # the LoRA loader's report exists once M2V loaded
                self._save(record)

        # 5. Join the shots.
        clips = [self.folder.root / shot["path"] for shot in record["shots"]]
        total = sum(shot["trimmed_frames"] for shot in record["shots"])
        try:
            join_clips(clips, self.folder.story_mp4)
            joined = count_frames(self.folder.story_mp4)
            if joined != total:  # a damaged clip that slipped through must not make a short story
                raise StorymemError(
                    f"{self.folder.story_mp4} has {joined} frames after joining the shots, not {total}",
                    hint="a shot clip in shots/ is damaged: delete it and run the same command again",
                )
            record["video_sha256"] = file_sha256(self.folder.story_mp4)
        except OSError as err:
            raise_os_error(err, self.folder.story_mp4)
        preview = self.folder.root / PREVIEW_NAME
        try:
            write_preview(self.folder.story_mp4, record["shots"], preview)
        except OSError as err:
            raise_os_error(err, preview)
        record["video"] = self.folder.relative(self.folder.story_mp4)
        record["preview"] = PREVIEW_NAME
        record["total_frames"] = total
        record["status"] = "done"
        self._save(record)
        if kept < len(plans):
            self.progress.note(f"{self.script.story_name}: {time_summary(record['shots'][kept:])}")
        return summary(self.folder, record)

    def _work(self, plans: Sequence[ShotPlan]) -> list[float]:
        """Each shot's expert-forward FLOPs at the most memory it can have (render.story_cost)."""
        from storymem_cli.render.story_cost import flops, memory_growth, shot_tokens

        video, memory = self.settings.video, self.settings.memory
        references = len(self.script.references) if self.settings.use_memory else 0
        per_shot = memory.max_keyframes_per_shot if self.settings.use_memory else 0
        grown = memory_growth(len(plans), memory.capacity, per_shot, start=min(references, memory.capacity))
        return [flops(shot_tokens(video.width, video.height, video.frames, frames)) for frames in grown]

    def _open_bank(self, kept: int) -> Any:
        """The memory bank exactly as it was before shot ``kept``; a story rendered from its first
        shot starts from the script's reference images (MR2V). None with --no-memory."""
        from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank

        if not self.settings.use_memory and not (self.folder.root / MEMORY_JSON).exists():
            return None
        try:
            bank = MemoryBank.open(self.folder.root, self.settings.memory)
            # Also with --no-memory: keyframes of shots about to be replaced must not stay behind.
            bank.rollback(before_shot=kept)
            if kept == 0 and self.settings.use_memory:
                sync_references(bank, self.script.reference_images())
                self._sync_series(bank)
            bank.save()
        except OSError as err:
            raise_os_error(err, self.folder.root / MEMORY_JSON)
        return bank if self.settings.use_memory else None

    def _sync_series(self, bank: Any) -> None:
        """Pin the earlier run's memory (--memory-from), or unpin an earlier one no longer named."""
        wanted = []
        if self.series is not None:
            from storymem_cli.render.series import series_references

            pinned = sum(1 for e in bank.active_entries() if e.role == "reference" and e.source.origin != "series")
            room = bank.cfg.capacity - bank.cfg.max_keyframes_per_shot - pinned
            wanted = series_references(self.series, room)
            if room <= 0:
                self.progress.note(f"warning: --memory-from {self.series.root}: this story's own references fill "
                                   "the memory: nothing of the earlier run fits (raise --memory-size)")  # fmt: skip
        sync_references(bank, wanted, origin="series")

    def _memory_for(self, plan: ShotPlan, bank: Any) -> tuple[list[Any], dict[str, str] | None]:
        """The entries shot ``plan`` is conditioned on, in order, and why each (None: the paper's memory)."""
        if bank is None:
            return [], None
        if self.settings.retrieval != "characters":
            return bank.conditioning_entries(), None
        from storymem_cli.memory.retrieve import retrieve

        named = self.script.named_characters(self.script.shots[plan.index].prompt)
        picks = retrieve(bank.entries, named, bank.cfg.capacity)
        return [bank.get(pick.id) for pick in picks], {pick.id: pick.why for pick in picks}

    def _render_shot(
        self,
        plan: ShotPlan,
        parts: Any,
        bank: Any,
        previous_tail: np.ndarray | None,
        fingerprint: str,
    ) -> tuple[dict[str, Any], np.ndarray]:
        from storymem_cli.pipeline.request import ShotRequest
        from storymem_cli.render.components import cuda_out_of_memory
        from storymem_cli.render.story_cost import shot_tokens

        self.progress.shot_start(plan)
        started = time.perf_counter()
        video = self.settings.video

        # Memory view: the entries this shot is conditioned on.
        entries, why = self._memory_for(plan, bank)
        memory = [bank.load_image(entry) for entry in entries]
        guidance_high, guidance_low = self.settings.guidance_per_expert()
        request = ShotRequest(
            mode=plan.generation_mode,
            prompt=plan.prompt,
            memory=memory,
            first_frames=first_frames_for(plan.mode, previous_tail),
            width=video.width,
            height=video.height,
            frames=video.frames,
            steps=self.settings.steps,
            seed=plan.seed,
            rope=self.settings.rope,
            guidance_high=guidance_high,
            guidance_low=guidance_low,
            flow_shift=self.settings.flow_shift_for(plan.mode),
            scheduler=self.settings.scheduler,
        )
        prepared = time.perf_counter()

        # Generate.
        try:
            frames = parts.model.generate(request, progress=self.progress.step)
        except RuntimeError as err:
            oom = cuda_out_of_memory(err)
            if oom is not None:
                raise oom from err
            raise
        generated = time.perf_counter()
        # The denoising alone (no text encoding, no VAE) and the forwards a step cache skipped; a model
        # without the counters (a stand-in in tests) records none.
        denoised = getattr(parts.model, "shot_stats", lambda: {})()

        # Trim, then write the clip (upscaled for viewing) and the lossless tail (model size).
        shot_frames = trim_frames(frames, plan.mode)
        clip = self.folder.clip(plan.index)
        try:
            write_clip(upscale_nearest(shot_frames, self.settings.upscale), clip, video.fps)
            self.folder.save_tail(plan.index, frames[-TAIL_FRAMES:])
        except OSError as err:
            raise_os_error(err, clip)
        written = time.perf_counter()

        # Keyframes from the decoded frames (never the mp4) into the bank, tagged with who the shot names.
        memory_ids = [entry.id for entry in entries]
        named = self.script.named_characters(self.script.shots[plan.index].prompt)
        keyframe_ids: list[str] = []
        if bank is not None:
            # --keyframes release scans the untrimmed output, copies of the previous shot included,
            # as the authors' release did; every other mode scans the shot's own frames.
            scanned = frames if bank.cfg.selection == "release" else shot_frames
            try:
                keyframe_ids = update_bank(bank, plan.index, scanned, parts, memory_ids, who=named, why=why)
            except OSError as err:  # e.g. the disk filling up while a keyframe PNG is written
                raise_os_error(err, self.folder.root / "memory")
        remembered = time.perf_counter()

        shot_record = {
            **plan.as_dict(),
            "frames": len(frames),
            "trimmed_frames": len(shot_frames),
            "path": self.folder.relative(clip),
            "tail": self.folder.relative(self.folder.tail(plan.index)),
            # What was written, so a resume can tell a damaged or replaced file (render.integrity).
            "clip_sha256": file_sha256(clip),
            "tail_sha256": file_sha256(self.folder.tail(plan.index)),
            "memory_ids": memory_ids,
            "keyframe_ids": keyframe_ids,
            # With characters only, so a story without them records what it always did.
            **({"characters": named} if self.script.characters else {}),
            **({"memory_why": [{"id": i, "why": why[i]} for i in memory_ids]} if why is not None else {}),
            "fingerprint": fingerprint,
            "status": "done",
            "finished_at": _now(),
            "tokens": shot_tokens(video.width, video.height, video.frames, len(memory)),  # of each expert forward
            **{key: denoised[key] for key in ("forwards", "forwards_skipped") if key in denoised},
            "timings": {
                "prepare_s": round(prepared - started, 4),
                "generate_s": round(generated - prepared, 4),
                **({"denoise_s": denoised["denoise_s"]} if denoised.get("denoise_s") is not None else {}),
                "write_s": round(written - generated, 4),
                "memory_s": round(remembered - written, 4),
                "total_s": round(remembered - started, 4),
            },
        }
        self.progress.shot_done(plan, remembered - started)
        return shot_record, frames[-TAIL_FRAMES:]


def update_bank(
    bank: Any,
    shot: int,
    frames: np.ndarray,
    parts: Any,
    memory_ids: list[str],
    *,
    who: Sequence[str] = (),
    why: dict[str, str] | None = None,
) -> list[str]:
    """Embed and score the shot's frames once, select keyframes (``bank.cfg.selection``: the
    paper's semantic selection, the release's own scan or the first-frame ablation), add them
    tagged with the characters ``who`` the shot names, record what the shot saw (and ``why``),
    save the bank (SPEC 7)."""
    from storymem_cli.memory.select import select_with_record

    embeddings = parts.embedder.embed(frames)
    scores = parts.scorer.score(frames)
    usable = parts.scorer.usable(scores)
    bank_embeddings = bank.active_embeddings(parts.embedder)
    chosen = select_with_record(embeddings, usable, bank_embeddings, bank.cfg)
    recorded = None if getattr(parts.scorer, "name", None) == "none" else scores  # no filter: no score ("-", not 0)
    added = bank.add_shot_keyframes(
        shot, frames, chosen.indices, embeddings, recorded, chosen.novelty, embedder=parts.embedder.name,
        characters=list(who),
    )  # fmt: skip
    bank.record_conditioning(shot, memory_ids, why)
    bank.save()
    return list(added)


MEMORY_NAMES = ("memory", "memory.json")


def _existing_bank(run_dir: Path, settings: RenderSettings) -> Any:
    """The run folder's memory bank if it has one (read without creating anything), else None."""
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank

    if not (run_dir / MEMORY_JSON).is_file():
        return None
    return MemoryBank.open(run_dir, settings.memory)


def user_reference_ids(run_dir: Path, settings: RenderSettings) -> list[str]:
    """Ids of the active references pinned with add-reference (content-addressed)."""
    bank = _existing_bank(run_dir, settings)
    return [] if bank is None else [entry.id for entry in bank.user_references()]


def only_references(run_dir: Path, settings: RenderSettings) -> bool:
    """True when the folder's bank holds references and nothing a render wrote."""
    bank = _existing_bank(run_dir, settings)
    return bank is not None and all(entry.role == "reference" for entry in bank.entries)


def load_reference_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as err:
        raise InvalidInputError(f"reference image {path} cannot be read: {err}") from None


def sync_references(bank: Any, references: Sequence[Any], origin: str = "script") -> None:
    """Make the bank's pinned references of ``origin`` exactly ``references`` (MR2V: the references
    are m_0): the script's (``TaggedReference``: image path, name, characters) or, for "series",
    (name, image, characters) of an earlier run.

    Called before the first shot only: references are embedded lazily by the bank when the
    first keyframes are deduplicated against it.
    """
    from storymem_cli.memory.bank import image_digest

    if origin == "script":
        wanted = [(ref.name, load_reference_image(ref.image), list(ref.characters)) for ref in references]
    else:
        wanted = [(name, image, list(who)) for name, image, who in references]
    wanted_keys = {(name, image_digest(image), tuple(who)) for name, image, who in wanted}
    present = set()
    for entry in bank.entries:
        if entry.role != "reference" or entry.source.origin != origin:
            continue  # references from add-reference are the user's: never touched here
        key = (entry.source.name, entry.sha256, tuple(entry.characters))
        if key in wanted_keys and not bank.image_problem(entry):  # a damaged PNG is replaced
            present.add(key)
        else:
            bank.remove(entry.id)
    # An earlier run's keyframe whose pixels are pinned already (the same reference image in both
    # parts of a series) is pinned once; the script's references are pinned as they are listed.
    pixels = {e.sha256 for e in bank.active_entries() if e.role == "reference"} if origin == "series" else set()
    for name, image, who in wanted:
        digest = image_digest(image)
        if (name, digest, tuple(who)) not in present and digest not in pixels:
            bank.add_reference(image, name, origin=origin, characters=who)
            present.add((name, digest, tuple(who)))
            if origin == "series":
                pixels.add(digest)
